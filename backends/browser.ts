/**
 * Backend selection in a browser (the translation page, and its fine-tuning worker): WebGPU (with
 * our WGSL kernels), then WebGL, then WebAssembly, or the one asked for, returning the same
 * {@linkcode Backend} descriptor as `selectBackend` does in Deno, with the kernels of ours a
 * training step needs registered as Deno registers them (WebAssembly: the convolution gradients,
 * the norm, Adam and padding kernels; every backend: the backward pass that frees as it goes), so
 * that a step in the page computes what the same step computes in Deno. It leaves out what a page
 * cannot load (the native libraries, tfjs-node) and the toolkit's own WebGPU start-up, which works
 * around Deno's `navigator.gpu`: in a browser the package's start-up is the right one. It also
 * watches the device, so that a training loop can say in one line why it stopped
 * ({@linkcode browserDeviceFailure}).
 *
 * @example
 * ```ts ignore
 * import { selectBrowserBackend } from "./browser.ts";
 * const backend = await selectBrowserBackend({ wasmPaths: "/" });
 * console.log(`translating on ${backend.name}`);
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { type Backend, describeBackend } from "./backend.ts";
import { setFreeingBackprop } from "./backprop.ts";
import { registerJsKernels } from "./cpu/js_kernels.ts";
import { registerNormKernels } from "./cpu/norm_kernels.ts";
import { registerWasmTrainingKernels } from "./wasm/wasm_kernels.ts";
import { registerWebGpuConvKernels } from "./webgpu/conv.ts";
import { registerWebGpuKernels } from "./webgpu/kernels.ts";

/** The order a page tries backends in. */
export const BROWSER_BACKENDS = ["webgpu", "webgl", "wasm"] as const;

/** Options of {@linkcode selectBrowserBackend}. */
export interface BrowserBackendOptions {
  /** The one backend to use (e.g. from the page's menu); default: the first that starts. */
  readonly asked?: string;
  /** Where the page serves TensorFlow.js's `.wasm` files. */
  readonly wasmPaths: string;
  /** Where a line about the kernels chosen goes (default: nowhere). */
  readonly log?: (line: string) => void;
}

// What went wrong with the device, once something did (lost, out of memory).
let failure: string | undefined;

// The WebGPU device's events, as far as they are watched here.
interface WatchedDevice {
  readonly lost: Promise<{ reason?: string; message?: string }>;
  addEventListener(
    type: "uncapturederror",
    listener: (e: { error: { constructor: { name: string }; message: string } }) => void,
  ): void;
}

function watchDevice(name: string): void {
  failure = undefined;
  if (name !== "webgpu") return;
  const device = (tf.backend() as unknown as { device?: WatchedDevice }).device;
  device?.lost.then((info) => {
    if (info.reason === "destroyed") return; // disposed on purpose
    failure = `the WebGPU device was lost (${info.reason ?? "unknown"}): ${info.message ?? ""}`
      .trim();
  });
  device?.addEventListener("uncapturederror", (e) => {
    if (e.error.constructor.name === "GPUOutOfMemoryError") {
      failure ??= `the GPU ran out of memory (${e.error.message})`;
    }
  });
}

/**
 * Whether the active backend's device failed, and why: the WebGPU device lost or out of memory,
 * the WebGL context lost, or an error that says memory ran out.
 * @param error what a training step or read threw, if anything
 * @returns the reason in a few words, or undefined while the device is fine
 */
export function browserDeviceFailure(error?: unknown): string | undefined {
  if (failure) return failure;
  if (tf.getBackend() === "webgl") {
    const gl = (tf.backend() as unknown as { gpgpu?: { gl?: { isContextLost(): boolean } } })
      .gpgpu?.gl;
    if (gl?.isContextLost()) return "the WebGL context was lost";
  }
  const message = error instanceof Error ? error.message : error === undefined ? "" : `${error}`;
  if (
    /out of memory|failed to allocate|allocation failed/i.test(message)
  ) {
    return `out of memory (${message})`;
  }
  // Chromium's words when its GPU process went away under a WebGPU call.
  if (/device (is |was )?lost|instance reference no longer exists/i.test(message)) {
    return `the WebGPU device was lost (${message})`;
  }
  return undefined;
}

// The kernels of ours a training step uses, registered as Deno's `selectBackend` registers them.
function registerTrainingKernels(name: string, log: (line: string) => void): void {
  registerNormKernels();
  setFreeingBackprop(true);
  if (name === "wasm") {
    registerWasmTrainingKernels();
    registerJsKernels("wasm");
  }
  if (name === "webgpu") {
    registerWebGpuKernels();
    // Chromium's WebGPU without a GPU (SwiftShader) grew past 10 GB compiling our WGSL
    // convolutions before a first training step finished; TensorFlow.js's own run there.
    const info = (tf.backend() as unknown as { adapterInfo?: Record<string, string | undefined> })
      .adapterInfo;
    if (/swiftshader/i.test(`${info?.vendor} ${info?.architecture}`)) {
      registerWebGpuConvKernels(false);
      log("WebGPU on SwiftShader (no GPU): TensorFlow.js's convolutions, not ours");
    }
  }
}

/**
 * Starts the first backend of {@linkcode BROWSER_BACKENDS} (or the one asked for) that this
 * browser offers.
 * @param options the backend asked for, and where the `.wasm` files are
 * @returns its descriptor
 * @throws when none starts, naming those tried
 */
export async function selectBrowserBackend(
  { asked, wasmPaths, log = () => {} }: BrowserBackendOptions,
): Promise<Backend> {
  setWasmPaths(wasmPaths);
  const order = asked ? [asked] : [...BROWSER_BACKENDS];
  // WebGL compiles a shader per op and shape unless shapes are uniforms: thousands of programs
  // for a training step (minutes on a software renderer) become a few hundred.
  tf.env().set("WEBGL_USE_SHAPES_UNIFORMS", true);
  for (const name of order) {
    if (name === "webgpu" && !("gpu" in navigator)) continue;
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        registerTrainingKernels(name, log);
        watchDevice(name);
        return describeBackend(name);
      }
    } catch {
      // not offered here: the next one
    }
  }
  throw new Error(`none of ${order.join(", ")} starts in this browser`);
}
