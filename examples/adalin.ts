/**
 * # What AdaLIN does to a feature map
 *
 * AdaLIN mixes instance norm (per channel: keeps each channel's pattern, removes its contrast and
 * brightness, i.e. the "style") and layer norm (over all channels together: keeps how channels
 * compare with each other, the "content" balance), with a learned per-channel `rho`, then scales
 * and shifts with the gamma and beta the generator's MLP computes from the attended features.
 *
 *     deno run -A examples/adalin.ts [--out results/examples]
 *
 * Writes `adalin.png`: rows are the feature map (8 channels) as the encoder's first conv makes
 * it, then after IN, LN, and AdaLIN at rho 0.5 and rho 0.9 (the initial value).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { conv2d, selectBackend } from "../mod.ts";
import { adaLin, instanceNorm, layerNorm } from "../layers/norm.ts";
import { testPatterns, writePng } from "../train/samples.ts";

const out = Deno.args.includes("--out")
  ? Deno.args[Deno.args.indexOf("--out") + 1]
  : "results/examples";
await selectBackend("wasm");

// ## A feature map
// The generator's first layer: a 7x7 conv from RGB to 8 channels (random weights), on one of the
// built-in test pictures.
const image = testPatterns(1, 64);
const conv = conv2d({ inCh: 3, outCh: 8, kernel: 7, pad: 3 });
const features = conv.apply(conv.init(7), image);

// ## Four normalisations of it
// gamma = 1 and beta = 0, so that only the normalisation shows.
const ones = tf.ones([1, 8]) as tf.Tensor2D;
const zeros = tf.zeros([1, 8]) as tf.Tensor2D;
const rows = {
  "feature map": features,
  "instance norm": instanceNorm(features),
  "layer norm": layerNorm(features),
  "AdaLIN rho 0.5": adaLin(features, tf.fill([8], 0.5) as tf.Tensor1D, ones, zeros),
  "AdaLIN rho 0.9": adaLin(features, tf.fill([8], 0.9) as tf.Tensor1D, ones, zeros),
};

// ## The picture
// Each channel is shown on one shared scale per row (min to max of the row), so that differences
// of contrast between channels stay visible: IN equalises them, LN keeps them.
const picture = tf.tidy(() => {
  const lines = Object.values(rows).map((t) => {
    const lo = tf.min(t);
    const hi = tf.max(t);
    const unit = tf.div(tf.sub(t, lo), tf.maximum(tf.sub(hi, lo), 1e-6)); // [1, 64, 64, 8]
    const channels = tf.unstack(tf.transpose(unit, [3, 1, 2, 0]) as tf.Tensor4D); // 8 x [64, 64, 1]
    return tf.concat(channels, 1); // [64, 8 * 64, 1]
  });
  return tf.tile(tf.concat(lines, 0), [1, 1, 3]) as tf.Tensor3D;
});
await Deno.mkdir(out, { recursive: true });
await writePng(`${out}/adalin.png`, picture);
console.log(`wrote ${out}/adalin.png (rows: ${Object.keys(rows).join(", ")}; 8 channels each)`);
