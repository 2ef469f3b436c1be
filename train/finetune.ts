/**
 * Fine-tuning a trained model on new pictures: the training state a model file starts (its
 * generators, its discriminators where the file holds them, else fresh ones with a line saying
 * so; fresh optimisers; the moving average begun from the generators), and a whole fine-tuning
 * run on pictures in memory, as the browser page runs it in a worker. Deno's `deno task train
 * --model` starts its run from the same state ({@linkcode startingState}, `runner.ts`), and both
 * run the same loop (`loop.ts`). Nothing here needs Deno or reads a file.
 *
 * @example
 * ```ts
 * import { describeBackend } from "../backends/backend.ts";
 * import { generator } from "../layers/generator.ts";
 * import { resizeMargin } from "../data/pictures.ts";
 * import { toHost } from "../weights/params_io.ts";
 * import { decodeSafetensors } from "../weights/safetensors.ts";
 * import { encodeGeneratorFile, generatorFileFrom } from "../weights/generator_file.ts";
 * import { fineTune } from "./finetune.ts";
 * const config = { ch: 2, nRes: 1, imgSize: 24, light: true };
 * const g = generator(config);
 * const bytes = encodeGeneratorFile(
 *   { A2B: await toHost(g.init(0)), B2A: await toHost(g.init(1)) },
 *   config,
 * );
 * const file = generatorFileFrom(decodeSafetensors(bytes), "tiny.safetensors");
 * if (file._tag === "Left") throw file.left;
 * const M = resizeMargin(24);
 * const white = { rgb: new Uint8Array(M * M * 3).fill(255), size: M };
 * const tuned = await fineTune({
 *   model: file.right,
 *   name: "tiny.safetensors",
 *   pictures: { A: [white], B: [white] },
 *   iterations: 2,
 *   backend: describeBackend("cpu"),
 *   log: () => {},
 * });
 * console.log(tuned.status, tuned.step); // "done" 2
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Backend } from "../backends/backend.ts";
import { type Picture, PictureStream } from "../data/pictures.ts";
import { Rng } from "../data/random.ts";
import type { DiscriminatorParams, DiscriminatorState } from "../layers/discriminator.ts";
import type { GeneratorParams } from "../layers/generator.ts";
import { dispose, map } from "../tree/tree.ts";
import {
  DISCRIMINATOR_NETWORKS,
  discriminatorEntries,
  type DiscriminatorNetwork,
  encodeGeneratorFile,
  type GeneratorFile,
} from "../weights/generator_file.ts";
import { fromHost, toHost } from "../weights/params_io.ts";
import { checkAgainst, discriminatorNames, generatorNames } from "../weights/reference_names.ts";
import { type HostTensor, WeightFileError } from "../weights/safetensors.ts";
import { type LoopControl, type LoopEnd, type Progress, trainLoop } from "./loop.ts";
import { configFromSettings, type ModelSettings, type Recipe, SHIPPED_RECIPE } from "./settings.ts";
import {
  type Discriminators,
  disposeState,
  type Trainer,
  trainer,
  type TrainState,
  type Translations,
} from "./step.ts";

/**
 * The model settings of a model file: its generators' configuration, and its discriminators'
 * where it holds them (else `n_dis` and `dis_cam` from `fallback`).
 * @param file the decoded generator file
 * @param fallback the discriminators' depth and CAM for a file without them
 * @param source the file's name, for the error
 * @returns the settings a run from this file has
 * @throws {WeightFileError} where its global and local discriminators disagree on `n_dis`
 */
export function modelSettingsOf(
  file: GeneratorFile,
  fallback: Pick<ModelSettings, "n_dis" | "dis_cam">,
  source = "the model file",
): ModelSettings {
  const g = file.config;
  const d = file.discriminators?.config;
  if (d && d.local.nLayers !== d.global.nLayers - 2) {
    throw new WeightFileError(
      `${source}: its discriminators have ${d.global.nLayers} (global) and ${d.local.nLayers} ` +
        "(local) layers, not n_dis + 1 and n_dis - 1",
    );
  }
  return {
    light: g.light ?? false,
    ch: g.ch ?? 64,
    n_res: g.nRes ?? 4,
    img_size: g.imgSize ?? 256,
    img_ch: g.imgCh ?? 3,
    decoder_norm: g.decoderNorm ?? "adalin",
    gen_cam: g.cam ?? true,
    n_dis: d ? d.global.nLayers - 1 : fallback.n_dis,
    dis_cam: d ? d.global.cam ?? true : fallback.dis_cam,
  };
}

/** Options of {@linkcode startingState}. */
export interface StartOptions {
  /** Seed of the fresh discriminators, where the file has none (as `init(seed)` draws them). */
  readonly seed: number;
  /** The file's name, for lines and errors. */
  readonly source: string;
  /** Where the line about fresh discriminators goes. */
  readonly log: (line: string) => void;
}

