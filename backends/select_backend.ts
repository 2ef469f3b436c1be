/**
 * The one place that selects the TensorFlow.js backend in Deno (the browser page has
 * `browser.ts`), returning its {@linkcode Backend} descriptor. It registers the kernels of ours
 * each backend implements (`cpu/`, `wasm/`, `native/`, `webgpu/`) and installs the backward pass
 * that frees as it goes (`backprop.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type Backend, type BackendName, BACKENDS, describeBackend } from "./backend.ts";
import { registerWasmTrainingKernels } from "./wasm/wasm_kernels.ts";
import {
  loadNativeLibraries,
  registerNativeKernels,
  setNativeKernels,
} from "./native/native_kernels.ts";
import { registerNormKernels } from "./cpu/norm_kernels.ts";
import { registerJsKernels } from "./cpu/js_kernels.ts";
import { registerNativeCpuBackend } from "./native/cpu_kernels.ts";
import { setFreeingBackprop } from "./backprop.ts";
import {
  describeAdapter,
  type GpuAdapter,
  isSoftwareAdapter,
  registerWebGpuBackend,
  requestGpuAdapter,
  webgpuStarted,
  webgpuUnavailable,
} from "./webgpu/start.ts";

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

async function activate(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
  await tf.ready();
  // Silences tfjs's "install the node backend" banner and debug checks.
  tf.env().set("PROD", true);
}

/**
 * Selects and initialises a backend.
 * @param name one of {@linkcode BACKENDS}
 * @param options where notices go
 * @returns the active backend's descriptor: its name (`tensorflow`, `webgpu`, `native` (tfjs's
 *   `wasm` with native kernels), `native-cpu`, `wasm` or `cpu`) and traits
 * @throws when an explicitly named backend cannot be loaded, with the reason in one line
 */
export async function selectBackend(
  name: BackendName = "auto",
  { log = console.error }: SelectBackendOptions = {},
): Promise<Backend> {
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
      await activate("cpu");
      return describeBackend("cpu");
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
      return describeBackend(name);
    }
    case "native-cpu": {
      const libs = loadNativeLibraries();
      if (typeof libs === "string") throw new Error(`--backend native-cpu: ${libs}`);
      registerNativeCpuBackend();
      registerJsKernels("native-cpu");
      registerNativeKernels(["native-cpu"]);
      setNativeKernels(libs);
      await activate("native-cpu");
      return describeBackend(name);
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
      return describeBackend("webgpu", gpu);
    }
    case "tensorflow": {
      if (!(await loadTensorflow())) throw new Error(`--backend tensorflow: ${missingTf}`);
      await activate("tensorflow");
      return describeBackend("tensorflow");
    }
    case "auto": {
      if (await loadTensorflow()) {
        await activate("tensorflow");
        return describeBackend("tensorflow");
      }
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
