/**
 * The native fast path: convolutions (forward, input gradient, filter gradient) and matrix
 * multiplies on a native BLAS (OpenBLAS, multi-threaded), reading and writing the tensors in
 * place: in WebAssembly memory under the wasm backend (`--backend native`), in JavaScript memory
 * under `native-cpu`. Everything else stays on those backends.
 *
 * The kernels are registered once per backend and switched on or off by
 * {@linkcode setNativeKernels}; when off, or for what they do not cover (NCHW, dilation,
 * non-float inputs), they hand over to the kernels that were registered before them.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Blas } from "./blas.ts";
import { convBackpropFilter, convBackpropInput, convForward } from "./gemm_conv.ts";
import { memoryOf } from "./memory.ts";

type Info = tf.TensorInfo;
interface ConvAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: [number, number] | number;
  dimRoundingMode?: "floor" | "round" | "ceil";
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

// The BLAS the kernels run on; undefined: off, the kernels registered before ours run.
let blas: Blas | undefined;

/**
 * Switches the native kernels on (with the BLAS to use) or off (the portable wasm kernels).
 * @param lib the loaded BLAS, or undefined for off
 */
export function setNativeKernels(lib: Blas | undefined): void {
  blas = lib;
}

function dilated(d: ConvAttrs["dilations"]): boolean {
  return d !== undefined && (Array.isArray(d) ? d.some((v) => v !== 1) : d !== 1);
}

function geometry(
  xShape: number[],
  filterShape: number[],
  attrs: ConvAttrs,
): tf.backend_util.Conv2DInfo | undefined {
  if (attrs.dataFormat === "NCHW" || dilated(attrs.dilations)) return undefined;
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
}

const allFloat = (...xs: Info[]) => xs.every((x) => x.dtype === "float32");

function conv2d(args: Args, fallback: tf.KernelFunc): Info {
  const { x, filter } = args.inputs as { x: Info; filter: Info };
  const g = blas && allFloat(x, filter) &&
    geometry(x.shape, filter.shape, args.attrs as unknown as ConvAttrs);
  if (!g) return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(g.outShape);
  const h = mem.view; // after every allocation
  convForward(blas!.sgemm, h(x), h(filter), h(out), g);
  return out;
}

function conv2dBackpropInput(args: Args, fallback: tf.KernelFunc): Info {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = blas && allFloat(dy, filter) && geometry(attrs.inputShape!, filter.shape, attrs);
  if (!g) return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(attrs.inputShape!);
  const h = mem.view;
  convBackpropInput(blas!.sgemm, h(dy), h(filter), h(out), g);
  return out;
}

function conv2dBackpropFilter(args: Args, fallback: tf.KernelFunc): Info {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = blas && allFloat(x, dy) && geometry(x.shape, attrs.filterShape!, attrs);
  if (!g) return fallback(args as Parameters<tf.KernelFunc>[0]) as Info;
  const mem = memoryOf(args.backend);
  const out = mem.alloc(attrs.filterShape!);
  const h = mem.view;
  convBackpropFilter(blas!.sgemm, h(x), h(dy), h(out), g);
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
  if (!blas || !allFloat(a, b) || ra < 2 || rb < 2 || (na !== nb && na !== 1 && nb !== 1)) {
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
    blas!.sgemm(
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

const registered = new Set<string>();

/**
 * Registers the native kernels under some backends (`wasm`, `native-cpu`; once each), in front of
 * the kernels already there; they stay off until {@linkcode setNativeKernels} gives them a BLAS.
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
