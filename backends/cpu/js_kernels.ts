/**
 * Kernels of ours in plain JavaScript over CPU memory ({@linkcode memoryOf}), for the wasm, cpu
 * and native-cpu backends: implementations of our ops (`ops/`, which define their names,
 * attributes and composed fallbacks), and faster reductions (these replace stock kernels, so not
 * on cpu, the reference).
 *
 * - `UgatitReflectPad` / `UgatitReflectPadGrad`: PyTorch's `ReflectionPad2d` on NHWC and its
 *   gradient. TensorFlow.js's own MirrorPad gradient only crops (it drops what the mirrored
 *   border pixels received), so the reflection pad is our op throughout.
 * - `UgatitUpsample2x` / `UgatitUpsample2xGrad`: nearest-neighbour upsampling by 2 (NHWC) and
 *   its gradient (each 2x2 block summed), as block copies; composed from concat and reshape it
 *   costs four kernels each way, and the wasm backend's split is a slow general loop.
 * - `UgatitSpectralSigma` / `UgatitSpectralSigmaGrad`: spectral norm's power iteration and sigma
 *   (two passes over the weight) and sigma's gradient `u v^T`, where composed ops take about 25
 *   kernels per normalised weight and call.
 * - `UgatitAdamUpdate`: the reference optimiser's whole per-tensor update (coupled weight decay,
 *   Adam's moments, bias correction, learning rate) as one pass instead of about fifteen ops;
 *   on the wasm backend in WebAssembly SIMD (`../wasm/simd.ts`).
 * - `Sum`, `Mean`, `Max` over a block of adjacent axes that leaves the last axis out (an NHWC
 *   tensor over H and W, a bias gradient over N, H and W) as one strided loop; the stock wasm
 *   kernels transpose the reduced axes to the end first, a copy of the whole tensor.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { ADAM_UPDATE, type AdamUpdateAttrs, biasCorrection } from "../../ops/adam_update.ts";
import { LERP } from "../../ops/lerp.ts";
import { REFLECT_PAD, REFLECT_PAD_GRAD, type ReflectPadAttrs } from "../../ops/reflect_pad.ts";
import {
  SPECTRAL_SIGMA,
  SPECTRAL_SIGMA_GRAD,
  spectralPacking,
  type SpectralSigmaAttrs,
} from "../../ops/spectral_sigma.ts";
import { UPSAMPLE_2X, UPSAMPLE_2X_GRAD } from "../../ops/upsample_2x.ts";
import { memoryOf } from "../memory.ts";
import { simdFor } from "../wasm/simd.ts";

type Info = tf.TensorInfo;
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

// Where padded coordinate `k` (already shifted by the pad) reads from in a length-`n` axis.
const reflect = (k: number, n: number) => (k < 0 ? -k : k >= n ? 2 * n - 2 - k : k);

/**
 * Reflection padding on arrays, forward (`fold = false`: `y[i, j] = x[refl(i), refl(j)]`) or its
 * gradient (`fold = true`: `dx[refl(i), refl(j)] += dy[i, j]`). Both copy the middle rows as
 * blocks and visit only the border pixels one by one.
 */
export function reflectPad(
  small: Float32Array,
  big: Float32Array,
  [n, h, w, c]: number[],
  { padH, padW }: ReflectPadAttrs,
  fold: boolean,
): void {
  const [hp, wp] = [h + 2 * padH, w + 2 * padW];
  const row = w * c;
  // Pixel (i, j) of the padded image and the pixel of the small one it mirrors.
  const visit = (s: number, i: number, j: number) => {
    const a = ((s * h + reflect(i - padH, h)) * w + reflect(j - padW, w)) * c;
    const b = ((s * hp + i) * wp + j) * c;
    if (fold) { for (let q = 0; q < c; q++) small[a + q] += big[b + q]; }
    else for (let q = 0; q < c; q++) big[b + q] = small[a + q];
  };
  for (let s = 0; s < n; s++) {
    for (let r = 0; r < h; r++) {
      const at = ((s * h + r) * w) * c;
      const pat = ((s * hp + r + padH) * wp + padW) * c;
      if (fold) small.set(big.subarray(pat, pat + row), at);
      else big.set(small.subarray(at, at + row), pat);
    }
    for (let i = 0; i < hp; i++) {
      const border = i < padH || i >= padH + h;
      for (let j = 0; j < wp; j++) {
        if (border || j < padW || j >= padW + w) visit(s, i, j);
      }
    }
  }
}

