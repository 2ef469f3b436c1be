/**
 * Training checkpoints: one safetensors file holding everything a run needs to continue exactly
 * (parameters, spectral-norm vectors, both optimisers' moments), with the iteration, the random
 * generator's state, the data order and the flags in its metadata. Written atomically, so a
 * crash mid-write leaves the previous checkpoint intact; read back with every tensor checked
 * against the model the flags describe.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import * as E from "fp-ts/Either";
import { type Decoded, orThrow } from "../decoded/decoded.ts";
import type { StreamState } from "../data/domain_stream.ts";
import type { GeneratorConfig } from "../layers/generator.ts";
import { flatten, map, underPrefix, unflatten } from "../tree/tree.ts";
import {
  type Direction,
  DISCRIMINATOR_NETWORKS,
  type FileDiscriminators,
  GENERATOR_FORMAT,
  generatorFileFrom,
} from "../weights/generator_file.ts";
import { discriminatorNames, generatorNames, type NameEntry } from "../weights/reference_names.ts";
import {
  type HostTensor,
  readSafetensors,
  type SafetensorsFile,
  WeightFileError,
  writeSafetensors,
} from "../weights/safetensors.ts";
import { configFromSettings, type ModelSettings, type TrainingSettings } from "./settings.ts";
import type { Generators, TrainConfig, TrainState } from "./step.ts";

// The format this code writes. Format 1 (written before the optimiser state became a tree) holds
// the same tensors under the same names; only its optimiser skeleton keys the moments by dotted
// path, which loading nests. Formats 1 and 2 hold the optimisers' step counts as numbers in the
// skeleton; format 3 as tensors (`optG.1.count`, ...), since counts became tensors.
const FORMAT = "ugatit-checkpoint/3";
const FORMATS = ["ugatit-checkpoint/1", "ugatit-checkpoint/2", FORMAT];

// An optimiser state read from an older format: its step counts (numbers) become tensors.
function countsAsTensors(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(countsAsTensors);
  if (value && typeof value === "object" && !(value instanceof tf.Tensor)) {
    return Object.fromEntries(
      Object.entries(value).map((
        [k, v],
      ) => [k, k === "count" && typeof v === "number" ? tf.scalar(v) : countsAsTensors(v)]),
    );
  }
  return value;
}

/** A checkpoint: the training state and what drives the data. */
export interface Checkpoint {
  /** Parameters, spectral-norm and optimiser state, iteration. */
  readonly state: TrainState;
  /** The random generator's state. */
  readonly rng: number;
  /** Where each domain's shuffled order stands. */
  readonly streams: { readonly A?: StreamState; readonly B?: StreamState };
  /**
   * The run's settings by flag name (the train command's flags), for `--resume` checks and
   * `translate`.
   */
  readonly flags: Record<string, unknown>;
}

// Replaces the tensors inside a value by {"$t": name} and collects them under `prefix.<path>`.
function split(value: unknown, prefix: string, out: Record<string, tf.Tensor>): unknown {
  if (value instanceof tf.Tensor) {
    out[prefix] = value;
    return { $t: prefix };
  }
  if (Array.isArray(value)) return value.map((v, i) => split(v, `${prefix}.${i}`, out));
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, split(v, `${prefix}.${k}`, out)]),
    );
  }
  return value;
}

// The optimiser state from its skeleton: each {"$t": name} replaced by that tensor. With `dotted`
// (format 1), objects keyed by dotted paths (the moments) are nested like the parameters.
function join(
  skeleton: unknown,
  tensors: Record<string, tf.Tensor>,
  source: string,
  dotted: boolean,
): unknown {
  if (Array.isArray(skeleton)) return skeleton.map((v) => join(v, tensors, source, dotted));
  if (skeleton && typeof skeleton === "object") {
    const name = (skeleton as { $t?: string }).$t;
    if (name !== undefined) {
      if (!tensors[name]) throw new WeightFileError(`${source}: tensor "${name}" is missing`);
      return tensors[name];
    }
    const entries = Object.entries(skeleton).map(([k, v]) => [k, join(v, tensors, source, dotted)]);
    const nest = dotted && entries.some(([k]) => (k as string).includes("."));
    return nest ? unflatten(Object.fromEntries(entries)) : Object.fromEntries(entries);
  }
  return skeleton;
}

/**
 * Every parameter and spectral-norm tensor the configuration needs, with its checkpoint name.
 * @param config the model
 * @returns entries named `gen.genA2B.<path>`, `dis.disGA.<path>`, `sn.disGA.<path>`
 */
export function checkpointTemplate(
  config: TrainConfig,
): { name: string; shape: readonly number[] }[] {
  const out: { name: string; shape: readonly number[] }[] = [];
  const add = (group: string, net: string, entries: NameEntry[]) => {
    for (const e of entries) {
      out.push({ name: `${e.state ? "sn" : group}.${net}.${e.ours}`, shape: e.shape });
    }
  };
  for (const net of ["genA2B", "genB2A"]) add("gen", net, generatorNames(config.generator));
  for (const net of ["disGA", "disGB"]) add("dis", net, discriminatorNames(config.global));
  for (const net of ["disLA", "disLB"]) add("dis", net, discriminatorNames(config.local));
  return out;
}

