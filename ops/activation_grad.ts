/**
 * The gradients of ReLU and leaky ReLU as one op of ours: `dx = dy * (x > 0 ? 1 : alpha)` in one
 * pass, kernel `UgatitActivationGrad`, where TensorFlow.js's own gradients take two kernels (ReLU:
 * `dy * step(x)`) or three (leaky ReLU: `where(x > 0, dy, dy * alpha)`). A NaN `x` gives what the
 * stock gradients give: NaN under ReLU, `dy * alpha` under leaky ReLU (NaN > 0 is false).
 *
 * {@linkcode useActivationGradients} puts it in TensorFlow.js's gradient registry for `Relu` and
 * `LeakyRelu`; the composed fallback there is the stock gradient itself, so a backend without the
 * kernel computes exactly what it did before.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { activationGrad } from "./activation_grad.ts";
 * const dx = activationGrad(tf.ones([3]), tf.tensor1d([-1, 0, 2]), 0.2); // [0.2, 0.2, 1]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The kernel's name: inputs `{dy, x}` (float32, one shape), attribute `{alpha}` (0: ReLU). */
export const ACTIVATION_GRAD = "UgatitActivationGrad";

/**
 * The stock gradients, composed: the op's fallback.
 * @param dy the gradient of the activation's output
 * @param x the activation's input
 * @param alpha the slope below 0 (0: ReLU)
 * @returns the gradient of its input
 */
export function activationGradComposed(dy: tf.Tensor, x: tf.Tensor, alpha: number): tf.Tensor {
  return alpha === 0
    ? tf.mul(dy, tf.cast(tf.step(x), "float32"))
    : tf.where(tf.greater(x, 0), dy, tf.mul(dy, alpha));
}

/**
 * The gradient of ReLU (`alpha` 0) or leaky ReLU: our kernel where the backend has it and `dy`
 * and `x` are float32 of one shape, else {@linkcode activationGradComposed}.
 * @param dy the gradient of the activation's output
 * @param x the activation's input
 * @param alpha the slope below 0 (0: ReLU)
 * @returns the gradient of its input (the caller owns it)
 */
export function activationGrad(dy: tf.Tensor, x: tf.Tensor, alpha: number): tf.Tensor {
  const same = dy.dtype === "float32" && x.dtype === "float32" &&
    dy.shape.length === x.shape.length && dy.shape.every((d, i) => d === x.shape[i]);
  return same && kernelHere(ACTIVATION_GRAD)
    ? tf.engine().runKernel(ACTIVATION_GRAD, { dy, x }, { alpha }) as tf.Tensor
    : tf.tidy(() => activationGradComposed(dy, x, alpha));
}

let registered = false;

/**
 * Registers {@linkcode activationGrad} as the gradient of `Relu` and `LeakyRelu` (once; backends
 * with the kernel call it when they register theirs). With a slope `alpha` >= 0 it reads the
 * activation's output, whose sign is its input's (NaN where the input is NaN), so the same
 * factor comes out: the input then has one reader fewer, and a replayed step computes the layer
 * before (a normalisation's last pass) inside the activation's dispatch (`fuse.ts` folds a value
 * read once).
 */
export function useActivationGradients(): void {
  if (registered) return;
  registered = true;
  // saved: [x, y]; the output stands in for the input where its sign is the input's.
  const grad = (dy: tf.Tensor, [x, y]: tf.Tensor[], alpha: number) => ({
    x: () => activationGrad(dy, alpha >= 0 ? y : x, alpha),
  });
  tf.registerGradient({
    kernelName: "Relu",
    inputsToSave: ["x"],
    outputsToSave: [true],
    gradFunc: (dy, saved) => grad(dy as tf.Tensor, saved, 0),
  });
  tf.registerGradient({
    kernelName: "LeakyRelu",
    inputsToSave: ["x"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) =>
      grad(dy as tf.Tensor, saved, (attrs as unknown as { alpha: number }).alpha),
  });
}

/** The contract: both gradients, on values with zeros, both signs and large magnitudes. */
export const activationGradContract: OpContract = {
  kernels: [ACTIVATION_GRAD],
  backends: ["native-cpu", "webgpu"],
  cases: ([[2, 5, 4, 3], [7], [3, 11]] as const).flatMap((shape, i) =>
    [0, 0.2].map((alpha) => ({
      name: `[${shape}] alpha ${alpha}`,
      tolerance: 1e-7, // the same products: equal but for the sign of a zero
      run: () =>
        tf.tidy(() => {
          useActivationGradients();
          const n = shape.reduce((a: number, b: number) => a * b, 1);
          const values = tf.mul(tf.randomNormal([n - 1], 0, 1, "float32", 31 + i), 1e3);
          const x = tf.reshape(tf.concat([tf.zeros([1]), values]), [...shape]);
          const dy = tf.randomNormal([...shape], 0, 1, "float32", 41 + i);
          const f = (t: tf.Tensor) => (alpha ? tf.leakyRelu(t, alpha) : tf.relu(t));
          return { dx: tf.grad(f)(x, dy) };
        }),
    }))
  ),
};
