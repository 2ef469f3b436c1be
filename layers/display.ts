/**
 * Model outputs as pictures: images from the model's range [-1, 1] to [0, 1], and CAM heatmaps
 * min-max normalised per image, resized to the image size (bilinear) and coloured with the JET
 * colour map, as the reference draws them. Pure tensor functions, for Deno and the browser.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { jetHeatmap } from "./display.ts";
 * console.log(jetHeatmap(tf.randomUniform([1, 4, 4, 1]) as tf.Tensor4D, 16).shape); // [1, 16, 16, 3]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";

/**
 * Maps an image from the model's range [-1, 1] to [0, 1] for display.
 * @param image `[N, S, S, C]` in [-1, 1]
 * @returns `[N, S, S, 3]` in [0, 1] (grey images repeated to RGB)
 */
export function toDisplay(image: tf.Tensor4D): tf.Tensor4D {
  return tidy(() => {
    const x = tf.clipByValue(tf.div(tf.add(image, 1), 2), 0, 1) as tf.Tensor4D;
    return x.shape[3] === 3 ? x : tf.tile(x.slice([0, 0, 0, 0], [-1, -1, -1, 1]), [1, 1, 1, 3]);
  });
}

/**
 * Colours CAM heatmaps: per-image min-max normalisation, bilinear resize to `size`, JET colours
 * (blue for low attention, red for high).
 * @param heatmap `[N, h, w, 1]`
 * @param size output side S
 * @returns `[N, S, S, 3]` in [0, 1]
 */
export function jetHeatmap(heatmap: tf.Tensor4D, size: number): tf.Tensor4D {
  return tidy(() => {
    const lo = tf.min(heatmap, [1, 2, 3], true);
    const hi = tf.max(heatmap, [1, 2, 3], true);
    const norm = tf.div(tf.sub(heatmap, lo), tf.maximum(tf.sub(hi, lo), 1e-12));
    const v = tf.image.resizeBilinear(norm as tf.Tensor4D, [size, size], false, true);
    const channel = (centre: number) =>
      tf.clipByValue(tf.sub(1.5, tf.abs(tf.sub(tf.mul(v, 4), centre))), 0, 1);
    return tf.concat([channel(3), channel(2), channel(1)], 3) as tf.Tensor4D;
  });
}