/**
 * Writes a checkpoint atomically (the generators' moving average, where the state has one, as
 * `ema.genA2B.<path>`, ...); a failure of the file system is a `WriteError` naming the file and
 * the iteration, the temporary file removed and the previous file intact.
 * @param path the file
 * @param ckpt what to save
 */
export async function saveCheckpoint(path: string, ckpt: Checkpoint): Promise<void> {
  const tensors: Record<string, tf.Tensor> = {};
  for (const group of ["gen", "ema", "dis", "sn"] as const) {
    for (const [k, t] of Object.entries(flatten(ckpt.state[group] ?? {}))) {
      tensors[`${group}.${k}`] = t;
    }
  }
  const optG = split(ckpt.state.optG, "optG", tensors);
  const optD = split(ckpt.state.optD, "optD", tensors);
  const host: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(tensors)) {
    host[k] = { dtype: "F32", shape: t.shape, data: (await t.data()) as Float32Array };
  }
  await writeSafetensors(path, host, {
    format: FORMAT,
    step: String(ckpt.state.step),
    rng: String(ckpt.rng),
    streams: JSON.stringify(ckpt.streams),
    flags: JSON.stringify(ckpt.flags),
    optimisers: JSON.stringify({ optG, optD }),
  }, `the checkpoint of iteration ${ckpt.state.step}`);
}

/**
 * Checks a decoded file against the model: a training checkpoint, holding every tensor the model
 * and its optimisers need, each of the model's shape.
 * @param file the decoded safetensors file
 * @param path its name, for messages
 * @param config the model it must fit
 * @returns `Right` with the file, or `Left` with a {@linkcode WeightFileError} naming the file and
 *   the first tensor that does not fit
 */
export function checkpointFits(
  file: SafetensorsFile,
  path: string,
  config: TrainConfig,
): Decoded<SafetensorsFile, WeightFileError> {
  const { tensors, metadata } = file;
  if (!FORMATS.includes(metadata.format)) {
    return E.left(
      new WeightFileError(
        `${path}: not a training checkpoint (format "${metadata.format ?? "none"}")`,
      ),
    );
  }
  const misfit = checkpointTemplate(config).map(({ name, shape }) => {
    const t = tensors[name];
    if (!t) return `${path}: tensor "${name}" is missing`;
    return t.shape.join() === shape.join() ? undefined : `${path}: tensor "${name}" has shape ` +
      `[${t.shape}], the model needs [${shape}] (do the flags match the run?)`;
  }).find((m) => m !== undefined);
  return misfit ? E.left(new WeightFileError(misfit)) : E.right(file);
}

/**
 * Reads a checkpoint and checks it against the model ({@linkcode checkpointFits}).
 * @param path the file
 * @param config the model it must fit
 * @returns the checkpoint (tensors owned by the caller)
 * @throws {WeightFileError} naming the file and the first tensor that does not fit
 */
export async function loadCheckpoint(path: string, config: TrainConfig): Promise<Checkpoint> {
  return checkpointOf(await readSafetensors(path), path, config);
}

/**
 * A checkpoint from a decoded file ({@linkcode loadCheckpoint} without the reading), checked
 * against the model ({@linkcode checkpointFits}).
 * @param file the decoded safetensors file
 * @param path its name, for messages
 * @param config the model it must fit
 * @returns the checkpoint (tensors owned by the caller)
 * @throws {WeightFileError} naming the file and the first tensor that does not fit
 */
export function checkpointOf(file: SafetensorsFile, path: string, config: TrainConfig): Checkpoint {
  const { tensors: host, metadata } = orThrow(checkpointFits(file, path, config));
  const tensors: Record<string, tf.Tensor> = {};
  for (const [k, t] of Object.entries(host)) {
    tensors[k] = tf.tensor(t.data as Float32Array, [...t.shape]);
  }
  const { optG, optD } = JSON.parse(metadata.optimisers);
  const format1 = metadata.format === FORMATS[0];
  const group = <T>(name: string) => unflatten(underPrefix(tensors, name)) as unknown as T;
  const gen = group<Generators>("gen");
  // The moving average: kept where the configuration asks for one (begun from the weights when
  // the file has none: a run resumed with --ema), dropped where it does not.
  const saved = underPrefix(tensors, "ema");
  const hasEma = Object.keys(saved).length > 0;
  if (hasEma && !config.ema) tf.dispose(Object.values(saved));
  const ema = config.ema
    ? (hasEma ? group<Generators>("ema") : map(gen, (p) => p.clone()))
    : undefined;
  return {
    state: {
      step: Number(metadata.step),
      gen,
      ...(ema ? { ema } : {}),
      dis: group("dis"),
      sn: group("sn"),
      optG: countsAsTensors(join(optG, tensors, path, format1)) as TrainState["optG"],
      optD: countsAsTensors(join(optD, tensors, path, format1)) as TrainState["optD"],
    },
    rng: Number(metadata.rng),
    streams: JSON.parse(metadata.streams),
    flags: JSON.parse(metadata.flags),
  };
}

