/**
 * Records what TensorFlow.js's WebGPU backend sends to the GPU while a function runs: every
 * dispatch (pipeline, output and input tensors, uniform bytes, workgroup counts) and every upload
 * of host data. Tensors are followed by their data ids (the backend's logical values), not by the
 * buffers its pool happened to lend them, so that a plan can assign buffers of its own
 * (`plan.ts`) and replay the work (`replay.ts`).
 *
 * The recording hooks a few methods of TensorFlow.js 4.22's `WebGPUBackend` for the duration of
 * the call (`recordAndSubmit`, `makeUniforms`, `uploadToGPU`, and the buffer copies it does
 * outside programs), and every kernel function registered for `webgpu` (to name each dispatch by
 * the kernel that made it, for profiles). The call itself runs as usual: its results are the
 * eager results.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** A tensor's data id in the backend. */
type DataId = object;

interface TensorData {
  values?: ArrayLike<number> | null;
  resource?: unknown;
  dtype: string;
  shape: number[];
}

interface Program {
  pipeline?: GPUComputePipeline | Promise<GPUComputePipeline>;
  start?: number | number[];
  outputShape?: number[];
  dispatch: [number, number, number];
  shaderKey: string;
  pixelsOpType?: unknown;
  [OWN_WGSL]?: OwnWgsl;
}

/** The parts of TensorFlow.js 4.22's `WebGPUBackend` that recording and replay use. */
export interface WebGpuBackendInternals {
  readonly device: GPUDevice;
  readonly queue: GPUQueue;
  readonly tensorMap: { get(id: DataId): TensorData | undefined };
  commandEncoder: GPUCommandEncoder | null;
  uploadToGPU(id: DataId): void;
  recordAndSubmit(
    program: Program,
    output: tf.TensorInfo,
    inputs: tf.TensorInfo[],
    uniforms?: unknown,
  ): void;
  makeUniforms(uniforms: unknown): GPUBufferBinding;
  copyBuffer(buffer: GPUBuffer): GPUBuffer;
  readToGPU(id: DataId): unknown;
  submitQueue(): void;
  endComputePassEncoder(): void;
  createTensorFromGPUData(
    data: { buffer: GPUBuffer; zeroCopy?: boolean },
    shape: number[],
    dtype: tf.DataType,
  ): tf.Tensor;
  readonly bufferManager: {
    freeBuffers: Map<string, GPUBuffer[]>;
    numFreeBuffers: number;
    numBytesAllocated: number;
  };
}

/** Where a traced value comes from. */
export type ValueSource =
  | { readonly kind: "state"; readonly index: number }
  | { readonly kind: "input"; readonly index: number }
  | { readonly kind: "upload"; readonly data: Uint8Array<ArrayBuffer> }
  | { readonly kind: "external"; readonly buffer: GPUBuffer }
  | { readonly kind: "dispatch" };

/** A logical value of the trace: one tensor's data. */
export interface TracedValue {
  /** Its size in bytes (as the backend allocates it). */
  readonly bytes: number;
  /** Its shape when first seen. */
  readonly shape: readonly number[];
  /** Its dtype. */
  readonly dtype: string;
  /** Where it comes from. */
  readonly source: ValueSource;
}

/** One compute dispatch. */
export interface TracedDispatch {
  /** The TensorFlow.js kernel that issued it (e.g. `Conv2D`, `UgatitAdamUpdate`). */
  readonly kernel: string;
  /** The program's shader key. */
  readonly shader: string;
  /** The compiled pipeline. */
  readonly pipeline: GPUComputePipeline;
  /** Workgroup counts. */
  readonly workgroups: readonly [number, number, number];
  /**
   * The values written (bindings 0..k-1): one, but for a dispatch that merges independent ones
   * (`merge.ts`).
   */
  readonly outputs: readonly number[];
  /** The values read (bindings k..), in binding order. */
  readonly inputs: readonly number[];
  /** The uniform block's bytes (the last binding). */
  readonly uniforms: Uint8Array<ArrayBuffer>;
  /**
   * For a float32 program of ours: its WGSL (a plan may fold a chain into it, `fuse.ts`, or merge
   * it with others, `merge.ts`).
   */
  readonly program?: OwnWgsl;
  /** For a dispatch that merges others (`merge.ts`): their kernels, by output. */
  readonly parts?: readonly string[];
  /** For an elementwise kernel's one dispatch: what it computes (a plan may fuse it, `fuse.ts`). */
  readonly elementwise?: Elementwise;
  /**
   * For a slice: its start, its size and the sliced tensor's shape (a plan may make it a view). A
   * reduction that copies (over axes of size 1) is a slice of all of its input.
   */
  readonly slice?: {
    readonly start: readonly number[];
    readonly size: readonly number[];
    readonly shape: readonly number[];
  };
}

