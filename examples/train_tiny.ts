/**
 * # Training a tiny model for a few minutes
 *
 * The whole loop on the built-in emoji data (Google to Twitter style), at a size a laptop CPU
 * trains in minutes: every 100 iterations a picture shows, per column, a real emoji, what the
 * generator attends to (CAM heatmap), its identity pass, its translation and its cycle back.
 *
 *     deno run -A examples/train_tiny.ts [--iteration 300] [--result_dir results/examples]
 *
 * Run again, it stops rather than train over the first run: add `--resume` to go on with it, or
 * `--overwrite` to start over.
 *
 * @module
 */
import { parseFlags } from "../cli/flags.ts";
import { TRAIN_FLAGS, trainWithReport } from "../cli/train.ts";

// ## Configuration
// The train command's flags, by the reference's names; here 32 px, base width 16, a light
// generator.
const flags = parseFlags(TRAIN_FLAGS, Deno.args, {
  light: true,
  img_size: 32,
  ch: 16,
  n_dis: 4,
  lr: 1e-3,
  iteration: 300,
  print_freq: 100,
  save_freq: 300,
  result_dir: "results/examples",
  backend: "wasm",
});

// ## Train
// The runner owns everything stateful: data order, checkpoints, the log, the pictures; the train
// command's own addition, the run report, follows it.
const result = await trainWithReport(flags, { out: console.log, warn: console.error });

// ## Look
// `img/A2B_<iteration>.png` in the run folder; the log has every loss term per iteration, and
// `report.html` draws them.
console.log(
  `pictures in ${result.dir}/img, losses in ${result.dir}/log.jsonl (status: ${result.status})`,
);