function reflectPadKernel({ inputs, backend, attrs }: Args): Info {
  const { x } = inputs as { x: Info };
  const a = attrs as unknown as ReflectPadAttrs;
  const [n, h, w, c] = x.shape;
  const mem = memoryOf(backend);
  const y = mem.alloc([n, h + 2 * a.padH, w + 2 * a.padW, c]);
  reflectPad(mem.view(x), mem.view(y), x.shape, a, false);
  return y;
}

function reflectPadGradKernel({ inputs, backend, attrs }: Args): Info {
  const { dy } = inputs as { dy: Info };
  const a = attrs as unknown as ReflectPadAttrs;
  const [n, hp, wp, c] = dy.shape;
  const mem = memoryOf(backend);
  const shape = [n, hp - 2 * a.padH, wp - 2 * a.padW, c];
  const dx = mem.alloc(shape);
  reflectPad(mem.view(dx), mem.view(dy), shape, a, true);
  return dx;
}

/**
 * Nearest-neighbour upsampling by 2 on arrays (`fold = false`), or its gradient (`fold = true`:
 * `dx[i, j] = sum of dy over the 2x2 block (2i, 2j)`).
 */
export function upsample2x(
  small: Float32Array,
  big: Float32Array,
  [n, h, w, c]: number[],
  fold: boolean,
): void {
  const bigRow = 2 * w * c;
  for (let r = 0; r < n * h; r++) {
    const top = 2 * r * bigRow;
    const bottom = top + bigRow;
    const src = r * w * c;
    if (!fold) {
      for (let j = 0; j < w; j++) {
        const a = src + j * c;
        const b = top + 2 * j * c;
        for (let q = 0; q < c; q++) big[b + q] = big[b + c + q] = small[a + q];
      }
      big.copyWithin(bottom, top, bottom);
      continue;
    }
    for (let j = 0; j < w; j++) {
      const a = src + j * c;
      const b = 2 * j * c;
      for (let q = 0; q < c; q++) {
        small[a + q] = big[top + b + q] + big[top + b + c + q] + big[bottom + b + q] +
          big[bottom + b + c + q];
      }
    }
  }
}

function upsampleKernel({ inputs, backend }: Args): Info {
  const { x } = inputs as { x: Info };
  const [n, h, w, c] = x.shape;
  const mem = memoryOf(backend);
  const y = mem.alloc([n, 2 * h, 2 * w, c]);
  upsample2x(mem.view(x), mem.view(y), x.shape, false);
  return y;
}

function upsampleGradKernel({ inputs, backend }: Args): Info {
  const { dy } = inputs as { dy: Info };
  const [n, h2, w2, c] = dy.shape;
  const shape = [n, h2 / 2, w2 / 2, c];
  const mem = memoryOf(backend);
  const dx = mem.alloc(shape);
  upsample2x(mem.view(dx), mem.view(dy), shape, true);
  return dx;
}

const SN_EPS = 1e-12;

// Index in the weight's own order of torch's index j (identity for a linear weight).
function ownIndex({ kh, kw, cin }: SpectralSigmaAttrs, j: number): number {
  if (!kh) return j;
  const i = Math.floor(j / (kh * kw));
  const r = j % (kh * kw);
  return r * cin + i; // (h * kw + w) * cin + i with r = h * kw + w
}

/**
 * `y = A x` (`transpose` false) or `y = A^T x` for a row-major `[m, n]` matrix `A`: the two
 * products of spectral norm's power iteration.
 */
export type MatVec = (
  transpose: boolean,
  a: Float32Array,
  m: number,
  n: number,
  x: ArrayLike<number>,
  y: Float64Array,
) => void;

/** {@linkcode MatVec} in JavaScript, summing in doubles. */
export const jsMatVec: MatVec = (transpose, a, m, n, x, y) => {
  if (!transpose) {
    for (let i = 0; i < m; i++) {
      let t = 0;
      for (let j = 0, k = i * n; j < n; j++, k++) t += a[k] * x[j];
      y[i] = t;
    }
    return;
  }
  y.fill(0);
  for (let i = 0; i < m; i++) {
    const xi = x[i];
    for (let j = 0, k = i * n; j < n; j++, k++) y[j] += a[k] * xi;
  }
};

