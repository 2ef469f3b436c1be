/**
 * A step of a moving average, `a + (b - a) * w`, as one op of ours (kernel `UgatitLerp`), where the
 * composed form takes three kernels. `w` is a float32 scalar tensor: the generators' moving average
 * changes its weight every iteration, and a replayed step keeps its uniforms. The kernels round as
 * the three composed kernels do (float32 after each operation), so both give the same values.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { lerp } from "./lerp.ts";
 * const y = lerp(tf.zeros([2]), tf.ones([2]), tf.scalar(0.25)); // [0.25, 0.25]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The kernel's name: inputs `{a, b, w}` (`a`, `b` float32 of one shape, `w` a scalar). */
export const LERP = "UgatitLerp";

/**
 * `a + (b - a) * w`: our kernel where the backend has it, else three tfjs ops.
 * @param a where the average is
 * @param b where it moves towards
 * @param w the weight of `b` (float32 scalar)
 * @returns the new average (the caller owns it)
 */
export function lerp(a: tf.Tensor, b: tf.Tensor, w: tf.Scalar): tf.Tensor {
  return kernelHere(LERP)
    ? tf.engine().runKernel(LERP, { a, b, w }) as tf.Tensor
    : tf.tidy(() => tf.add(a, tf.mul(tf.sub(b, a), w)));
}

/** The contract: a few steps of an average towards moving targets. */
export const lerpContract: OpContract = {
  kernels: [LERP],
  cases: ([[3, 5], [7], [2, 3, 4, 5]] as const).map((shape, i) => ({
    name: `[${shape}]`,
    tolerance: 1e-7, // the same float32 operations: equal
    run: () =>
      tf.tidy(() => {
        let a = tf.randomNormal([...shape], 0, 1, "float32", 51 + i);
        for (const w of [1 / 3, 0.001, 0.5]) {
          a = lerp(a, tf.randomNormal([...shape], 0, 1, "float32", 61 + i), tf.scalar(w));
        }
        return { a };
      }),
  })),
};