/**
 * The arithmetic of a dispatch that computes each output element from the elements of its inputs
 * at the same place (broadcast by TensorFlow.js's rules): one of {@linkcode ELEMENTWISE_KERNELS}.
 */
export interface Elementwise {
  /** The kernel's name (`Add`, `Relu`, ...). */
  readonly op: string;
  /** Its numeric attributes (`alpha`, `clipValueMin`, ...). */
  readonly attrs: Readonly<Record<string, number>>;
  /** The inputs' shapes, in the dispatch's binding order. */
  readonly inputShapes: readonly (readonly number[])[];
  /** The output's shape. */
  readonly outputShape: readonly number[];
}

/**
 * A program of ours (`kernels.ts`) with one thread per work item, as it describes itself: its WGSL
 * body over `index` (i32, below `uniforms.threads`), the inputs it reads by name (in binding
 * order), its uniforms' values (f32 where named in `floats`, else i32) and the functions it calls
 * (which may read the uniforms too). `fuse.ts` folds an elementwise chain into it where it reads an input
 * only at `index`, and folds it into the chain that reads it where it is `perElement`: one thread
 * per output element whose last statement, `result[index] = ...;`, is its one write. Unlike an
 * {@linkcode ELEMENTWISE_KERNELS} dispatch, it may read its inputs anywhere (a gather).
 */
export interface OwnWgsl {
  /** The inputs' names, in binding order. */
  readonly inputs: readonly string[];
  /** Uniform values by name (`threads` among them). */
  readonly uniforms: Readonly<Record<string, number>>;
  /** The uniforms that are f32. */
  readonly floats: readonly string[];
  /** Functions the body calls. */
  readonly prelude: string;
  /** The body. */
  readonly body: string;
  /** One thread per output element, ending in its one write. */
  readonly perElement: boolean;
}

/** The program property that carries an {@linkcode OwnWgsl}. */
export const OWN_WGSL = "ugatitWgsl";

/**
 * The float32 kernels whose one dispatch is elementwise, and that `fuse.ts` knows the arithmetic
 * of (TensorFlow.js 4.22's WGSL for each, or ours).
 */
export const ELEMENTWISE_KERNELS: ReadonlySet<string> = new Set([
  "Add",
  "AddN",
  "Sub",
  "Multiply",
  "RealDiv",
  "Neg",
  "Abs",
  "Square",
  "Exp",
  "Log1p",
  "Tanh",
  "Relu",
  "LeakyRelu",
  "Step",
  "ClipByValue",
  "UgatitActivationGrad",
]);

// Reductions whose every reduced axis may have size 1, when they copy their input.
const REDUCTIONS: ReadonlySet<string> = new Set(["Sum", "Mean", "Max", "Min", "Prod"]);

/** Everything a call sent to the GPU, over logical values. */
export interface Trace {
  /** The values, numbered in order of first appearance. */
  readonly values: readonly TracedValue[];
  /** The dispatches, in order. */
  readonly dispatches: readonly TracedDispatch[];
  /** The state leaves' values on entry. */
  readonly stateIn: readonly number[];
  /** The input leaves' values. */
  readonly inputs: readonly number[];
  /** The state leaves' values on return (same count and order as `stateIn`). */
  readonly stateOut: readonly number[];
  /** The output leaves' values. */
  readonly outputs: readonly number[];
}

/**
 * A call's results and its trace, or why it cannot be traced (`transient`: because of these
 * arguments, e.g. two state leaves sharing their data, as a moving average begun as a copy does;
 * a later call may be traced).
 */
export type Traced<R> =
  | { readonly result: R; readonly trace: Trace; readonly unsupported?: undefined }
  | {
    readonly result: R;
    readonly trace?: undefined;
    readonly unsupported: string;
    readonly transient?: boolean;
  };

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 4 };

/**
 * The active backend's internals, when it is TensorFlow.js's WebGPU backend.
 * @returns the backend, or undefined on any other backend
 */
