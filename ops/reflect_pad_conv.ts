/**
 * A convolution of the reflection-padded input, `conv2d(reflectionPad(x, pad), w, stride,
 * "valid")`, as one op of ours (kernel `UgatitReflectPadConv2D`; the filter's gradient
 * `UgatitReflectPadConv2DBackpropFilter`): the kernels read the padding by reflection in place, so
 * the padded copy is never made (one dispatch and one activation-sized buffer fewer per layer
 * call, forward). The input's gradient is the convolution's input gradient on the padded shape,
 * folded back by the reflection's gradient, as composed.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { reflectPadConv2d } from "./reflect_pad_conv.ts";
 * const y = reflectPadConv2d(tf.ones([1, 4, 4, 2]), tf.ones([3, 3, 2, 5]), 1, 1); // [1, 4, 4, 5]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";
import { REFLECT_PAD, REFLECT_PAD_GRAD, reflectionPad } from "./reflect_pad.ts";

/** The kernel's name: inputs `{x, filter}` (NHWC, HWIO), attributes {@linkcode ReflectPadConvAttrs}. */
export const REFLECT_PAD_CONV = "UgatitReflectPadConv2D";
/** The filter gradient's: inputs `{x, dy}`, the attributes and `filterShape`. */
export const REFLECT_PAD_CONV_FILTER_GRAD = "UgatitReflectPadConv2DBackpropFilter";
/** Reflection padding on each side of H and W, and the stride. */
export interface ReflectPadConvAttrs {
  /** Rows and columns reflected on each side (below the image's side). */
  readonly pad: number;
  /** The convolution's stride on both axes. */
  readonly stride: number;
}

// The kernel's gradient, per input and only where the tape asks for it (the discriminators'
// first inputs and, in the generator's step, their weights need none).
let gradientRegistered = false;
function registerGradient(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: REFLECT_PAD_CONV,
    inputsToSave: ["x", "filter"],
    gradFunc: (dy, [x, w], attrs) => {
      const { pad, stride } = attrs as unknown as ReflectPadConvAttrs;
      return {
        x: () => {
          const [n, h, wd, c] = x.shape;
          const padded = [n, h + 2 * pad, wd + 2 * pad, c] as [number, number, number, number];
          const dPadded = tf.conv2dTranspose(
            dy as tf.Tensor4D,
            w as tf.Tensor4D,
            padded,
            stride,
            "valid",
          );
          const dx = tf.engine().runKernel(REFLECT_PAD_GRAD, { dy: dPadded }, {
            padH: pad,
            padW: pad,
          }) as tf.Tensor;
          dPadded.dispose();
          return dx;
        },
        filter: () =>
          tf.engine().runKernel(REFLECT_PAD_CONV_FILTER_GRAD, { x, dy: dy as tf.Tensor }, {
            pad,
            stride,
            filterShape: w.shape,
          }) as tf.Tensor,
      };
    },
  });
}

/**
 * The convolution of `x` reflection-padded by `pad`: our kernels where the backend has them (and
 * the reflection's), else the padded copy and tfjs's convolution.
 * @param x `[N, H, W, C]`
 * @param w HWIO `[k, k, C, out]`
 * @param pad rows and columns reflected on each side (0: none)
 * @param stride the convolution's stride
 * @returns `[N, (H + 2 pad - k) / stride + 1, ..., out]`
 */
export function reflectPadConv2d(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  pad: number,
  stride: number,
): tf.Tensor4D {
  return tidy(() => {
    if (pad === 0) return tf.conv2d(x, w, stride, "valid");
    if (!kernelHere(REFLECT_PAD_CONV) || !kernelHere(REFLECT_PAD)) {
      return tf.conv2d(reflectionPad(x, pad), w, stride, "valid");
    }
    registerGradient();
    const attrs = { pad, stride } as unknown as tf.NamedAttrMap;
    return tf.engine().runKernel(REFLECT_PAD_CONV, { x, filter: w }, attrs) as tf.Tensor4D;
  });
}

/**
 * The contract: values and both gradients of `sum(v * y)` at the generator's first layer (7x7
 * pad 3, 3 channels: padded to 4 inside) and a discriminator's (4x4 stride 2 pad 1, batch 2,
 * an odd width). Each case compiles a handful of shaders, slow on a software adapter: two only.
 */
export const reflectPadConvContract: OpContract = {
  kernels: [REFLECT_PAD_CONV, REFLECT_PAD_CONV_FILTER_GRAD],
  backends: ["webgpu"],
  cases: ([
    [[1, 12, 12, 3], 7, 3, 1, 5],
    [[2, 10, 9, 8], 4, 1, 2, 6],
  ] as const).map(([shape, k, pad, stride, out], i) => ({
    name: `[${shape}] ${k}x${k} pad ${pad} stride ${stride} -> ${out}`,
    // The same products summed in another order (tiles, split-K): a few ulps of the sum of
    // absolute products, which at these sizes (up to 147 terms of unit scale) is under 1e-5 of
    // the largest output.
    tolerance: 1e-5,
    run: () =>
      tf.tidy(() => {
        const x = tf.randomNormal([...shape], 0, 1, "float32", 131 + i) as tf.Tensor4D;
        const w = tf.randomNormal([k, k, shape[3], out], 0, 1, "float32", 141 + i) as tf.Tensor4D;
        const y = reflectPadConv2d(x, w, pad, stride);
        const v = tf.randomNormal(y.shape, 0, 1, "float32", 151 + i);
        const f = (a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(
            tf.mul(reflectPadConv2d(a as tf.Tensor4D, b as tf.Tensor4D, pad, stride), v),
          ) as tf.Scalar;
        const [dx, dw] = tf.grads(f)([x, w]);
        return { y, dx, dw };
      }),
  })),
};
