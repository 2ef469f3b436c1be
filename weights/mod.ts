/**
 * Weight files: safetensors reading and writing with validation, records to and from files, and
 * the mapping to the reference PyTorch implementation's `state_dict` names and layouts.
 *
 * @example
 * ```ts
 * import { generatorNames, toReference } from "./mod.ts";
 * const names = generatorNames({ ch: 8, nRes: 2, light: true });
 * console.log(names.find((e) => e.ours === "stem.w")?.theirs); // "DownBlock.1.weight"
 * ```
 *
 * @module
 */
export * from "../decoded/decoded.ts";
export * from "./half.ts";
export * from "./generator_file.ts";
export * from "./safetensors.ts";
export * from "./reference_names.ts";
export * from "./params_io.ts";
export * from "./reference_checkpoint.ts";
