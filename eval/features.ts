/**
 * Feature extractors for KID and FID. The built-in one works offline: a small convolutional
 * network with fixed random weights (a seeded key), so that its features are the same on every
 * machine and backend. Its numbers compare runs of this toolkit with each other; they are not
 * comparable with the paper's, which use Inception-v3 features.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { conv2d, type ConvParams } from "../layers/conv.ts";
import { splitKey } from "../layers/init.ts";
import { tidy } from "../tree/tree.ts";

/** A feature extractor: images `[N, S, S, 3]` in [-1, 1] to features `[N, d]`. */
export interface FeatureExtractor {
  /** A name for tables and eval.json, saying what the numbers compare with. */
  readonly name: string;
  /** Feature width. */
  readonly dim: number;
  /** Extracts features (the caller owns the result). */
  extract(images: tf.Tensor4D): tf.Tensor2D;
}

/**
 * The built-in extractor: images resized to 64x64, three 3x3 stride-2 convs (16, 32, 64
 * channels, ReLU, no bias) with He-uniform weights drawn from a fixed key, then global average
 * pooling: 64 features.
 * @returns the extractor
 */
export function randomConvFeatures(): FeatureExtractor {
  const widths = [3, 16, 32, 64];
  const layers = widths.slice(1).map((out, i) =>
    conv2d({ inCh: widths[i], outCh: out, kernel: 3, stride: 2, pad: 1 })
  );
  const keys = splitKey(20200101, layers.length);
  // He-uniform scale (PyTorch's default bound times sqrt 6), so that activations keep a unit
  // scale through the ReLUs and the kernels of KID see features of order 1, as Inception's are.
  const params: ConvParams[] = layers.map((l, i) => {
    const p = l.init(keys[i]);
    const w = tf.mul(p.w, Math.sqrt(6)) as tf.Tensor4D;
    p.w.dispose();
    return { w };
  });
  return {
    name: "random-conv-64 (built-in; not comparable with Inception-based numbers)",
    dim: 64,
    extract(images) {
      return tidy(() => {
        let h = tf.image.resizeBilinear(images, [64, 64], false, true) as tf.Tensor4D;
        layers.forEach((l, i) => (h = tf.relu(l.apply(params[i], h))));
        return tf.mean(h, [1, 2]) as tf.Tensor2D;
      });
    },
  };
}

// Reads a graph model from disk: model.json and the weight files it names, beside it.
function fileHandler(path: string): tf.io.IOHandler {
  return {
    async load() {
      let json: tf.io.ModelJSON;
      try {
        json = JSON.parse(await Deno.readTextFile(path));
      } catch (e) {
        throw new Error(`--features ${path}: not a readable model.json (${(e as Error).message})`);
      }
      const dir = path.replace(/[^/]*$/, "");
      return await tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const buffers = [];
        for (const group of manifest) {
          for (const p of group.paths) {
            buffers.push((await Deno.readFile(`${dir}${p}`)).buffer as ArrayBuffer);
          }
        }
        return [tf.io.getWeightSpecs(manifest), tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

/**
 * A TensorFlow.js graph model as the feature extractor, e.g. Inception-v3 converted with the
 * tensorflowjs converter (the paper's features): images go in resized to `inputSize` and in
 * [-1, 1] (the TF-Hub Inception-v3 convention); a 4-D output is averaged over its spatial axes.
 * @param source a `model.json` path or an http(s) URL
 * @param inputSize the side the model expects (299 for Inception-v3)
 * @returns the extractor
 */
export async function graphModelFeatures(
  source: string,
  inputSize = 299,
): Promise<FeatureExtractor> {
  const model = await tf.loadGraphModel(/^https?:\/\//.test(source) ? source : fileHandler(source));
  const probe = tidy(() => model.predict(tf.zeros([1, inputSize, inputSize, 3])) as tf.Tensor);
  const dim = probe.shape.slice(probe.rank === 4 ? 3 : 1).reduce((a, b) => a * b, 1);
  probe.dispose();
  return {
    name: `graph model ${source}`,
    dim,
    extract(images) {
      return tidy(() => {
        const x = tf.image.resizeBilinear(images, [inputSize, inputSize], false, true);
        const y = model.predict(x) as tf.Tensor;
        const pooled = y.rank === 4 ? tf.mean(y, [1, 2]) : y;
        return tf.reshape(pooled, [images.shape[0], -1]) as tf.Tensor2D;
      });
    },
  };
}
