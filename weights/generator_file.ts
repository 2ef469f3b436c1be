/**
 * Generator files: the trained model a user runs, without discriminators or optimiser state. One
 * safetensors file holds one generator or both (`A2B`, `B2A`), in float32 or float16 (half the
 * size; loading converts back), under our names (`A2B.<path>`) or the reference's
 * (`genA2B.<state_dict name>`, its layouts, for PyTorch), with the model configuration in its
 * metadata, so that the file alone rebuilds the model.
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
import type { GeneratorConfig } from "../layers/generator.ts";
import { type Decoded, orThrow } from "../decoded/decoded.ts";
import { fromHalf, toHalf } from "./half.ts";
import { checkAgainst, fromReference, generatorNames, toReference } from "./reference_names.ts";
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

/** A decoded generator file: the configuration and each generator's float32 tensors by path. */
export interface GeneratorFile {
  /** The model configuration, as stored. */
  readonly config: GeneratorConfig;
  /** The generators it holds, by direction: host tensors by dotted path. */
  readonly generators: Partial<Record<Direction, Record<string, HostTensor>>>;
  /** Whether it was stored in float16. */
  readonly half: boolean;
  /** The metadata, as stored (e.g. the iteration it was exported at). */
  readonly metadata: Record<string, string>;
}

const prefixOf = (d: Direction, reference: boolean) => (reference ? `gen${d}` : d);

/**
 * Encodes generators as a generator file's bytes.
 * @param generators host tensors by path (from `toHost`), per direction
 * @param config the generators' configuration
 * @param options float16, reference names
 * @param metadata extra string metadata (e.g. `step`)
 * @returns the file's bytes
 */
export function encodeGeneratorFile(
  generators: Partial<Record<Direction, Record<string, HostTensor>>>,
  config: GeneratorConfig,
  { half = false, reference = false }: GeneratorFileOptions = {},
  metadata: Record<string, string> = {},
): Uint8Array {
  const tensors: Record<string, HostTensor> = {};
  const directions = Object.keys(generators) as Direction[];
  for (const d of directions) {
    const ours = generators[d]!;
    const named = reference ? toReference(generatorNames(config), ours) : ours;
    for (const [k, t] of Object.entries(named)) {
      tensors[`${prefixOf(d, reference)}.${k}`] = half
        ? { dtype: "F16", shape: t.shape, data: toHalf(t.data as Float32Array) }
        : t;
    }
  }
  return encodeSafetensors(tensors, {
    ...metadata,
    format: GENERATOR_FORMAT,
    config: JSON.stringify(config),
    directions: directions.join(","),
    names: reference ? "reference" : "ours",
    dtype: half ? "F16" : "F32",
  });
}

/**
 * Writes a generator file atomically (see {@linkcode encodeGeneratorFile}).
 * @param path the file
 * @param generators host tensors by path, per direction
 * @param config the generators' configuration
 * @param options float16, reference names
 * @param metadata extra string metadata
 */
export async function writeGeneratorFile(
  path: string,
  generators: Partial<Record<Direction, Record<string, HostTensor>>>,
  config: GeneratorConfig,
  options: GeneratorFileOptions = {},
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeAtomically(
    path,
    encodeGeneratorFile(generators, config, options, metadata),
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
      return E.tryCatch(() => {
        const generators: Partial<Record<Direction, Record<string, HostTensor>>> = {};
        for (const d of directions as Direction[]) {
          const prefix = `${prefixOf(d, reference)}.`;
          const mine = Object.fromEntries(
            Object.entries(tensors)
              .filter(([k]) => k.startsWith(prefix))
              .map(([k, t]): [string, HostTensor] => [
                k.slice(prefix.length),
                t.dtype === "F16"
                  ? { dtype: "F32", shape: t.shape, data: fromHalf(t.data as Uint16Array) }
                  : t,
              ]),
          );
          const entries = generatorNames(config);
          const ours = reference ? fromReference(entries, mine, source).params : mine;
          checkAgainst(entries, ours, source);
          generators[d] = ours;
        }
        return { config, generators, half: metadata.dtype === "F16", metadata };
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
