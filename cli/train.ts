/**
 * `deno task train`: trains U-GAT-IT with the reference's flags. With no flags it trains on the
 * built-in emoji task (Google to Twitter) with a configuration sized for a laptop CPU; the
 * paper's configuration is `--light false --img_size 256 --ch 64 --n_dis 6 --iteration 1000000
 * --cycle_weight 10 --identity_weight 10 --ema 0 --print_freq 1000 --save_freq 100000`. `--phase
 * test` translates the test split with the latest checkpoint (as `deno task translate`). The run
 * report follows the run: it is refreshed after each sample picture and checkpoint. One training
 * at a time holds a run folder; a folder that holds a run is continued with `--resume` (from its
 * newest valid checkpoint) or started over with `--overwrite`, never trained over silently
 * (`train/run_folder.ts`). `--model` starts a run from a shipped model (or any generator file)
 * instead of fresh weights: fine-tuning it on `--dataset` (`train/finetune.ts`, as the browser
 * page's fine-tuning panel starts).
 *
 * @module
 */
import { writeReport } from "../eval/report.ts";
import { type RunnerIO, type RunResult, runTraining } from "../train/runner.ts";
import type { RunSettings } from "../train/settings.ts";
import { CONSOLE, runCommand } from "./command.ts";
import {
  BACKEND_FLAG,
  FlagError,
  type FlagGroup,
  type Flags,
  LAPTOP_DEFAULTS,
  MODEL_FLAGS,
  RUN_FLAGS,
  SEED_FLAG,
  TRAINING_FLAGS,
} from "./flags.ts";
import { runTranslate, shippedModel, TRANSLATE_OWN_FLAGS } from "./translate.ts";

/** Every flag of `deno task train` (with `--phase test`, the translate command's too). */
export const TRAIN_FLAGS = {
  ...MODEL_FLAGS,
  ...RUN_FLAGS,
  ...BACKEND_FLAG,
  ...SEED_FLAG,
  phase: { kind: "string", default: "train", help: "train or test" },
  ...TRAINING_FLAGS,
  ...TRANSLATE_OWN_FLAGS,
  model: {
    kind: "string",
    default: "",
    help: "start from a model's weights instead of fresh ones, and fine-tune it on --dataset: a " +
      "model shipped in models/ (e.g. emoji-google2twitter) or a generator file (deno task " +
      "export; its discriminators too with --discriminators, else fresh ones); its shape replaces " +
      "the model flags. With --phase test: translate with that shipped model",
  },
} as const satisfies FlagGroup;

/** The flags `deno task train` decodes. */
export type TrainFlags = Flags<typeof TRAIN_FLAGS>;

/**
 * The file `--model` names: a generator file by its path, or a model shipped in `models/` by name.
 * @param value the flag's value
 * @returns the file's path
 * @throws {FlagError} naming the path that is not a file, or the shipped models for an unknown name
 */
export function modelFile(value: string): string {
  if (!/[\\/]|\.safetensors$/.test(value)) return shippedModel(value);
  try {
    if (Deno.statSync(value).isFile) return value;
  } catch {
    // named below
  }
  throw new FlagError(`--model: ${value} is not a file (a generator file, or a model's name)`);
}

/**
 * Trains (or resumes) a run with its report following it: `report.html` in the run folder is
 * refreshed after each sample picture and checkpoint (a failure to draw it is a warning, not the
 * end of the run).
 * @param flags the run's settings (`model`: a name or a file, {@linkcode modelFile})
 * @param io where lines go
 * @param control `stop` is polled between iterations (Ctrl-C sets it)
 * @returns how the run ended
 */
export async function trainWithReport(
  flags: RunSettings,
  io: RunnerIO,
  control: { stop: boolean } = { stop: false },
): Promise<RunResult> {
  if (flags.model) flags = { ...flags, model: modelFile(flags.model) };
  const refresh = (dir: string) =>
    writeReport(dir).then(
      () => {},
      (e) => io.warn(`report.html not updated: ${(e as Error).message}`),
    );
  return await runTraining(flags, {
    io,
    control,
    hooks: { afterPicture: refresh, afterCheckpoint: refresh },
  });
}

async function train(flags: TrainFlags): Promise<number> {
  if (flags.phase === "test") {
    await runTranslate(flags, CONSOLE);
    return 0;
  }
  if (flags.phase !== "train") {
    throw new FlagError(`--phase: expected train or test, got "${flags.phase}"`);
  }
  const control = { stop: false };
  const onInterrupt = () => {
    if (control.stop) Deno.exit(130); // a second Ctrl-C does not wait for the checkpoint
    control.stop = true;
    console.error(
      "\nstopping after this iteration and saving a checkpoint (Ctrl-C again to quit now)",
    );
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const terminal = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  const result = await trainWithReport(flags, {
    out: (line) => console.log(terminal ? `\r\x1b[K${line}` : line),
    warn: (line) => console.error(terminal ? `\r\x1b[K${line}` : line),
    progress: terminal
      ? (line) => Deno.stdout.writeSync(enc.encode(`\r\x1b[K${line.slice(0, 160)}`))
      : undefined,
  }, control);
  Deno.removeSignalListener("SIGINT", onInterrupt);
  return result.status === "diverged" || result.status === "device_lost" ? 1 : 0;
}

if (import.meta.main) {
  await runCommand({
    usage: "deno task train [flags]",
    about: "Trains U-GAT-IT (defaults sized for a laptop CPU).",
    flags: TRAIN_FLAGS,
    defaults: LAPTOP_DEFAULTS,
    run: train,
  });
}
