/**
 * The one place that selects the TensorFlow.js backend.
 *
 * - `native` (the CPU default where oneDNN or a BLAS is installed): the wasm backend with
 *   convolutions and matrix multiplies on native, multi-threaded libraries through FFI (oneDNN;
 *   else OpenBLAS or Accelerate).
 * - `native-cpu`: the same native kernels on tfjs's cpu backend (tensors in JavaScript memory),
 *   with faster elementwise, slicing and joining kernels of ours: for what does not fit the 4 GiB
 *   of WebAssembly memory (a 256-pixel training step), slower below that.
 * - `wasm` (the portable CPU path): XNNPACK under WebAssembly, with our training kernels added.
 * - `cpu`: the pure-JavaScript reference backend; exact but slow.
 * - `webgpu`: WebGPU through `navigator.gpu` (Deno, browsers).
 * - `tensorflow`: libtensorflow through `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`,
 *   loaded only when asked for; these cannot be installed everywhere, so a missing one is
 *   reported in one line.
 * - `auto`: `tensorflow` if it loads, else `webgpu` on a hardware GPU, else `native` where one of
 *   its libraries loads, else `wasm`; one line says which and why.
 *
 * @example
 * ```ts
 * import { selectBackend } from "./mod.ts";
 * const name = await selectBackend("cpu");
 * console.log(name); // "cpu"
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { registerWasmTrainingKernels } from "./wasm_kernels.ts";
import { loadNativeLibraries, registerNativeKernels, setNativeKernels } from "./native_kernels.ts";
import { registerNormKernels } from "./norm_kernels.ts";
import { registerJsKernels } from "./js_kernels.ts";
import { registerNativeCpuBackend } from "./cpu_kernels.ts";
import { setFreeingBackprop } from "./backprop.ts";
import {
  describeAdapter,
  type GpuAdapter,
  isSoftwareAdapter,
  registerWebGpuBackend,
  requestGpuAdapter,
  webgpuStarted,
  webgpuUnavailable,
} from "./webgpu.ts";

export { registerWasmTrainingKernels } from "./wasm_kernels.ts";
export {
  describeAdapter,
  type GpuAdapter,
  requestGpuAdapter,
  webgpuDeviceLost,
  type WebGpuStart,
  webgpuStarted,
  webgpuUnavailable,
} from "./webgpu.ts";

/** The names `--backend` accepts. */
export const BACKENDS = [
  "auto",
  "tensorflow",
  "webgpu",
  "native",
  "native-cpu",
  "wasm",
  "cpu",
] as const;
/** A backend name. */
export type BackendName = typeof BACKENDS[number];

/** Options of {@linkcode selectBackend}. */
export interface SelectBackendOptions {
  /** Where one-line notices go (default `console.error`). */
  readonly log?: (line: string) => void;
}

// tfjs-node is optional and loaded by a computed specifier, so that it is neither required nor
// fetched unless a run asks for it.
const TFJS_NODE = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"];

async function loadTensorflow(): Promise<string | undefined> {
  // A package whose native library is missing registers its kernels before failing, so the
  // next one would warn once per kernel that it is "already registered": those lines are muted.
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!/is already registered/.test(String(args[0]))) warn(...args);
  };
  try {
    for (const pkg of TFJS_NODE) {
      try {
        await import(`npm:${pkg}@4.22.0`);
        if (tf.findBackend("tensorflow")) return pkg;
      } catch {
        // not installed here, or its native library is missing: try the next one
      }
    }
    return undefined;
  } finally {
    console.warn = warn;
  }
}

let softwareNoticed = false; // said once per process

async function hardwareGpu(): Promise<GpuAdapter | undefined> {
  const adapter = await requestGpuAdapter();
  return adapter && !isSoftwareAdapter(adapter) ? adapter : undefined;
}

async function activate(name: string): Promise<string> {
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
  await tf.ready();
  // Silences tfjs's "install the node backend" banner and debug checks.
  tf.env().set("PROD", true);
  return name;
}

/**
 * Selects and initialises a backend.
 * @param name one of {@linkcode BACKENDS}
 * @param options where notices go
 * @returns the name of the active backend: `tensorflow`, `webgpu`, `native` (tfjs's `wasm` with
 *   native kernels), `native-cpu`, `wasm` or `cpu`
 * @throws when an explicitly named backend cannot be loaded, with the reason in one line
 */
export async function selectBackend(
  name: BackendName = "auto",
  { log = console.error }: SelectBackendOptions = {},
): Promise<string> {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new Error(`--backend: unknown backend "${name}"; choose one of ${BACKENDS.join(", ")}`);
  }
  registerNormKernels();
  setFreeingBackprop(true);
  const missingTf = "TensorFlow (tfjs-node) is not installed here: @tensorflow/tfjs-node(-gpu) " +
    "needs libtensorflow, fetched by its install script";
  switch (name) {
    case "cpu":
      registerJsKernels("cpu");
      setNativeKernels(undefined);
      return await activate("cpu");
    case "wasm":
    case "native": {
      await import("@tensorflow/tfjs-backend-wasm");
      registerWasmTrainingKernels();
      registerJsKernels("wasm");
      registerNativeKernels(["wasm"]);
      const libs = name === "native" ? loadNativeLibraries() : undefined;
      if (typeof libs === "string") throw new Error(`--backend native: ${libs}`);
      setNativeKernels(libs);
      await activate("wasm");
      return name;
    }
    case "native-cpu": {
      const libs = loadNativeLibraries();
      if (typeof libs === "string") throw new Error(`--backend native-cpu: ${libs}`);
      registerNativeCpuBackend();
      registerJsKernels("native-cpu");
      registerNativeKernels(["native-cpu"]);
      setNativeKernels(libs);
      await activate("native-cpu");
      return name;
    }
    case "webgpu": {
      // Started once per process: a second start would make a new device, losing every tensor.
      if (!tf.findBackend("webgpu")) {
        const why = await webgpuUnavailable();
        if (why) throw new Error(`--backend webgpu: ${why}`);
        await registerWebGpuBackend();
      }
      try {
        await activate("webgpu");
      } catch (e) {
        throw new Error(`--backend webgpu: ${(e as Error).message}`);
      }
      const gpu = webgpuStarted();
      if (gpu?.software && !softwareNoticed) {
        softwareNoticed = true;
        log(`backend: webgpu on ${gpu.adapter}: a software renderer, not a GPU (slow)`);
      }
      return "webgpu";
    }
    case "tensorflow": {
      if (!(await loadTensorflow())) throw new Error(`--backend tensorflow: ${missingTf}`);
      return await activate("tensorflow");
    }
    case "auto": {
      if (await loadTensorflow()) return await activate("tensorflow");
      const adapter = await hardwareGpu();
      if (adapter) {
        log(`backend: ${missingTf}; using webgpu on ${describeAdapter(adapter)}`);
        return await selectBackend("webgpu", { log });
      }
      const libs = loadNativeLibraries();
      log(
        typeof libs === "string"
          ? `backend: ${missingTf}; ${libs}: using the portable wasm backend`
          : `backend: ${missingTf}; using native: wasm with ${libs.description} ` +
            "for convolutions and matrix multiplies",
      );
      return await selectBackend(typeof libs === "string" ? "wasm" : "native", { log });
    }
  }
}
