/**
 * The functional core of U-GAT-IT: pure functions over readonly parameter records. Each layer is
 * `init(key) -> params` plus `apply(params, [state,] x) -> out [, state]`; tensors are NHWC.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { count, generator } from "./mod.ts";
 * const g = generator({ ch: 8, nRes: 2, imgSize: 32, light: true });
 * const params = g.init(42);
 * const { image, camLogit, heatmap } = g.apply(params, tf.zeros([1, 32, 32, 3]) as tf.Tensor4D);
 * console.log(count(params), image.shape, camLogit?.shape, heatmap.shape);
 * ```
 *
 * @module
 */
export * from "./tree.ts";
export * from "./init.ts";
export * from "./conv.ts";
export * from "./norm.ts";
export * from "./spectral_norm.ts";
export * from "./cam_attention.ts";
export * from "./blocks.ts";
export * from "./generator.ts";
export * from "./discriminator.ts";
export * from "./display.ts";
