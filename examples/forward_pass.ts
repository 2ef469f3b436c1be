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
import { count, discriminator, dispose, generator, selectBackend } from "../mod.ts";
import {
  BACKEND_FLAG,
  flagHelp,
  MODEL_FLAGS,
  parseFlags,
  RUN_FLAGS,
  SEED_FLAG,
} from "../cli/flags.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { jetHeatmap, sampleGrid, testPatterns, toDisplay, writePng } from "../train/samples.ts";

const FLAGS = { ...MODEL_FLAGS, ...RUN_FLAGS, ...BACKEND_FLAG, ...SEED_FLAG };
const LAPTOP = { light: true, img_size: 64, ch: 32, n_dis: 4, backend: "wasm" } as const;

if (Deno.args.includes("--help")) {
  console.log(`usage: deno task forward [flags] [image ...]\n\n${flagHelp(FLAGS, LAPTOP)}`);
  Deno.exit(0);
}
const flags = parseFlags(FLAGS, Deno.args, LAPTOP);
const backend = (await selectBackend(flags.backend)).name;
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
const files = flags._;
const inputs = files.length ? (await loadTestImages(files, S)).batch : testPatterns(4, S);

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
