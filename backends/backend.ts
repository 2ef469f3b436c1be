/**
 * What a selected backend is, for everyone who runs on one (the training runner, the commands,
 * the benchmarks, the browser page): a descriptor with the backend's name and the traits callers
 * act on, so that none of them re-decides from a name. It imports nothing that a browser bundle
 * cannot hold.
 *
 * @example
 * ```ts
 * import { describeBackend } from "./backend.ts";
 * const gpu = describeBackend("webgpu");
 * console.log(gpu.engine, gpu.readLag, gpu.replays); // "webgpu" 1 true
 * ```
 *
 * @module
 */
import type { WebGpuStart } from "./webgpu/start.ts";

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
/** A backend name `--backend` accepts. */
export type BackendName = typeof BACKENDS[number];

/** An active backend and the traits its callers act on. */
export interface Backend {
  /**
   * Its name: `tensorflow`, `webgpu`, `native`, `native-cpu`, `wasm` or `cpu` (in a browser also
   * `webgl`).
   */
  readonly name: string;
  /** The TensorFlow.js backend underneath (`wasm` for `native`). */
  readonly engine: string;
  /**
   * How many iterations late a training loop may read its loss terms back: 1 where tensors live on
   * a device that runs asynchronously (webgpu, webgl), so that the next iteration is queued while
   * the device finishes the last; 0 where reads cost nothing to wait for.
   */
  readonly readLag: number;
  /**
   * Whether training steps run compiled: recorded once and replayed (`compile.ts`; webgpu, unless
   * `UGATIT_WEBGPU_REPLAY=off` asks for the eager path, for comparisons).
   */
  readonly replays: boolean;
  /** The GPU it runs on, where the toolkit started WebGPU itself. */
  readonly gpu?: WebGpuStart;
}

// UGATIT_WEBGPU_REPLAY=off: the eager path on webgpu (a browser has no such switch).
function replayTurnedOff(): boolean {
  try {
    return typeof Deno !== "undefined" && Deno.env.get("UGATIT_WEBGPU_REPLAY") === "off";
  } catch {
    return false; // no env permission: replay stays on
  }
}

// The TensorFlow.js backend under each of ours.
const ENGINES: Record<string, string> = { native: "wasm" };
const ON_A_DEVICE = new Set(["webgpu", "webgl"]);

/**
 * The descriptor of a backend by name.
 * @param name e.g. `webgpu`, `native`
 * @param gpu what the toolkit's WebGPU start-up says about the device, if it started one
 * @returns the descriptor
 */
export function describeBackend(name: string, gpu?: WebGpuStart): Backend {
  return {
    name,
    engine: ENGINES[name] ?? name,
    readLag: ON_A_DEVICE.has(name) ? 1 : 0,
    replays: name === "webgpu" && !replayTurnedOff(),
    ...(gpu ? { gpu } : {}),
  };
}
