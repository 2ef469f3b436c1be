/**
 * A trace (`trace.ts`) turned into a plan: fixed buffers and the dispatches to replay on them.
 * Pure data and pure functions (no GPU here), so the planning is tested on its own.
 *
 * - **Unread work left out**: dispatches whose values nothing reads are not replayed
 *   ({@linkcode withoutUnreadWork}, applied before fusion, which it leaves fewer readers to block).
 * - **Constants**: host data uploaded during the call, tensors made before it, and everything
 *   computed from those alone are made once, when the plan is built, not on every call.
 * - **State in place**: each state tensor has one buffer. A new state value is written straight
 *   into it when the old value has no reader left by then (a parameter updated by its last
 *   user); otherwise it is computed elsewhere and copied in at the end of the call.
 * - **Slices as views**: a slice that is one contiguous range of its tensor, at an offset the
 *   device can bind, is no dispatch: its readers bind that range of the sliced tensor's buffer.
 * - **Work buffers by liveness**: every other value lives from its first write to its last use;
 *   values whose lives do not overlap share a buffer (best fit by size), so the plan holds about
 *   the call's peak of live values rather than all of them.
 *
 * @module
 */
import type { Trace, TracedDispatch } from "./trace.ts";

/** What a plan buffer holds. */
export type BufferRole = "state" | "input" | "constant" | "work";

/** A buffer of the plan. */
export interface PlanBuffer {
  /** Its size in bytes (a multiple of 4). */
  readonly bytes: number;
  /** What it holds. */
  readonly role: BufferRole;
}

/** A range of a plan buffer bound to a shader. */
export interface PlanBinding {
  /** The buffer's index in `Plan.buffers`. */
  readonly buffer: number;
  /** The byte offset. */
  readonly offset: number;
  /** The byte length. */
  readonly bytes: number;
}

/** A dispatch over plan buffers. */
export interface PlanDispatch {
  /** The kernel that issued it, for profiles. */
  readonly kernel: string;
  /** The compiled pipeline. */
  readonly pipeline: GPUComputePipeline;
  /** Workgroup counts. */
  readonly workgroups: readonly [number, number, number];
  /** Outputs first, then the inputs, in binding order. */
  readonly bindings: readonly PlanBinding[];
  /** The uniform block (constant for the plan's life). */
  readonly uniforms: Uint8Array<ArrayBuffer>;
}

/** A copy between plan buffers. */
export interface PlanCopy {
  /** From. */
  readonly from: PlanBinding;
  /** To. */
  readonly to: PlanBinding;
}

/** Fixed buffers and the work to do on them. */
export interface Plan {
  /** Every buffer. */
  readonly buffers: readonly PlanBuffer[];
  /** Host data written into constant buffers once. */
  readonly uploads: readonly { readonly to: PlanBinding; readonly data: Uint8Array<ArrayBuffer> }[];
  /** Tensors made before the call, copied into constant buffers once. */
  readonly externals: readonly { readonly to: PlanBinding; readonly from: GPUBuffer }[];
  /** Dispatches over constants alone, run once when the plan is built. */
  readonly setup: readonly PlanDispatch[];
  /** The dispatches of every call, in order. */
  readonly step: readonly PlanDispatch[];
  /** Copies at the end of every call, moving new state values into the state buffers. */
  readonly copies: readonly PlanCopy[];
  /** Where each state leaf lives (read at the start of a call, holding the new value after it). */
  readonly state: readonly PlanBinding[];
  /** Where each input leaf is written before a call. */
  readonly inputs: readonly PlanBinding[];
  /** Where each output leaf is after a call. */
  readonly outputs: readonly PlanBinding[];
  /** Bytes by role. */
  readonly bytes: Readonly<Record<BufferRole, number>>;
}

/** A plan, or why the trace cannot become one. */
export type Planned = { readonly plan: Plan; readonly unsupported?: undefined } | {
  readonly plan?: undefined;
  readonly unsupported: string;
};

/** Options of {@linkcode planTrace}. */
export interface PlanOptions {
  /** The device's `minStorageBufferOffsetAlignment` (bytes; default 256): where views may start. */
  readonly offsetAlignment?: number;
}

// Buffer sizes: whole 4-byte words, no more. TensorFlow.js reads a tensor made over a plan buffer
// (the state between calls) as the whole buffer, so a state buffer must be its tensor's size.
const align = (n: number, a = 4) => Math.ceil(n / a) * a;

/**
 * Where a slice starts in its tensor, when it is one contiguous range of it: every dimension
 * before some dimension k is sliced to size 1 and every one after k is whole.
 * @param start the slice's start
 * @param size its size
 * @param shape the sliced tensor's shape
 * @returns the element offset of the range, or undefined when it is not contiguous
 */
