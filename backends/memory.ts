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
  /** A new float32 tensor of `shape` (contents undefined on wasm, zeros on cpu). */
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
      b.makeTensorInfo!(shape, "float32", new Float32Array(shape.reduce((p, q) => p * q, 1))),
    view: (t) => b.data!.get(t.dataId).values,
  };
}
