/**
 * The least-squares GAN's loss term, `mean((x - target)^2)` against a constant target (0 or 1), as
 * one op of ours (kernel `UgatitMeanSquaredError`, gradient `UgatitMeanSquaredErrorGrad`): one
 * reducing pass forward and one pass back, where the composed form takes three kernels forward
 * and about four back. A training iteration takes 24 of them (each discriminator's patch and CAM
 * logits, real and fake in its step, fake in the generator's).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { meanSquaredError } from "./mean_squared_error.ts";
 * const loss = meanSquaredError(tf.tensor1d([0, 2]), 1); // 1
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The kernel's name: input `{x}` (float32), attribute `{target}`; output a scalar. */
export const MEAN_SQUARED_ERROR = "UgatitMeanSquaredError";
/** The gradient's: inputs `{dy, x}` (`dy` a scalar), attribute `{target}`; output `dx`. */
export const MEAN_SQUARED_ERROR_GRAD = "UgatitMeanSquaredErrorGrad";

// One customGrad per target: the op taped as one node, its gradient one kernel.
function kernelOp(target: number) {
  const attrs = { target } as unknown as tf.NamedAttrMap;
  return tf.customGrad((x, save) => {
    (save as tf.GradSaveFunc)([x as tf.Tensor]);
    return {
      value: tf.engine().runKernel(MEAN_SQUARED_ERROR, { x: x as tf.Tensor }, attrs) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, [xs]: tf.Tensor[]) =>
        tf.engine().runKernel(MEAN_SQUARED_ERROR_GRAD, { dy, x: xs }, attrs) as tf.Tensor,
    };
  }) as (x: tf.Tensor) => tf.Scalar;
}
const kernelOps = new Map<number, (x: tf.Tensor) => tf.Scalar>();

/**
 * `mean((x - target)^2)`: our kernel where the backend has it, else three tfjs ops.
 * @param x float32, any shape
 * @param target the constant every element is compared with
 * @returns the mean squared difference (the caller owns it)
 */
export function meanSquaredError(x: tf.Tensor, target: number): tf.Scalar {
  if (!kernelHere(MEAN_SQUARED_ERROR)) return tf.mean(tf.square(tf.sub(x, target)));
  if (!kernelOps.has(target)) kernelOps.set(target, kernelOp(target));
  return kernelOps.get(target)!(x);
}

/** The contract: values and gradients against both targets, over shapes of 1 to 3,000 values. */
export const meanSquaredErrorContract: OpContract = {
  kernels: [MEAN_SQUARED_ERROR, MEAN_SQUARED_ERROR_GRAD],
  backends: ["webgpu"],
  cases: ([[1, 10, 10, 1], [2, 1], [3, 1000]] as const).flatMap((shape, i) =>
    [0, 1].map((target) => ({
      name: `[${shape}] target ${target}`,
      // A sum of n squares (nothing cancels) in another order than tfjs's mean: each within its
      // depth of additions (under 100 here) times float32's eps, 6e-8; the gradient is the same
      // few products.
      tolerance: 1e-5,
      run: () =>
        tf.tidy(() => {
          const x = tf.randomNormal([...shape], 0.5, 1, "float32", 91 + i);
          const f = (t: tf.Tensor) => tf.mul(meanSquaredError(t, target), 3) as tf.Scalar;
          const { value, grad } = tf.valueAndGrad(f)(x);
          return { value, dx: grad };
        }),
    }))
  ),
};