export function webgpuInternals(): WebGpuBackendInternals | undefined {
  if (tf.getBackend() !== "webgpu") return undefined;
  const b = tf.backend() as unknown as Partial<WebGpuBackendInternals>;
  const needed = [
    "recordAndSubmit",
    "makeUniforms",
    "uploadToGPU",
    "submitQueue",
    "createTensorFromGPUData",
  ] as const;
  return needed.every((m) => typeof b[m] === "function") && b.device && b.tensorMap
    ? b as WebGpuBackendInternals
    : undefined;
}

function hostBytes(values: ArrayLike<number>, dtype: string): Uint8Array<ArrayBuffer> {
  const typed = dtype === "float32"
    ? Float32Array.from(values as ArrayLike<number>)
    : Int32Array.from(values as ArrayLike<number>, Number);
  return new Uint8Array(typed.buffer);
}

/**
 * Runs `fn` on `state` and `inputs` (tensors), recording the GPU work it issues.
 * @param backend the WebGPU backend
 * @param fn the call: tensors in, `{ state, outputs }` tensors out (state in the same order)
 * @param state the state leaves
 * @param inputs the input leaves
 * @param options `execute: false` records without running anything on the GPU (the results are
 *   then meaningless, the trace is the same but for uniform bytes): to plan a call too large to run
 * @returns the call's results and its trace, or why it could not be traced (the results stand)
 */
