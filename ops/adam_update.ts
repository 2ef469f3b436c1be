/**
 * The reference optimiser's whole per-tensor update as one op of ours: coupled weight decay,
 * Adam's moments, bias correction and the learning rate (`optim/`'s `referenceAdam` chain) in one
 * pass, kernel `UgatitAdamUpdate`, where the composed ops take about fifteen. The composed
 * fallback is the chain's arithmetic in the chain's order.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { adamUpdate } from "./adam_update.ts";
 * const [g, p, m, v] = [tf.ones([3]), tf.ones([3]), tf.zeros([3]), tf.zeros([3])];
 * const attrs = { weightDecay: 0, b1: 0.5, b2: 0.999, eps: 1e-8, c1: 0.5, c2: 0.001, lr: 0.1 };
 * const [update, m1, v1] = adamUpdate(g, p, m, v, attrs); // update -0.1 everywhere
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The Adam kernel's name: inputs `{g, p, m, v}`, outputs `[update, m, v]`. */
export const ADAM_UPDATE = "UgatitAdamUpdate";
/** The Adam kernel's attributes. */
export interface AdamUpdateAttrs {
  /** Coupled L2 weight decay (added to the gradient). */
  readonly weightDecay: number;
  /** First-moment decay. */
  readonly b1: number;
  /** Second-moment decay. */
  readonly b2: number;
  /** Added to the root of the second moment. */
  readonly eps: number;
  /** Bias corrections `1 - b1^t` and `1 - b2^t`. */
  readonly c1: number;
  /** See c1. */
  readonly c2: number;
  /** The learning rate of this step. */
  readonly lr: number;
}

/**
 * One Adam step composed from tfjs ops: `g' = g + wd p`, `m = b1 m + (1 - b1) g'`,
 * `v = b2 v + (1 - b2) g'^2`, `update = -lr (m / c1) / (sqrt(v / c2) + eps)`.
 * @param g the gradient
 * @param p the parameter
 * @param m the first moment
 * @param v the second moment
 * @param attrs decay, betas, eps, bias corrections, learning rate
 * @returns `[update, m, v]`, each of `g`'s shape
 */
export function adamUpdateComposed(
  g: tf.Tensor,
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  { weightDecay, b1, b2, eps, c1, c2, lr }: AdamUpdateAttrs,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tidy(() => {
    const gd = tf.add(g, tf.mul(p, weightDecay));
    const mu = tf.add(tf.mul(m, b1), tf.mul(gd, 1 - b1));
    const nu = tf.add(tf.mul(v, b2), tf.mul(tf.square(gd), 1 - b2));
    const scaled = tf.div(tf.div(mu, c1), tf.add(tf.sqrt(tf.div(nu, c2)), eps));
    return [tf.mul(scaled, -lr), mu, nu];
  });
}

/**
 * One Adam step: our kernel where the backend has it, else {@linkcode adamUpdateComposed}.
 * @param g the gradient
 * @param p the parameter
 * @param m the first moment
 * @param v the second moment
 * @param attrs decay, betas, eps, bias corrections, learning rate
 * @returns `[update, m, v]`, each of `g`'s shape (the caller owns them)
 */
export function adamUpdate(
  g: tf.Tensor,
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  attrs: AdamUpdateAttrs,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  if (!kernelHere(ADAM_UPDATE)) return adamUpdateComposed(g, p, m, v, attrs);
  return tf.engine().runKernel(
    ADAM_UPDATE,
    { g, p, m, v },
    attrs as unknown as tf.NamedAttrMap,
  ) as [tf.Tensor, tf.Tensor, tf.Tensor];
}

/** The contract: three steps from seeded parameters and gradients. */
export const adamUpdateContract: OpContract = {
  kernels: [ADAM_UPDATE],
  cases: ([[3, 5], [7], [2, 3, 4, 5]] as const).map((shape, i) => ({
    name: `[${shape}], three steps`,
    tolerance: 1e-4,
    run: () =>
      tf.tidy(() => {
        let p = tf.randomNormal([...shape], 0, 1, "float32", 81 + i);
        let [m, v] = [tf.zerosLike(p), tf.zerosLike(p)];
        for (let t = 1; t <= 3; t++) {
          const g = tf.randomNormal([...shape], 0, 1, "float32", 91 + 10 * i + t);
          const attrs = { weightDecay: 1e-4, b1: 0.5, b2: 0.999, eps: 1e-8, lr: 1e-2 };
          const [u, m1, v1] = adamUpdate(g, p, m, v, {
            ...attrs,
            c1: 1 - attrs.b1 ** t,
            c2: 1 - attrs.b2 ** t,
          });
          [p, m, v] = [tf.add(p, u), m1, v1];
        }
        return { p, m, v };
      }),
  })),
};
