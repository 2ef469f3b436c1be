/**
 * `deno task export`: writes a run's generators alone (one direction or both) as a generator file
 * (`weights/generator_file.ts`): the model configuration in its metadata, optionally in float16
 * and in the reference's PyTorch names. `translate --checkpoint` and the library's
 * `readGeneratorFile` load it.
 *
 *     deno task export --half                       # the run's latest checkpoint, both directions
 *     deno task export --checkpoint ck.safetensors --direction A2B --reference_names --out g.safetensors
 *     deno task export --half --discriminators      # with the discriminators, for fine-tuning
 *
 * @module
 */
import { datasetName } from "../data/dataset.ts";
import { loadGenerators } from "../train/checkpoint.ts";
import type { RunnerIO } from "../train/runner.ts";
import { type Direction, writeGeneratorFile } from "../weights/generator_file.ts";
import { CONSOLE, runCommand } from "./command.ts";
import {
  FlagError,
  type FlagGroup,
  type Flags,
  GENERATORS_FLAGS,
  LAPTOP_DEFAULTS,
  MODEL_FLAGS,
  RUN_FLAGS,
} from "./flags.ts";

/** Every flag of `deno task export`. */
export const EXPORT_FLAGS = {
  ...MODEL_FLAGS,
  ...RUN_FLAGS,
  ...GENERATORS_FLAGS,
  half: { kind: "bool", default: false, help: "store float16 (half the size)" },
  reference_names: {
    kind: "bool",
    default: false,
    help: "the reference's PyTorch names and layouts (genA2B.<state_dict name>)",
  },
  discriminators: {
    kind: "bool",
    default: false,
    help: "store the discriminators and their spectral-norm vectors too, for fine-tuning " +
      "(train --model, the page's fine-tune panel; both directions only)",
  },
  out: { kind: "string", default: "", help: "the file to write (default: beside the checkpoint)" },
} as const satisfies FlagGroup;

/** The flags `deno task export` decodes. */
export type ExportFlags = Flags<typeof EXPORT_FLAGS>;

/**
 * Exports a checkpoint's (or a generator file's) generators.
 * @param flags `--checkpoint` (default: the run's latest; a generator file too, e.g. to halve it), `--direction`, `--half`,
 *   `--reference_names`, `--out`
 * @param io where lines go
 * @returns the file written
 */
export async function runExport(flags: ExportFlags, io: RunnerIO): Promise<string> {
  const directions = flags.direction === "both" ? ["A2B", "B2A"] as const : [flags.direction];
  if (!directions.every((d) => d === "A2B" || d === "B2A")) {
    throw new FlagError(`--direction: expected A2B, B2A or both, got "${flags.direction}"`);
  }
  const path = flags.checkpoint ||
    `${flags.result_dir}/${datasetName(flags.dataset)}/model/latest.safetensors`;
  const model = await loadGenerators(path, flags);
  const missing = directions.find((d) => !model.generators[d as Direction]);
  if (missing) throw new FlagError(`--direction: ${path} holds no ${missing} generator`);
  if (flags.discriminators && flags.direction !== "both") {
    throw new FlagError(
      `--discriminators: fine-tuning needs both generators; drop --direction ${flags.direction}`,
    );
  }
  if (flags.discriminators && !model.discriminators) {
    throw new FlagError(`--discriminators: ${path} holds no discriminators`);
  }
  const generators = Object.fromEntries(
    directions.map((d) => [d, model.generators[d as Direction]!]),
  );
  const tag = `${flags.direction === "both" ? "A2B_B2A" : flags.direction}` +
    `${flags.discriminators ? "_D" : ""}` +
    `${flags.reference_names ? "_reference" : ""}${flags.half ? "_f16" : ""}`;
  const out = flags.out || path.replace(/[^/]*$/, `generator_${tag}.safetensors`);
  await writeGeneratorFile(
    out,
    generators,
    model.config,
    { half: flags.half, reference: flags.reference_names },
    { step: model.step, exported_from: path, ...(model.averaged ? { weights: "ema" } : {}) },
    flags.discriminators ? model.discriminators : undefined,
  );
  const mb = (Deno.statSync(out).size / 2 ** 20).toFixed(1);
  io.out(
    `wrote ${out} (${mb} MiB): ${directions.join(" and ")} at iteration ${model.step}` +
      `${model.averaged ? " (moving average)" : ""}` +
      `${flags.discriminators ? ", with the discriminators" : ""}, ` +
      `${flags.half ? "float16" : "float32"}, ${flags.reference_names ? "reference" : "our"} names`,
  );
  return out;
}

if (import.meta.main) {
  await runCommand({
    usage: "deno task export [flags]",
    about: "Writes a run's generators alone, with their configuration.",
    flags: EXPORT_FLAGS,
    defaults: LAPTOP_DEFAULTS,
    run: (flags) => runExport(flags, CONSOLE),
  });
}