/**
 * Spectral norm on arrays: with training, `v = normalize(A u)`, `u = normalize(A^T v)`; then
 * `sigma = u . (A^T v)`. Writes `[sigma, u, v (torch order)]` to `out`.
 * @param matvec how the two products are computed (native backends: their matrix multiply)
 */
export function spectralSigma(
  a: Float32Array,
  u: Float32Array,
  v: Float32Array,
  out: Float32Array,
  attrs: SpectralSigmaAttrs,
  matvec: MatVec = jsMatVec,
): void {
  const rows = u.length;
  const cols = v.length;
  const vOwn = new Float64Array(cols);
  if (attrs.training) {
    matvec(false, a, cols, rows, u, vOwn);
    let norm = 0;
    for (let i = 0; i < cols; i++) norm += vOwn[i] * vOwn[i];
    const scale = 1 / Math.max(Math.sqrt(norm), SN_EPS);
    for (let i = 0; i < cols; i++) vOwn[i] = Math.fround(vOwn[i] * scale);
  } else {
    for (let j = 0; j < cols; j++) vOwn[ownIndex(attrs, j)] = v[j];
  }
  const s = new Float64Array(rows); // A^T v
  matvec(true, a, cols, rows, vOwn, s);
  let uNew = u;
  if (attrs.training) {
    let norm = 0;
    for (let j = 0; j < rows; j++) norm += s[j] * s[j];
    const scale = 1 / Math.max(Math.sqrt(norm), SN_EPS);
    uNew = new Float32Array(rows);
    for (let j = 0; j < rows; j++) uNew[j] = s[j] * scale;
  }
  let sigma = 0;
  for (let j = 0; j < rows; j++) sigma += uNew[j] * s[j];
  const at = spectralPacking(rows, cols);
  out.fill(0);
  out[0] = sigma;
  out.set(uNew, at.u);
  for (let j = 0; j < cols; j++) out[at.v + j] = vOwn[ownIndex(attrs, j)];
}

/**
 * The spectral-norm kernel with its products computed by `matvec`.
 * @param matvec the matrix-vector product
 * @returns the kernel function
 */
export function spectralSigmaKernel(matvec: MatVec = jsMatVec) {
  return ({ inputs, backend, attrs }: Args): Info => {
    const { a, u, v } = inputs as Record<string, Info>;
    const mem = memoryOf(backend);
    const out = mem.alloc([spectralPacking(u.shape[0], v.shape[0]).size]);
    spectralSigma(
      mem.view(a),
      mem.view(u),
      mem.view(v),
      mem.view(out),
      attrs as unknown as SpectralSigmaAttrs,
      matvec,
    );
    return out;
  };
}

/** `out = a b^T` for a column `a` `[m]` and a row `b` `[n]`, row-major `[m, n]`. */
export type Outer = (a: Float64Array, b: Float32Array, out: Float32Array) => void;

/** {@linkcode Outer} in JavaScript. */
export const jsOuter: Outer = (a, b, out) => {
  const n = b.length;
  for (let i = 0; i < a.length; i++) {
    const ai = a[i];
    for (let r = 0, k = i * n; r < n; r++, k++) out[k] = ai * b[r];
  }
};

/**
 * The spectral-norm gradient kernel: d sigma / d A = v u^T (u and v held constant, as the
 * reference computes them without gradient); only the sigma entry of the packed output carries a
 * gradient.
 * @param outer how the outer product is computed (native backends: their matrix multiply)
 * @returns the kernel function
 */
export function spectralSigmaGradKernel(outer: Outer = jsOuter) {
  return ({ inputs, backend, attrs }: Args): Info => {
    const { dy, packed } = inputs as Record<string, Info>;
    const { rows } = attrs as unknown as { rows: number };
    const at = spectralPacking(rows, 0);
    const cols = packed.shape[0] - at.v;
    const mem = memoryOf(backend);
    const da = mem.alloc([cols, rows]);
    const [g, p, d] = [mem.view(dy), mem.view(packed), mem.view(da)];
    const sn = attrs as unknown as SpectralSigmaAttrs;
    const v = new Float64Array(cols); // dy times v, in the weight's own order
    for (let j = 0; j < cols; j++) v[ownIndex(sn, j)] = g[0] * p[at.v + j];
    outer(v, p.subarray(at.u, at.u + rows), d);
    return da;
  };
}

