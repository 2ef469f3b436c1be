/**
 * Adam as optax builds it, and the reference's optimiser: `referenceAdam` is
 * `chain(addDecayedWeights(wd), scaleByAdam(0.5, 0.999, 1e-8), scaleByLearningRate(schedule))`,
 * torch.optim.Adam's coupled weight decay (added to the gradient before the moments). Where the
 * backend has our Adam kernel (`ops/adam_update.ts`) that chain runs as one kernel per tensor,
 * with the same state.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { referenceAdam } from "./adam.ts";
 * import { applyUpdates } from "./transform.ts";
 * const opt = referenceAdam({ lr: 1e-4, weightDecay: 1e-4, iterations: 1000, decay: true });
 * const params = { gen: { w: tf.ones([3]) } };
 * const [updates, state] = opt.update({ gen: { w: tf.ones([3]) } }, opt.init(params), params);
 * console.log(state[1].count.dataSync()[0], applyUpdates(params, updates).gen.w.shape); // 1 [3]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { map, tidy, type TreeLike, zipMap } from "../tree/tree.ts";
import { ADAM_UPDATE, adamUpdate, biasCorrectionOf } from "../ops/adam_update.ts";
import { kernelHere } from "../ops/kernel.ts";
import { chain, type GradientTransformation, updateThenApply } from "./transform.ts";
import {
  type LearningRateState,
  nextCount,
  referenceSchedule,
  scaleByLearningRate,
} from "./schedule.ts";

/** The state of a stateless transformation. */
export type EmptyState = Record<never, never>;

/**
 * Adds `decay * param` to each gradient (coupled L2 weight decay).
 * @param decay the coefficient
 * @returns the transformation (stateless)
 */
export function addDecayedWeights(decay: number): GradientTransformation<EmptyState> {
  return {
    init: () => ({}),
    update: (grads, state, params) => [
      tidy(() => zipMap([grads, params], ([g, p]) => tf.add(g, tf.mul(p, decay)))),
      state,
    ],
  };
}

/**
 * Adam's state: the step count and the two moment estimates (trees like the parameters). The count
 * is a tensor, as in optax: a step is then a function of tensors alone, which a compiled step
 * replays right.
 */
export interface AdamState {
  /** Updates applied so far (a float32 scalar). */
  readonly count: tf.Scalar;
  /** First moments. */
  readonly mu: TreeLike;
  /** Second moments. */
  readonly nu: TreeLike;
}

/** Adam's coefficients. */
export interface AdamOptions {
  /** First-moment decay (default: the reference's 0.5). */
  readonly b1?: number;
  /** Second-moment decay (default 0.999). */
  readonly b2?: number;
  /** Added to the root of the second moment (default 1e-8). */
  readonly eps?: number;
}

/**
 * Adam's rescaling: `mhat / (sqrt(vhat) + eps)` with bias-corrected moments.
 * @param options betas and eps (defaults: the reference's 0.5, 0.999, 1e-8)
 * @returns the transformation
 */
export function scaleByAdam(
  { b1 = 0.5, b2 = 0.999, eps = 1e-8 }: AdamOptions = {},
): GradientTransformation<AdamState> {
  return {
    init: (params) => ({
      count: tf.scalar(0),
      mu: map(params, (p) => tf.zerosLike(p)),
      nu: map(params, (p) => tf.zerosLike(p)),
    }),
    update(grads, state) {
      return tidy(() => {
        const count = nextCount(state.count);
        const [c1, c2] = [biasCorrectionOf(b1, count), biasCorrectionOf(b2, count)];
        const mu = zipMap([grads, state.mu], ([g, m]) => tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
        const nu = zipMap(
          [grads, state.nu],
          ([g, v]) => tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)),
        );
        const updates = zipMap(
          [mu, nu],
          ([m, v]) => tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps)),
        );
        return [updates, { count, mu, nu }];
      });
    },
  };
}

/** The reference optimiser's state: the chain's (weight decay, Adam, learning rate). */
export type ReferenceAdamState = readonly [EmptyState, AdamState, LearningRateState];

/** The reference optimiser's settings. */
export interface ReferenceAdamOptions {
  /** The base learning rate. */
  readonly lr: number;
  /** Coupled L2 weight decay. */
  readonly weightDecay: number;
  /** Total iterations (for the schedule). */
  readonly iterations: number;
  /** Decay the learning rate linearly to 0 over the second half. */
  readonly decay: boolean;
}

/**
 * The reference's optimiser: Adam (0.5, 0.999, 1e-8) with coupled weight decay and its schedule.
 * It is the chain of the three transformations above; where the backend has our Adam kernel
 * the chain runs as one kernel per tensor, with the same state layout.
 * @param options lr, weight decay, iterations, decay flag
 * @returns the transformation
 */
export function referenceAdam(
  { lr, weightDecay, iterations, decay }: ReferenceAdamOptions,
): GradientTransformation<ReferenceAdamState> {
  const [b1, b2, eps] = [0.5, 0.999, 1e-8];
  const schedule = referenceSchedule(lr, iterations, decay);
  const composed = chain(
    addDecayedWeights(weightDecay),
    scaleByAdam({ b1, b2, eps }),
    scaleByLearningRate(schedule),
  );
  // The chain as one kernel per tensor (with the chain's state layout); `apply` gives the updated
  // parameters in place of the updates.
  function fused<P extends TreeLike>(
    grads: P,
    state: ReferenceAdamState,
    params: P,
    apply: boolean,
  ): [P, ReferenceAdamState] {
    const [decayState, adam, lrState] = state;
    const count = nextCount(adam.count);
    const lrCount = nextCount(lrState.count);
    const rate = tidy(() => schedule(lrCount));
    const moments = new Map<string, [tf.Tensor, tf.Tensor]>();
    const out = zipMap([grads, params, adam.mu, adam.nu], ([g, p, m, v], path) => {
      const attrs = { weightDecay, b1, b2, eps, apply };
      const [first, mu, nu] = adamUpdate(g, p, m, v, count, rate, attrs);
      moments.set(path, [mu, nu]);
      return first;
    });
    rate.dispose();
    const mu = map(grads, (_, path) => moments.get(path)![0]);
    const nu = map(grads, (_, path) => moments.get(path)![1]);
    return [out, [decayState, { count, mu, nu }, { count: lrCount }]];
  }
  return {
    init: composed.init,
    update(grads, state, params) {
      if (!kernelHere(ADAM_UPDATE)) return composed.update(grads, state, params);
      return fused(grads, state, params, false);
    },
    step(grads, state, params) {
      if (!kernelHere(ADAM_UPDATE)) return updateThenApply(composed, grads, state, params);
      return fused(grads, state, params, true);
    },
  };
}
