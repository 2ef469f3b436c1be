/**
 * Parameter records as trees: nested readonly objects and arrays whose leaves are tensors. Every
 * helper here is pure except {@linkcode dispose}. Dotted paths (`decoder.0.conv1.w`) are the
 * stable names that checkpoints and weight files use.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** A parameter or state record: a tensor, or an object or array of records. */
export type Tree<T = tf.Tensor> = T | readonly Tree<T>[] | { readonly [key: string]: Tree<T> };

/**
 * What the helpers accept: any record of tensors, interfaces such as `GeneratorParams` included
 * (TypeScript does not let an interface stand for an index signature).
 */
export type TreeLike = object;

function isLeaf(node: unknown): node is tf.Tensor {
  return node instanceof tf.Tensor;
}

/**
 * Applies `fn` to every leaf, keeping the structure.
 * @param tree a record of tensors
 * @param fn maps a leaf (and its dotted path) to a new leaf
 * @returns a record of the same shape holding `fn`'s results
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { map } from "./tree.ts";
 * const doubled = map({ w: tf.ones([2]) }, (t) => tf.mul(t, 2));
 * ```
 */
export function map<R = tf.Tensor>(
  tree: TreeLike,
  fn: (leaf: tf.Tensor, path: string) => R,
  prefix = "",
): Tree<R> {
  if (isLeaf(tree)) return fn(tree, prefix);
  const join = (k: string | number) => (prefix ? `${prefix}.${k}` : String(k));
  if (Array.isArray(tree)) return tree.map((t: TreeLike, i) => map(t, fn, join(i)));
  const out: Record<string, Tree<R>> = {};
  for (const [k, v] of Object.entries(tree)) out[k] = map(v as TreeLike, fn, join(k));
  return out;
}

/**
 * Flattens a record into `{ dottedPath: tensor }`, in a stable (insertion) order.
 * @param tree a record of tensors
 * @returns one entry per leaf, keyed by its dotted path
 */
export function flatten(tree: TreeLike): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  map(tree, (t, path) => (out[path] = t));
  return out;
}

/**
 * Rebuilds a record from dotted paths. Levels whose keys are exactly `0..n-1` become arrays.
 * @param flat leaves by dotted path
 * @returns the nested record
 */
export function unflatten<T = tf.Tensor>(flat: Record<string, T>): Tree<T> {
  const root: Record<string, unknown> = {};
  for (const [path, leaf] of Object.entries(flat)) {
    const keys = path.split(".");
    let node = root;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[keys[keys.length - 1]] = leaf;
  }
  const toArrays = (node: unknown): unknown => {
    if (node === null || typeof node !== "object" || isLeaf(node) || ArrayBuffer.isView(node)) {
      return node;
    }
    const entries = Object.entries(node as Record<string, unknown>).map((
      [k, v],
    ) => [k, toArrays(v)]);
    const isArray = entries.length > 0 && entries.every(([k], i) => k === String(i));
    return isArray ? entries.map(([, v]) => v) : Object.fromEntries(entries);
  };
  return toArrays(root) as Tree<T>;
}

/**
 * The entries of a flat record whose keys start with `prefix.`, with that prefix removed.
 * @param flat entries by dotted path
 * @param prefix e.g. `genA2B`
 * @returns the matching entries
 */
export function underPrefix<T>(
  flat: Readonly<Record<string, T>>,
  prefix: string,
): Record<string, T> {
  const p = `${prefix}.`;
  return Object.fromEntries(
    Object.entries(flat).filter(([k]) => k.startsWith(p)).map(([k, v]) => [k.slice(p.length), v]),
  );
}

/**
 * Disposes every tensor of a record.
 * @param tree a record of tensors
 */
export function dispose(tree: TreeLike): void {
  map(tree, (t) => t.dispose());
}

/**
 * Counts the scalars held by a record (the "parameter count").
 * @param tree a record of tensors
 * @returns the sum of the sizes of its leaves
 */
export function count(tree: TreeLike): number {
  let n = 0;
  map(tree, (t) => (n += t.size));
  return n;
}

/**
 * Lists the leaves of a record, in {@linkcode flatten}'s order.
 * @param tree a record of tensors
 * @returns the tensors
 */
export function leaves(tree: TreeLike): tf.Tensor[] {
  return Object.values(flatten(tree));
}

/**
 * `tf.tidy` for any record type: disposes every intermediate tensor and keeps those returned,
 * however they are nested (tfjs's own signature only admits index-signature objects).
 * @param fn the computation
 * @returns what `fn` returns
 */
export function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as () => tf.TensorContainer) as T;
}
