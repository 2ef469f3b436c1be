/**
 * The stateful edge of training: the one place that owns tensors across iterations, the backend,
 * files and time. It draws batches, calls the pure training step, reads the loss terms back,
 * shows progress, writes the JSON-lines log, sample pictures and checkpoints, stops cleanly on
 * Ctrl-C (saving first) and on a NaN or infinite loss or a lost GPU device (naming the cause,
 * keeping the last good checkpoint). What else happens as the run goes (the run report) is its
 * caller's, through hooks called after each picture and checkpoint.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../backends/select_backend.ts";
import { webgpuDeviceLost } from "../backends/webgpu/start.ts";
import { datasetName, openDataset } from "../data/dataset.ts";
import { DomainStream, loadTestImages } from "../data/domain_stream.ts";
import { pickSpread } from "../data/pick.ts";
import { Rng } from "../data/random.ts";
import { WriteError } from "../files/write_file.ts";
import { referenceRate } from "../optim/schedule.ts";
import { readGeneratorFile } from "../weights/generator_file.ts";
import { type Checkpoint, saveCheckpoint } from "./checkpoint.ts";
import { modelSettingsOf, startingState } from "./finetune.ts";
import { keptCheckpoint, openRunFolder, openRunLog } from "./run_folder.ts";
import { jetHeatmap, sampleGrid, toDisplay, writePng } from "./samples.ts";
import { configFromSettings, type RunSettings } from "./settings.ts";
import { type Progress, trainLoop } from "./loop.ts";
import { disposeState, trainer, type TrainState, type Translations } from "./step.ts";

/** Where the runner writes its lines. */
export interface RunnerIO {
  /** Progress and summaries. */
  readonly out: (line: string) => void;
  /** Warnings (skipped files, backend notices). */
  readonly warn: (line: string) => void;
  /** Redraws the progress line (a terminal); absent: plain lines instead. */
  readonly progress?: (line: string) => void;
}

/**
 * What the runner's caller does at points of a run (the train command refreshes the run report
 * there); a hook that throws stops the run.
 */
export interface RunHooks {
  /** After the sample pictures of an iteration are written (`<dir>/img/`). */
  readonly afterPicture?: (dir: string, step: number) => Promise<void>;
  /**
   * After an iteration's checkpoints are written (every `save_freq` iterations, every
   * {@linkcode CHECKPOINT_SECONDS}, at the end), its loss terms logged first.
   */
  readonly afterCheckpoint?: (dir: string, step: number) => Promise<void>;
}

/** Options of {@linkcode runTraining} beyond the settings. */
export interface RunOptions {
  /** Where lines go. */
  readonly io: RunnerIO;
  /** What to do at points of the run. */
  readonly hooks?: RunHooks;
  /** `stop` is polled between iterations (Ctrl-C sets it). */
  readonly control?: { stop: boolean };
}

/** How a run ended. */
export interface RunResult {
  /** Iterations done in all (resumed ones included). */
  readonly step: number;
  /**
   * `done`, `interrupted` (Ctrl-C or `stop()`), `diverged` (NaN or infinite loss) or `device_lost`
   * (the WebGPU device went away: a driver reset, the GPU removed).
   */
  readonly status: "done" | "interrupted" | "diverged" | "device_lost";
  /** The run folder. */
  readonly dir: string;
  /** The last loss terms read. */
  readonly terms: Record<string, number>;
}

/** Every how many seconds the latest checkpoint is refreshed, besides `--save_freq`. */
export const CHECKPOINT_SECONDS = 300;
const SAMPLES = 5; // train and test images per sample picture, as the reference draws

