/**
 * Faster kernels for the `native-cpu` backend: TensorFlow.js's cpu backend (tensors in JavaScript
 * memory, which has no 4 GiB ceiling; WebAssembly memory has, and a 256-pixel training step needs
 * more) under its own name, so that `cpu` stays the untouched reference the tests compare with.
 * The stock cpu kernels are written for clarity: a broadcasting add computes a multi-index per
 * element (about 1 us each), slices, splits and pads copy element by element, unary ops call a
 * closure per element. Ours do the same work in typed loops and block copies (sign tests on the
 * float bits, without branches), and hand anything they do not cover (other dtypes, unusual
 * attributes) to the stock kernel. The ReLU and leaky-ReLU gradients are one kernel of ours here
 * (`UgatitActivationGrad`) where the stock gradients take two or three passes (step and multiply;
 * greater, multiply and select); every result is the stock one bit for bit. Outputs take freed
 * tensors' arrays where the backend keeps them (`recycleArrays` in `memory.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { ACTIVATION_GRAD, useActivationGradients } from "../../ops/activation_grad.ts";
import { overrideKernel } from "../cpu/js_kernels.ts";
import { freshArray, recycleArrays } from "../memory.ts";

type Info = tf.TensorInfo;
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
interface CpuBackend {
  data: { get(id: tf.DataId): { values: Float32Array | Uint8Array | Int32Array } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array | Uint8Array): Info;
}

const cpu = (backend: tf.KernelBackend) => backend as unknown as CpuBackend;
const valuesOf = (args: Args, t: Info) => cpu(args.backend).data.get(t.dataId).values;
const sizeOf = (shape: readonly number[]) => shape.reduce((p, q) => p * q, 1);

// ---- elementwise binary ops with broadcasting ----

type Inner = (
  o: Float32Array | Uint8Array,
  k: number,
  a: Float32Array,
  ia: number,
  sa: number,
  b: Float32Array,
  ib: number,
  sb: number,
  n: number,
) => void;

// One inner loop per op (each call site stays monomorphic).
const INNER: Record<string, Inner> = {
  Add: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = a[ia] + b[ib];
  },
  Sub: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = a[ia] - b[ib];
  },
  Multiply: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = a[ia] * b[ib];
  },
  RealDiv: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = a[ia] / b[ib];
  },
  Maximum: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) {
      const x = a[ia];
      const y = b[ib];
      o[k + j] = x !== x || y !== y ? x + y : x > y ? x : y; // (x + y: the NaN, no constant)
    }
  },
  Minimum: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) {
      const x = a[ia];
      const y = b[ib];
      o[k + j] = x !== x || y !== y ? x + y : x < y ? x : y;
    }
  },
  Greater: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = +(a[ia] > b[ib]);
  },
  GreaterEqual: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = +(a[ia] >= b[ib]);
  },
  Less: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = +(a[ia] < b[ib]);
  },
  Equal: (o, k, a, ia, sa, b, ib, sb, n) => {
    for (let j = 0; j < n; j++, ia += sa, ib += sb) o[k + j] = +(a[ia] === b[ib]);
  },
};
// (Comparisons as +(a > b): a 0/1 without a branch, which random signs mispredict half the time.)
const COMPARISONS = new Set(["Greater", "GreaterEqual", "Less", "Equal"]);

/**
 * A broadcasting binary op on arrays: `out[i] = op(a[ia(i)], b[ib(i)])` with NumPy broadcasting.
 * @param op a key of the inner-loop table (`Add`, `Sub`, `Multiply`, `RealDiv`, ...)
 */