/**
 * One Adam step on arrays: `g' = g + wd p`, `m = b1 m + (1 - b1) g'`, `v = b2 v + (1 - b2) g'^2`,
 * `update = -lr (m / c1) / (sqrt(v / c2) + eps)`; `m` and `v` are written to `mOut`, `vOut`.
 */
export function adamUpdate(
  g: Float32Array,
  p: Float32Array,
  m: Float32Array,
  v: Float32Array,
  update: Float32Array,
  mOut: Float32Array,
  vOut: Float32Array,
  { weightDecay, b1, b2, eps, c1, c2, lr }: AdamUpdateAttrs & AdamStepNumbers,
): void {
  // (m / c1) / (sqrt(v / c2) + eps) with one division: scalar divisions are the loop's cost.
  const step = -lr / c1;
  const root = 1 / Math.sqrt(c2);
  for (let i = 0; i < g.length; i++) {
    const gi = g[i] + weightDecay * p[i];
    const mi = Math.fround(b1 * m[i] + (1 - b1) * gi);
    const vi = Math.fround(b2 * v[i] + (1 - b2) * gi * gi);
    mOut[i] = mi;
    vOut[i] = vi;
    update[i] = step * mi / (Math.sqrt(vi) * root + eps);
  }
}

/** This step's numbers of {@linkcode adamUpdate}: bias corrections and learning rate. */
export interface AdamStepNumbers {
  /** `1 - b1^t`. */
  readonly c1: number;
  /** `1 - b2^t`. */
  readonly c2: number;
  /** The learning rate. */
  readonly lr: number;
}

function adamKernel({ inputs, backend, attrs }: Args): Info[] {
  const { g, p, m, v, t, lr } = inputs as Record<string, Info>;
  const simd = simdFor(backend); // before allocating: its first call allocates
  const mem = memoryOf(backend);
  const step = mem.view(t)[0];
  const a = {
    ...(attrs as unknown as AdamUpdateAttrs),
    lr: mem.view(lr)[0],
    c1: biasCorrection((attrs as unknown as AdamUpdateAttrs).b1, step),
    c2: biasCorrection((attrs as unknown as AdamUpdateAttrs).b2, step),
  };
  const outs = [mem.alloc(g.shape), mem.alloc(g.shape), mem.alloc(g.shape)];
  const [update, mOut, vOut] = outs.map(mem.view);
  const arrays = {
    g: mem.view(g),
    p: mem.view(p),
    m: mem.view(m),
    v: mem.view(v),
    update,
    mOut,
    vOut,
  };
  const done = simd?.adam(arrays, { ...a, step: -a.lr / a.c1, root: 1 / Math.sqrt(a.c2) }) ?? 0;
  const rest = Object.values(arrays).map((x) => x.subarray(done)) as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  adamUpdate(...rest, a);
  // The update applied (`apply`): float32 sums as a separate add would make them.
  if ((attrs as unknown as AdamUpdateAttrs).apply) {
    for (let i = 0; i < update.length; i++) update[i] = arrays.p[i] + update[i];
  }
  return outs;
}

// a + (b - a) * w, rounded to float32 after each operation as the three composed kernels round.
function lerpKernel({ inputs, backend }: Args): Info {
  const { a, b, w } = inputs as Record<string, Info>;
  const mem = memoryOf(backend);
  const out = mem.alloc(a.shape);
  const [x, y, o] = [mem.view(a), mem.view(b), mem.view(out)];
  const weight = mem.view(w)[0];
  for (let i = 0; i < o.length; i++) {
    o[i] = x[i] + Math.fround(Math.fround(y[i] - x[i]) * weight);
  }
  return out;
}

/**
 * `Sum`, `Mean` or `Max` over a block of adjacent axes without the last one.
 * @param op which reduction
 * @param args the kernel's input `{x}`, backend and attributes `{axis, keepDims}`
 * @returns the reduction, or undefined where the axes are not such a block
 */
