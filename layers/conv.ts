/**
 * Convolution with reflection padding, and the linear map: the two weight layers of U-GAT-IT.
 * Tensors are NHWC; conv weights are HWIO and linear weights `[in, out]` (the reference's OIHW
 * and `[out, in]` layouts are converted in `weights/reference_names.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "./tree.ts";
import { type Key, splitKey, torchDefault } from "./init.ts";
import { REFLECT_PAD, REFLECT_PAD_GRAD } from "../backends/js_kernels.ts";

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

// Reflection padding as one taped op with its true gradient (tfjs's MirrorPad gradient only
// crops): our kernels where the backend has them (wasm, cpu, native-cpu), composed ops elsewhere.
const reflectionPadOps = new Map<number, (x: tf.Tensor4D) => tf.Tensor4D>();
function reflectionPadOp(pad: number): (x: tf.Tensor4D) => tf.Tensor4D {
  let op = reflectionPadOps.get(pad);
  if (!op) {
    const attrs = { padH: pad, padW: pad } as unknown as tf.NamedAttrMap;
    op = tf.customGrad((x) => {
      const t = x as tf.Tensor4D;
      const native = tf.getKernel(REFLECT_PAD, tf.getBackend()) !== undefined;
      const value = native
        ? tf.engine().runKernel(REFLECT_PAD, { x: t }, attrs) as tf.Tensor4D
        : tf.mirrorPad(t, [[0, 0], [pad, pad], [pad, pad], [0, 0]], "reflect");
      const [h, w] = [t.shape[1], t.shape[2]];
      return {
        value,
        gradFunc: (dy: tf.Tensor) =>
          native
            ? tf.engine().runKernel(REFLECT_PAD_GRAD, { dy }, attrs) as tf.Tensor
            : foldReflection(foldReflection(dy as tf.Tensor4D, pad, 1, h), pad, 2, w),
      };
    }) as (x: tf.Tensor4D) => tf.Tensor4D;
    reflectionPadOps.set(pad, op);
  }
  return op;
}

/**
 * The gradient of reflection padding along one axis, from ops every backend has: the middle of
 * `dy` plus its two borders reversed and added onto the rows they were mirrored from.
 * @param dy the gradient of the padded tensor
 * @param pad rows added on each side
 * @param axis 1 (H) or 2 (W)
 * @param n the unpadded length of that axis
 * @returns the gradient with that axis unpadded
 */
export function foldReflection(dy: tf.Tensor4D, pad: number, axis: 1 | 2, n: number): tf.Tensor4D {
  const part = (start: number, size: number) => {
    const begin = [0, 0, 0, 0];
    const sizes = [-1, -1, -1, -1];
    begin[axis] = start;
    sizes[axis] = size;
    return tf.slice(dy, begin, sizes);
  };
  const place = (t: tf.Tensor, before: number, after: number) => {
    const p: [number, number][] = [[0, 0], [0, 0], [0, 0], [0, 0]];
    p[axis] = [before, after];
    return tf.pad(tf.reverse(t, axis), p);
  };
  // Padded rows 0..pad-1 copy rows pad..1; padded rows n+pad.. copy rows n-2..n-1-pad.
  return tidy(() =>
    tf.addN([
      part(pad, n),
      place(part(0, pad), 1, n - 1 - pad),
      place(part(n + pad, pad), n - 1 - pad, 1),
    ]) as tf.Tensor4D
  );
}

/**
 * Reflection-pads the two spatial dimensions of an NHWC tensor (PyTorch's `ReflectionPad2d`),
 * with its true gradient.
 * @param x `[N, H, W, C]`
 * @param pad rows and columns added on each side (less than H and W)
 * @returns `[N, H + 2 pad, W + 2 pad, C]`
 */
export function reflectionPad(x: tf.Tensor4D, pad: number): tf.Tensor4D {
  if (pad === 0) return x.clone();
  return reflectionPadOp(pad)(x);
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
        const y = tf.conv2d(reflectionPad(x, c.pad), params.w, c.stride, "valid");
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