export function broadcastBinary(
  op: string,
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
  out: Float32Array | Uint8Array,
  outShape: readonly number[],
): void {
  const inner = INNER[op];
  const rank = outShape.length;
  const pad = (s: readonly number[]) => [...Array(rank - s.length).fill(1), ...s];
  const [as, bs] = [pad(aShape), pad(bShape)];
  // Strides per output dim, 0 where broadcast.
  const strides = (s: number[]) => {
    const st = new Array(rank).fill(0);
    for (let d = rank - 1, acc = 1; d >= 0; d--) {
      st[d] = s[d] === 1 ? 0 : acc;
      acc *= s[d];
    }
    return st;
  };
  const [sa, sb] = [strides(as), strides(bs)];
  if (rank === 0) return inner(out, 0, a, 0, 0, b, 0, 0, 1);
  const n = outShape[rank - 1];
  const rows = sizeOf(outShape) / (n || 1);
  const idx = new Array(rank - 1).fill(0);
  let [ia, ib] = [0, 0];
  for (let r = 0, k = 0; r < rows; r++, k += n) {
    inner(out, k, a, ia, sa[rank - 1], b, ib, sb[rank - 1], n);
    // Odometer over the outer dims.
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]++;
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < outShape[d]) break;
      ia -= sa[d] * outShape[d];
      ib -= sb[d] * outShape[d];
      idx[d] = 0;
    }
  }
}

function binaryKernel(op: string) {
  return (args: Args): Info | undefined => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
    const rank = Math.max(a.shape.length, b.shape.length);
    const outShape: number[] = [];
    for (let d = 0; d < rank; d++) {
      const x = a.shape[a.shape.length - rank + d] ?? 1;
      const y = b.shape[b.shape.length - rank + d] ?? 1;
      if (x !== y && x !== 1 && y !== 1) return undefined; // the stock kernel says why
      outShape.push(x === 1 ? y : x);
    }
    const cmp = COMPARISONS.has(op);
    const n = sizeOf(outShape);
    const out = cmp ? new Uint8Array(n) : freshArray(args.backend, n);
    broadcastBinary(
      op,
      valuesOf(args, a) as Float32Array,
      a.shape,
      valuesOf(args, b) as Float32Array,
      b.shape,
      out,
      outShape,
    );
    return cpu(args.backend).makeTensorInfo(outShape, cmp ? "bool" : "float32", out);
  };
}

// ---- unary ops ----

type Unary = (x: Float32Array, y: Float32Array, attrs: Record<string, number>) => void;
// Sign tests on a float32's bits (an Int32Array view of the same memory), as integer arithmetic
// with no branch, which random signs would mispredict half the time:
// - positive(v): -1 (all bits set) where the float is > 0 (NaN excluded by the caller), else 0;
// - negative(v): 1 where the float is < 0 (not -0; a negative NaN too, 0 for a positive one);
// - isNaN(v): the exponent all ones and a mantissa (rare: a branch that is always predicted).
const positive = (v: number) => ((0 - v) >> 31) & ~(v >> 31);
const negative = (v: number) => (v >>> 31) & (((v & 0x7fffffff) + 0x7fffffff) >>> 31);
const isNaN = (v: number) => (v & 0x7fffffff) > 0x7f800000;
const bitsOf = (v: Float32Array | Uint8Array | Int32Array) =>
  new Int32Array(v.buffer, v.byteOffset, v.length);

const UNARY: Record<string, Unary> = {
  // max(0, x) as the stock kernel's Math.max: -0 and -Infinity give +0, NaN stays NaN.
  Relu: (x, y) => {
    const [xi, yi] = [bitsOf(x), bitsOf(y)];
    for (let i = 0; i < xi.length; i++) {
      const v = xi[i];
      yi[i] = isNaN(v) ? v : v & positive(v) | 0;
    }
  },
  // x < 0 ? alpha x : x, as x times a slope looked up by sign: -0 stays -0, NaN stays NaN.
  LeakyRelu: (x, y, { alpha }) => {
    const xi = bitsOf(x);
    const slope = Float64Array.of(1, alpha);
    for (let i = 0; i < x.length; i++) y[i] = x[i] * slope[negative(xi[i])];
  },
  // x > 0 ? 1 : alpha (NaN for NaN), as a choice of bits.
  Step: (x, y, { alpha }) => {
    const [xi, yi] = [bitsOf(x), bitsOf(y)];
    const [one, low] = bitsOf(Float32Array.of(1, alpha));
    for (let i = 0; i < xi.length; i++) {
      const v = xi[i];
      const m = positive(v);
      yi[i] = isNaN(v) ? v : (one & m) | (low & ~m);
    }
  },
  Sqrt: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.sqrt(x[i]);
  },
  Square: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = x[i] * x[i];
  },
  Tanh: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.tanh(x[i]);
  },
  Neg: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = -x[i];
  },
  Abs: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.abs(x[i]);
  },
  Exp: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = Math.exp(x[i]);
  },
  Sign: (x, y) => {
    for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? 1 : x[i] < 0 ? -1 : x[i] === 0 ? 0 : NaN;
  },
};