/**
 * The training state a fine-tuning run starts from, at iteration 0: both generators from the
 * file, its discriminators and their spectral-norm vectors where it holds them (else fresh ones,
 * as `model.init(seed)` makes them, with a line saying so), fresh optimisers, and the moving
 * average (where the configuration keeps one) begun from the generators.
 * @param model the trainer, configured for the file's model ({@linkcode modelSettingsOf})
 * @param file the decoded generator file
 * @param options the seed, the file's name, where lines go
 * @returns the state (the caller owns it)
 * @throws {WeightFileError} naming the file where it lacks a direction or does not fit the model
 */
export function startingState(
  model: Trainer,
  file: GeneratorFile,
  { seed, source, log }: StartOptions,
): TrainState {
  const { A2B, B2A } = file.generators;
  if (!A2B || !B2A) {
    throw new WeightFileError(
      `${source}: holds ${A2B ? "A2B" : "B2A"} only; fine-tuning needs both generators ` +
        "(deno task export --direction both)",
    );
  }
  const { config } = model;
  const gNames = generatorNames(config.generator);
  for (const host of [A2B, B2A]) checkAgainst(gNames, host, source);
  const disConfigOf = (net: DiscriminatorNetwork) =>
    net.startsWith("disG") ? config.global : config.local;
  const shipped = file.discriminators;
  for (const net of shipped ? DISCRIMINATOR_NETWORKS : []) {
    checkAgainst(discriminatorNames(disConfigOf(net)), shipped!.networks[net], source);
  }

  const fresh = model.init(seed);
  const gen = { genA2B: fromHost<GeneratorParams>(A2B), genB2A: fromHost<GeneratorParams>(B2A) };
  let { dis, sn } = fresh;
  if (shipped) {
    dispose([fresh.dis, fresh.sn]);
    const part = (net: DiscriminatorNetwork, state: boolean) => {
      const entries = discriminatorEntries(shipped.config, net).filter((e) => !!e.state === state);
      return Object.fromEntries(entries.map((e) => [e.ours, shipped.networks[net][e.ours]]));
    };
    const byNet = <T>(make: (net: DiscriminatorNetwork) => T) =>
      Object.fromEntries(DISCRIMINATOR_NETWORKS.map((net) => [net, make(net)])) as Discriminators<
        T
      >;
    dis = byNet((net) => fromHost<DiscriminatorParams>(part(net, false)));
    sn = byNet((net) => fromHost<DiscriminatorState>(part(net, true)));
  } else {
    log(`${source} holds no discriminators: starting fresh ones (seed ${seed})`);
  }
  dispose([fresh.gen, fresh.ema ?? {}]);
  return {
    step: 0,
    gen,
    dis,
    sn,
    ...(fresh.ema ? { ema: map(gen, (p) => p.clone()) } : {}),
    optG: fresh.optG,
    optD: fresh.optD,
  };
}

/** Options of {@linkcode fineTune}. */
export interface FineTuneOptions {
  /** The model to start from: a decoded generator file holding both directions. */
  readonly model: GeneratorFile;
  /** Its name, for lines and the fine-tuned file's metadata. */
  readonly name: string;
  /** Each domain's pictures, at the side `resizeMargin(S)` (crops of S are drawn from them). */
  readonly pictures: { readonly A: readonly Picture[]; readonly B: readonly Picture[] };
  /** Iterations to run (the learning rate decays over the second half, as in training). */
  readonly iterations: number;
  /** The active backend: how late terms are read, whether the step replays. */
  readonly backend: Backend;
  /** Seed of the data order and the augmentation (and fresh discriminators); default 0. */
  readonly seed?: number;
  /** The recipe; default {@linkcode SHIPPED_RECIPE}. */
  readonly recipe?: Recipe;
  /** The discriminators' depth where the file has none (default 4, the shipped model's run's). */
  readonly nDis?: number;
  /** Where lines go (fresh discriminators, a step that cannot replay). */
  readonly log: (line: string) => void;
  /** Stop and pause. */
  readonly control?: LoopControl;
  /** Awaited between iterations (a worker handles its messages there). */
  readonly between?: () => Promise<void>;
  /** Whether the device failed, and why (see `LoopOptions.deviceFailure`). */
  readonly deviceFailure?: (error?: unknown) => string | undefined;
  /** Each iteration's progress, once its terms are read and finite, and how steps run now. */
  readonly onProgress?: (p: Progress, mode: string) => void | Promise<void>;
  /**
   * Pictures translated before the first iteration and every `every` iterations, by the
   * generators the file would hold then (`show` may read them; they are disposed after it).
   */
  readonly preview?: {
    readonly A: tf.Tensor4D;
    readonly B: tf.Tensor4D;
    readonly every: number;
    readonly show: (step: number, t: Translations) => Promise<void>;
  };
  /**
   * Every how many iterations the generators are copied to the host: what is kept when the
   * device fails or a loss diverges (default 10). The end of the run is always kept.
   */
  readonly keepEvery?: number;
}

