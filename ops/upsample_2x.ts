/**
 * Nearest-neighbour upsampling by 2 (PyTorch's `Upsample(scale_factor=2)`) on NHWC tensors, as
 * one op of ours: kernels `UgatitUpsample2x` / `UgatitUpsample2xGrad` where the backend registers
 * them (block copies, and each 2x2 block summed backward), else
 * {@linkcode upsampleNearest2xComposed}, whose gradient autodiff gives (four kernels each way).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { upsampleNearest2x } from "./upsample_2x.ts";
 * const y = upsampleNearest2x(tf.ones([1, 4, 4, 8]) as tf.Tensor4D); // [1, 8, 8, 8]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The upsampling kernel's name: input `{x}` NHWC, output `[N, 2H, 2W, C]`. */
export const UPSAMPLE_2X = "UgatitUpsample2x";
/** Its gradient's name: input `{dy}` `[N, 2H, 2W, C]`, output `[N, H, W, C]`. */
export const UPSAMPLE_2X_GRAD = "UgatitUpsample2xGrad";

/**
 * Nearest-neighbour upsampling by 2, built from concat and reshape so that its gradient needs no
 * resize kernel on any backend: the op's composed fallback.
 * @param x `[N, H, W, C]`
 * @returns `[N, 2H, 2W, C]`
 */
export function upsampleNearest2xComposed(x: tf.Tensor4D): tf.Tensor4D {
  return tidy(() => {
    const [n, h, w, c] = x.shape;
    const cols = tf.reshape(x, [n * h, w, 1, c]);
    const wide = tf.reshape(tf.concat([cols, cols], 2), [n * h, 1, 2 * w * c]);
    return tf.reshape(tf.concat([wide, wide], 1), [n, 2 * h, 2 * w, c]);
  });
}

// One taped op with our kernels.
const upsampleOp = tf.customGrad((x) => ({
  value: tf.engine().runKernel(UPSAMPLE_2X, { x: x as tf.Tensor }) as tf.Tensor,
  gradFunc: (dy: tf.Tensor) => tf.engine().runKernel(UPSAMPLE_2X_GRAD, { dy }) as tf.Tensor,
})) as (x: tf.Tensor4D) => tf.Tensor4D;

/**
 * Nearest-neighbour upsampling by 2: our kernels where the backend has them, else
 * {@linkcode upsampleNearest2xComposed}.
 * @param x `[N, H, W, C]`
 * @returns `[N, 2H, 2W, C]`
 */
export function upsampleNearest2x(x: tf.Tensor4D): tf.Tensor4D {
  return kernelHere(UPSAMPLE_2X) ? upsampleOp(x) : upsampleNearest2xComposed(x);
}

/** The contract: values and the gradient of `sum(w * upsampleNearest2x(x))`. */
export const upsample2xContract: OpContract = {
  kernels: [UPSAMPLE_2X, UPSAMPLE_2X_GRAD],
  cases: ([[1, 5, 6, 2], [2, 7, 5, 3], [2, 3, 5, 4]] as const).map((shape, i) => ({
    name: `[${shape}]`,
    tolerance: 1e-6,
    run: () =>
      tf.tidy(() => {
        const x = tf.randomNormal([...shape], 0, 1, "float32", 61 + i) as tf.Tensor4D;
        const y = upsampleNearest2x(x);
        const w = tf.randomNormal(y.shape, 0, 1, "float32", 71 + i);
        const [dx] = tf.grads((a) => tf.sum(tf.mul(upsampleNearest2x(a as tf.Tensor4D), w)))([x]);
        return { y, dx };
      }),
  })),
};
