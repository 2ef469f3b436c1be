/**
 * ugatit: U-GAT-IT (Kim et al., ICLR 2020) in TypeScript on TensorFlow.js, for Deno and the
 * browser. Unsupervised image-to-image translation with CAM attention and Adaptive
 * Layer-Instance Normalisation, computed exactly as the reference PyTorch implementation does.
 *
 * - `layers/`: pure `init` / `apply` functions over readonly parameter records: AdaLIN, ILN,
 *   CAM attention, spectral norm, the generator and the discriminator.
 * - `losses/`: the loss DSL and the four U-GAT-IT objectives declared with it.
 * - `optim/`: gradient transformations over parameter trees, composed with `chain`; the
 *   reference's Adam.
 * - `tree/`: parameter records as trees (`map`, `zipMap`, `flatten`, `dispose`, ...).
 * - `ops/`: the ops of ours the layers build on, each a contract with a composed fallback.
 * - `weights/`: safetensors files and the reference's `state_dict` names, both ways.
 * - `backends/`: one place that selects wasm, WebGPU, TensorFlow (tfjs-node) or the JS cpu
 *   backend, with the kernels training needs.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { count, generator, selectBackend } from "./mod.ts";
 *
 * await selectBackend("cpu");
 * const g = generator({ ch: 8, nRes: 2, imgSize: 32, light: true });
 * const params = g.init(0);
 * const x = tf.randomUniform([1, 32, 32, 3], -1, 1) as tf.Tensor4D;
 * const { image, camLogit, heatmap } = g.apply(params, x);
 * console.log(count(params), image.shape, camLogit?.shape, heatmap.shape);
 * ```
 *
 * @module
 */
export * from "./layers/mod.ts";
export * from "./losses/mod.ts";
export * from "./optim/mod.ts";
export * from "./tree/mod.ts";
export * from "./ops/mod.ts";
export * from "./weights/mod.ts";
export * from "./backends/mod.ts";
