/**
 * Spectral norm's largest singular value as one op of ours: with training, one power iteration
 * `v = normalize(A u)`, `u = normalize(A^T v)` outside the gradient, then `sigma = u . (A^T v)`,
 * differentiated through the weight only, as `torch.nn.utils.spectral_norm` computes it. `A` is
 * torch's `W^T` with its rows in the weight's own order (a conv weight HWIO reshaped to
 * `[kh * kw * in, out]`, no copy); `v` is kept in torch's order, so for a conv weight it is
 * reordered from (in, h, w) to (h, w, in) and back. Kernels `UgatitSpectralSigma` /
 * `UgatitSpectralSigmaGrad` (about 25 composed kernels in two passes, and the gradient `v u^T`)
 * where the backend registers them, composed ops elsewhere.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { powerIterationSigma } from "./spectral_sigma.ts";
 * const a = tf.randomNormal([48, 5]) as tf.Tensor2D; // a 4x4x3x5 conv weight, reshaped
 * const [u, v] = [tf.ones([5]).div(Math.sqrt(5)), tf.ones([48]).div(Math.sqrt(48))];
 * const [sigma, u1, v1] = powerIterationSigma(a, u as tf.Tensor1D, v as tf.Tensor1D, {
 *   training: true,
 *   kh: 4,
 *   kw: 4,
 *   cin: 3,
 * });
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/**
 * The spectral-norm kernel: inputs `{a, u, v}`, output `sigma`, `u'` and `v'` packed in one vector
 * at the offsets {@linkcode spectralPacking} gives.
 */
export const SPECTRAL_SIGMA = "UgatitSpectralSigma";
/**
 * Its gradient: inputs `{dy, packed}` (`dy`: sigma's gradient, a scalar), attributes and `rows`,
 * output `da`.
 */
export const SPECTRAL_SIGMA_GRAD = "UgatitSpectralSigmaGrad";
/**
 * The spectral-norm kernels' attributes. `a` is torch's `W^T` with rows in the weight's own order
 * (`[cols, rows]`); `v` is kept in torch's order, which for a conv weight (HWIO, torch's rows
 * ordered (in, h, w)) differs from the weight's (h, w, in).
 */
export interface SpectralSigmaAttrs {
  /** Run one power iteration first (training). */
  readonly training: boolean;
  /** A conv weight's kernel height and width and input channels; 0 for a linear weight. */
  readonly kh: number;
  /** See kh. */
  readonly kw: number;
  /** See kh. */
  readonly cin: number;
}

const EPS = 1e-12;

/**
 * Where `sigma`, `u'` and `v'` lie in the spectral-norm kernel's packed output: each part starts at
 * a multiple of 64 floats (256 bytes, WebGPU's default storage-offset alignment), so that a
 * replayed step binds the three slices as views of it; the gaps hold zeros.
 * @param rows the length of u (the weight's output channels)
 * @param cols the length of v
 * @returns the offsets of u' and v' (sigma is at 0) and the packed length
 */
export function spectralPacking(
  rows: number,
  cols: number,
): { u: number; v: number; size: number } {
  const whole = (n: number) => Math.ceil(n / 64) * 64;
  return { u: 64, v: 64 + whole(rows), size: 64 + whole(rows) + cols };
}

function normalize(x: tf.Tensor1D): tf.Tensor1D {
  return tf.div(x, tf.maximum(tf.sqrt(tf.sum(tf.square(x))), EPS));
}

/**
 * One power iteration, on `A = W^T` (`[cols, rows]`): `v = normalize(A u)`, `u = normalize(A^T v)`,
 * as one taped op with a zero gradient: its inner ops are not taped, so the backward pass does
 * not walk through them only to stop.
 * @returns `[u; v]`, concatenated
 */
const powerIteration = tf.customGrad((at, u0) => {
  const a = at as tf.Tensor2D;
  const v = normalize(tf.squeeze(tf.matMul(a, tf.reshape(u0 as tf.Tensor, [-1, 1])), [1]));
  const u = normalize(tf.squeeze(tf.matMul(a, tf.reshape(v, [-1, 1]), true, false), [1]));
  const [aShape, uShape] = [a.shape, (u0 as tf.Tensor).shape];
  return {
    value: tf.concat([u, v]),
    gradFunc: () => [tf.zeros(aShape), tf.zeros(uShape)],
  };
});

// A `[cols]` vector from the weight's order (h, w, in) to torch's (in, h, w), and back.
const toTorch = (v: tf.Tensor1D, { kh, kw, cin }: SpectralSigmaAttrs) =>
  kh ? tf.reshape(tf.transpose(tf.reshape(v, [kh, kw, cin]), [2, 0, 1]), [-1]) as tf.Tensor1D : v;
const fromTorch = (v: tf.Tensor1D, { kh, kw, cin }: SpectralSigmaAttrs) =>
  kh ? tf.reshape(tf.transpose(tf.reshape(v, [cin, kh, kw]), [1, 2, 0]), [-1]) as tf.Tensor1D : v;

// The composed fallback.
function composed(
  at: tf.Tensor2D,
  u0: tf.Tensor1D,
  v0: tf.Tensor1D,
  attrs: SpectralSigmaAttrs,
): [tf.Scalar, tf.Tensor1D, tf.Tensor1D] {
  let [u, v] = [u0, v0];
  let vOwn: tf.Tensor1D;
  if (attrs.training) {
    const uv = powerIteration(at, u);
    const rows = at.shape[1];
    [u, vOwn] = [tf.slice(uv, 0, rows), tf.slice(uv, rows)] as tf.Tensor1D[];
    v = toTorch(vOwn, attrs);
  } else {
    u = u.clone();
    v = v.clone();
    vOwn = fromTorch(v, attrs);
  }
  const wv = tf.squeeze(tf.matMul(at, tf.reshape(vOwn, [-1, 1]), true, false), [1]);
  return [tf.sum(tf.mul(u, wv)), u, v];
}