/**
 * The configuration a run was trained with, from the settings its checkpoint records (all of the
 * train command's flags), the given settings filling in any it lacks.
 * @param recorded a checkpoint's `flags` ({@linkcode readCheckpointFlags})
 * @param fallback the command's own settings
 * @returns the training configuration
 */
export function recordedConfig(
  recorded: Readonly<Record<string, unknown>>,
  fallback: ModelSettings,
): TrainConfig {
  return configFromSettings({ ...fallback, ...recorded } as TrainingSettings);
}

/** What {@linkcode loadGenerators} reads of the command's settings. */
export interface GeneratorSettings extends ModelSettings {
  /** Of a checkpoint with a moving average of the generators, the average. */
  readonly use_ema: boolean;
}

/**
 * The generators in a training checkpoint or a generator file (`deno task export`), with the
 * configuration they need: from the checkpoint's flags, or the file's own metadata. Of a
 * checkpoint with a moving average of the generators (`--ema`), the average unless
 * `--use_ema false`. The discriminators come with them where the file holds them (a checkpoint
 * always does), for fine-tuning.
 * @param path the file
 * @param settings `use_ema`, and the model settings a checkpoint lacks
 * @returns the configuration, the generators' host tensors by direction, the iteration, whether
 *   they are the moving average, and the discriminators
 */
export async function loadGenerators(
  path: string,
  settings: GeneratorSettings,
): Promise<{
  config: GeneratorConfig;
  generators: Partial<Record<Direction, Record<string, HostTensor>>>;
  step: string;
  averaged: boolean;
  discriminators?: FileDiscriminators;
}> {
  const file = await readSafetensors(path);
  if (file.metadata.format === GENERATOR_FORMAT) {
    const g = orThrow(generatorFileFrom(file, path));
    const averaged = g.metadata.weights === "ema";
    return {
      config: g.config,
      generators: g.generators,
      step: g.metadata.step ?? "?",
      averaged,
      ...(g.discriminators ? { discriminators: g.discriminators } : {}),
    };
  }
  const config = recordedConfig(JSON.parse(file.metadata.flags ?? "{}"), settings);
  const { tensors, metadata } = orThrow(checkpointFits(file, path, config));
  const averaged = settings.use_ema && Object.keys(tensors).some((k) => k.startsWith("ema."));
  const group = averaged ? "ema" : "gen";
  const networks = Object.fromEntries(
    DISCRIMINATOR_NETWORKS.map((net) => [
      net,
      { ...underPrefix(tensors, `dis.${net}`), ...underPrefix(tensors, `sn.${net}`) },
    ]),
  ) as FileDiscriminators["networks"];
  return {
    config: config.generator,
    generators: {
      A2B: underPrefix(tensors, `${group}.genA2B`),
      B2A: underPrefix(tensors, `${group}.genB2A`),
    },
    step: metadata.step,
    averaged,
    discriminators: { config: { global: config.global, local: config.local }, networks },
  };
}

/**
 * Reads only a checkpoint's flags (its header), e.g. to rebuild the model it fits.
 * @param path the file
 * @returns the flags the run was trained with
 * @throws {WeightFileError} when the file is not a training checkpoint
 */
export async function readCheckpointFlags(path: string): Promise<Record<string, unknown>> {
  return (await readCheckpointHeader(path)).flags;
}

/**
 * Reads only a checkpoint's header: its iteration and flags, without its tensors (a file whose
 * data is cut short still has a readable header; {@linkcode loadCheckpoint} checks the rest).
 * @param path the file
 * @returns the iteration it holds and the flags the run was trained with
 * @throws {WeightFileError} when the file is not a training checkpoint
 */
export async function readCheckpointHeader(
  path: string,
): Promise<{ step: number; flags: Record<string, unknown> }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new WeightFileError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const head = new Uint8Array(8);
    if ((await file.read(head)) !== 8) {
      throw new WeightFileError(`${path}: too short for a checkpoint`);
    }
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (n > 100 * 1024 * 1024) {
      throw new WeightFileError(`${path}: header length ${n} is implausible`);
    }
    const header = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const got = await file.read(header.subarray(at));
      if (got === null) throw new WeightFileError(`${path}: header is truncated`);
      at += got;
    }
    let meta: Record<string, string>;
    let flags: Record<string, unknown>;
    try {
      meta = JSON.parse(new TextDecoder().decode(header)).__metadata__ ?? {};
      flags = FORMATS.includes(meta.format) ? JSON.parse(meta.flags) : {};
    } catch (e) {
      throw new WeightFileError(`${path}: header is not valid JSON (${(e as Error).message})`);
    }
    if (!FORMATS.includes(meta.format)) {
      throw new WeightFileError(`${path}: not a training checkpoint`);
    }
    const step = Number(meta.step);
    if (!Number.isSafeInteger(step) || step < 0) {
      throw new WeightFileError(`${path}: iteration "${meta.step}" is not a count`);
    }
    return { step, flags };
  } finally {
    file.close();
  }
}