export function contiguousSliceOffset(
  start: readonly number[],
  size: readonly number[],
  shape: readonly number[],
): number | undefined {
  const rank = shape.length;
  if (start.length !== rank || size.length !== rank) return undefined;
  let k = 0;
  while (k < rank - 1 && size[k] === 1) k++;
  for (let i = k + 1; i < rank; i++) if (size[i] !== shape[i]) return undefined;
  let offset = 0;
  let stride = 1;
  for (let i = rank - 1; i >= 0; i--) {
    offset += start[i] * stride;
    stride *= shape[i];
  }
  return offset;
}

/**
 * The constants of a trace: values from the host or from before the call, and what dispatches
 * compute from them alone (a value written more than once is never constant). A plan makes them
 * once; fusion and merging leave their dispatches as they are.
 * @param trace the trace
 * @returns which values are constant, and which dispatches compute constants alone
 */
export function constantsOf(trace: Trace): { values: boolean[]; dispatches: boolean[] } {
  const writes = new Array<number>(trace.values.length).fill(0);
  for (const d of trace.dispatches) for (const v of d.outputs) writes[v]++;
  const values = trace.values.map((v) =>
    v.source.kind === "upload" || v.source.kind === "external"
  );
  const dispatches = trace.dispatches.map((d) => {
    const c = d.outputs.every((v) => writes[v] === 1) && d.inputs.every((v) => values[v]);
    if (c) d.outputs.forEach((v) => (values[v] = true));
    return c;
  });
  return { values, dispatches };
}

/**
 * A trace without the work nothing reads: the dispatches none of whose values a later kept
 * dispatch reads or the call returns (as state or output), found from the end. A training step
 * computes some (the attention heatmaps, which no loss reads); a plan leaves them out. The writers
 * of a value written more than once are kept.
 * @param trace the trace
 * @returns the trace without them, and how many dispatches went
 */
export function withoutUnreadWork(trace: Trace): { trace: Trace; dropped: number } {
  const writes = new Array<number>(trace.values.length).fill(0);
  for (const d of trace.dispatches) for (const v of d.outputs) writes[v]++;
  const read = new Set([...trace.stateOut, ...trace.outputs]);
  const kept: TracedDispatch[] = [];
  for (const d of trace.dispatches.toReversed()) {
    if (!d.outputs.some((v) => read.has(v) || writes[v] > 1)) continue;
    kept.push(d);
    for (const v of d.inputs) read.add(v);
  }
  const dropped = trace.dispatches.length - kept.length;
  return { trace: dropped ? { ...trace, dispatches: kept.reverse() } : trace, dropped };
}

/**
 * Plans a trace.
 * @param trace the recorded call
 * @param options the device's binding alignment
 * @returns the plan, or why not
 */
