/**
 * Moves parameter records between tensors and host arrays, and to and from safetensors files.
 * Reading tensors back is asynchronous so that it works on every backend (WebGPU included).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { flatten, type Tree, type TreeLike, unflatten } from "../tree/tree.ts";
import { type HostTensor, readSafetensors, writeSafetensors } from "./safetensors.ts";
import { checkAgainst, type NameEntry } from "./reference_names.ts";

/**
 * Copies a record's tensors to the host, keyed by dotted path.
 * @param tree a record of float32 tensors
 * @returns host tensors by path
 */
export async function toHost(tree: TreeLike): Promise<Record<string, HostTensor>> {
  const out: Record<string, HostTensor> = {};
  for (const [path, t] of Object.entries(flatten(tree))) {
    out[path] = { dtype: "F32", shape: t.shape, data: (await t.data()) as Float32Array };
  }
  return out;
}

/**
 * Makes tensors from host tensors and nests them by path.
 * @param flat host tensors by dotted path
 * @returns the record
 */
export function fromHost<T = Tree>(flat: Record<string, HostTensor>): T {
  const tensors: Record<string, tf.Tensor> = {};
  for (const [path, t] of Object.entries(flat)) {
    tensors[path] = tf.tensor(t.data as Float32Array, [...t.shape], "float32");
  }
  return unflatten(tensors) as T;
}

/**
 * Saves a record as a safetensors file (atomically).
 * @param path the file
 * @param tree the record
 * @param metadata optional string metadata (e.g. the configuration as JSON)
 */
export async function saveRecord(
  path: string,
  tree: TreeLike,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeSafetensors(path, await toHost(tree), metadata);
}

/**
 * Loads a record from a safetensors file, checked against a model's template.
 * @param path the file
 * @param template the model's tensors (from `generatorNames` or `discriminatorNames`), filtered
 *   to parameters or to state as the file holds
 * @returns the record and the file's metadata
 * @throws {WeightFileError} naming the file and the first tensor that does not fit
 */
export async function loadRecord<T = Tree>(
  path: string,
  template: readonly NameEntry[],
): Promise<{ record: T; metadata: Record<string, string> }> {
  const { tensors, metadata } = await readSafetensors(path);
  checkAgainst(template, tensors, path);
  return { record: fromHost<T>(tensors), metadata };
}
