/**
 * `deno task ablate`: trains the full model and the paper's ablations on the same data and budget,
 * each with `--seeds` seeds, evaluates every run, and writes beside one another in
 * `<result_dir>/ablate/`: the table (each figure's mean and spread over the seeds, printed and in
 * `ablation.json`), the paper's figure (`ablation_A2B.png`, `ablation_B2A.png`: a row per held-out
 * image drawn by the pick, a column per variant after the source, the true target last where the
 * data has aligned pairs) and `report.html` showing both. Variants: `full`, `in`, `ln`, `adain`,
 * `gn` (the decoder's AdaLIN replaced) and `no_cam` (no CAM in generators or discriminators);
 * `--variants full,in` picks some. Runs go to `<result_dir>/ablate/<variant>/seed_<seed>/`;
 * `--resume` continues unfinished ones.
 *
 * @module
 */
import { selectBackend } from "../backends/select_backend.ts";
import { datasetName, openDataset } from "../data/dataset.ts";
import { pickIndices } from "../data/pick.ts";
import {
  ablationTable,
  type FigureColumn,
  writeAblationFigure,
  writeAblationReport,
} from "../eval/ablation.ts";
import type { EvalResult } from "../eval/eval_result.ts";
import { runEval, trainJudge } from "../eval/evaluate.ts";
import { writeTextAtomically } from "../files/write_file.ts";
import type { RunnerIO } from "../train/runner.ts";
import type { Direction } from "../weights/generator_file.ts";
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
    default: "full,in,ln,adain,gn,no_cam",
    help: "the variants to run, comma-separated, in the figure's order",
  },
  seeds: {
    kind: "int",
    default: 3,
    help: "runs per variant, with seeds --seed, --seed+1, ...: the table gives each figure's " +
      "mean and spread over them (1: a third of the time)",
  },
  figure_rows: {
    kind: "int",
    default: 8,
    help: "held-out images (rows) in the ablation figure, drawn by the pick",
  },
} as const satisfies FlagGroup;

/** The flags `deno task ablate` decodes. */
export type AblateFlags = Flags<typeof ABLATE_FLAGS>;

/** The variants and the flags that make them. */
export const VARIANTS: Record<string, Partial<AblateFlags>> = {
  full: {},
  in: { decoder_norm: "in" },
  ln: { decoder_norm: "ln" },
  adain: { decoder_norm: "adain" },
  gn: { decoder_norm: "gn" },
  no_cam: { gen_cam: false, dis_cam: false },
};

/**
 * The CPU-sized budget: the bare training configuration for 400 iterations per run (about ten
 * minutes each on the wasm backend: three hours for six variants of three seeds).
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

/** What an ablation made. */
export interface Ablation {
  /** The seeds each variant ran with. */
  readonly seeds: readonly number[];
  /** Each variant's evaluations, one per seed, in the order of the variants asked. */
  readonly runs: Readonly<Record<string, readonly EvalResult[]>>;
  /** The figures (PNG), by direction. */
  readonly figures: Readonly<Record<Direction, string>>;
  /** The ablation's `report.html`. */
  readonly report: string;
}

/**
 * Trains and evaluates each variant with each seed, then writes the table, the figures and the
 * report.
 * @param flags the shared flags (`--seeds`, `--figure_rows` among them)
 * @param names the variants to run, in the figure's order
 * @param io where lines go
 * @returns the runs' evaluations and the files written
 */
