/**
 * Backends, by target, and the one place that selects one ({@linkcode selectBackend}, which
 * returns a {@linkcode Backend} descriptor). Each target registers its own implementations of
 * our ops (`ops/`); the layers never import a backend.
 *
 * - `native` (the CPU default where oneDNN or a BLAS is installed): the wasm backend with
 *   convolutions and matrix multiplies on native, multi-threaded libraries through FFI (oneDNN;
 *   else OpenBLAS or Accelerate): `native/`.
 * - `native-cpu`: the same native kernels on tfjs's cpu backend (tensors in JavaScript memory),
 *   with faster elementwise, slicing and joining kernels of ours: for what does not fit the 4 GiB
 *   of WebAssembly memory (a 256-pixel training step), slower below that: `native/`.
 * - `wasm` (the portable CPU path): XNNPACK under WebAssembly, with our training kernels added and
 *   our SIMD loops: `wasm/`.
 * - `cpu`: the pure-JavaScript reference backend; exact but slow. Our ops' kernels in JavaScript
 *   over CPU memory serve the three CPU backends: `cpu/`.
 * - `webgpu`: WebGPU through `navigator.gpu` (Deno, browsers), on a device we start, with WGSL
 *   kernels of ours: `webgpu/`.
 * - `tensorflow`: libtensorflow through `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`,
 *   loaded only when asked for; these cannot be installed everywhere, so a missing one is
 *   reported in one line.
 * - `auto`: `tensorflow` if it loads, else `webgpu` on a hardware GPU, else `native` where one of
 *   its libraries loads, else `wasm`; one line says which and why.
 *
 * Shared by all: the backward pass that frees as it goes (`backprop.ts`) and the view of CPU
 * memory our kernels work in (`memory.ts`).
 *
 * @example
 * ```ts
 * import { selectBackend } from "./mod.ts";
 * const backend = await selectBackend("cpu");
 * console.log(backend.name, backend.readLag); // "cpu" 0
 * ```
 *
 * @module
 */
export * from "./backend.ts";
export * from "./select_backend.ts";
export { registerWasmTrainingKernels } from "./wasm/wasm_kernels.ts";
export { setConvFloat16 } from "./webgpu/conv.ts";
export { registerWebGpuKernels } from "./webgpu/kernels.ts";
export {
  describeAdapter,
  type GpuAdapter,
  requestGpuAdapter,
  webgpuDeviceLost,
  type WebGpuStart,
  webgpuStarted,
  webgpuUnavailable,
} from "./webgpu/start.ts";