export function reduceLeadingAxes(op: "Sum" | "Mean" | "Max", args: Args): Info | undefined {
  const { x } = args.inputs as { x: Info };
  // TensorFlow.js names Max's axes `reductionIndices`, Sum's and Mean's `axis`.
  const { axis: sumAxes, reductionIndices, keepDims } = args.attrs as unknown as {
    axis?: number | number[] | null;
    reductionIndices?: number | number[] | null;
    keepDims: boolean;
  };
  const axis = op === "Max" ? reductionIndices : sumAxes;
  const rank = x.shape.length;
  if (axis === null || axis === undefined) return undefined; // every axis, the last included
  const axes = [...new Set((Array.isArray(axis) ? axis : [axis]).map((a) => (a + rank) % rank))]
    .sort((a, b) => a - b);
  const [first, last] = [axes[0], axes[axes.length - 1]];
  if (
    x.dtype !== "float32" || !axes.length || last === rank - 1 || last - first + 1 !== axes.length
  ) {
    return undefined;
  }
  const size = (dims: number[]) => dims.reduce((p, q) => p * q, 1);
  const outer = size(x.shape.slice(0, first));
  const red = size(x.shape.slice(first, last + 1));
  const inner = size(x.shape.slice(last + 1));
  const shape = keepDims
    ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d))
    : x.shape.filter((_, i) => i < first || i > last);
  const mem = memoryOf(args.backend);
  const out = mem.alloc(shape);
  const [xs, ys] = [mem.view(x), mem.view(out)];
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * red * inner;
    acc.fill(op === "Max" ? -Infinity : 0);
    for (let r = 0, i = base; r < red; r++) {
      if (op === "Max") {
        for (let j = 0; j < inner; j++, i++) {
          if (xs[i] > acc[j] || Number.isNaN(xs[i])) acc[j] = xs[i];
        }
      } else for (let j = 0; j < inner; j++, i++) acc[j] += xs[i];
    }
    const scale = op === "Mean" ? 1 / red : 1;
    for (let j = 0; j < inner; j++) ys[o * inner + j] = acc[j] * scale;
  }
  leadingReductions++;
  return out;
}

let leadingReductions = 0;
/**
 * How many reductions {@linkcode reduceLeadingAxes} has computed in this process (the rest went to
 * the backends' own kernels); tests use it to see that ours ran.
 * @returns the count
 */
export function leadingReductionCount(): number {
  return leadingReductions;
}

/** The backends these kernels run on. */
export const JS_KERNEL_BACKENDS = ["wasm", "cpu", "native-cpu"] as const;

/**
 * Puts `kernel` in front of a backend's own kernel `name`; where ours gives undefined, theirs runs.
 * @param name the kernel name
 * @param backendName the backend
 * @param kernel ours
 */
export function overrideKernel(
  name: string,
  backendName: string,
  kernel: (args: Args) => Info | undefined,
) {
  const stock = tf.getKernel(name, backendName);
  if (!stock) throw new Error(`${backendName} backend: kernel ${name} is missing`);
  tf.unregisterKernel(name, backendName);
  tf.registerKernel({
    kernelName: name,
    backendName,
    kernelFunc: ((args: Args) =>
      kernel(args) ?? stock.kernelFunc(args as Parameters<tf.KernelFunc>[0])) as tf.KernelFunc,
    setupFunc: stock.setupFunc,
    disposeFunc: stock.disposeFunc,
  });
}

const registered = new Set<string>();

/**
 * Registers these kernels for a backend (once per backend; call after the backend's own kernels
 * are registered, i.e. after importing it).
 * @param backendName `wasm`, `cpu` or `native-cpu`
 */
export function registerJsKernels(backendName: typeof JS_KERNEL_BACKENDS[number]): void {
  if (registered.has(backendName)) return;
  registered.add(backendName);
  const ours: [string, (args: Args) => Info | Info[]][] = [
    [REFLECT_PAD, reflectPadKernel],
    [REFLECT_PAD_GRAD, reflectPadGradKernel],
    [UPSAMPLE_2X, upsampleKernel],
    [UPSAMPLE_2X_GRAD, upsampleGradKernel],
    [SPECTRAL_SIGMA, spectralSigmaKernel()],
    [SPECTRAL_SIGMA_GRAD, spectralSigmaGradKernel()],
    [ADAM_UPDATE, adamKernel],
    [LERP, lerpKernel],
  ];
  for (const [kernelName, kernel] of ours) {
    tf.registerKernel({ kernelName, backendName, kernelFunc: kernel as unknown as tf.KernelFunc });
  }
  // The cpu backend's own reductions stay: they are the reference the tests compare ours with.
  if (backendName === "cpu") return;
  for (const op of ["Sum", "Mean", "Max"] as const) {
    overrideKernel(op, backendName, (args) => reduceLeadingAxes(op, args));
  }
}