export async function runAblation(
  flags: AblateFlags,
  names: readonly string[],
  io: RunnerIO,
): Promise<Ablation> {
  const unknown = names.filter((n) => !(n in VARIANTS));
  if (unknown.length) {
    throw new FlagError(
      `--variants: unknown ${unknown.join(", ")}; choose from ${Object.keys(VARIANTS).join(", ")}`,
    );
  }
  const root = `${flags.result_dir}/ablate`;
  const seeds = Array.from({ length: flags.seeds }, (_, k) => flags.seed + k);
  const runs: Record<string, EvalResult[]> = {};
  const runDirs: Record<string, string[]> = {};
  const columns: FigureColumn[] = [];
  // One judge for every run (trained with --seed, on the backend the runs use): the spread over
  // seeds is the runs', not the judges', and it is trained once, not once per run.
  await selectBackend(flags.backend, { log: io.warn });
  const judge = await trainJudge(flags.dataset, flags.seed, io.warn);
  try {
    for (const name of names) {
      [runs[name], runDirs[name]] = [[], []];
      for (const seed of seeds) {
        const variant = {
          ...flags,
          ...VARIANTS[name],
          seed,
          result_dir: `${root}/${name}/seed_${seed}`,
          checkpoint: "",
        };
        const t0 = performance.now();
        io.out(`--- ${name}, seed ${seed} ---`);
        const run = await trainWithReport(variant, io);
        if (run.status !== "done") {
          throw new Error(`ablation ${name} (seed ${seed}) ${run.status} at iteration ${run.step}`);
        }
        runs[name].push(await runEval(variant, { ...io, out: () => {} }, judge));
        runDirs[name].push(run.dir.slice(root.length + 1));
        if (seed === seeds[0]) {
          columns.push({ label: name, checkpoint: `${run.dir}/model/latest.safetensors` });
        }
        io.out(
          `${name}, seed ${seed}: ${run.step} iterations in ${
            ((performance.now() - t0) / 60000).toFixed(1)
          } min`,
        );
      }
    }
  } finally {
    judge.dispose();
  }
  io.out(`features: ${Object.values(runs)[0]?.[0]?.features}; mean ± sd over seeds ${seeds}`);
  for (const d of ["A2B", "B2A"] as const) {
    const rows = ablationTable(runs, d);
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)) + 2);
    for (const row of rows) io.out(row.map((c, i) => c.padEnd(widths[i])).join("").trimEnd());
  }
  await writeTextAtomically(
    `${root}/ablation.json`,
    JSON.stringify({ seeds, variants: runs }, null, 2) + "\n",
    "the ablation table",
  );
  io.out(`wrote ${root}/ablation.json`);

  // The figure: the same held-out images in every row, by the one pick.
  const data = await openDataset(flags.dataset, io.warn);
  const figures = {} as Record<Direction, string>;
  for (const d of ["A2B", "B2A"] as const) {
    const [sources, targets] = d === "A2B" ? [data.testA, data.testB] : [data.testB, data.testA];
    const at = pickIndices(sources.length, flags.figure_rows);
    const paired = data.alignedTest && sources.length === targets.length;
    figures[d] = `${root}/ablation_${d}.png`;
    await writeAblationFigure(
      figures[d],
      columns,
      at.map((i) => sources[i]),
      paired ? at.map((i) => targets[i]) : undefined,
      flags,
      d,
    );
    io.out(`wrote ${figures[d]}`);
  }
  const report = await writeAblationReport(`${root}/report.html`, {
    runs,
    seeds,
    runDirs,
    figures: { A2B: "ablation_A2B.png", B2A: "ablation_B2A.png" },
    budget:
      `${datasetName(flags.dataset)}: ${flags.light ? "light" : "full"} S=${flags.img_size} ` +
      `ch=${flags.ch} n_res=${flags.n_res} n_dis=${flags.n_dis}, ${flags.iteration} iterations ` +
      `per run, lr ${flags.lr}, cycle ${flags.cycle_weight}, identity ${flags.identity_weight}` +
      (flags.ema ? `, moving average ${flags.ema}` : ""),
  });
  io.out(`wrote ${report}`);
  return { seeds, runs, figures, report };
}

if (import.meta.main) {
  await runCommand({
    usage: `deno task ablate [--variants ${Object.keys(VARIANTS).join(",")}] [flags]`,
    about: "Trains and evaluates the full model and its ablations with the same data and budget, " +
      "--seeds runs each; writes the table, the figure and report.html in <result_dir>/ablate/.",
    flags: ABLATE_FLAGS,
    defaults: ABLATION_DEFAULTS,
    run: async (flags) => {
      const t0 = performance.now();
      await runAblation(flags, flags.variants.split(","), CONSOLE);
      console.log(`wall time ${((performance.now() - t0) / 60000).toFixed(1)} min`);
    },
  });
}