function unaryKernel(op: string) {
  return (args: Args): Info | undefined => {
    const { x } = args.inputs as { x: Info };
    if (x.dtype !== "float32") return undefined;
    const y = freshArray(args.backend, sizeOf(x.shape));
    UNARY[op](valuesOf(args, x) as Float32Array, y, (args.attrs ?? {}) as Record<string, number>);
    return cpu(args.backend).makeTensorInfo(x.shape, "float32", y);
  };
}

function select(args: Args): Info | undefined {
  const { condition, t, e } = args.inputs as { condition: Info; t: Info; e: Info };
  const same = (s: number[]) => s.length === t.shape.length && s.every((d, i) => d === t.shape[i]);
  if (t.dtype !== "float32" || e.dtype !== "float32" || !same(condition.shape) || !same(e.shape)) {
    return undefined;
  }
  const [c, a, b] = [condition, t, e].map((v) => valuesOf(args, v));
  const y = freshArray(args.backend, a.length);
  // The bits of a where c, else of b, through an all-ones or all-zeros mask: no branch.
  const [ai, bi, yi] = [bitsOf(a), bitsOf(b), bitsOf(y)];
  for (let i = 0; i < y.length; i++) {
    const m = (c[i] | -c[i]) >> 31; // -1 where c != 0, else 0
    yi[i] = (ai[i] & m) | (bi[i] & ~m);
  }
  return cpu(args.backend).makeTensorInfo(t.shape, "float32", y);
}

// ---- the ReLU and leaky ReLU gradients, fused ----

/**
 * `dx = dy * (x > 0 ? 1 : alpha)` in one pass; what the stock gradients compute in two (ReLU:
 * `dy * step(x)`, so a NaN x gives NaN, as here with alpha 0) or three (leaky ReLU:
 * `where(x > 0, dy, dy * alpha)`, where a NaN x gives `dy * alpha`, as here with alpha != 0).
 */
function activationGrad(args: Args): Info {
  const { dy, x } = args.inputs as { dy: Info; x: Info };
  const { alpha } = args.attrs as unknown as { alpha: number };
  const [g, v] = [dy, x].map((t) => valuesOf(args, t) as Float32Array);
  const out = freshArray(args.backend, g.length);
  const vi = bitsOf(v);
  // The factor dy is multiplied by, looked up by x's sign: alpha (as the float32 scalar the stock
  // gradient multiplies by) where x <= 0, 1 where x > 0, and for a NaN x: NaN under ReLU (dy times
  // step(NaN)), alpha under leaky ReLU (NaN > 0 is false). A lookup by index keeps the loop on
  // doubles; a conditional choosing the NaN constant instead ran about 6 times slower under V8.
  const a = Math.fround(alpha);
  const slope = Float64Array.of(a, 1, alpha === 0 ? NaN : a);
  for (let i = 0; i < out.length; i++) {
    const b = vi[i];
    out[i] = g[i] * slope[isNaN(b) ? 2 : positive(b) & 1];
  }
  return cpu(args.backend).makeTensorInfo(x.shape, "float32", out);
}

// ---- slicing and joining, as block copies ----

/**
 * Copies the box `begin .. begin + size` of `src` (shape `shape`) into `dst` at `dstOffset`,
 * contiguously.
 */
