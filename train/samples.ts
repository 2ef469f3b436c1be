/**
 * Sample pictures as the reference draws them: columns are images, rows are kinds (real,
 * CAM heatmap, translation, ...); heatmaps are min-max normalised per image, resized to the image
 * size (bilinear) and coloured with the JET colour map. Pure tensor functions, plus one writer.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { writeAtomically } from "../files/write_file.ts";
import { tidy } from "../tree/tree.ts";

// Shared with the web page, which may not import train/.
export { jetHeatmap, toDisplay } from "../layers/display.ts";

/**
 * Lays out rows of images as one picture: row r, column c is image c of `rows[r]`.
 * @param rows each `[N, S, S, 3]` in [0, 1], all the same shape
 * @returns `[rows * S, N * S, 3]`
 */
export function sampleGrid(rows: readonly tf.Tensor4D[]): tf.Tensor3D {
  return tidy(() => {
    const lines = rows.map((r) => tf.concat(tf.unstack(r), 1)); // [S, N*S, 3]
    return tf.concat(lines, 0) as tf.Tensor3D;
  });
}

/**
 * Writes an RGB image in [0, 1] as a PNG, atomically (temporary file, then rename); a failure of
 * the file system is a `WriteError` naming the file (the temporary file removed).
 * @param path the file
 * @param image `[H, W, 3]` in [0, 1]
 * @param what what the picture is, for the message of a failed write
 */
export async function writePng(
  path: string,
  image: tf.Tensor3D,
  what = "a picture",
): Promise<void> {
  const [height, width, channels] = image.shape;
  const values = await image.data();
  const bytes = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    bytes[i] = Math.round(Math.min(1, Math.max(0, values[i])) * 255);
  }
  const png = await sharp(bytes, { raw: { width, height, channels: channels as 3 } }).png()
    .toBuffer();
  await writeAtomically(path, new Uint8Array(png.buffer, png.byteOffset, png.byteLength), what);
}

/**
 * Built-in test pictures that need no data: a face on white, of a different hue on each.
 * @param n how many
 * @param size S
 * @returns `[n, S, S, 3]` in [-1, 1]
 */
export function testPatterns(n: number, size: number): tf.Tensor4D {
  return tidy(() => {
    const r = tf.linspace(-1, 1, size);
    const y = tf.reshape(r, [size, 1]);
    const x = tf.reshape(r, [1, size]);
    const inside = (cx: number, cy: number, rad: number) =>
      tf.cast(
        tf.less(tf.add(tf.square(tf.sub(x, cx)), tf.square(tf.sub(y, cy))), rad * rad),
        "float32",
      );
    const face = inside(0, 0, 0.8);
    const eyes = tf.add(inside(-0.3, -0.25, 0.12), inside(0.3, -0.25, 0.12));
    const mouth = tf.mul(inside(0, 0.1, 0.45), tf.cast(tf.greater(y, 0.25), "float32"));
    const features = tf.clipByValue(tf.add(eyes, mouth), 0, 1);
    const hues = [[1, 0.8, 0.2], [0.3, 0.7, 1], [1, 0.4, 0.5], [0.5, 0.9, 0.4]];
    const images = Array.from({ length: n }, (_, i) => {
      const hue = hues[i % hues.length];
      return tf.stack(
        hue.map((h) => tf.sub(tf.add(tf.sub(1, face), tf.mul(face, h)), tf.mul(features, 0.8 * h))),
        2,
      );
    });
    return tf.sub(tf.mul(tf.stack(images), 2), 1) as tf.Tensor4D;
  });
}