export function planTrace(trace: Trace, { offsetAlignment = 256 }: PlanOptions = {}): Planned {
  const { values, dispatches } = trace;
  const n = dispatches.length;
  const END = n; // "after the last dispatch": values the caller reads

  const writes = new Array<number>(values.length).fill(0);
  for (const d of dispatches) for (const v of d.outputs) writes[v]++;
  for (const [i, v] of values.entries()) {
    if (v.source.kind !== "dispatch" && writes[i] > 0) {
      return { unsupported: `a dispatch writes into a ${v.source.kind} tensor` };
    }
  }

  // Constants: made once, when the plan is built.
  const constants = constantsOf(trace);
  const constant = constants.values;
  const setupIndex = new Set(dispatches.keys().filter((i) => constants.dispatches[i]));

  // Slices that are contiguous ranges at a bindable offset become views of their source.
  const viewOf = new Map<number, { source: number; offset: number }>();
  const viewIndex = new Set<number>();
  for (const [i, d] of dispatches.entries()) {
    if (!d.slice || setupIndex.has(i) || writes[d.outputs[0]] !== 1) continue;
    const source = d.inputs[0];
    if (writes[source] > 1) continue;
    const at = contiguousSliceOffset(d.slice.start, d.slice.size, d.slice.shape);
    if (at === undefined || (4 * at) % offsetAlignment !== 0) continue;
    viewOf.set(d.outputs[0], { source, offset: 4 * at });
    viewIndex.add(i);
  }
  const rootOf = (v: number): number => {
    const view = viewOf.get(v);
    return view ? rootOf(view.source) : v;
  };

  // Accesses by the dispatches replayed on every call (a view's count as its source's); the
  // caller's reads count as the end.
  const first = new Array<number>(values.length).fill(Infinity);
  const last = new Array<number>(values.length).fill(-1);
  const touch = (value: number, at: number) => {
    const v = rootOf(value);
    first[v] = Math.min(first[v], at);
    last[v] = Math.max(last[v], at);
  };
  for (const [i, d] of dispatches.entries()) {
    if (setupIndex.has(i) || viewIndex.has(i)) continue;
    for (const v of [...d.outputs, ...d.inputs]) touch(v, i);
  }
  for (const v of [...trace.stateOut, ...trace.outputs]) touch(v, END);

  const buffers: PlanBuffer[] = [];
  const where = new Map<number, PlanBinding>();
  const newBuffer = (bytes: number, role: BufferRole) => {
    buffers.push({ bytes: align(Math.max(bytes, 4)), role });
    return buffers.length - 1;
  };
  const whole = (buffer: number, bytes: number): PlanBinding => ({ buffer, offset: 0, bytes });

  trace.stateIn.forEach((v) =>
    where.set(v, whole(newBuffer(values[v].bytes, "state"), values[v].bytes))
  );
  trace.inputs.forEach((v) =>
    where.set(v, whole(newBuffer(values[v].bytes, "input"), values[v].bytes))
  );
  const uploads: { to: PlanBinding; data: Uint8Array<ArrayBuffer> }[] = [];
  const externals: { to: PlanBinding; from: GPUBuffer }[] = [];
  for (const [v, info] of values.entries()) {
    if (!constant[v]) continue;
    const at = whole(newBuffer(info.bytes, "constant"), info.bytes);
    where.set(v, at);
    if (info.source.kind === "upload") uploads.push({ to: at, data: info.source.data });
    if (info.source.kind === "external") externals.push({ to: at, from: info.source.buffer });
  }

  // A new state value goes straight into its state buffer when the old value's last reader comes
  // before the dispatch that writes the new one; otherwise it is copied in at the end.
  const copies: PlanCopy[] = [];
  const aliased = new Set<number>();
  const copyFrom: { slot: number; value: number }[] = [];
  trace.stateOut.forEach((out, slot) => {
    const old = trace.stateIn[slot];
    if (out === old) return;
    const v = values[out];
    const direct = v.source.kind === "dispatch" && !constant[out] && writes[out] === 1 &&
      !viewOf.has(out) &&
      !aliased.has(out) && !trace.stateIn.includes(out) && first[out] > last[old];
    if (direct) {
      where.set(out, where.get(old)!);
      aliased.add(out);
    } else copyFrom.push({ slot, value: out });
  });

  // Work buffers: best fit among the free ones, freed after a value's last access.
  const free: number[] = [];
  const take = (bytes: number) => {
    const need = align(Math.max(bytes, 4));
    let best = -1;
    for (const [i, b] of free.entries()) {
      const size = buffers[b].bytes;
      if (size >= need && size <= 2 * need && (best < 0 || size < buffers[free[best]].bytes)) {
        best = i;
      }
    }
    return best >= 0 ? free.splice(best, 1)[0] : newBuffer(need, "work");
  };
  const endsAt = new Map<number, number[]>();
  for (const [v] of values.entries()) {
    if (where.has(v) || viewOf.has(v) || last[v] < 0) continue;
    endsAt.set(last[v], [...(endsAt.get(last[v]) ?? []), v]);
  }
  const bindingOf = (v: number): PlanBinding | undefined => {
    const view = viewOf.get(v);
    if (!view) return where.get(v);
    const source = bindingOf(view.source);
    return source &&
      { buffer: source.buffer, offset: source.offset + view.offset, bytes: values[v].bytes };
  };
  const step: PlanDispatch[] = [];
  const setup: PlanDispatch[] = [];
  const bind = (d: TracedDispatch): PlanDispatch => ({
    kernel: d.kernel,
    pipeline: d.pipeline,
    workgroups: d.workgroups,
    uniforms: d.uniforms,
    bindings: [...d.outputs, ...d.inputs].map((v) => bindingOf(v)!),
  });
  for (const [i, d] of dispatches.entries()) {
    if (setupIndex.has(i)) {
      setup.push(bind(d));
      continue;
    }
    if (viewIndex.has(i)) continue;
    // Every output has its buffer before any buffer this dispatch reads last is freed: a
    // dispatch never writes a buffer it reads.
    for (const v of d.outputs) {
      if (!where.has(v)) where.set(v, whole(take(values[v].bytes), values[v].bytes));
    }
    for (const v of d.inputs) {
      if (!bindingOf(v)) {
        return { unsupported: `dispatch ${i} (${d.kernel}) reads a value never written` };
      }
    }
    step.push(bind(d));
    for (const v of endsAt.get(i) ?? []) if (where.has(v)) free.push(where.get(v)!.buffer);
  }
  for (const v of [...trace.stateOut, ...trace.outputs]) {
    if (!bindingOf(v)) return { unsupported: "a result is a value the call never wrote" };
  }
  for (const { slot, value } of copyFrom) {
    const from = bindingOf(value)!;
    const to = where.get(trace.stateIn[slot])!;
    // A copy must not read a state buffer an earlier copy has already overwritten.
    if (buffers[from.buffer].role === "state") {
      return { unsupported: "a state tensor becomes another state tensor (a permutation)" };
    }
    copies.push({ from, to });
  }

  const bytes = { state: 0, input: 0, constant: 0, work: 0 };
  for (const b of buffers) bytes[b.role] += b.bytes;
  return {
    plan: {
      buffers,
      uploads,
      externals,
      setup,
      step,
      copies,
      state: trace.stateIn.map((v) => where.get(v)!),
      inputs: trace.inputs.map((v) => where.get(v)!),
      outputs: trace.outputs.map((v) => bindingOf(v)!),
      bytes,
    },
  };
}
