/**
 * `compile(fn)`: a pure function of tensor trees, `(state, inputs) -> { state, outputs }`, made to
 * run fast on the active backend with the same meaning, in the manner of `jax.jit`. On webgpu its
 * GPU work is recorded on the first calls and replayed from then on (`webgpu/compiled_call.ts`:
 * no JavaScript per kernel, one submit per call); on every other backend, and where replay is
 * turned off, it is `fn` itself. A call that cannot be replayed (another shape, work that changes
 * from call to call) runs eagerly, and the first time that happens it says why, in one line.
 *
 * The state is donated (as with `donate_argnums`): a call may overwrite the state it was given, so
 * the caller uses only the state a call returns, and disposes the old one as usual.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { compile } from "./compile.ts";
 * const step = compile((s: { w: tf.Tensor }, x: { g: tf.Tensor }) => ({
 *   state: { w: tf.sub(s.w, tf.mul(x.g, 0.1)) },
 *   outputs: { norm: tf.norm(x.g) },
 * }));
 * const { state, outputs } = step.call({ w: tf.ones([3]) }, { g: tf.ones([3]) });
 * console.log(step.mode, state.w.dataSync()); // "eager" on the CPU; 0.9 everywhere
 * ```
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { flatten, leaves, type TreeLike, withLeaves } from "../tree/tree.ts";
import { type CallMode, compileWebGpuCall, type TensorFn } from "./webgpu/compiled_call.ts";
import type { ReplayProfile } from "./webgpu/replay.ts";

export type { CallMode } from "./webgpu/compiled_call.ts";
export type { ReplayProfile } from "./webgpu/replay.ts";

/** What a replayed call costs. */
export interface CompiledStats {
  /** GPU dispatches per call. */
  readonly dispatches: number;
  /** Host milliseconds from the call's start to its submit, the last replayed call. */
  readonly recordMs: number | undefined;
  /** Bytes of GPU memory the plan holds, by role and in all. */
  readonly bytes: Readonly<Record<string, number>>;
}

/** A compiled function. */
export interface Compiled<S extends TreeLike, I extends TreeLike, O extends TreeLike> {
  /**
   * Calls the function: eagerly, while recording, or replayed.
   * @param state the state (donated)
   * @param inputs the inputs
   * @returns the new state and the outputs; the caller disposes them as usual, and reads the
   *   outputs before the next call (replayed, they are views of the plan's buffers)
   */
  call(state: S, inputs: I): { state: S; outputs: O };
  /** How calls run now: `eager`, `recording` or `replaying`. */
  readonly mode: CallMode;
  /** Why calls run eagerly, where they do. */
  readonly reason: string | undefined;
  /**
   * What a replayed call costs.
   * @returns the figures, once calls replay
   */
  stats(): CompiledStats | undefined;
  /**
   * Runs one replayed call with a GPU timestamp around each dispatch.
   * @param state the state (donated)
   * @param inputs the inputs
   * @returns the call's results and its profile
   * @throws when calls do not replay (yet)
   */
  profile(
    state: S,
    inputs: I,
  ): Promise<{ state: S; outputs: O; profile: ReplayProfile }>;
  /** Frees what replay holds on the device. */
  dispose(): void;
}

/** Options of {@linkcode compile}. */
export interface CompileOptions {
  /** Where the one-line notices go (default `console.error`). */
  readonly log?: (line: string) => void;
  /** Whether to record and replay where the backend can (default true); false: always eager. */
  readonly replay?: boolean;
}

/**
 * A function of tensor trees as a function of their leaves, for trees of the structure of `state`
 * and `inputs`: the new state's leaves come in the order of the old state's paths (the function
 * may build its records in another key order), so that leaf k of the state is leaf k across calls.
 * @param fn `(state, inputs) -> { state, outputs }` over trees
 * @param state a state of the structure the leaves fill
 * @param inputs inputs of the structure the leaves fill
 * @param onOutputs given each call's output tree
 * @returns the function over leaves
 */
export function overLeaves<S extends TreeLike, I extends TreeLike, O extends TreeLike>(
  fn: (state: S, inputs: I) => { state: S; outputs: O },
  state: S,
  inputs: I,
  onOutputs?: (outputs: O) => void,
): TensorFn {
  const paths = Object.keys(flatten(state));
  return (s, i) => {
    const out = fn(withLeaves(state, s), withLeaves(inputs, i));
    onOutputs?.(out.outputs);
    const byPath = flatten(out.state);
    const missing = paths.find((p) => !byPath[p]);
    if (missing || paths.length !== Object.keys(byPath).length) {
      throw new Error(
        `compile: the new state's tree differs from the old one's (${missing ?? ""})`,
      );
    }
    return { state: paths.map((p) => byPath[p]), outputs: leaves(out.outputs) };
  };
}

/**
 * Compiles a pure function of tensor trees for the active backend.
 * @param fn `(state, inputs) -> { state, outputs }`: tensors in and out, the new state of the old
 *   one's structure; no reads to the host inside
 * @param options notices; whether to replay
 * @returns the compiled function
 */
export function compile<S extends TreeLike, I extends TreeLike, O extends TreeLike>(
  fn: (state: S, inputs: I) => { state: S; outputs: O },
  { log = console.error, replay = true }: CompileOptions = {},
): Compiled<S, I, O> {
  // The trees' structures, kept from the calls: the leaves go through the compiled call as lists.
  let stateTree: S | undefined;
  let inputTree: I | undefined;
  let outputTree: O | undefined;
  const flat: TensorFn = (state, inputs) =>
    overLeaves(fn, stateTree!, inputTree!, (outputs) => (outputTree = outputs))(state, inputs);
  const call = replay ? compileWebGpuCall(flat, { log }) : undefined;
  const trees = (r: { state: tf.Tensor[]; outputs: tf.Tensor[] }) => ({
    state: withLeaves(stateTree!, r.state),
    outputs: withLeaves(outputTree!, r.outputs),
  });
  return {
    call(state, inputs) {
      if (!call || call.mode === "eager") return fn(state, inputs);
      [stateTree, inputTree] = [state, inputs];
      return trees(call.call(leaves(state), leaves(inputs)));
    },
    get mode() {
      return call?.mode ?? "eager";
    },
    get reason() {
      return call ? call.reason : "replay is turned off";
    },
    stats() {
      const r = call?.replay;
      return r && { dispatches: r.dispatches, recordMs: call!.lastRecordMs, bytes: r.bytes };
    },
    async profile(state, inputs) {
      if (!call) throw new Error("compile: replay is turned off");
      [stateTree, inputTree] = [state, inputs];
      const r = await call.profile(leaves(state), leaves(inputs));
      return { ...trees(r), profile: r.profile };
    },
    dispose() {
      call?.dispose();
    },
  };
}
