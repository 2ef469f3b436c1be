/**
 * Backend selection in a browser (the translation page): WebGPU (with our WGSL kernels), then
 * WebGL, then WebAssembly, or the one asked for, returning the same {@linkcode Backend}
 * descriptor as `selectBackend` does in Deno. It leaves out what a page cannot load (the native
 * libraries, tfjs-node) and the toolkit's own WebGPU start-up, which works around Deno's
 * `navigator.gpu`: in a browser the package's start-up is the right one.
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
import { registerWebGpuKernels } from "./webgpu/kernels.ts";

/** The order a page tries backends in. */
export const BROWSER_BACKENDS = ["webgpu", "webgl", "wasm"] as const;

/** Options of {@linkcode selectBrowserBackend}. */
export interface BrowserBackendOptions {
  /** The one backend to use (e.g. from the page's menu); default: the first that starts. */
  readonly asked?: string;
  /** Where the page serves TensorFlow.js's `.wasm` files. */
  readonly wasmPaths: string;
}

/**
 * Starts the first backend of {@linkcode BROWSER_BACKENDS} (or the one asked for) that this
 * browser offers.
 * @param options the backend asked for, and where the `.wasm` files are
 * @returns its descriptor
 * @throws when none starts, naming those tried
 */
export async function selectBrowserBackend(
  { asked, wasmPaths }: BrowserBackendOptions,
): Promise<Backend> {
  setWasmPaths(wasmPaths);
  const order = asked ? [asked] : [...BROWSER_BACKENDS];
  for (const name of order) {
    if (name === "webgpu" && !("gpu" in navigator)) continue;
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        if (name === "webgpu") registerWebGpuKernels();
        return describeBackend(name);
      }
    } catch {
      // not offered here: the next one
    }
  }
  throw new Error(`none of ${order.join(", ")} starts in this browser`);
}
