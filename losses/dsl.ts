/**
 * A small language for objectives. A loss reads one forward-pass record and returns a scalar; an
 * objective is a list of named, weighted terms; combinators name, weight, sum and mirror them
 * (A->B and B->A); evaluating an objective gives the total and every named term, so logs and
 * plots get the breakdown for free.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { evaluate, mirror, named, sum, weighted } from "./dsl.ts";
 * type View = { x: tf.Tensor };
 * const size = named<View>("size", (v) => tf.mean(tf.abs(v.x)) as tf.Scalar);
 * const objective = mirror(sum(weighted(10, size)));
 * const { total, terms } = evaluate(objective, { A: { x: tf.ones([2]) }, B: { x: tf.zeros([2]) } });
 * console.log(Object.keys(terms), total.dataSync()[0]); // ["size_A", "size_B"] 10
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";

/** A loss: a scalar function of one record. */
export type Loss<R> = (record: R) => tf.Scalar;

/** One named, weighted term of an objective. */
export interface Term<R> {
  /** Name in logs (e.g. `cycle_A`). */
  readonly name: string;
  /** Multiplier in the total. */
  readonly weight: number;
  /** The loss. */
  readonly loss: Loss<R>;
}

/** An objective: a sum of named, weighted terms. */
export type Objective<R> = readonly Term<R>[];

/**
 * Names a loss: the one-term objective `1 * loss`.
 * @param name the term's name
 * @param loss the loss
 * @returns the objective
 */
export function named<R>(name: string, loss: Loss<R>): Objective<R> {
  return [{ name, weight: 1, loss }];
}

/**
 * Multiplies every term's weight.
 * @param weight the factor
 * @param objective the terms
 * @returns the weighted terms
 */
export function weighted<R>(weight: number, objective: Objective<R>): Objective<R> {
  return objective.map((t) => ({ ...t, weight: t.weight * weight }));
}

/**
 * Sums objectives (concatenates their terms); terms of weight 0 are dropped, so a switched-off
 * term costs nothing.
 * @param objectives the parts
 * @returns their sum
 */
export function sum<R>(...objectives: Objective<R>[]): Objective<R> {
  return objectives.flat().filter((t) => t.weight !== 0);
}

/** A record with one view per domain. */
export interface Mirrored<V> {
  /** The view of domain A. */
  readonly A: V;
  /** The view of domain B. */
  readonly B: V;
}

/**
 * Applies an objective written for one domain to both: each term `t` becomes `t_A` (on the A
 * view) and `t_B` (on the B view).
 * @param objective terms over one domain's view
 * @returns terms over both
 */
export function mirror<V>(objective: Objective<V>): Objective<Mirrored<V>> {
  return (["A", "B"] as const).flatMap((d) =>
    objective.map((t) => ({
      name: `${t.name}_${d}`,
      weight: t.weight,
      loss: (r: Mirrored<V>) => t.loss(r[d]),
    }))
  );
}

/** The value of an objective: the weighted total and every term (unweighted). */
export interface Evaluation {
  /** `sum(weight * term)`. */
  readonly total: tf.Scalar;
  /** Each term's value before weighting, by name. */
  readonly terms: Readonly<Record<string, tf.Scalar>>;
}

/**
 * Evaluates an objective on a record.
 * @param objective the terms
 * @param record the forward pass
 * @returns total and terms (the caller owns these tensors)
 */
export function evaluate<R>(objective: Objective<R>, record: R): Evaluation {
  return tidy(() => {
    const terms: Record<string, tf.Scalar> = {};
    let total: tf.Scalar = tf.scalar(0);
    for (const t of objective) {
      if (t.name in terms) throw new Error(`objective: two terms are named "${t.name}"`);
      const value = t.loss(record);
      terms[t.name] = value;
      total = tf.add(total, tf.mul(value, t.weight));
    }
    return { total, terms };
  });
}
