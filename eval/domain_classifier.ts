/**
 * A domain classifier trained by the toolkit on the real training images of both domains: it
 * says what fraction of translations it takes for the target domain (and of untranslated sources,
 * the baseline). A small CNN (three 3x3 stride-2 convs, global average pooling, a linear map to
 * one logit "is B"), trained with Adam on a seeded order, so the same data gives the same judge.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { conv2d, type ConvParams, linear, type LinearParams } from "../layers/conv.ts";
import { splitKey } from "../layers/init.ts";
import { dispose, flatten, tidy, unflatten } from "../layers/tree.ts";
import { bce } from "../losses/objectives.ts";
import {
  applyUpdates,
  chain,
  type Flat,
  scaleByAdam,
  scaleByLearningRate,
} from "../train/optim.ts";
import { Rng } from "../train/random.ts";

const SIDE = 32; // images are judged at 32x32
const widths = [3, 16, 32, 64];
const convs = widths.slice(1).map((out, i) =>
  conv2d({ inCh: widths[i], outCh: out, kernel: 3, stride: 2, pad: 1, bias: true })
);
const head = linear({ inFeatures: 64, outFeatures: 1, bias: true });

interface ClassifierParams {
  readonly convs: readonly ConvParams[];
  readonly head: LinearParams;
}

function logits(p: ClassifierParams, images: tf.Tensor4D): tf.Tensor1D {
  return tidy(() => {
    let h = tf.image.resizeBilinear(images, [SIDE, SIDE], false, true) as tf.Tensor4D;
    convs.forEach((c, i) => (h = tf.relu(c.apply(p.convs[i], h))));
    return tf.reshape(head.apply(p.head, tf.mean(h, [1, 2]) as tf.Tensor2D), [-1]) as tf.Tensor1D;
  });
}

/** A trained domain classifier. */
export interface DomainClassifier {
  /**
   * The probability that each image is from domain B.
   * @param images `[N, S, S, 3]` in [-1, 1]
   * @returns N probabilities
   */
  probabilityB(images: tf.Tensor4D): Promise<Float32Array>;
  /** Frees its parameters. */
  dispose(): void;
}

/**
 * Trains a classifier of A (label 0) against B (label 1).
 * @param a real images of A `[Na, S, S, 3]` in [-1, 1]
 * @param b real images of B
 * @param options steps (default 300), batch size (default 32), learning rate, seed
 * @returns the classifier
 */
export function trainDomainClassifier(
  a: tf.Tensor4D,
  b: tf.Tensor4D,
  { steps = 300, batch = 32, lr = 1e-3, seed = 0 }: {
    steps?: number;
    batch?: number;
    lr?: number;
    seed?: number;
  } = {},
): DomainClassifier {
  const keys = splitKey(seed + 77, convs.length + 1);
  let params: Flat = flatten({
    convs: convs.map((c, i) => c.init(keys[i])),
    head: head.init(keys[convs.length]),
  });
  const opt = chain(scaleByAdam({ b1: 0.9, b2: 0.999 }), scaleByLearningRate(() => lr));
  let state = opt.init(params);
  const rng = new Rng(seed);
  const names = Object.keys(params);
  for (let step = 0; step < steps; step++) {
    const ia = Array.from({ length: batch / 2 }, () => rng.int(a.shape[0]));
    const ib = Array.from({ length: batch / 2 }, () => rng.int(b.shape[0]));
    const x = tf.tidy(() => tf.concat([tf.gather(a, ia), tf.gather(b, ib)]) as tf.Tensor4D);
    const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => {
      const p = unflatten(
        Object.fromEntries(names.map((k, i) => [k, ts[i]])),
      ) as unknown as ClassifierParams;
      const z = logits(p, x);
      // BCE against per-image labels: the mean of the two constant-label halves
      const half = ia.length;
      return tf.div(tf.add(bce(z.slice(0, half), 0), bce(z.slice(half), 1)), 2) as tf.Scalar;
    })(names.map((k) => params[k]));
    const flatGrads = Object.fromEntries(names.map((k, i) => [k, grads[i]]));
    const [updates, next] = opt.update(flatGrads, state, params);
    const updated = applyUpdates(params, updates);
    tf.dispose([x, value, ...grads, ...Object.values(updates), ...Object.values(params)]);
    dispose(state);
    [params, state] = [updated, next];
  }
  dispose(state);
  const trained = unflatten(params) as unknown as ClassifierParams;
  return {
    async probabilityB(images) {
      const p = tidy(() => tf.sigmoid(logits(trained, images)));
      try {
        return (await p.data()) as Float32Array;
      } finally {
        p.dispose();
      }
    },
    dispose() {
      dispose(params);
    },
  };
}
