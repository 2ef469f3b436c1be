/**
 * # Translating and evaluating
 *
 * With a trained run (e.g. from `examples/train_tiny.ts`): translate a folder of images, then
 * score the run on its test split: KID and FID against the real target images and, for the
 * emoji data's aligned pairs, L1, PSNR and SSIM against the true targets, each next to the
 * untranslated source's figure, the baseline a translation must beat.
 *
 *     deno run -A examples/translate_and_evaluate.ts [--result_dir results/examples] [folder]
 *
 * @module
 */
import { EVAL_FLAGS } from "../cli/eval.ts";
import { parseFlags } from "../cli/flags.ts";
import { runTranslate, TRANSLATE_FLAGS } from "../cli/translate.ts";
import { runEval } from "../eval/evaluate.ts";

// The two commands' flags together.
const flags = parseFlags({ ...TRANSLATE_FLAGS, ...EVAL_FLAGS }, Deno.args, {
  result_dir: "results/examples",
  backend: "wasm",
});
const io = { out: console.log, warn: console.error };

// ## Translate
// Positional arguments are images or folders; without them, the dataset's test split. The model
// flags come from the checkpoint itself.
const folder = await runTranslate(flags, io);
console.log(`open ${folder}/index.html to see inputs and translations side by side`);

// ## Evaluate
const scores = await runEval(flags, io);
console.log(
  `A2B KID x100: ${(100 * scores.A2B.kid.mean).toFixed(2)}, untranslated ${
    (100 * scores.A2B.source.kid.mean).toFixed(2)
  }`,
);
