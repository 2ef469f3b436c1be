/**
 * Kernels that the TensorFlow.js wasm backend lacks or runs slowly, registered as ours: the
 * filter gradient of a convolution (missing) and, for stride 1, its input gradient (the stock
 * kernel is a plain loop, 60% of a training step). Each is composed from kernels the wasm
 * backend runs with XNNPACK (convolution) and cheap ones (transpose, reverse, pad, slice),
 * called directly on the backend so that nothing touches the autodiff tape. Also `Identity` and
 * same-type `Cast`, which the stock backend copies: the autodiff tape clones every tensor it
 * saves for the backward pass (thousands per training step), and tensors are immutable, so ours
 * share the buffer as the cpu backend does.
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

// The stock input-gradient kernel, for the cases ours does not cover.
let stockBackpropInput: tf.KernelFunc | undefined;

/**
 * The input gradient of a 2-D convolution, as a stride-1 convolution of the output gradient
 * (for stride s, first spread out with s - 1 zeros after each value) with the filter flipped in
 * space and its channels swapped: `dx[n, y, x, i] = sum_{h, w, o} dyd[n, y + pt - h,
 * x + pl - w, o] * W[h, w, i, o]`. Dilated filters go to the stock kernel.
 * @param args the kernel's inputs `{dy, filter}`, backend and attributes
 * @returns the input gradient `[N, H, W, in]`
 */
export function conv2dBackpropInput(args: KernelArgs): Info {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs as { dy: Info; filter: Info };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as {
    strides: [number, number] | number;
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
    inputShape: [number, number, number, number];
  };
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const [kh, kw, sh, sw] = [
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
  ];
  const [n, ho, wo, co] = dy.shape;
  const [hd, wd] = [ho * sh, wo * sw]; // the spread-out gradient, trailing zeros included
  const padTop = kh - 1 - info.padInfo.top;
  const padLeft = kw - 1 - info.padInfo.left;
  const padBottom = info.inHeight - hd - padTop + kh - 1;
  const padRight = info.inWidth - wd - padLeft + kw - 1;
  if (dataFormat === "NCHW" || Math.min(padTop, padLeft, padBottom, padRight) < 0) {
    return stockBackpropInput!(args as Parameters<tf.KernelFunc>[0]) as Info;
  }
  const temps: Info[] = [];
  const keep = (t: Info) => (temps.push(t), t);
  const reshape = (x: Info, shape: number[]) => keep(run(backend, "Reshape", { x }, { shape }));
  const zeros = (x: Info, paddings: number[][]) =>
    keep(run(backend, "PadV2", { x }, { paddings, constantValue: 0 }));
  let g = dy;
  if (sw > 1) {
    g = reshape(zeros(reshape(g, [n * ho, wo, 1, co]), [[0, 0], [0, 0], [0, sw - 1], [0, 0]]), [
      n,
      ho,
      wd,
      co,
    ]);
  }
  if (sh > 1) {
    g = reshape(zeros(reshape(g, [n, ho, 1, wd * co]), [[0, 0], [0, 0], [0, sh - 1], [0, 0]]), [
      n,
      hd,
      wd,
      co,
    ]);
  }
  if (padTop || padBottom || padLeft || padRight) {
    g = zeros(g, [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]]);
  }
  const flipped = keep(run(backend, "Reverse", { x: filter }, { dims: [0, 1] }));
  const swapped = keep(run(backend, "Transpose", { x: flipped }, { perm: [0, 1, 3, 2] }));
  const out = run(backend, "Conv2D", { x: g, filter: swapped }, {
    strides: [1, 1],
    pad: "valid",
    dataFormat: "NHWC",
    dilations: [1, 1],
  });
  for (const t of temps) backend.disposeData(t.dataId);
  return out;
}

/**
 * `Identity` (and `Cast` to the same type) as a new reference to the same buffer.
 * @param args the kernel's input `{x}`, backend and attributes
 * @returns `x`'s buffer under a new handle
 */
export function shareBuffer({ inputs, backend }: KernelArgs): Info {
  const { x } = inputs as { x: Info };
  (backend as unknown as { incRef(id: tf.DataId): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
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
  for (const name of ["Identity", "Cast"]) {
    const copy = tf.getKernel(name, "wasm")!;
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel({
      kernelName: name,
      backendName: "wasm",
      kernelFunc: ((args: KernelArgs) => {
        const { x } = args.inputs as { x: Info };
        const to = (args.attrs as { dtype?: tf.DataType } | undefined)?.dtype ?? x.dtype;
        return x.dtype !== "string" && to === x.dtype
          ? shareBuffer(args)
          : copy.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
      }) as unknown as tf.KernelFunc,
      setupFunc: copy.setupFunc,
      disposeFunc: copy.disposeFunc,
    });
  }
  const stock = tf.getKernel("Conv2DBackpropInput", "wasm");
  if (stock) {
    stockBackpropInput = stock.kernelFunc;
    tf.unregisterKernel("Conv2DBackpropInput", "wasm");
    tf.registerKernel({
      kernelName: "Conv2DBackpropInput",
      backendName: "wasm",
      kernelFunc: conv2dBackpropInput as unknown as tf.KernelFunc,
      setupFunc: stock.setupFunc,
      disposeFunc: stock.disposeFunc,
    });
  }
}
