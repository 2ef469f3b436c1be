/**
 * Kernels that the TensorFlow.js wasm backend lacks and training needs, registered as ours.
 * Each is composed from kernels the wasm backend does have (XNNPACK convolution, transpose,
 * pad, slice), called directly on the backend so that nothing touches the autodiff tape.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

type Info = tf.TensorInfo;
/** What a kernel function receives. */
export interface KernelArgs {
  /** Input tensors by name. */
  inputs: tf.NamedTensorInfoMap;
  /** The backend running the kernel. */
  backend: tf.KernelBackend;
  /** Attributes by name. */
  attrs?: tf.NamedAttrMap;
}

function run(backend: tf.KernelBackend, name: string, inputs: tf.NamedTensorInfoMap, attrs = {}) {
  const kernel = tf.getKernel(name, "wasm");
  if (!kernel) throw new Error(`wasm backend: kernel ${name} is missing`);
  return kernel.kernelFunc({ inputs, backend, attrs: attrs as tf.NamedAttrMap }) as Info;
}

/**
 * The filter gradient of a 2-D convolution (NHWC input, HWIO filter), as the convolution of the
 * input with the output gradient: `dW[h, w, i, o] = sum_{n, y, x} xp[n, y*s + h, x*s + w, i] *
 * dy[n, y, x, o]`, i.e. a stride-1 conv over `xp` laid out `[I, H, W, N]` with `dy` laid out
 * `[Hy, Wy, N, O]` as the filter, dilated by the forward stride.
 * @param args the kernel's inputs `{x, dy}`, backend and attributes
 * @returns the filter gradient `[kh, kw, in, out]`
 */
export function conv2dBackpropFilter({ inputs, backend, attrs }: KernelArgs): Info {
  const { x, dy } = inputs as { x: Info; dy: Info };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
    strides: [number, number] | number;
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
    filterShape: [number, number, number, number];
  };
  if (dataFormat === "NCHW") throw new Error("Conv2DBackpropFilter (wasm): only NHWC is supported");
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { top, bottom, left, right } = info.padInfo;
  const temps: Info[] = [];
  const keep = (t: Info) => (temps.push(t), t);
  let xp = x;
  if (top || bottom || left || right) {
    xp = keep(run(backend, "PadV2", { x }, {
      paddings: [[0, 0], [top, bottom], [left, right], [0, 0]],
      constantValue: 0,
    }));
  }
  const xt = keep(run(backend, "Transpose", { x: xp }, { perm: [3, 1, 2, 0] }));
  const dyt = keep(run(backend, "Transpose", { x: dy }, { perm: [1, 2, 0, 3] }));
  let g = keep(run(backend, "Conv2D", { x: xt, filter: dyt }, {
    strides: [1, 1],
    pad: "valid",
    dataFormat: "NHWC",
    dilations: [info.strideHeight, info.strideWidth],
  }));
  const [kh, kw, cin, cout] = filterShape;
  if (g.shape[1] !== kh || g.shape[2] !== kw) {
    g = keep(run(backend, "Slice", { x: g }, { begin: [0, 0, 0, 0], size: [cin, kh, kw, cout] }));
  }
  const out = run(backend, "Transpose", { x: g }, { perm: [1, 2, 0, 3] });
  for (const t of temps) if (t !== x) backend.disposeData(t.dataId);
  return out;
}

let registered = false;

/**
 * Registers our training kernels on the wasm backend (once; later calls do nothing).
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  if (!tf.getKernel("Conv2DBackpropFilter", "wasm")) {
    tf.registerKernel({
      kernelName: "Conv2DBackpropFilter",
      backendName: "wasm",
      kernelFunc: conv2dBackpropFilter as unknown as tf.KernelFunc,
    });
  }
}