/**
 * How a fine-tuning run ended: as the loop ended, or `failed` with the message of an error that
 * broke it (the weights kept before it are still returned).
 */
export type FineTuneEnd =
  | LoopEnd
  | Omit<LoopEnd, "status" | "failure"> & { readonly status: "failed"; readonly failure: string };

/** What a fine-tuning run leaves. */
export interface FineTuned {
  /** How the run ended. */
  readonly status: FineTuneEnd["status"];
  /** The iteration the kept weights are of (the last one where the run ended well). */
  readonly step: number;
  /** The loop's end: the last terms, and where it diverged or why the device failed. */
  readonly end: FineTuneEnd;
  /**
   * Those weights as a generator file (float32, both directions; the moving average where the
   * recipe keeps one), which `deno task translate --checkpoint` reads.
   */
  readonly file: Uint8Array;
  /** How the steps ran in the end: `replayed`, or `eager` and why (or still recording). */
  readonly mode: string;
}

/**
 * Fine-tunes a model on pictures in memory: the page's fine-tuning, and the reference its test
 * compares with. It runs `iterations` iterations of the training step from
 * {@linkcode startingState} on batches of one picture per domain drawn as training draws them
 * (`PictureStream`, seeded), keeps a host copy of the generators every `keepEvery` iterations,
 * and returns the last good ones as a generator file.
 * @param options the model, the pictures, the length, the backend, and the caller's hooks
 * @returns how it ended, and the file of the weights kept
 */
export async function fineTune(options: FineTuneOptions): Promise<FineTuned> {
  const { model: file, name, pictures, iterations, backend, log, preview } = options;
  const { seed = 0, recipe = SHIPPED_RECIPE, nDis = 4, keepEvery = 10 } = options;
  const settings = modelSettingsOf(file, { n_dis: nDis, dis_cam: true }, name);
  const config = configFromSettings({ ...recipe, ...settings, iteration: iterations });
  const model = trainer(config);
  const S = settings.img_size;
  const rng = new Rng(seed);
  const A = new PictureStream(pictures.A, S, rng);
  const B = new PictureStream(pictures.B, S, rng);
  const run = { state: startingState(model, file, { seed, source: name, log }) };
  let stepper: typeof model | ReturnType<typeof model.compile>;
  try {
    stepper = backend.replays ? model.compile({ log }) : model;
  } catch (e) {
    disposeState(run.state);
    throw e;
  }

  const averaged = run.state.ema !== undefined;
  let kept: { step: number; generators: Record<"A2B" | "B2A", Record<string, HostTensor>> } = {
    step: 0,
    generators: { A2B: file.generators.A2B!, B2A: file.generators.B2A! },
  };
  const keep = async (state: TrainState) => {
    const g = state.ema ?? state.gen;
    kept = {
      step: state.step,
      generators: { A2B: await toHost(g.genA2B), B2A: await toHost(g.genB2A) },
    };
  };
  const show = async (state: TrainState) => {
    const t = model.translate(state, preview!.A, preview!.B);
    try {
      await preview!.show(state.step, t);
    } finally {
      tf.dispose(t as unknown as tf.Tensor[]);
    }
  };
  const previewAt = (step: number) => !!preview && step % preview.every === 0;
  const compiled = "compiled" in stepper ? stepper.compiled : undefined;
  const mode = () =>
    !compiled
      ? `eager (${backend.name} runs steps as they come)`
      : compiled.mode === "eager"
      ? `eager (${compiled.reason})`
      : compiled.mode === "recording"
      ? "recording the step to replay it"
      : "replayed";
  try {
    let end: FineTuneEnd;
    try {
      if (preview) await show(run.state);
      end = await trainLoop(run, {
        stepper,
        until: iterations,
        batches: () => [A.next(1), B.next(1)],
        readLag: backend.readLag,
        control: options.control,
        deviceFailure: options.deviceFailure,
        between: options.between,
        onProgress: options.onProgress && ((p) => options.onProgress!(p, mode())),
        due: (step) => step % keepEvery === 0 || previewAt(step),
        at: async (state) => {
          if (state.step % keepEvery === 0) await keep(state);
          if (previewAt(state.step)) await show(state);
        },
      });
    } catch (e) {
      // Whatever broke the run (not a device failure: the loop names those), the weights kept so
      // far are still the caller's.
      end = {
        status: "failed",
        good: kept.step,
        terms: {},
        failure: (e as Error).message ?? `${e}`,
      };
    }
    const ended = end.status === "done" || end.status === "interrupted";
    if (ended && kept.step !== run.state.step) await keep(run.state);
    const bytes = encodeGeneratorFile(kept.generators, config.generator, {}, {
      step: String(kept.step),
      fine_tuned_from: name,
      ...(averaged ? { weights: "ema" } : {}),
    });
    return { status: end.status, step: kept.step, end, file: bytes, mode: mode() };
  } finally {
    disposeState(run.state);
    compiled?.dispose();
  }
}
