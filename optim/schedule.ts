/**
 * Learning rates as plain `step -> rate` functions, and the transformation that scales updates by
 * one (descent).
 *
 * @example
 * ```ts
 * import { referenceSchedule } from "./schedule.ts";
 * const lr = referenceSchedule(1e-4, 100, true);
 * console.log(lr(1), lr(75), lr(100)); // 0.0001 0.00005 0
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { map, tidy } from "../tree/tree.ts";
import type { GradientTransformation } from "./transform.ts";

/** A learning-rate schedule: 1-based step -> rate. */
export type Schedule = (step: number) => number;

/**
 * The reference's schedule: constant, then (with `decay`) linear to 0 over the second half; at
 * step `s > T/2` the rate is `lr * (1 - (s - T/2) / (T/2))` with `T/2 = floor(iterations / 2)`.
 * @param lr the base rate
 * @param iterations T
 * @param decay `--decay_flag`
 * @returns the schedule
 */
export function referenceSchedule(lr: number, iterations: number, decay: boolean): Schedule {
  const half = Math.floor(iterations / 2);
  return (
    step,
  ) => (decay && half > 0 && step > half ? lr * Math.max(0, 1 - (step - half) / half) : lr);
}

/** The step count of {@linkcode scaleByLearningRate}. */
export interface LearningRateState {
  /** Updates scaled so far. */
  readonly count: number;
}

/**
 * Multiplies updates by `-schedule(step)` (descent), with its own step count.
 * @param schedule the learning rate per 1-based step
 * @returns the transformation
 */
export function scaleByLearningRate(
  schedule: Schedule,
): GradientTransformation<LearningRateState> {
  return {
    init: () => ({ count: 0 }),
    update(grads, state) {
      const count = state.count + 1;
      const lr = schedule(count);
      return [tidy(() => map(grads, (g) => tf.mul(g, -lr))), { count }];
    },
  };
}
