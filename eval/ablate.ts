/**
 * `deno task ablate`: trains the full model and the paper's ablations on the same data, seed and
 * budget, evaluates each, and prints one comparison table (also written as `ablation.json`).
 * Variants: `full`, `no_cam` (no CAM in generators or discriminators), `in`, `ln` and `adain`
 * (the decoder's AdaLIN replaced); `--variants full,in` picks some. Runs go to
 * `<result_dir>/ablate/<variant>/`; `--resume` continues unfinished ones.
 *
 * @module
 */
import { exitOnUserError, FlagError, flagHelp, type Flags, flagsOrExit } from "../train/flags.ts";
import { type RunnerIO, runTraining } from "../train/runner.ts";
import { type EvalResult, runEval } from "./evaluate.ts";

/** The variants and the flags that make them. */
export const VARIANTS: Record<string, Partial<Flags>> = {
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
export const ABLATION_DEFAULTS: Partial<Flags> = {
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
  flags: Flags,
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
    const variant = {
      ...flags,
      ...VARIANTS[name],
      result_dir: `${root}/${name}`,
      checkpoint: "",
    } as Flags;
    const t0 = performance.now();
    io.out(`--- ${name} ---`);
    const run = await runTraining(variant, io);
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
  await Deno.writeTextFile(`${root}/ablation.json`, JSON.stringify(results, null, 2) + "\n");
  io.out(`wrote ${root}/ablation.json`);
  return results;
}

if (import.meta.main) {
  const args = [...Deno.args];
  const at = args.indexOf("--variants");
  const names = at < 0 ? Object.keys(VARIANTS) : args.splice(at, 2)[1].split(",");
  if (args.includes("--help")) {
    console.log(
      `usage: deno task ablate [--variants ${Object.keys(VARIANTS).join(",")}] [flags]\n\n` +
        `Trains and evaluates the full model and its ablations with the same data, seed and budget.\n\n` +
        flagHelp(ABLATION_DEFAULTS),
    );
    Deno.exit(0);
  }
  try {
    const t0 = performance.now();
    await runAblation(flagsOrExit(args, ABLATION_DEFAULTS), names, {
      out: console.log,
      warn: console.error,
    });
    console.log(`wall time ${((performance.now() - t0) / 60000).toFixed(1)} min`);
  } catch (e) {
    exitOnUserError(e);
  }
}