export function traceCall(
  backend: WebGpuBackendInternals,
  fn: (state: tf.Tensor[], inputs: tf.Tensor[]) => { state: tf.Tensor[]; outputs: tf.Tensor[] },
  state: tf.Tensor[],
  inputs: tf.Tensor[],
  { execute = true }: { execute?: boolean } = {},
): Traced<{ state: tf.Tensor[]; outputs: tf.Tensor[] }> {
  const values: TracedValue[] = [];
  const ids = new Map<DataId, number>();
  const dispatches: TracedDispatch[] = [];
  let unsupported: string | undefined;
  let transient: string | undefined;
  const kernelStack: string[] = [];

  const info = (id: DataId) => backend.tensorMap.get(id);
  const define = (id: DataId, source: ValueSource, shape?: readonly number[]) => {
    const d = info(id);
    const s = shape ?? d?.shape ?? [];
    const dtype = d?.dtype ?? "float32";
    const bytes = (BYTES[dtype] ?? 4) * s.reduce((a, b) => a * b, 1);
    values.push({ bytes, shape: [...s], dtype, source });
    ids.set(id, values.length - 1);
    return values.length - 1;
  };
  // A value read before anything in the call defined it: made before the call.
  const valueOf = (id: DataId) => {
    const known = ids.get(id);
    if (known !== undefined) return known;
    const d = info(id);
    if (d?.resource instanceof GPUBuffer) {
      return define(id, { kind: "external", buffer: d.resource });
    }
    unsupported ??= "a tensor without GPU data was read";
    return define(id, { kind: "external", buffer: undefined as unknown as GPUBuffer });
  };

  // Everything the call starts from is on the GPU first, so that no kernel of the call takes its
  // small-tensor CPU path on a value that changes between calls.
  for (const t of [...state, ...inputs]) backend.uploadToGPU(t.dataId);
  state.forEach((t, index) => {
    if (ids.has(t.dataId)) transient ??= `state tensor ${index} shares its data with another`;
    else define(t.dataId, { kind: "state", index }, t.shape);
  });
  inputs.forEach((t, index) => {
    if (ids.has(t.dataId)) transient ??= `input ${index} shares its data with another tensor`;
    else define(t.dataId, { kind: "input", index }, t.shape);
  });

  const saved = {
    recordAndSubmit: backend.recordAndSubmit,
    makeUniforms: backend.makeUniforms,
    uploadToGPU: backend.uploadToGPU,
    copyBuffer: backend.copyBuffer,
    readToGPU: backend.readToGPU,
  };
  const ownBefore = Object.keys(saved).filter((k) => Object.hasOwn(backend, k));
  let lastUniforms: Uint8Array<ArrayBuffer> | undefined;
  backend.uploadToGPU = function (id) {
    const d = info(id);
    if (d && d.resource == null && d.values && !ids.has(id)) {
      define(id, { kind: "upload", data: hostBytes(d.values, d.dtype) });
    }
    return saved.uploadToGPU.call(this, id);
  };
  backend.makeUniforms = function (uniforms) {
    const queue = this.queue;
    const write = queue.writeBuffer;
    queue.writeBuffer = ((buffer, offset, data, dataOffset = 0, size) => {
      const src = ArrayBuffer.isView(data)
        ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : new Uint8Array(data as ArrayBuffer);
      lastUniforms = src.slice(dataOffset, size === undefined ? undefined : dataOffset + size);
      return write.call(queue, buffer, offset, data as BufferSource, dataOffset, size);
    }) as GPUQueue["writeBuffer"];
    try {
      return saved.makeUniforms.call(this, uniforms);
    } finally {
      queue.writeBuffer = write;
    }
  };
  backend.recordAndSubmit = function (program, output, inputTensors, uniforms) {
    lastUniforms = undefined;
    const inputIds = inputTensors.map((t) => valueOf(t.dataId));
    // A program writing into an existing tensor redefines it; a fresh output is a new value.
    const out = ids.get(output.dataId) ?? define(output.dataId, { kind: "dispatch" });
    if (execute) saved.recordAndSubmit.call(this, program, output, inputTensors, uniforms);
    if (program.pixelsOpType != null) unsupported ??= "a program reads or draws pixels";
    if (!(program.pipeline instanceof GPUComputePipeline)) {
      unsupported ??= "a pipeline was not compiled synchronously";
    }
    const own = program[OWN_WGSL];
    const float = output.dtype === "float32" && inputTensors.every((t) => t.dtype === "float32");
    const isSlice = /^slice_/.test(program.shaderKey) && program.start !== undefined &&
      inputTensors.length === 1;
    const kernel = kernelStack[kernelStack.length - 1] ?? "?";
    // A reduction over axes of size 1 (as a broadcast's gradient takes) copies its input. (Its
    // kernel may transpose first: only the reducing program is a copy.)
    const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
    const isCopy = REDUCTIONS.has(kernel) && /^reduce_/.test(program.shaderKey) &&
      inputTensors.length === 1 &&
      inputTensors[0].dtype === output.dtype &&
      count(inputTensors[0].shape) === count(output.shape);
    dispatches.push({
      kernel,
      shader: program.shaderKey,
      pipeline: program.pipeline as GPUComputePipeline,
      workgroups: [...program.dispatch],
      outputs: [out],
      inputs: inputIds,
      uniforms: lastUniforms ?? new Uint8Array(),
      ...(own && float ? { program: own } : {}),
      ...(isSlice
        ? {
          slice: {
            start: [program.start!].flat(),
            size: [...output.shape],
            shape: [...inputTensors[0].shape],
          },
        }
        : isCopy
        ? { slice: { start: [0], size: [count(output.shape)], shape: [count(output.shape)] } }
        : {}),
    });
  };
  backend.copyBuffer = function (buffer) {
    unsupported ??= "a kernel copied a buffer outside a program";
    return saved.copyBuffer.call(this, buffer);
  };
  backend.readToGPU = function (id) {
    unsupported ??= "a kernel read a tensor into a new buffer";
    return saved.readToGPU.call(this, id);
  };
  // Each kernel function is wrapped to name the dispatches it issues.
  const kernels = tf.getKernelsForBackend("webgpu");
  const kernelFuncs = kernels.map((k) => k.kernelFunc);
  kernels.forEach((k, i) => {
    const f = kernelFuncs[i];
    const elementwise = ELEMENTWISE_KERNELS.has(k.kernelName);
    (k as { kernelFunc: tf.KernelFunc }).kernelFunc = (args) => {
      kernelStack.push(k.kernelName);
      const before = dispatches.length;
      try {
        const out = f(args);
        if (elementwise) noteElementwise(k.kernelName, args, out, before);
        return out;
      } finally {
        kernelStack.pop();
      }
    };
  });
  // An elementwise kernel's dispatch is marked with its arithmetic when it is the kernel's only
  // one, reads the kernel's inputs in order and writes its result, all float32 (a kernel that
  // took another route, e.g. a CPU one for small tensors, stays unmarked).
  const noteElementwise = (
    op: string,
    args: Parameters<tf.KernelFunc>[0],
    out: tf.TensorInfo | tf.TensorInfo[],
    before: number,
  ) => {
    if (Array.isArray(out) || dispatches.length !== before + 1) return;
    const d = dispatches[before];
    const ins = Object.values(args.inputs) as tf.TensorInfo[];
    const float = (t: tf.TensorInfo) => t.dtype === "float32";
    if (
      !float(out) || !ins.every(float) || ids.get(out.dataId) !== d.outputs[0] ||
      ins.length !== d.inputs.length || ins.some((t, j) => ids.get(t.dataId) !== d.inputs[j])
    ) return;
    const attrs: Record<string, number> = {};
    for (const [key, v] of Object.entries(args.attrs ?? {})) {
      if (typeof v === "number") attrs[key] = v;
    }
    dispatches[before] = {
      ...d,
      elementwise: {
        op,
        attrs,
        inputShapes: ins.map((t) => [...t.shape]),
        outputShape: [...out.shape],
      },
    };
  };

  let result: { state: tf.Tensor[]; outputs: tf.Tensor[] };
  try {
    result = fn(state, inputs);
    // Results computed on the host (small constants) are uploaded, as values of the call.
    for (const t of [...result.state, ...result.outputs]) backend.uploadToGPU(t.dataId);
  } finally {
    // The hooks were own properties over the prototype's methods: remove them (or put back what
    // was there).
    for (const key of Object.keys(saved) as (keyof typeof saved)[]) {
      if (ownBefore.includes(key)) Object.assign(backend, { [key]: saved[key] });
      else delete (backend as unknown as Record<string, unknown>)[key];
    }
    kernels.forEach((k, i) => ((k as { kernelFunc: tf.KernelFunc }).kernelFunc = kernelFuncs[i]));
  }
  if (result.state.length !== state.length) {
    unsupported ??= `the call returned ${result.state.length} state tensors for ${state.length}`;
  }
  result.state.forEach((t, i) => {
    if (t.shape.join() !== state[i]?.shape.join() || t.dtype !== state[i]?.dtype) {
      unsupported ??= `state tensor ${i} changed shape or dtype`;
    }
  });
  const stateOut = result.state.map((t) => valueOf(t.dataId));
  const outputs = result.outputs.map((t) => valueOf(t.dataId));
  if (unsupported) return { result, unsupported };
  if (transient) return { result, unsupported: transient, transient: true };
  return {
    result,
    trace: {
      values,
      dispatches,
      stateIn: state.map((t) => ids.get(t.dataId)!),
      inputs: inputs.map((t) => ids.get(t.dataId)!),
      stateOut,
      outputs,
    },
  };
}

