/**
 * Optimisation as small pure transformations in the optax manner: each is `init(params) -> state`
 * and `update(updates, state, params) -> [updates, state]` over any tree of tensors (the step's
 * parameter records as they are), composed with {@linkcode chain}, whose state is the tuple of its
 * parts' states. State is a value passed in and returned; only the caller disposes old ones.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { applyUpdates, chain } from "./transform.ts";
 * import { scaleByAdam } from "./adam.ts";
 * import { scaleByLearningRate } from "./schedule.ts";
 * const opt = chain(scaleByAdam({ b1: 0.9 }), scaleByLearningRate(() => tf.scalar(0.01)));
 * const params = { layer: { w: tf.ones([2, 2]) } };
 * const state = opt.init(params); // [{ count, mu, nu }, { count }]
 * const [updates, next] = opt.update({ layer: { w: tf.ones([2, 2]) } }, state, params);
 * const stepped = applyUpdates(params, updates); // w is 0.99 everywhere
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { flow } from "fp-ts/function";
import { dispose, tidy, type TreeLike, zipMap } from "../tree/tree.ts";

/**
 * A gradient transformation over parameter trees: `P` is whatever tree the caller's parameters
 * are (gradients and updates have its structure), `S` the transformation's own state.
 */
export interface GradientTransformation<S> {
  /**
   * The initial state for these parameters.
   * @param params the parameters
   * @returns the state
   */
  init<P extends TreeLike>(params: P): S;
  /**
   * Transforms gradients (or the updates of an earlier transformation) into updates; neither
   * input is disposed.
   * @param updates gradients or updates, of the parameters' structure
   * @param state this transformation's state
   * @param params the parameters
   * @returns the new updates (the caller owns them) and the new state
   */
  update<P extends TreeLike>(updates: P, state: S, params: P): [P, S];
  /**
   * The update applied: `applyUpdates(params, update(...))` in one go, where a transformation can
   * do both in one kernel (optional; {@linkcode applyTransformation} composes them otherwise).
   * @param grads gradients, of the parameters' structure
   * @param state this transformation's state
   * @param params the parameters
   * @returns the new parameters (the caller owns them) and the new state
   */
  step?<P extends TreeLike>(grads: P, state: S, params: P): [P, S];
}

/** The state type of a transformation. */
export type StateOf<T> = T extends GradientTransformation<infer S> ? S : never;

/** The state of a {@linkcode chain}: its transformations' states, in order. */
export type ChainState<Ts extends readonly GradientTransformation<unknown>[]> = {
  readonly [K in keyof Ts]: StateOf<Ts[K]>;
};

/**
 * Composes transformations left to right; the state is the tuple of their states. Each
 * transformation is a step from (updates, states so far) to the next; the chain is their `flow`.
 * @param ts the transformations
 * @returns their composition
 */
export function chain<const Ts extends readonly GradientTransformation<unknown>[]>(
  ...ts: Ts
): GradientTransformation<ChainState<Ts>> {
  return {
    init: (params) => ts.map((t) => t.init(params)) as unknown as ChainState<Ts>,
    update<P extends TreeLike>(grads: P, state: ChainState<Ts>, params: P) {
      type Acc = { readonly updates: P; readonly states: readonly unknown[] };
      const states = state as readonly unknown[];
      const step = (t: GradientTransformation<unknown>, i: number) => (acc: Acc): Acc => {
        const [updates, s] = t.update(acc.updates, states[i], params);
        if (acc.updates !== grads) dispose(acc.updates); // an earlier step's
        return { updates, states: [...acc.states, s] };
      };
      const all = ts.map(step).reduce((f, g) => flow(f, g), (acc: Acc) => acc);
      const out = all({ updates: grads, states: [] });
      return [out.updates, [...out.states] as unknown as ChainState<Ts>];
    },
  };
}

/**
 * One optimiser step: the transformation's updates applied to the parameters (by its own `step`
 * where it has one), the updates freed.
 * @param transform the transformation
 * @param grads gradients, of the parameters' structure
 * @param state its state
 * @param params the parameters
 * @returns the new parameters and the new state (the caller owns them; no input is disposed)
 */
export function applyTransformation<S, P extends TreeLike>(
  transform: GradientTransformation<S>,
  grads: P,
  state: S,
  params: P,
): [P, S] {
  return transform.step
    ? transform.step(grads, state, params)
    : updateThenApply(transform, grads, state, params);
}

/**
 * {@linkcode applyTransformation} as two steps: the transformation's updates, then
 * {@linkcode applyUpdates} (the updates freed).
 * @param transform the transformation
 * @param grads gradients, of the parameters' structure
 * @param state its state
 * @param params the parameters
 * @returns the new parameters and the new state
 */
export function updateThenApply<S, P extends TreeLike>(
  transform: GradientTransformation<S>,
  grads: P,
  state: S,
  params: P,
): [P, S] {
  const [updates, next] = transform.update(grads, state, params);
  const applied = applyUpdates(params, updates);
  dispose(updates);
  return [applied, next];
}

/**
 * Adds updates to parameters.
 * @param params the parameters
 * @param updates of the same structure
 * @returns the new parameters (the caller owns them; neither input is disposed)
 */
export function applyUpdates<P extends TreeLike>(params: P, updates: P): P {
  return tidy(() => zipMap([params, updates], ([p, u]) => tf.add(p, u)));
}
