/**
 * A pure function over tensors, compiled for WebGPU by recording and replay: its first calls run
 * eagerly while their GPU work is recorded (`trace.ts`); once two consecutive calls recorded the
 * same work, the work nothing reads is left out, its elementwise chains are fused (`fuse.ts`), its
 * independent programs merged (`merge.ts`), it is planned (`plan.ts`) and every later call replays
 * the plan (`replay.ts`). The results mean the same as the eager ones: that is what the recording
 * comparison guarantees, and the tests check values.
 *
 * The function's state is donated, as with `jax.jit(..., donate_argnums=0)`: a call may overwrite
 * the state tensors it was given, so the caller uses only the state a call returns.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { type FusedTrace, fuseOnDevice } from "./fuse.ts";
import { type MergedTrace, mergeOnDevice } from "./merge.ts";
import { webgpuSoftware } from "./start.ts";
import { type Planned, planTrace, withoutUnreadWork } from "./plan.ts";
import { buildReplay, releasePooledBuffers, type Replay, type ReplayProfile } from "./replay.ts";
import { type Trace, traceCall, traceDifference, webgpuInternals } from "./trace.ts";

/** The function a compiled call runs: state and inputs in, new state and outputs out. */
export type TensorFn = (
  state: tf.Tensor[],
  inputs: tf.Tensor[],
) => { state: tf.Tensor[]; outputs: tf.Tensor[] };

/** How a compiled call runs now. */
export type CallMode = "recording" | "replaying" | "eager";

/** A compiled call. */
export interface CompiledCall {
  /**
   * Calls the function (recorded, replayed or eager). The state tensors given are donated.
   * @param state the state
   * @param inputs the inputs
   * @returns the new state and the outputs: the caller disposes them, and reads the outputs
   *   before the next call (replayed, they are views of the plan's buffers)
   */
  call(state: tf.Tensor[], inputs: tf.Tensor[]): { state: tf.Tensor[]; outputs: tf.Tensor[] };
  /** How it runs now. */
  readonly mode: CallMode;
  /** Why it runs eagerly, when it does. */
  readonly reason: string | undefined;
  /** The replay, once planned. */
  readonly replay: Replay | undefined;
  /** Host milliseconds spent encoding the last replayed call. */
  readonly lastRecordMs: number | undefined;
  /**
   * Runs one call with GPU timestamps around each dispatch (replaying only).
   * @returns the call's results and its profile
   */
  profile(
    state: tf.Tensor[],
    inputs: tf.Tensor[],
  ): Promise<{ state: tf.Tensor[]; outputs: tf.Tensor[]; profile: ReplayProfile }>;
  /** Frees the plan. */
  dispose(): void;
}

/** Options of {@linkcode compileWebGpuCall}. */
export interface CompileOptions {
  /** Where the one-line notices go (falling back to eager, and why). */
  readonly log?: (line: string) => void;
  /** Recorded calls to compare before giving up (default 3). */
  readonly maxRecordings?: number;
  /** Whether chains of elementwise dispatches are fused before planning (default true). */
  readonly fuse?: boolean;
  /**
   * Whether independent programs of ours are merged before planning (`merge.ts`). By default on a
   * GPU, not on a software adapter (lavapipe, a page's SwiftShader): there the merged shaders'
   * compile (on the CPU) costs more than the dispatches they save there (a small step's first
   * replays took 13 s more on lavapipe, `BENCHMARKS.md`), and a merged shader runs slower there
   * than its parts alone (every workgroup pays for every part: `deno task bench:dispatch`).
   * `UGATIT_WEBGPU_MERGE=on` or `off` chooses, for comparisons.
   */
  readonly merge?: boolean;
}

// UGATIT_WEBGPU_MERGE=on|off, else whether the adapter is a GPU (a browser has no such switch).
function mergeByDefault(): boolean {
  let asked: string | undefined;
  try {
    asked = typeof Deno !== "undefined" ? Deno.env.get("UGATIT_WEBGPU_MERGE") : undefined;
  } catch {
    // no env permission: the adapter decides
  }
  if (asked === "on" || asked === "off") return asked === "on";
  return !webgpuSoftware();
}

/** A trace planned for a device, and what each stage did. */
export interface DevicePlan {
  /** The plan, or why not. */
  readonly planned: Planned;
  /** Dispatches left out because nothing reads their values. */
  readonly dropped: number;
  /** The fusion, when on. */
  readonly fused?: FusedTrace;
  /** The merge, when on. */
  readonly merged?: MergedTrace;
}