/**
 * Where two traces differ, or undefined when they describe the same work: the same dispatches
 * (pipelines, workgroups, uniforms, values read and written) and the same constants. A call whose
 * trace changes from one call to the next depends on something other than its tensors (a number
 * of the host's that changes, such as a step count), and cannot be replayed.
 * @param a one trace
 * @param b the next
 * @returns the first difference, in words
 */
export function traceDifference(a: Trace, b: Trace): string | undefined {
  if (a.dispatches.length !== b.dispatches.length) {
    return `${a.dispatches.length} dispatches, then ${b.dispatches.length}`;
  }
  if (a.values.length !== b.values.length) {
    return `${a.values.length} values, then ${b.values.length}`;
  }
  for (const [i, x] of a.dispatches.entries()) {
    const y = b.dispatches[i];
    const where = `dispatch ${i} (${x.kernel})`;
    if (x.pipeline !== y.pipeline) return `${where}: another program (${y.kernel})`;
    if (x.workgroups.join() !== y.workgroups.join()) return `${where}: other workgroup counts`;
    if (x.outputs.join() !== y.outputs.join() || x.inputs.join() !== y.inputs.join()) {
      return `${where}: other tensors`;
    }
    if (!sameBytes(x.uniforms, y.uniforms)) {
      return `${where}: other uniforms (a host number changed)`;
    }
  }
  for (const [i, x] of a.values.entries()) {
    const y = b.values[i];
    if (x.source.kind !== y.source.kind || x.bytes !== y.bytes) return `value ${i}: another kind`;
    if (
      x.source.kind === "upload" && y.source.kind === "upload" &&
      !sameBytes(x.source.data, y.source.data)
    ) return `value ${i}: a constant from the host changed`;
    if (
      x.source.kind === "external" && y.source.kind === "external" &&
      x.source.buffer !== y.source.buffer
    ) return `value ${i}: a tensor made outside the call changed`;
  }
  const lists = ["stateIn", "inputs", "stateOut", "outputs"] as const;
  for (const l of lists) if (a[l].join() !== b[l].join()) return `the ${l} tensors differ`;
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
