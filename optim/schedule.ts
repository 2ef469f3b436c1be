/**
 * Learning rates as plain functions of the step count, and the transformation that scales updates
 * by one (descent). A schedule reads the count as a tensor and gives the rate as one, as optax's
 * do inside `jit`: a step is then a function of tensors alone, which a compiled step replays right.
 * {@linkcode referenceRate} is the same schedule on the host, for logs and plots.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { referenceRate, referenceSchedule } from "./schedule.ts";
 * const lr = referenceRate(1e-4, 100, true);
 * console.log(lr(1), lr(75), lr(100)); // 0.0001 0.00005 0
 * console.log(referenceSchedule(1e-4, 100, true)(tf.scalar(75)).dataSync()[0]); // 0.00005
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { readsAtOnce } from "../ops/kernel.ts";
import { map, tidy } from "../tree/tree.ts";
import type { GradientTransformation } from "./transform.ts";

/** A learning-rate schedule: 1-based step count -> rate, both float32 scalars. */
export type Schedule = (step: tf.Scalar) => tf.Scalar;

/** A learning-rate schedule on the host: 1-based step -> rate. */
export type HostSchedule = (step: number) => number;

/**
 * The reference's schedule on the host: constant, then (with `decay`) linear to 0 over the second
 * half; at step `s > T/2` the rate is `lr * (1 - (s - T/2) / (T/2))` with `T/2 = floor(iterations / 2)`.
 * @param lr the base rate
 * @param iterations T
 * @param decay `--decay_flag`
 * @returns the schedule
 */
export function referenceRate(lr: number, iterations: number, decay: boolean): HostSchedule {
  const half = Math.floor(iterations / 2);
  return (
    step,
  ) => (decay && half > 0 && step > half ? lr * Math.max(0, 1 - (step - half) / half) : lr);
}

/**
 * A schedule given twice: on the host, used where the count can be read at once (the CPU
 * backends: double precision, as before counts were tensors), and on tensors, used on a device.
 * @param host the schedule of a step number
 * @param device the same of a step tensor
 * @returns the schedule
 */
export function scheduleOf(host: HostSchedule, device: Schedule): Schedule {
  return (step) => readsAtOnce() ? tf.scalar(host(step.dataSync()[0])) : tidy(() => device(step));
}

/**
 * {@linkcode referenceRate} as a {@linkcode Schedule}: on a device `lr * clip(1 - (s - T/2) / (T/2),
 * 0, 1)`, which is `lr` up to `T/2`.
 * @param lr the base rate
 * @param iterations T
 * @param decay `--decay_flag`
 * @returns the schedule
 */
export function referenceSchedule(lr: number, iterations: number, decay: boolean): Schedule {
  const half = Math.floor(iterations / 2);
  return scheduleOf(
    referenceRate(lr, iterations, decay),
    (step) =>
      decay && half > 0
        ? tf.mul(tf.clipByValue(tf.sub(1, tf.div(tf.sub(step, half), half)), 0, 1), lr)
        : tf.scalar(lr),
  );
}

/**
 * A step count advanced by one.
 * @param count the count (float32 scalar)
 * @returns `count + 1` (the caller owns it)
 */
export function nextCount(count: tf.Scalar): tf.Scalar {
  return tf.add(count, 1);
}

/** The step count of {@linkcode scaleByLearningRate}. */
export interface LearningRateState {
  /** Updates scaled so far (a float32 scalar). */
  readonly count: tf.Scalar;
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
    init: () => ({ count: tf.scalar(0) }),
    update(grads, state) {
      return tidy(() => {
        const count = nextCount(state.count);
        const rate = tf.neg(schedule(count));
        return [map(grads, (g) => tf.mul(g, rate)), { count }];
      });
    },
  };
}
