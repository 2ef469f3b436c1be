/**
 * The native fast path: convolutions (forward, input gradient, filter gradient), matrix multiplies,
 * spectral norm's power iteration and large elementwise arithmetic on native, multi-threaded
 * libraries (oneDNN's direct convolutions and binary primitive where installed, else a BLAS:
 * OpenBLAS, Accelerate; convolutions the BLAS runs are lowered to GEMM), reading and writing the
 * tensors in place: in WebAssembly memory under the wasm backend (`--backend native`), in
 * JavaScript memory under `native-cpu`. Everything else stays on those backends.
 *
 * The kernels are registered once per backend and switched on or off by
 * {@linkcode setNativeKernels}; when off, or for what they do not cover (NCHW, dilation,
 * non-float inputs), they hand over to the kernels that were registered before them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type Gemm, loadBlas } from "./blas.ts";
import { type BinaryOp, convKey, type ConvPass, type Dnnl, loadDnnl } from "./dnnl.ts";
import { convBackpropFilter, convBackpropInput, convForward } from "./gemm_conv.ts";
import { SPECTRAL_SIGMA, SPECTRAL_SIGMA_GRAD } from "../../ops/spectral_sigma.ts";
import {
  type MatVec,
  type Outer,
  spectralSigmaGradKernel,
  spectralSigmaKernel,
} from "../cpu/js_kernels.ts";
import { type ConvAttrs, convGeometry } from "../conv_geometry.ts";
import { memoryOf } from "../memory.ts";

type Info = tf.TensorInfo;
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

/** The libraries the native kernels run on. */
export interface NativeLibraries {
  /** What they are, for the start-up line. */
  readonly description: string;
  /** The matrix multiply: matmuls, and convolutions lowered to GEMM. */
  readonly gemm: Gemm;
  /** oneDNN's direct convolutions, where installed. */
  readonly dnnl?: Dnnl;
}

/**
 * Opens the native libraries (once per process): oneDNN where it is installed, for the
 * convolutions and, on the same threads, the matrix multiplies (a second thread pool would
 * contend with its threads for the cores); else a BLAS.
 * @returns the libraries, or why there are none (one line)
 */
export function loadNativeLibraries(): NativeLibraries | string {
  const dnnl = loadDnnl();
  if (typeof dnnl !== "string") {
    return { description: `${dnnl.description} (${dnnl.path})`, gemm: dnnl.sgemm, dnnl };
  }
  const blas = loadBlas();
  if (typeof blas === "string") return blas;
  const hint = dnnl.startsWith("no oneDNN")
    ? "; without oneDNN: apt-get install libdnnl2 for faster convolutions"
    : "";
  return { description: `${blas.description} (${blas.path}${hint})`, gemm: blas.sgemm };
}

// What the kernels run on; undefined: off, the kernels registered before ours run.
let libs: NativeLibraries | undefined;

/**
 * Switches the native kernels on (with the libraries to use) or off (the portable kernels).
 * @param lib the loaded libraries, or undefined for off
 */
export function setNativeKernels(lib: NativeLibraries | undefined): void {
  libs = lib;
}

/**
 * Where convolutions go when oneDNN is loaded: `fastest` (the default) times oneDNN and the GEMM
 * lowering once per geometry and keeps the faster; the others force one (tests, benchmarks).
 */
export type ConvRoute = "fastest" | "onednn" | "gemm";
let route: ConvRoute = "fastest";

/**
 * Sets where convolutions go (see {@linkcode ConvRoute}).
 * @param to the route
 */
export function setConvRoute(to: ConvRoute): void {
  route = to;
}

const allFloat = (...xs: Info[]) => xs.every((x) => x.dtype === "float32");

const lowered = { forward: convForward, input: convBackpropInput, filter: convBackpropFilter };
// Per pass and geometry, whether oneDNN or the GEMM lowering was faster when first met: oneDNN
// wins most, not all (e.g. one output channel), so both are timed once on the real tensors.
const oneDnnFaster = new Map<string, boolean>();

/** One convolution pass on oneDNN or as GEMMs (see {@linkcode ConvRoute}). */
function convolve(
  pass: ConvPass,
  g: tf.backend_util.Conv2DInfo,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
): void {
  const gemm = () => lowered[pass](libs!.gemm, a, b, out, g);
  const dnnl = libs!.dnnl;
  if (!dnnl || route === "gemm") return gemm();
  const key = convKey(pass, g);
  let faster = route === "onednn" || oneDnnFaster.get(key);
  if (faster === undefined) {
    // The first call makes oneDNN's primitive; it says no where it has only a reference kernel.
    faster = dnnl.conv(pass, g, a, b, out) &&
      fastest(() => dnnl.conv(pass, g, a, b, out)) < fastest(gemm);
    oneDnnFaster.set(key, faster);
  }
  if (!faster || !dnnl.conv(pass, g, a, b, out)) gemm();
}