function formatTime(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s).padStart(2, "0")}s`;
}

/**
 * Writes the two sample pictures of an iteration, as the reference draws them: columns are
 * images (train, then test), rows real, identity heatmap, identity, translation heatmap,
 * translation, cycle heatmap, cycle.
 * @param dir the `img` folder
 * @param step the iteration (in the file names)
 * @param t translations of the sample images
 * @param realA the A images
 * @param realB the B images
 * @param size S
 */
export async function writeSamples(
  dir: string,
  step: number,
  t: Translations,
  realA: tf.Tensor4D,
  realB: tf.Tensor4D,
  size: number,
): Promise<void> {
  for (const [name, real] of [["A2B", realA], ["B2A", realB]] as const) {
    const p = t[name];
    const grid = tf.tidy(() =>
      sampleGrid([
        toDisplay(real),
        jetHeatmap(p.identity.heatmap, size),
        toDisplay(p.identity.image),
        jetHeatmap(p.translation.heatmap, size),
        toDisplay(p.translation.image),
        jetHeatmap(p.cycle.heatmap, size),
        toDisplay(p.cycle.image),
      ])
    );
    await writePng(
      `${dir}/${name}_${String(step).padStart(7, "0")}.png`,
      grid,
      `the sample picture of iteration ${step}`,
    );
    grid.dispose();
  }
}

/**
 * Trains (or resumes) a run.
 * @param flags the run's settings (the train command's flags; a checkpoint records all of them)
 * @param options where lines go, the hooks, the stop flag
 * @returns how the run ended
 */
export async function runTraining(
  flags: RunSettings,
  { io, hooks = {}, control = { stop: false } }: RunOptions,
): Promise<RunResult> {
  // A run from a model file (--model) has the file's model: its settings replace the flags'.
  const start = flags.model ? await readGeneratorFile(flags.model) : undefined;
  if (start) flags = { ...flags, ...modelSettingsOf(start, flags, flags.model) };
  if (flags.img_ch !== 3) {
    throw new Error(`--img_ch: the data loader reads RGB images; got ${flags.img_ch}`);
  }
  const config = configFromSettings(flags);
  // The folder first: a second training there, or a run to be kept, stops this one at once.
  const dir = `${flags.result_dir}/${datasetName(flags.dataset)}`;
  await using folder = await openRunFolder(dir, flags, config, io);
  const backend = await selectBackend(flags.backend, { log: io.warn });
  const data = await openDataset(flags.dataset, io.warn);
  const latest = `${dir}/model/latest.safetensors`;
  const model = trainer(config);
  const S = flags.img_size;

  let state: TrainState;
  let rng: Rng;
  let streams: Checkpoint["streams"] = {};
  if (folder.resume) {
    const ck = folder.resume.load();
    [state, rng, streams] = [ck.state, new Rng(ck.rng), ck.streams];
    io.out(folder.resume.line);
  } else {
    state = start
      ? startingState(model, start, { seed: flags.seed, source: flags.model!, log: io.out })
      : model.init(flags.seed);
    rng = new Rng(flags.seed);
  }
  const run = { state }; // the newest state: the training loop replaces it after each iteration
  const A = new DomainStream(data.trainA, S, rng, streams.A, io.warn);
  const B = new DomainStream(data.trainB, S, rng, streams.B, io.warn);

  // Fixed sample images (train, then test), spread over each split by the one pick, so that
  // pictures over time compare like with like.
  const pick = async (train: readonly string[], test: readonly string[]) => {
    const { batch } = await loadTestImages(
      [...pickSpread(train, SAMPLES), ...pickSpread(test, SAMPLES)],
      S,
      io.warn,
    );
    return batch;
  };
  const sampleA = await pick(data.trainA, data.testA);
  const sampleB = await pick(data.trainB, data.testB);

  let savedStep = folder.resume?.path === latest ? state.step : undefined; // what `latest` holds
  // The last checkpoint written whole (or resumed from): what a failed run keeps.
  let saved = folder.resume && { path: folder.resume.path, step: state.step };
  const save = async (path: string) => {
    const { state } = run;
    await saveCheckpoint(path, {
      state,
      rng: rng.state,
      streams: { A: A.state, B: B.state },
      flags: flags as unknown as Record<string, unknown>,
    });
    if (path === latest) savedStep = state.step;
    saved = { path, step: state.step };
  };
  const log = await openRunLog(dir);
  io.out(
    `training ${data.name} on ${backend.name}: ${
      flags.light ? "light" : "full"
    } S=${S} ch=${flags.ch} n_res=${flags.n_res} ` +
      `n_dis=${flags.n_dis}${flags.ema ? `, generators' moving average ${flags.ema}` : ""}, ` +
      `${data.trainA.length}+${data.trainB.length} training images; run folder ${dir}` +
      (start && !folder.resume
        ? `; starting from ${flags.model} (its model's shape, whatever the model flags say)`
        : ""),
  );
  const schedule = referenceRate(flags.lr, flags.iteration, flags.decay_flag);
  // On a GPU the iteration is recorded once and replayed (one line says so if it cannot be).
  const stepper = backend.replays ? model.compile({ log: io.warn }) : model;
  const startStep = state.step;
  let lastSave = performance.now();
  const kept = () => keptCheckpoint(saved);
  const picture = (step: number) => step % flags.print_freq === 0 || step === startStep + 1;
  const checkpoint = (step: number) => step % flags.save_freq === 0;
  const overdue = () => (performance.now() - lastSave) / 1000 > CHECKPOINT_SECONDS;

  // One line (or the progress bar) per iteration read, and its log record.
  const onProgress = async ({ step, terms, seconds, rate, secondsLeft }: Progress) => {
    await log.append({
      iteration: step,
      time: Number(seconds.toFixed(3)),
      lr: schedule(step),
      ...terms,
    });
    const summary = ["d_adv", "adv", "cycle", "identity", "cam"]
      .filter((k) => `${k}_A` in terms)
      .map((k) => `${k} ${((terms[`${k}_A`] + terms[`${k}_B`]) / 2).toFixed(3)}`).join("  ");
    const eta = formatTime(secondsLeft);
    if (io.progress) {
      const width = 20;
      const done = Math.round((width * step) / flags.iteration);
      io.progress(
        `[${"#".repeat(done)}${".".repeat(width - done)}] ${step}/${flags.iteration} ` +
          `${rate.toFixed(2)} it/s ETA ${eta}  ${summary}`,
      );
    } else if (step % 10 === 0 || step === 1 || step === flags.iteration) {
      io.out(
        `iteration ${step}/${flags.iteration}  ${rate.toFixed(2)} it/s  ETA ${eta}  ${summary}`,
      );
    }
  };
  // The sample pictures and checkpoints of a due iteration.
  const at = async (state: TrainState) => {
    if (picture(state.step)) {
      const tr = model.translate(state, sampleA, sampleB);
      await writeSamples(`${dir}/img`, state.step, tr, sampleA, sampleB, S);
      tf.dispose(tr as unknown as tf.Tensor[]);
      await hooks.afterPicture?.(dir, state.step);
    }
    if (checkpoint(state.step)) {
      await save(`${dir}/model/ckpt_${String(state.step).padStart(7, "0")}.safetensors`);
      await save(latest);
      await hooks.afterCheckpoint?.(dir, state.step);
      lastSave = performance.now();
    } else if (overdue()) {
      await save(latest);
      await hooks.afterCheckpoint?.(dir, state.step);
      lastSave = performance.now();
    }
  };
  try {
    const end = await trainLoop(run, {
      stepper,
      until: flags.iteration,
      batches: async () => [await A.next(flags.batch_size), await B.next(flags.batch_size)],
      readLag: backend.readLag,
      control,
      deviceFailure: () => webgpuDeviceLost(),
      onProgress,
      due: (step) => picture(step) || checkpoint(step) || overdue(),
      at,
    });
    const { terms } = end;
    if (end.status === "diverged") {
      const { step, term, value } = end.bad!;
      io.warn(
        `stopped at iteration ${step}: loss term ${term} is ${value}; ${kept()}; ` +
          "try a lower --lr or smaller loss weights",
      );
      return { step: end.good, status: end.status, dir, terms };
    }
    if (end.status === "device_lost") {
      io.warn(
        `stopped at iteration ${end.good + 1}: ${end.failure}; ${kept()}; continue with --resume`,
      );
      return { step: end.good, status: end.status, dir, terms };
    }
    const { step } = run.state;
    if (savedStep !== step) {
      await save(latest);
      await hooks.afterCheckpoint?.(dir, step);
    }
    io.out(
      `${end.status === "done" ? "finished" : "stopped"} at iteration ${step}; ` +
        `checkpoint ${latest}` + (end.status === "interrupted" ? " (continue with --resume)" : ""),
    );
    return { step, status: end.status, dir, terms };
  } catch (e) {
    // A full disk, a folder not writable or removed: one line, with what is kept.
    if (e instanceof WriteError) throw e.and(`${kept()}; once it can be written, --resume goes on`);
    throw e;
  } finally {
    log.close();
    disposeState(run.state);
    if ("compiled" in stepper) stepper.compiled.dispose();
    tf.dispose([sampleA, sampleB]);
  }
}
