/**
 * The functional core of U-GAT-IT: pure functions over readonly parameter records (trees, see
 * `tree/`). Each layer is `init(key) -> params` plus `apply(params, [state,] x) -> out [, state]`;
 * tensors are NHWC. The layers build on our ops (`ops/`) and never on a backend.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { generator } from "./mod.ts";
 * const g = generator({ ch: 8, nRes: 2, imgSize: 32, light: true });
 * const params = g.init(42);
 * const { image, camLogit, heatmap } = g.apply(params, tf.zeros([1, 32, 32, 3]) as tf.Tensor4D);
 * console.log(image.shape, camLogit?.shape, heatmap.shape); // [1, 32, 32, 3] [1, 2] [1, 8, 8, 1]
 * ```
 *
 * @module
 */
export * from "./init.ts";
export * from "./conv.ts";
export * from "./norm.ts";
export * from "./spectral_norm.ts";
export * from "./cam_attention.ts";
export * from "./blocks.ts";
export * from "./generator.ts";
export * from "./discriminator.ts";
export * from "./display.ts";
