/**
 * Generator files: the trained model a user runs, without optimiser state. One safetensors file
 * holds one generator or both (`A2B`, `B2A`), in float32 or float16 (half the size; loading
 * converts back), under our names (`A2B.<path>`) or the reference's (`genA2B.<state_dict name>`,
 * its layouts, for PyTorch), with the model configuration in its metadata, so that the file alone
 * rebuilds the model. It may also hold the four discriminators with their spectral-norm vectors
 * (`disGA.<path>`, ...; their configurations in the metadata), which fine-tuning starts from
 * (`deno task export --discriminators`); a file without them still fine-tunes, from fresh ones.
 *
 * @example
 * ```ts
 * import { generator } from "../layers/generator.ts";
 * import { decodeSafetensors } from "./safetensors.ts";
 * import { encodeGeneratorFile, generatorFileFrom } from "./generator_file.ts";
 * import { toHost } from "./params_io.ts";
 * const config = { ch: 4, nRes: 1, imgSize: 16, light: true };
 * const host = await toHost(generator(config).init(0));
 * const bytes = encodeGeneratorFile({ A2B: host }, config, { half: true });
 * const file = generatorFileFrom(decodeSafetensors(bytes), "g.safetensors");
 * console.log(file._tag === "Right" && Object.keys(file.right.generators)); // ["A2B"]
 * ```
 *
 * @module
 */
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import type { DiscriminatorConfig } from "../layers/discriminator.ts";
import type { GeneratorConfig } from "../layers/generator.ts";
import { type Decoded, orThrow } from "../decoded/decoded.ts";
import { fromHalf, toHalf } from "./half.ts";
import {
  checkAgainst,
  discriminatorNames,
  fromReference,
  generatorNames,
  type NameEntry,
  toReference,
} from "./reference_names.ts";
import {
  encodeSafetensors,
  type HostTensor,
  readSafetensors,
  type SafetensorsFile,
  WeightFileError,
  writeAtomically,
} from "./safetensors.ts";

/** The `format` metadata of a generator file. */
export const GENERATOR_FORMAT = "ugatit-generator/1";

/** A translation direction. */
export type Direction = "A2B" | "B2A";

/** How a generator file is written. */
export interface GeneratorFileOptions {
  /** Store float16 (half the size); loading converts to float32. */
  readonly half?: boolean;
  /** Use the reference's names and layouts (`genA2B.<state_dict name>`), for PyTorch. */
  readonly reference?: boolean;
}

/** The discriminators a file may hold, by the reference's names (global and local per domain). */
export const DISCRIMINATOR_NETWORKS = ["disGA", "disGB", "disLA", "disLB"] as const;
/** One of {@linkcode DISCRIMINATOR_NETWORKS}. */
export type DiscriminatorNetwork = typeof DISCRIMINATOR_NETWORKS[number];

/** The discriminators beside the generators in a file, for fine-tuning. */
export interface FileDiscriminators {
  /** The global (`disG*`) and local (`disL*`) discriminators' configurations. */
  readonly config: { readonly global: DiscriminatorConfig; readonly local: DiscriminatorConfig };
  /**
   * Each network's float32 host tensors by path: its parameters and its spectral-norm vectors (at
   * the paths `discriminatorNames` gives them, marked `state` there).
   */
  readonly networks: Readonly<Record<DiscriminatorNetwork, Record<string, HostTensor>>>;
}

/**
 * The tensor table of one of the discriminators.
 * @param config both discriminators' configurations
 * @param network which one
 * @returns its entries (parameters and spectral-norm vectors)
 */
export function discriminatorEntries(
  config: FileDiscriminators["config"],
  network: DiscriminatorNetwork,
): NameEntry[] {
  return discriminatorNames(network.startsWith("disG") ? config.global : config.local);
}

/** A decoded generator file: the configuration and each generator's float32 tensors by path. */
export interface GeneratorFile {
  /** The model configuration, as stored. */
  readonly config: GeneratorConfig;
  /** The generators it holds, by direction: host tensors by dotted path. */
  readonly generators: Partial<Record<Direction, Record<string, HostTensor>>>;
  /** The discriminators, where the file holds them. */
  readonly discriminators?: FileDiscriminators;
  /** Whether it was stored in float16. */
  readonly half: boolean;
  /** The metadata, as stored (e.g. the iteration it was exported at). */
  readonly metadata: Record<string, string>;
}

const prefixOf = (d: Direction, reference: boolean) => (reference ? `gen${d}` : d);
const mergeReference = (r: ReturnType<typeof fromReference>) => ({ ...r.params, ...r.state });

/**
 * Encodes generators (and, for fine-tuning, discriminators) as a generator file's bytes.
 * @param generators host tensors by path (from `toHost`), per direction
 * @param config the generators' configuration
 * @param options float16, reference names
 * @param metadata extra string metadata (e.g. `step`)
 * @param discriminators the four discriminators, to store beside the generators
 * @returns the file's bytes
 */
