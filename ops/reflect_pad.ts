/**
 * Reflection padding (PyTorch's `ReflectionPad2d`) on NHWC tensors, as one op of ours with its
 * true gradient: TensorFlow.js's own `MirrorPad` gradient only crops, dropping what the mirrored
 * border pixels received. Kernels `UgatitReflectPad` / `UgatitReflectPadGrad` where the backend
 * registers them; elsewhere tfjs's `mirrorPad` forward and {@linkcode foldReflection} backward.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { reflectionPad } from "./reflect_pad.ts";
 * const y = reflectionPad(tf.zeros([1, 8, 8, 3]) as tf.Tensor4D, 3); // [1, 14, 14, 3]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The forward kernel's name: input `{x}` NHWC, attributes {@linkcode ReflectPadAttrs}. */
export const REFLECT_PAD = "UgatitReflectPad";
/** The gradient kernel's name: input `{dy}`, the same attributes. */
export const REFLECT_PAD_GRAD = "UgatitReflectPadGrad";
/** Rows and columns added on each side. */
export interface ReflectPadAttrs {
  /** Rows above and below. */
  readonly padH: number;
  /** Columns left and right. */
  readonly padW: number;
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

// One taped op per pad width, with its true gradient: our kernels or the composed form.
const reflectionPadOps = new Map<number, (x: tf.Tensor4D) => tf.Tensor4D>();
function reflectionPadOp(pad: number): (x: tf.Tensor4D) => tf.Tensor4D {
  let op = reflectionPadOps.get(pad);
  if (!op) {
    const attrs = { padH: pad, padW: pad } as unknown as tf.NamedAttrMap;
    op = tf.customGrad((x) => {
      const t = x as tf.Tensor4D;
      const ours = kernelHere(REFLECT_PAD);
      const value = ours
        ? tf.engine().runKernel(REFLECT_PAD, { x: t }, attrs) as tf.Tensor4D
        : tf.mirrorPad(t, [[0, 0], [pad, pad], [pad, pad], [0, 0]], "reflect");
      const [h, w] = [t.shape[1], t.shape[2]];
      return {
        value,
        gradFunc: (dy: tf.Tensor) =>
          ours
            ? tf.engine().runKernel(REFLECT_PAD_GRAD, { dy }, attrs) as tf.Tensor
            : foldReflection(foldReflection(dy as tf.Tensor4D, pad, 1, h), pad, 2, w),
      };
    }) as (x: tf.Tensor4D) => tf.Tensor4D;
    reflectionPadOps.set(pad, op);
  }
  return op;
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

/** The contract: values and the gradient of `sum(w * reflectionPad(x))`. */
export const reflectPadContract: OpContract = {
  kernels: [REFLECT_PAD, REFLECT_PAD_GRAD],
  cases: ([[[1, 5, 6, 2], 1], [[2, 7, 5, 3], 3], [[1, 4, 4, 1], 2]] as const).map((
    [shape, pad],
    i,
  ) => ({
    name: `[${shape}] pad ${pad}`,
    tolerance: 1e-6,
    run: () =>
      tf.tidy(() => {
        const x = tf.randomNormal([...shape], 0, 1, "float32", 41 + i) as tf.Tensor4D;
        const y = reflectionPad(x, pad);
        const w = tf.randomNormal(y.shape, 0, 1, "float32", 51 + i);
        const [dx] = tf.grads((a) => tf.sum(tf.mul(reflectionPad(a as tf.Tensor4D, pad), w)))([x]);
        return { y, dx };
      }),
  })),
};