/**
 * Plans a recorded trace for a device: the work nothing reads left out, elementwise chains fused
 * (with `fuse`), independent programs merged (with `merge`).
 * @param trace the recorded call
 * @param device the device the plan runs on
 * @param options which stages run
 * @returns the plan and what each stage did
 */
export function planOnDevice(
  trace: Trace,
  device: GPUDevice,
  { fuse = true, merge }: { readonly fuse?: boolean; readonly merge: boolean },
): DevicePlan {
  const read = withoutUnreadWork(trace);
  const fused = fuse ? fuseOnDevice(read.trace, device) : undefined;
  const merged = merge ? mergeOnDevice(fused?.trace ?? read.trace, device) : undefined;
  const offsetAlignment = Number(device.limits.minStorageBufferOffsetAlignment ?? 256);
  const planned = planTrace(merged?.trace ?? fused?.trace ?? read.trace, { offsetAlignment });
  return { planned, dropped: read.dropped, fused, merged };
}

const shapesOf = (ts: readonly tf.Tensor[]) => ts.map((t) => `${t.dtype}[${t.shape}]`).join();

/**
 * Compiles `fn` for the active WebGPU backend.
 * @param fn a pure function of tensors (no reads to the host inside)
 * @param options notices, recordings
 * @returns the compiled call (eager, with the reason, when the backend is not WebGPU)
 */
export function compileWebGpuCall(fn: TensorFn, options: CompileOptions = {}): CompiledCall {
  const { log = console.error, maxRecordings = 3, fuse = true, merge = mergeByDefault() } = options;
  const backend = webgpuInternals();
  let mode: CallMode = backend ? "recording" : "eager";
  let reason: string | undefined = backend
    ? undefined
    : "the backend is not TensorFlow.js's webgpu";
  let previous: Trace | undefined;
  let recordings = 0;
  let replay: Replay | undefined;
  let signature = "";
  let lastRecordMs: number | undefined;
  const otherShapes = new Set<string>();

  const fallBack = (why: string) => {
    mode = "eager";
    reason = why;
    log(`compiled step: running eagerly: ${why}`);
  };

  const record = (state: tf.Tensor[], inputs: tf.Tensor[]) => {
    const traced = traceCall(backend!, fn, state, inputs);
    recordings++;
    const trace = traced.trace;
    if (!trace) {
      if (!traced.transient || recordings >= maxRecordings) fallBack(traced.unsupported);
      previous = undefined;
      return traced.result;
    }
    const difference = previous ? traceDifference(previous, trace) : "first recording";
    previous = trace;
    if (difference) {
      if (recordings >= maxRecordings) {
        fallBack(`the recorded work changes between calls: ${difference}`);
      }
      return traced.result;
    }
    const { planned } = planOnDevice(trace, backend!.device, { fuse, merge });
    if (!planned.plan) {
      fallBack(planned.unsupported);
      return traced.result;
    }
    const specs = {
      state: traced.result.state.map((t) => ({ shape: t.shape, dtype: t.dtype })),
      outputs: traced.result.outputs.map((t) => ({ shape: t.shape, dtype: t.dtype })),
    };
    // The eager path's pooled buffers go before the plan's are made: the two never add up.
    releasePooledBuffers(backend!);
    replay = buildReplay(backend!, planned.plan, specs);
    signature = shapesOf([...state, ...inputs]);
    mode = "replaying";
    previous = undefined;
    return traced.result;
  };

  return {
    get mode() {
      return mode;
    },
    get reason() {
      return reason;
    },
    get replay() {
      return replay;
    },
    get lastRecordMs() {
      return lastRecordMs;
    },
    call(state, inputs) {
      if (mode === "eager") return fn(state, inputs);
      if (mode === "recording") return record(state, inputs);
      const shapes = shapesOf([...state, ...inputs]);
      if (shapes !== signature) {
        // Another shape (a smaller last batch, another image size): this call runs eagerly, and
        // the first call of each such shape says so.
        if (!otherShapes.has(shapes)) {
          otherShapes.add(shapes);
          log("compiled step: a call with other tensor shapes than the plan's runs eagerly");
        }
        return fn(state, inputs);
      }
      lastRecordMs = replay!.run(state, inputs);
      return { state: replay!.state(), outputs: replay!.outputs() };
    },
    async profile(state, inputs) {
      if (mode !== "replaying" || shapesOf([...state, ...inputs]) !== signature) {
        throw new Error("compiled step: a profile needs a replaying call");
      }
      const profile = await replay!.profile(state, inputs);
      return { state: replay!.state(), outputs: replay!.outputs(), profile };
    },
    dispose() {
      replay?.dispose();
      replay = undefined;
    },
  };
}