export function encodeGeneratorFile(
  generators: Partial<Record<Direction, Record<string, HostTensor>>>,
  config: GeneratorConfig,
  { half = false, reference = false }: GeneratorFileOptions = {},
  metadata: Record<string, string> = {},
  discriminators?: FileDiscriminators,
): Uint8Array {
  const tensors: Record<string, HostTensor> = {};
  const add = (prefix: string, entries: NameEntry[], ours: Record<string, HostTensor>) => {
    const named = reference ? toReference(entries, ours) : ours;
    for (const [k, t] of Object.entries(named)) {
      tensors[`${prefix}.${k}`] = half
        ? { dtype: "F16", shape: t.shape, data: toHalf(t.data as Float32Array) }
        : t;
    }
  };
  const directions = Object.keys(generators) as Direction[];
  for (const d of directions) add(prefixOf(d, reference), generatorNames(config), generators[d]!);
  for (const net of discriminators ? DISCRIMINATOR_NETWORKS : []) {
    add(net, discriminatorEntries(discriminators!.config, net), discriminators!.networks[net]);
  }
  return encodeSafetensors(tensors, {
    ...metadata,
    format: GENERATOR_FORMAT,
    config: JSON.stringify(config),
    directions: directions.join(","),
    names: reference ? "reference" : "ours",
    dtype: half ? "F16" : "F32",
    ...(discriminators ? { discriminators: JSON.stringify(discriminators.config) } : {}),
  });
}

/**
 * Writes a generator file atomically (see {@linkcode encodeGeneratorFile}).
 * @param path the file
 * @param generators host tensors by path, per direction
 * @param config the generators' configuration
 * @param options float16, reference names
 * @param metadata extra string metadata
 * @param discriminators the four discriminators, to store beside the generators
 */
export async function writeGeneratorFile(
  path: string,
  generators: Partial<Record<Direction, Record<string, HostTensor>>>,
  config: GeneratorConfig,
  options: GeneratorFileOptions = {},
  metadata: Record<string, string> = {},
  discriminators?: FileDiscriminators,
): Promise<void> {
  await writeAtomically(
    path,
    encodeGeneratorFile(generators, config, options, metadata, discriminators),
    "the exported generators",
  );
}

/**
 * Decodes a generator file: its format and configuration, each direction's tensors (float16
 * converted, reference names mapped back) checked against the model the configuration describes.
 * @param file the decoded safetensors file
 * @param source its name, for messages
 * @returns `Right` with the generators, or `Left` with a {@linkcode WeightFileError} naming the
 *   file and what does not fit
 */
export function generatorFileFrom(
  file: SafetensorsFile,
  source: string,
): Decoded<GeneratorFile, WeightFileError> {
  const { metadata, tensors } = file;
  const fail = (msg: string) => new WeightFileError(`${source}: ${msg}`);
  if (metadata.format !== GENERATOR_FORMAT) {
    return E.left(fail(`not a generator file (format "${metadata.format ?? "none"}")`));
  }
  return pipe(
    E.tryCatch(
      () => JSON.parse(metadata.config ?? "") as GeneratorConfig,
      () => fail('its configuration (metadata "config") is not JSON'),
    ),
    E.chain((config) => {
      const reference = metadata.names === "reference";
      const directions = (metadata.directions ?? "").split(",").filter(Boolean);
      if (!directions.length || !directions.every((d) => d === "A2B" || d === "B2A")) {
        return E.left(fail(`directions "${metadata.directions}" are not A2B and/or B2A`));
      }
      // One network's tensors (under `prefix.`), in float32 by our paths, checked.
      const network = (prefix: string, entries: NameEntry[]) => {
        const mine = Object.fromEntries(
          Object.entries(tensors)
            .filter(([k]) => k.startsWith(`${prefix}.`))
            .map(([k, t]): [string, HostTensor] => [
              k.slice(prefix.length + 1),
              t.dtype === "F16"
                ? { dtype: "F32", shape: t.shape, data: fromHalf(t.data as Uint16Array) }
                : t,
            ]),
        );
        const ours = reference ? mergeReference(fromReference(entries, mine, source)) : mine;
        checkAgainst(entries, ours, source);
        return ours;
      };
      return E.tryCatch(() => {
        const generators: Partial<Record<Direction, Record<string, HostTensor>>> = {};
        for (const d of directions as Direction[]) {
          generators[d] = network(prefixOf(d, reference), generatorNames(config));
        }
        let discriminators: FileDiscriminators | undefined;
        if (metadata.discriminators !== undefined) {
          let dConfig: FileDiscriminators["config"];
          try {
            dConfig = JSON.parse(metadata.discriminators);
          } catch {
            throw fail(
              'its discriminators\' configuration (metadata "discriminators") is not JSON',
            );
          }
          const networks = Object.fromEntries(
            DISCRIMINATOR_NETWORKS.map((net) => [
              net,
              network(net, discriminatorEntries(dConfig, net)),
            ]),
          ) as FileDiscriminators["networks"];
          discriminators = { config: dConfig, networks };
        }
        return {
          config,
          generators,
          ...(discriminators ? { discriminators } : {}),
          half: metadata.dtype === "F16",
          metadata,
        };
      }, (e) => e as WeightFileError);
    }),
  );
}

/**
 * Reads a generator file; {@linkcode generatorFileFrom}, throwing.
 * @param path the file
 * @returns the generators and their configuration
 * @throws {WeightFileError} naming the file and what does not fit
 */
export async function readGeneratorFile(path: string): Promise<GeneratorFile> {
  return orThrow(generatorFileFrom(await readSafetensors(path), path));
}