/**
 * Where each convolution geometry met so far runs when oneDNN is loaded (the choice of the
 * `fastest` route), counted per pass, for `deno task bench --profile`.
 * @returns per pass, how many geometries went to oneDNN and how many to the GEMM lowering
 */
export function convRouteCounts(): Record<ConvPass, { onednn: number; gemm: number }> {
  const counts = {
    forward: { onednn: 0, gemm: 0 },
    input: { onednn: 0, gemm: 0 },
    filter: { onednn: 0, gemm: 0 },
  };
  for (const [key, faster] of oneDnnFaster) {
    counts[key.split(",")[0] as ConvPass][faster ? "onednn" : "gemm"]++;
  }
  return counts;
}

// The best of three timed runs, after one untimed.
function fastest(run: () => void): number {
  run();
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    run();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

function conv2d(args: Args, fallback: tf.KernelFunc): Info {
  const { x, filter } = args.inputs as { x: Info; filter: Info };
  const g = libs && allFloat(x, filter) &&
    convGeometry(x.shape, filter.shape, args.attrs as unknown as ConvAttrs);
  if (!g) return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(g.outShape);
  const h = mem.view; // after every allocation
  convolve("forward", g, h(x), h(filter), h(out));
  return out;
}

function conv2dBackpropInput(args: Args, fallback: tf.KernelFunc): Info {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = libs && allFloat(dy, filter) && convGeometry(attrs.inputShape!, filter.shape, attrs);
  if (!g) return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(attrs.inputShape!);
  const h = mem.view;
  convolve("input", g, h(dy), h(filter), h(out));
  return out;
}

function conv2dBackpropFilter(args: Args, fallback: tf.KernelFunc): Info {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = libs && allFloat(x, dy) && convGeometry(x.shape, attrs.filterShape!, attrs);
  if (!g) return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(attrs.filterShape!);
  const h = mem.view;
  convolve("filter", g, h(x), h(dy), h(out));
  return out;
}

function batchMatMul(args: Args, fallback: tf.KernelFunc): Info {
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { transposeA, transposeB } = args.attrs as unknown as {
    transposeA: boolean;
    transposeB: boolean;
  };
  const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
  const [ra, rb] = [a.shape.length, b.shape.length];
  const [na, nb] = [size(a.shape.slice(0, -2)), size(b.shape.slice(0, -2))];
  if (!libs || !allFloat(a, b) || ra < 2 || rb < 2 || (na !== nb && na !== 1 && nb !== 1)) {
    return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  }
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchShape = tf.backend_util.assertAndGetBroadcastShape(
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  const mem = memoryOf(args.backend);
  const out = mem.alloc([...batchShape, m, n]);
  const [av, bv, cv] = [a, b, out].map(mem.view);
  for (let i = 0; i < Math.max(na, nb); i++) {
    libs!.gemm(
      transposeA,
      transposeB,
      m,
      n,
      k,
      1,
      av.subarray((na === 1 ? 0 : i) * m * k),
      transposeA ? m : k,
      bv.subarray((nb === 1 ? 0 : i) * k * n),
      transposeB ? k : n,
      0,
      cv.subarray(i * m * n),
      n,
    );
  }
  return out;
}

// Spectral norm's two matrix-vector products on the native matrix multiply, multi-threaded: the
// largest discriminator weight at 256 pixels (4x4x1024x2048, 134 MB) is read twice per call.
const gemmMatVec: MatVec = (transpose, a, m, n, x, y) => {
  const [rows, inner] = transpose ? [n, m] : [m, n];
  const out = new Float32Array(rows);
  libs!.gemm(transpose, false, rows, 1, inner, 1, a, n, Float32Array.from(x), 1, 0, out, 1);
  y.set(out);
};
// Its gradient, the outer product v u^T as a GEMM of depth 1 (the same weight size, written).
const gemmOuter: Outer = (a, b, out) => {
  libs!.gemm(
    false,
    false,
    a.length,
    b.length,
    1,
    1,
    Float32Array.from(a),
    1,
    b,
    b.length,
    0,
    out,
    b.length,
  );
};
const onGemm = {
  [SPECTRAL_SIGMA]: spectralSigmaKernel(gemmMatVec),
  [SPECTRAL_SIGMA_GRAD]: spectralSigmaGradKernel(gemmOuter),
};

function spectralNorm(name: keyof typeof onGemm) {
  return (args: Args, fallback: tf.KernelFunc): Info =>
    libs ? onGemm[name](args) : fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
}

// Large elementwise Add, Sub, Multiply and RealDiv (b of a's shape, or broadcast along some of
// its dimensions: a bias, a scale per channel, one value) on oneDNN's binary primitive,
// multi-threaded and vectorised: at 256 pixels the discriminators' weight gradients (up to 134 MB)
// are summed, scaled and applied this way several times an iteration. Below this many elements the
// backend's own loop is as fast.
const BINARY_MIN_LENGTH = 65536;

/**
 * The shapes oneDNN's binary primitive gets for `a op b`: a's shape with adjacent dimensions
 * merged where b is broadcast along both or along neither, and b's on those (1 where broadcast).
 * @param aShape the first operand's shape (the output's)
 * @param bShape the second's
 * @returns the merged shapes, or undefined where b is larger than a along some dimension
 */
export function binaryDims(
  aShape: readonly number[],
  bShape: readonly number[],
): { dims: number[]; bDims: number[] } | undefined {
  if (bShape.length > aShape.length) return undefined;
  const bs = [...new Array(aShape.length - bShape.length).fill(1), ...bShape];
  const dims: number[] = [];
  const bDims: number[] = [];
  let last: boolean | undefined;
  for (let d = 0; d < aShape.length; d++) {
    if (bs[d] !== 1 && bs[d] !== aShape[d]) return undefined;
    if (aShape[d] === 1) continue; // joins either kind
    const broadcast = bs[d] === 1;
    if (broadcast === last) {
      dims[dims.length - 1] *= aShape[d];
      if (!broadcast) bDims[bDims.length - 1] *= aShape[d];
    } else {
      dims.push(aShape[d]);
      bDims.push(broadcast ? 1 : aShape[d]);
      last = broadcast;
    }
  }
  return dims.length ? { dims, bDims } : { dims: [1], bDims: [1] };
}

function binary(op: BinaryOp) {
  return (args: Args, fallback: tf.KernelFunc): Info => {
    const { a, b } = args.inputs as { a: Info; b: Info };
    const dnnl = libs?.dnnl;
    const size = a.shape.reduce((p, q) => p * q, 1);
    const shapes = binaryDims(a.shape, b.shape);
    if (!dnnl || !allFloat(a, b) || size < BINARY_MIN_LENGTH || !shapes) {
      return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
    }
    const mem = memoryOf(args.backend);
    const out = mem.alloc(a.shape);
    const [av, bv, ov] = [a, b, out].map(mem.view);
    if (dnnl.binary(op, shapes.dims, shapes.bDims, av, bv, ov)) return out;
    args.backend.disposeData(out.dataId);
    return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  };
}

const registered = new Set<string>();

/**
 * Registers the native kernels under some backends (`wasm`, `native-cpu`; once each), in front of
 * the kernels already there; they stay off until {@linkcode setNativeKernels} gives them libraries.
 * @param backends the backend names
 */
export function registerNativeKernels(backends: readonly string[]): void {
  backends = backends.filter((b) => !registered.has(b));
  backends.forEach((b) => registered.add(b));
  const ours: [string, (args: Args, fallback: tf.KernelFunc) => Info][] = [
    ["Conv2D", conv2d],
    ["Conv2DBackpropInput", conv2dBackpropInput],
    ["Conv2DBackpropFilter", conv2dBackpropFilter],
    ["BatchMatMul", batchMatMul],
    [SPECTRAL_SIGMA, spectralNorm(SPECTRAL_SIGMA)],
    [SPECTRAL_SIGMA_GRAD, spectralNorm(SPECTRAL_SIGMA_GRAD)],
    ...(["Add", "Sub", "Multiply", "RealDiv"] as const).map((op): [string, typeof conv2d] => [
      op,
      binary(op),
    ]),
  ];
  for (const [name, kernel] of ours) {
    for (const backendName of backends) {
      const before = tf.getKernel(name, backendName);
      if (!before) throw new Error(`${backendName} backend: kernel ${name} is missing`);
      tf.unregisterKernel(name, backendName);
      tf.registerKernel({
        kernelName: name,
        backendName,
        kernelFunc: ((args: Args) => kernel(args, before.kernelFunc)) as unknown as tf.KernelFunc,
        setupFunc: before.setupFunc,
        disposeFunc: before.disposeFunc,
      });
    }
  }
}
