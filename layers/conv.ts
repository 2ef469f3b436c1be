/**
 * Convolution with reflection padding, and the linear map: the two weight layers of U-GAT-IT.
 * Tensors are NHWC; conv weights are HWIO and linear weights `[in, out]` (the reference's OIHW
 * and `[out, in]` layouts are converted in `weights/reference_names.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { type Key, splitKey, torchDefault } from "./init.ts";
import { reflectPadConv2d } from "../ops/reflect_pad_conv.ts";

/** Fixed configuration of a conv layer. */
export interface ConvConfig {
  /** Input channels. */
  readonly inCh: number;
  /** Output channels. */
  readonly outCh: number;
  /** Square kernel size. */
  readonly kernel: number;
  /** Stride (default 1). */
  readonly stride?: number;
  /** Reflection padding on each side before the convolution (default 0). */
  readonly pad?: number;
  /** Whether the layer has a bias (default false). */
  readonly bias?: boolean;
}

/** Parameters of a conv layer: `w` HWIO `[k, k, in, out]`, `b` `[out]` when it has a bias. */
export interface ConvParams {
  /** Weight, HWIO. */
  readonly w: tf.Tensor4D;
  /** Bias, when configured. */
  readonly b?: tf.Tensor1D;
}

/** A conv layer: `init(key) -> params`, `apply(params, x) -> y`. */
export interface Conv {
  /** The configuration. */
  readonly config: Required<ConvConfig>;
  /** Draws parameters with PyTorch's default initialisation. */
  init(key: Key): ConvParams;
  /**
   * Reflection-pads and convolves.
   * @param params the weights
   * @param x `[N, H, W, inCh]`
   * @returns `[N, (H + 2 pad - k) / stride + 1, ..., outCh]`
   */
  apply(params: ConvParams, x: tf.Tensor4D): tf.Tensor4D;
}

/**
 * Makes a conv layer.
 * @param config channels, kernel size, stride, reflection padding, bias
 * @returns the layer
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { conv2d } from "./conv.ts";
 * const conv = conv2d({ inCh: 3, outCh: 8, kernel: 3, pad: 1 });
 * const y = conv.apply(conv.init(0), tf.zeros([1, 16, 16, 3]) as tf.Tensor4D); // [1, 16, 16, 8]
 * ```
 */
export function conv2d(config: ConvConfig): Conv {
  const c: Required<ConvConfig> = { stride: 1, pad: 0, bias: false, ...config };
  const fanIn = c.inCh * c.kernel * c.kernel;
  return {
    config: c,
    init(key) {
      const [kw, kb] = splitKey(key, 2);
      const w = torchDefault(kw, [c.kernel, c.kernel, c.inCh, c.outCh], fanIn) as tf.Tensor4D;
      return c.bias ? { w, b: torchDefault(kb, [c.outCh], fanIn) as tf.Tensor1D } : { w };
    },
    apply(params, x) {
      return tidy(() => {
        const y = reflectPadConv2d(x, params.w, c.pad, c.stride);
        return params.b ? tf.add(y, params.b) : y;
      });
    },
  };
}

/** Fixed configuration of a linear layer. */
export interface LinearConfig {
  /** Input features. */
  readonly inFeatures: number;
  /** Output features. */
  readonly outFeatures: number;
  /** Whether the layer has a bias (default false). */
  readonly bias?: boolean;
}

/** Parameters of a linear layer: `w` `[in, out]`, `b` `[out]`. */
export interface LinearParams {
  /** Weight, `[in, out]`. */
  readonly w: tf.Tensor2D;
  /** Bias, when configured. */
  readonly b?: tf.Tensor1D;
}

/** A linear layer: `init(key) -> params`, `apply(params, x) -> y`. */
export interface Linear {
  /** The configuration. */
  readonly config: Required<LinearConfig>;
  /** Draws parameters with PyTorch's default initialisation. */
  init(key: Key): LinearParams;
  /**
   * `x w + b`.
   * @param params the weights
   * @param x `[N, in]`
   * @returns `[N, out]`
   */
  apply(params: LinearParams, x: tf.Tensor2D): tf.Tensor2D;
}

/**
 * Makes a linear layer.
 * @param config widths and bias
 * @returns the layer
 */
export function linear(config: LinearConfig): Linear {
  const c: Required<LinearConfig> = { bias: false, ...config };
  return {
    config: c,
    init(key) {
      const [kw, kb] = splitKey(key, 2);
      const w = torchDefault(kw, [c.inFeatures, c.outFeatures], c.inFeatures) as tf.Tensor2D;
      if (!c.bias) return { w };
      return { w, b: torchDefault(kb, [c.outFeatures], c.inFeatures) as tf.Tensor1D };
    },
    apply(params, x) {
      return tidy((): tf.Tensor2D => {
        const y = tf.matMul(x, params.w) as tf.Tensor2D;
        return params.b ? tf.add(y, params.b) as tf.Tensor2D : y;
      });
    },
  };
}
