/**
 * Tensors as Float32Arrays on the backends that keep them in CPU memory: the wasm backend (views
 * of WebAssembly memory) and the cpu backend (JavaScript arrays). Our JavaScript and native
 * kernels read and write through this, so one kernel serves both.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";

/** How a backend's tensors are made and read. */
export interface Memory {
  /**
   * A new float32 tensor of `shape`: contents undefined (wasm, native-cpu) or zeros (cpu), so a
   * kernel writes every element.
   */
  alloc(shape: number[]): tf.TensorInfo;
  /**
   * A view of a tensor's values. On wasm, take views only after the last `alloc` of a kernel:
   * an allocation may grow WebAssembly memory and detach earlier views.
   */
  view(t: tf.TensorInfo): Float32Array;
}

/**
 * The memory of a wasm or cpu backend.
 * @param backend the backend a kernel was given
 * @returns its allocator and views
 */
export function memoryOf(backend: tf.KernelBackend): Memory {
  const b = backend as unknown as {
    makeOutput?(shape: number[], dtype: string): tf.TensorInfo;
    typedArrayFromHeap?(t: tf.TensorInfo): Float32Array;
    makeTensorInfo?(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo;
    data?: { get(id: tf.DataId): { values: Float32Array } };
  };
  if (b.makeOutput && b.typedArrayFromHeap) {
    return {
      alloc: (shape) => b.makeOutput!(shape, "float32"),
      view: (t) => b.typedArrayFromHeap!(t),
    };
  }
  return {
    alloc: (shape) =>
      b.makeTensorInfo!(shape, "float32", freshArray(backend, shape.reduce((p, q) => p * q, 1))),
    view: (t) => b.data!.get(t.dataId).values,
  };
}

// ---- recycled arrays for backends that keep tensors in JavaScript memory ----

// Arrays below this many elements are cheap to make; only larger ones are kept for reuse.
const RECYCLED_MIN_LENGTH = 16384;
// At most this many bytes of freed arrays wait for reuse per backend; more go to the collector.
const RECYCLED_MAX_BYTES = 512 * 2 ** 20;
// An array handed to a kernel (not yet a tensor's), or the values of exactly one tensor.
const FRESH = 0;
const BOUND = 1;

interface Pool {
  free: Map<number, Float32Array[]>; // by length
  bytes: number;
  reused: number; // outputs that got a freed array
  // Arrays of ours, by buffer: only these come back. An array read out (dataSync, data) or seen
  // in a second tensor or as a view (a stock kernel's contiguous slice) leaves for good, since
  // someone else may hold it.
  ours: WeakMap<ArrayBufferLike, typeof FRESH | typeof BOUND>;
}

const pools = new WeakMap<object, Pool>();

/**
 * A float32 array of `n` elements for a kernel's output on `backend`: a freed tensor's array of
 * that length where {@linkcode recycleArrays} keeps them (contents undefined: the kernel writes
 * every element), else a new one (zeros).
 * @param backend the backend the kernel runs on
 * @param n the length
 * @returns the array
 */
export function freshArray(backend: tf.KernelBackend, n: number): Float32Array {
  const pool = pools.get(backend);
  if (!pool || n < RECYCLED_MIN_LENGTH) return new Float32Array(n);
  const a = pool.free.get(n)?.pop();
  if (a) {
    pool.bytes -= a.byteLength;
    pool.reused++;
  }
  const out = a ?? new Float32Array(n);
  pool.ours.set(out.buffer, FRESH);
  return out;
}

/**
 * Makes a cpu-type backend (`native-cpu`) keep its freed tensors' large float32 arrays for the next
 * kernel output of the same length ({@linkcode freshArray}). A training step frees and makes
 * tensors of the same few sizes thousands of times; a new 16 MB array costs the system its pages
 * afresh (faults, zeroing) and the garbage collector its bookkeeping, about as long as the kernel's
 * own loop. Only arrays handed out by `freshArray` come back, and none that anything else may
 * hold: an array read out (`dataSync`, `data`), given to a second tensor, or seen as a view.
 * @param backend the backend instance (its `write`, `move`, `read`, `readSync` and `disposeData`
 *   are wrapped)
 */
export function recycleArrays(backend: tf.KernelBackend): void {
  if (pools.has(backend)) return;
  const pool: Pool = { free: new Map(), bytes: 0, reused: 0, ours: new WeakMap() };
  pools.set(backend, pool);
  type Values = Float32Array | Uint8Array | Int32Array | Uint8Array[] | undefined;
  const b = backend as unknown as {
    data: { get(id: tf.DataId): { values?: Values } | undefined; has(id: tf.DataId): boolean };
    write(values: Values, ...rest: unknown[]): tf.DataId;
    move(id: tf.DataId, values: Values, ...rest: unknown[]): void;
    read(id: tf.DataId): Promise<unknown>;
    readSync(id: tf.DataId): unknown;
    disposeData(id: tf.DataId, force?: boolean): boolean;
  };
  const buffer = (v: Values) => (ArrayBuffer.isView(v) ? v.buffer : undefined);
  const leave = (v: Values) => {
    const buf = buffer(v);
    if (buf) pool.ours.delete(buf);
  };
  const whole = (v: Float32Array) => v.byteOffset === 0 && v.byteLength === v.buffer.byteLength;
  const bind = (v: Values) => {
    const buf = buffer(v);
    if (!buf || !pool.ours.has(buf)) return;
    if (pool.ours.get(buf) === FRESH && v instanceof Float32Array && whole(v)) {
      pool.ours.set(buf, BOUND);
    } else pool.ours.delete(buf);
  };
  const valuesOf = (id: tf.DataId) => (b.data.has(id) ? b.data.get(id)?.values : undefined);
  const { write, move, read, readSync, disposeData } = b;
  b.write = function (values, ...rest) {
    bind(values);
    return write.call(this, values, ...rest);
  };
  b.move = function (id, values, ...rest) {
    leave(values);
    return move.call(this, id, values, ...rest);
  };
  b.readSync = function (id) {
    leave(valuesOf(id));
    return readSync.call(this, id);
  };
  b.read = function (id) {
    leave(valuesOf(id));
    return read.call(this, id);
  };
  b.disposeData = function (id, force) {
    const values = valuesOf(id);
    const done = disposeData.call(this, id, force);
    if (!(values instanceof Float32Array) || b.data.has(id)) return done;
    if (pool.ours.get(values.buffer) !== BOUND) return done;
    pool.ours.delete(values.buffer);
    if (pool.bytes + values.byteLength > RECYCLED_MAX_BYTES) return done;
    if (poison) values.fill(NaN);
    const list = pool.free.get(values.length) ?? [];
    list.push(values);
    pool.free.set(values.length, list);
    pool.bytes += values.byteLength;
    return done;
  };
}

let poison = false;
/**
 * For tests: fill every kept array with NaN, so that a kernel that leaves an element of its output
 * unwritten (or adds into it) shows.
 * @param on whether to
 */
export function poisonRecycledArrays(on: boolean): void {
  poison = on;
}

/**
 * How many kernel outputs on `backend` got a freed tensor's array (0 where it keeps none).
 * @param backend the backend instance
 * @returns the count
 */
export function recycledArrays(backend: tf.KernelBackend): number {
  return pools.get(backend)?.reused ?? 0;
}
