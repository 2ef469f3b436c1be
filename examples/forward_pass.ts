/**
 * # A forward pass of U-GAT-IT
 *
 * Builds a generator and the global and local discriminators from the reference's flags,
 * translates a few images with freshly initialised weights, and writes the picture the reference
 * draws (rows: real, CAM heatmap, translation), with no data and no training.
 *
 *     deno task forward [--light] [--img_size 64] [--ch 32] [--backend wasm] [image.png ...]
 *
 * With no image paths it uses built-in test patterns. The defaults are sized for a laptop CPU
 * (light, 64 px, ch 32, n_dis 4); `--light false --img_size 256 --ch 64 --n_dis 6` is the paper's.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { count, discriminator, dispose, generator, selectBackend } from "../mod.ts";
import { flagHelp, parseFlags } from "../train/flags.ts";
import { jetHeatmap, readImage, sampleGrid, toDisplay, writePng } from "../train/samples.ts";

const LAPTOP = { light: true, img_size: 64, ch: 32, n_dis: 4, backend: "wasm" } as const;

if (Deno.args.includes("--help")) {
  console.log(`usage: deno task forward [flags] [image ...]\n\n${flagHelp(LAPTOP)}`);
  Deno.exit(0);
}
const flags = parseFlags(Deno.args, LAPTOP);
const backend = await selectBackend(flags.backend);
const S = flags.img_size;

// ## The models
// One generator (A->B) and the two discriminators of domain B. Spectral-norm vectors are state
// next to the parameters: `apply(params, state, x, training) -> [output, state]`.
const G = generator({
  ch: flags.ch,
  nRes: flags.n_res,
  imgSize: S,
  light: flags.light,
  imgCh: flags.img_ch,
});
const DG = discriminator({ ch: flags.ch, nLayers: flags.n_dis + 1, imgCh: flags.img_ch });
const DL = discriminator({ ch: flags.ch, nLayers: flags.n_dis - 1, imgCh: flags.img_ch });
const gParams = G.init(flags.seed);
const dg = DG.init(flags.seed + 1);
const dl = DL.init(flags.seed + 2);
console.log(
  `backend ${backend}; generator ${count(gParams).toLocaleString("en")} parameters, ` +
    `discriminators ${count(dg.params).toLocaleString("en")} (global, ${
      flags.n_dis + 1
    } layers) and ` +
    `${count(dl.params).toLocaleString("en")} (local, ${flags.n_dis - 1} layers)`,
);

// ## The inputs
// Image files given on the command line, else four test patterns: a face of a different hue on
// each, so that the untrained generator has structure to respond to.
function testPatterns(n: number): tf.Tensor4D {
  return tf.tidy(() => {
    const r = tf.linspace(-1, 1, S);
    const y = tf.reshape(r, [S, 1]);
    const x = tf.reshape(r, [1, S]);
    const inside = (cx: number, cy: number, rad: number) =>
      tf.cast(
        tf.less(tf.add(tf.square(tf.sub(x, cx)), tf.square(tf.sub(y, cy))), rad * rad),
        "float32",
      );
    const face = inside(0, 0, 0.8);
    const eyes = tf.add(inside(-0.3, -0.25, 0.12), inside(0.3, -0.25, 0.12));
    const mouth = tf.mul(inside(0, 0.1, 0.45), tf.cast(tf.greater(y, 0.25), "float32"));
    const features = tf.clipByValue(tf.add(eyes, mouth), 0, 1);
    const images = Array.from({ length: n }, (_, i) => {
      const hue = [[1, 0.8, 0.2], [0.3, 0.7, 1], [1, 0.4, 0.5], [0.5, 0.9, 0.4]][i % 4];
      const channels = hue.map((h) =>
        tf.sub(tf.add(tf.sub(1, face), tf.mul(face, h)), tf.mul(features, 0.8 * h))
      );
      return tf.stack(channels, 2);
    });
    return tf.sub(tf.mul(tf.stack(images), 2), 1) as tf.Tensor4D;
  });
}
const files = flags._;
const inputs = files.length
  ? tf.concat(await Promise.all(files.map((f) => readImage(f, S)))) as tf.Tensor4D
  : testPatterns(4);

// ## Translate and score
// The generator returns the image, its CAM logits and the attention heatmap; the discriminators
// return patch logits, CAM logits and their own heatmaps.
const t0 = performance.now();
const out = G.apply(gParams, inputs);
await out.image.data();
const t1 = performance.now();
const [global] = DG.apply(dg.params, dg.state, out.image, false);
const [local] = DL.apply(dl.params, dl.state, out.image, false);
await Promise.all([global.logit.data(), local.logit.data()]);
const t2 = performance.now();
console.log(
  `generator forward ${(t1 - t0).toFixed(0)} ms, discriminators ${(t2 - t1).toFixed(0)} ms ` +
    `(${
      inputs.shape[0]
    } images of ${S}x${S}); patch logits ${global.logit.shape} and ${local.logit.shape}`,
);

// ## The picture
const dir = `${flags.result_dir}/forward`;
await Deno.mkdir(dir, { recursive: true });
const grid = sampleGrid([toDisplay(inputs), jetHeatmap(out.heatmap, S), toDisplay(out.image)]);
await writePng(`${dir}/A2B_forward.png`, grid);
console.log(
  `wrote ${dir}/A2B_forward.png (rows: real, CAM heatmap, translation; weights untrained)`,
);
dispose([gParams, dg, dl, out, global, local, inputs, grid]);