function copyBox(
  src: Float32Array,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  dst: Float32Array,
  dstOffset: number,
): void {
  const rank = shape.length;
  // The innermost run: trailing dims taken whole join the last partial one.
  let d = rank - 1;
  let run = size[d];
  while (d > 0 && size[d] === shape[d] && begin[d] === 0) run *= size[--d];
  const strides = new Array(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * shape[i + 1];
  const outer = sizeOf(size.slice(0, d));
  const idx = new Array(d).fill(0);
  let base = 0;
  for (let i = 0; i < rank; i++) base += begin[i] * strides[i];
  let off = base;
  for (let r = 0, k = dstOffset; r < outer; r++, k += run) {
    dst.set(src.subarray(off, off + run), k);
    for (let i = d - 1; i >= 0; i--) {
      idx[i]++;
      off += strides[i];
      if (idx[i] < size[i]) break;
      off -= strides[i] * size[i];
      idx[i] = 0;
    }
  }
}

// Zero (or constant) padding: the constant everywhere, then the input's runs copied in as blocks.
function pad(args: Args): Info | undefined {
  const { x } = args.inputs as { x: Info };
  const { paddings, constantValue } = args.attrs as unknown as {
    paddings: [number, number][];
    constantValue: number;
  };
  if (x.dtype !== "float32" || paddings.length !== x.shape.length) return undefined;
  const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
  const y = freshArray(args.backend, sizeOf(shape));
  y.fill(constantValue);
  const src = valuesOf(args, x) as Float32Array;
  const rank = shape.length;
  // The input's rows (its last dim) land at this offset plus an odometer over the outer dims.
  const strides = new Array(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * shape[i + 1];
  const row = x.shape[rank - 1] ?? 1;
  let off = 0;
  for (let i = 0; i < rank; i++) off += paddings[i][0] * strides[i];
  const idx = new Array(Math.max(rank - 1, 0)).fill(0);
  for (let k = 0; k < src.length; k += row) {
    y.set(src.subarray(k, k + row), off);
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]++;
      off += strides[d];
      if (idx[d] < x.shape[d]) break;
      off -= strides[d] * x.shape[d];
      idx[d] = 0;
    }
  }
  return cpu(args.backend).makeTensorInfo(shape, "float32", y);
}

function slice(args: Args): Info | undefined {
  const { x } = args.inputs as { x: Info };
  const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] };
  if (x.dtype !== "float32" || !Array.isArray(begin) || begin.length !== x.shape.length) {
    return undefined;
  }
  const sz = size.map((s, i) => (s === -1 ? x.shape[i] - begin[i] : s));
  const y = freshArray(args.backend, sizeOf(sz));
  if (y.length) copyBox(valuesOf(args, x) as Float32Array, x.shape, begin, sz, y, 0);
  return cpu(args.backend).makeTensorInfo(sz, "float32", y);
}

function splitV(args: Args): Info[] | undefined {
  const { x } = args.inputs as { x: Info };
  const { numOrSizeSplits, axis } = args.attrs as unknown as {
    numOrSizeSplits: number | number[];
    axis: number;
  };
  if (x.dtype !== "float32") return undefined;
  const ax = (axis + x.shape.length) % x.shape.length;
  const sizes = Array.isArray(numOrSizeSplits)
    ? numOrSizeSplits
    : new Array(numOrSizeSplits).fill(x.shape[ax] / numOrSizeSplits);
  if (sizes.some((s) => s < 0)) return undefined;
  const src = valuesOf(args, x) as Float32Array;
  let start = 0;
  return sizes.map((s) => {
    const begin = x.shape.map((_, i) => (i === ax ? start : 0));
    const size = x.shape.map((d, i) => (i === ax ? s : d));
    start += s;
    const y = freshArray(args.backend, sizeOf(size));
    if (y.length) copyBox(src, x.shape, begin, size, y, 0);
    return cpu(args.backend).makeTensorInfo(size, "float32", y);
  });
}

