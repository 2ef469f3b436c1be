/**
 * `deno task ablate`: trains the full model and the paper's ablations on the same data, seed and
 * budget, evaluates each, and prints one comparison table (also written as `ablation.json`).
 * Variants: `full`, `no_cam` (no CAM in generators or discriminators), `in`, `ln` and `adain`
 * (the decoder's AdaLIN replaced); `--variants full,in` picks some. Runs go to
 * `<result_dir>/ablate/<variant>/`; `--resume` continues unfinished ones.
 *
 * @module
 */
import type { EvalResult } from "../eval/eval_result.ts";
import { runEval } from "../eval/evaluate.ts";
import { writeTextAtomically } from "../files/write_file.ts";
import type { RunnerIO } from "../train/runner.ts";
import { CONSOLE, runCommand } from "./command.ts";
import { EVAL_OWN_FLAGS } from "./eval.ts";
import {
  BACKEND_FLAG,
  FlagError,
  type FlagGroup,
  type Flags,
  MODEL_FLAGS,
  RUN_FLAGS,
  SEED_FLAG,
  TRAINING_FLAGS,
} from "./flags.ts";
import { trainWithReport } from "./train.ts";

/** Every flag of `deno task ablate`: the training and evaluation flags, and the variants. */
export const ABLATE_FLAGS = {
  ...MODEL_FLAGS,
  ...RUN_FLAGS,
  ...BACKEND_FLAG,
  ...SEED_FLAG,
  ...TRAINING_FLAGS,
  ...EVAL_OWN_FLAGS,
  variants: {
    kind: "string",
    default: "full,no_cam,in,ln,adain",
    help: "the variants to run, comma-separated",
  },
} as const satisfies FlagGroup;

/** The flags `deno task ablate` decodes. */
export type AblateFlags = Flags<typeof ABLATE_FLAGS>;

/** The variants and the flags that make them. */
export const VARIANTS: Record<string, Partial<AblateFlags>> = {
  full: {},
  no_cam: { gen_cam: false, dis_cam: false },
  in: { decoder_norm: "in" },
  ln: { decoder_norm: "ln" },
  adain: { decoder_norm: "adain" },
};

/**
 * The CPU-sized budget: the bare training configuration for 400 iterations per variant (about
 * ten minutes each on the wasm backend, an hour for all five).
 */
export const ABLATION_DEFAULTS: Partial<AblateFlags> = {
  light: true,
  img_size: 32,
  ch: 16,
  n_dis: 4,
  lr: 1e-3,
  iteration: 400,
  print_freq: 100,
  save_freq: 400,
};

/**
 * Trains and evaluates each variant.
 * @param flags the shared flags
 * @param names the variants to run
 * @param io where lines go
 * @returns each variant's evaluation
 */
export async function runAblation(
  flags: AblateFlags,
  names: readonly string[],
  io: RunnerIO,
): Promise<Record<string, EvalResult>> {
  const unknown = names.filter((n) => !(n in VARIANTS));
  if (unknown.length) {
    throw new FlagError(
      `--variants: unknown ${unknown.join(", ")}; choose from ${Object.keys(VARIANTS).join(", ")}`,
    );
  }
  const root = `${flags.result_dir}/ablate`;
  const results: Record<string, EvalResult> = {};
  for (const name of names) {
    const variant = { ...flags, ...VARIANTS[name], result_dir: `${root}/${name}`, checkpoint: "" };
    const t0 = performance.now();
    io.out(`--- ${name} ---`);
    const run = await trainWithReport(variant, io);
    if (run.status !== "done") {
      throw new Error(`ablation ${name} ${run.status} at iteration ${run.step}`);
    }
    results[name] = await runEval(variant, { ...io, out: () => {} });
    io.out(
      `${name}: ${run.step} iterations in ${((performance.now() - t0) / 60000).toFixed(1)} min`,
    );
  }
  const cell = (
    r: EvalResult,
    pick: (d: EvalResult["A2B"]) => number | undefined,
    digits: number,
  ) => (["A2B", "B2A"] as const).map((d) => pick(r[d])?.toFixed(digits) ?? "-").join(" / ");
  const rows = [[
    "variant",
    "KID x100 A2B / B2A",
    "FID A2B / B2A",
    "SSIM A2B / B2A",
    "L1 A2B / B2A",
  ]];
  for (const [name, r] of Object.entries(results)) {
    rows.push([
      name,
      cell(r, (d) => 100 * d.kid.mean, 2),
      cell(r, (d) => d.fid, 2),
      cell(r, (d) => d.paired?.translation.ssim, 3),
      cell(r, (d) => d.paired?.translation.l1, 3),
    ]);
  }
  io.out(`features: ${Object.values(results)[0]?.features}`);
  for (const row of rows) io.out(row.map((c, i) => c.padEnd(i === 0 ? 10 : 22)).join("").trimEnd());
  await writeTextAtomically(
    `${root}/ablation.json`,
    JSON.stringify(results, null, 2) + "\n",
    "the ablation table",
  );
  io.out(`wrote ${root}/ablation.json`);
  return results;
}

if (import.meta.main) {
  await runCommand({
    usage: `deno task ablate [--variants ${Object.keys(VARIANTS).join(",")}] [flags]`,
    about:
      "Trains and evaluates the full model and its ablations with the same data, seed and budget.",
    flags: ABLATE_FLAGS,
    defaults: ABLATION_DEFAULTS,
    run: async (flags) => {
      const t0 = performance.now();
      await runAblation(flags, flags.variants.split(","), CONSOLE);
      console.log(`wall time ${((performance.now() - t0) / 60000).toFixed(1)} min`);
    },
  });
}
