/**
 * The optimiser, optax's shape in TypeScript: gradient transformations (`init`, `update`) over any
 * parameter tree, composed with a typed `chain`; `addDecayedWeights`, `scaleByAdam`,
 * `scaleByLearningRate` and plain `step -> rate` schedules; `referenceAdam`, the reference's Adam
 * with coupled weight decay and its schedule; `applyUpdates`; and `clipRho`, the reference's rho
 * projection.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { applyUpdates, clipRho, referenceAdam } from "./mod.ts";
 * const opt = referenceAdam({ lr: 0.1, weightDecay: 0, iterations: 10, decay: false });
 * let params = { norm: { rho: tf.tensor1d([0.95]), gamma: tf.tensor1d([1]) } };
 * let state = opt.init(params);
 * const grads = { norm: { rho: tf.tensor1d([-1]), gamma: tf.tensor1d([1]) } };
 * const [updates, next] = opt.update(grads, state, params);
 * [params, state] = [clipRho(applyUpdates(params, updates)), next];
 * console.log(params.norm.rho.dataSync()[0], params.norm.gamma.dataSync()[0]); // 1 0.9
 * ```
 *
 * @module
 */
export * from "./transform.ts";
export * from "./adam.ts";
export * from "./schedule.ts";
export * from "./projections.ts";