function concat(args: Args): Info | undefined {
  const xs = Object.values(args.inputs) as Info[];
  const { axis } = args.attrs as unknown as { axis: number };
  if (!xs.length || xs.some((t) => t.dtype !== "float32")) return undefined;
  const rank = xs[0].shape.length;
  const ax = (axis + rank) % rank;
  const shape = [...xs[0].shape];
  shape[ax] = xs.reduce((s, t) => s + t.shape[ax], 0);
  const y = freshArray(args.backend, sizeOf(shape));
  // Each input is a run of `rows` blocks; block r of input t lands at r * rowWidth + its column.
  const rows = sizeOf(shape.slice(0, ax));
  const rowWidth = sizeOf(shape.slice(ax));
  let col = 0;
  for (const t of xs) {
    const v = valuesOf(args, t) as Float32Array;
    const w = sizeOf(t.shape.slice(ax));
    for (let r = 0; r < rows; r++) y.set(v.subarray(r * w, (r + 1) * w), r * rowWidth + col);
    col += w;
  }
  return cpu(args.backend).makeTensorInfo(shape, "float32", y);
}

function transpose(args: Args): Info | undefined {
  const { x } = args.inputs as { x: Info };
  const { perm } = args.attrs as unknown as { perm: number[] };
  if (x.dtype !== "float32") return undefined;
  const rank = x.shape.length;
  const shape = perm.map((p) => x.shape[p]);
  const src = valuesOf(args, x) as Float32Array;
  const y = freshArray(args.backend, src.length);
  const inStrides = new Array(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) inStrides[i] = inStrides[i + 1] * x.shape[i + 1];
  const st = perm.map((p) => inStrides[p]); // input stride of each output dim
  const n = shape[rank - 1] ?? 1;
  const sn = st[rank - 1] ?? 1;
  const idx = new Array(Math.max(rank - 1, 0)).fill(0);
  let off = 0;
  for (let k = 0; k < y.length; k += n) {
    for (let j = 0, i = off; j < n; j++, i += sn) y[k + j] = src[i];
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]++;
      off += st[d];
      if (idx[d] < shape[d]) break;
      off -= st[d] * shape[d];
      idx[d] = 0;
    }
  }
  return cpu(args.backend).makeTensorInfo(shape, "float32", y);
}

/** The backend these kernels are for. */
export const NATIVE_CPU = "native-cpu";

let registered = false;

/**
 * Registers the `native-cpu` backend (once): a cpu backend under that name, with the cpu
 * kernels and ours in front of them.
 */
export function registerNativeCpuBackend(): void {
  if (registered) return;
  registered = true;
  const cpuBackend = tf.findBackendFactory("cpu") as () => tf.KernelBackend; // synchronous
  tf.registerBackend(NATIVE_CPU, () => {
    const backend = cpuBackend();
    recycleArrays(backend); // freed tensors' arrays serve the next outputs of their length
    return backend;
  }, 1);
  // The cpu backend's own kernels (ours, "Ugatit...", are registered by their own modules).
  for (const k of tf.getKernelsForBackend("cpu")) {
    if (k.kernelName.startsWith("Ugatit") || tf.getKernel(k.kernelName, NATIVE_CPU)) continue;
    tf.registerKernel({ ...k, backendName: NATIVE_CPU });
  }
  for (const op of Object.keys(INNER)) overrideKernel(op, NATIVE_CPU, binaryKernel(op));
  for (const op of Object.keys(UNARY)) overrideKernel(op, NATIVE_CPU, unaryKernel(op));
  overrideKernel("Select", NATIVE_CPU, select);
  overrideKernel("Slice", NATIVE_CPU, slice);
  overrideKernel("SplitV", NATIVE_CPU, splitV as unknown as (args: Args) => Info | undefined);
  overrideKernel("Concat", NATIVE_CPU, concat);
  overrideKernel("Transpose", NATIVE_CPU, transpose);
  overrideKernel("PadV2", NATIVE_CPU, pad);
  tf.registerKernel({
    kernelName: ACTIVATION_GRAD,
    backendName: NATIVE_CPU,
    kernelFunc: activationGrad as unknown as tf.KernelFunc,
  });
  useActivationGradients();
}