// Our kernel: power iteration and sigma in one taped op whose value is sigma, its gradient v u^T.
// The new vectors leave the op as slices made inside it, where nothing is taped: state for the
// next pass with no gradient path (the reference updates them under no_grad), so the backward
// pass pads and adds no zero gradients into the packed output.
const kernelOps = new Map<string, (a: tf.Tensor, u: tf.Tensor, v: tf.Tensor) => tf.Tensor>();
let vectors: tf.Tensor1D[] = []; // u', v' of the op's last call (kept: they outlive its scope)
function withKernel(
  at: tf.Tensor2D,
  u: tf.Tensor1D,
  v: tf.Tensor1D,
  attrs: SpectralSigmaAttrs,
): [tf.Scalar, tf.Tensor1D, tf.Tensor1D] {
  const key = JSON.stringify(attrs);
  let op = kernelOps.get(key);
  if (!op) {
    const named = attrs as unknown as tf.NamedAttrMap;
    op = tf.customGrad((a, u, v, save) => {
      const inputs = { a, u, v } as unknown as tf.NamedTensorMap;
      const packed = tf.engine().runKernel(SPECTRAL_SIGMA, inputs, named) as tf.Tensor;
      (save as tf.GradSaveFunc)([packed]);
      const [aShape, uShape, vShape] = [a, u, v].map((t) => (t as tf.Tensor).shape);
      const at64 = spectralPacking(uShape[0], vShape[0]);
      vectors = [
        tf.keep(tf.slice(packed, at64.u, uShape[0])),
        tf.keep(tf.slice(packed, at64.v, vShape[0])),
      ] as tf.Tensor1D[];
      return {
        value: tf.reshape(tf.slice(packed, 0, 1), []),
        gradFunc: (dy: tf.Tensor, [p]: tf.Tensor[]) => [
          tf.reshape(
            tf.engine().runKernel(SPECTRAL_SIGMA_GRAD, { dy, packed: p }, {
              ...named,
              rows: uShape[0],
            }) as tf.Tensor,
            aShape,
          ),
          tf.zeros(uShape),
          tf.zeros(vShape),
        ],
      };
    }) as (a: tf.Tensor, u: tf.Tensor, v: tf.Tensor) => tf.Tensor;
    kernelOps.set(key, op);
  }
  const sigma = op(at, u, v) as tf.Scalar;
  // Clones owned by the caller's scope (no copy: a clone shares the data), the kept ones released.
  const [u1, v1] = vectors.map((t) => {
    const c = tf.clone(t);
    t.dispose();
    return c;
  });
  vectors = [];
  return [sigma, u1, v1];
}

/**
 * Spectral norm's sigma and its new vectors.
 * @param at `A = W^T` in the weight's own row order, `[cols, rows]`
 * @param u `[rows]`
 * @param v `[cols]`, in torch's order
 * @param attrs training, and a conv weight's `kh`, `kw`, `cin` (zeros for a linear weight)
 * @returns `[sigma, u', v']` (in evaluation, copies of `u` and `v`); only sigma has a gradient,
 *   through `at`
 */
export function powerIterationSigma(
  at: tf.Tensor2D,
  u: tf.Tensor1D,
  v: tf.Tensor1D,
  attrs: SpectralSigmaAttrs,
): [tf.Scalar, tf.Tensor1D, tf.Tensor1D] {
  return tidy(() =>
    kernelHere(SPECTRAL_SIGMA) ? withKernel(at, u, v, attrs) : composed(at, u, v, attrs)
  );
}

const unit = (n: number, seed: number) =>
  tf.tidy(() => {
    const x = tf.randomNormal([n], 0, 1, "float32", seed);
    return tf.div(x, tf.norm(x)) as tf.Tensor1D;
  });

/** The contract: sigma, the new vectors and sigma's gradient, with and without the iteration. */
export const spectralSigmaContract: OpContract = {
  kernels: [SPECTRAL_SIGMA, SPECTRAL_SIGMA_GRAD],
  cases: [
    { shape: [4, 4, 3, 5], layout: { kh: 4, kw: 4, cin: 3 } },
    { shape: [4, 4, 16, 1], layout: { kh: 4, kw: 4, cin: 16 } },
    { shape: [300, 7], layout: { kh: 0, kw: 0, cin: 0 } },
  ].flatMap(({ shape, layout }, i) =>
    [true, false].map((training) => ({
      name: `[${shape}] training ${training}`,
      tolerance: 1e-4,
      run: () =>
        tf.tidy(() => {
          const rows = shape[shape.length - 1];
          const at = tf.reshape(tf.randomNormal(shape, 0, 1, "float32", 101 + i), [-1, rows]);
          const [u, v] = [unit(rows, 111 + i), unit(at.shape[0], 121 + i)];
          const attrs = { training, ...layout };
          const [sigma, u1, v1] = powerIterationSigma(at as tf.Tensor2D, u, v, attrs);
          const [da] = tf.grads((a) => powerIterationSigma(a as tf.Tensor2D, u, v, attrs)[0])([
            at,
          ]);
          return { sigma, u: u1, v: v1, da };
        }),
    }))
  ),
};
