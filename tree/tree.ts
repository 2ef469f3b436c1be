/**
 * Parameter records as trees: nested readonly objects and arrays whose leaves are tensors (jax's
 * pytrees, jax-js's `tree`). Layers, losses, the optimiser, weight files and checkpoints all hold
 * their tensors in such records. Every helper here is pure except {@linkcode dispose}. Dotted paths
 * (`decoder.0.conv1.w`) are the stable names that checkpoints and weight files use; values that
 * are not tensors (an optimiser's step count, an absent optional field) are carried along as they
 * are.
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

// Objects and arrays are walked; tensors are leaves; anything else is carried as it is.
function isBranch(node: unknown): node is object {
  return node !== null && typeof node === "object" && !isLeaf(node) && !ArrayBuffer.isView(node);
}

const join = (prefix: string, k: string | number) => (prefix ? `${prefix}.${k}` : String(k));

/**
 * Calls `fn` on every leaf, in {@linkcode flatten}'s order.
 * @param tree a record of tensors
 * @param fn receives each leaf and its dotted path
 */
export function forEachLeaf(tree: TreeLike, fn: (leaf: tf.Tensor, path: string) => void): void {
  const walk = (node: unknown, path: string) => {
    if (isLeaf(node)) fn(node, path);
    else if (isBranch(node)) {
      for (const [k, v] of Object.entries(node)) walk(v, join(path, k));
    }
  };
  walk(tree, "");
}

/**
 * Applies `fn` to every leaf, keeping the structure (and the record's type).
 * @param tree a record of tensors
 * @param fn maps a leaf (and its dotted path) to a new leaf
 * @returns a record of the same shape holding `fn`'s results
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { map } from "./tree.ts";
 * const doubled = map({ w: tf.ones([2]) }, (t) => tf.mul(t, 2)); // { w: [2, 2] }
 * ```
 */
export function map<T extends TreeLike>(
  tree: T,
  fn: (leaf: tf.Tensor, path: string) => tf.Tensor,
): T {
  return zipMap([tree], ([leaf], path) => fn(leaf, path));
}

/**
 * Applies `fn` leaf by leaf to records of one structure (jax's `tree_map` over several trees):
 * the structure is the first record's, and the others are read at the same keys, so their key
 * order does not matter.
 * @param trees records of the same structure, the first one giving the result's type
 * @param fn maps the leaves at one path (one per record, in order) and the path to a new leaf
 * @returns a record of the first one's shape holding `fn`'s results
 * @throws when another record lacks a leaf the first one has
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { zipMap } from "./tree.ts";
 * const sum = zipMap([{ w: tf.ones([2]) }, { w: tf.ones([2]) }], ([a, b]) => tf.add(a, b));
 * ```
 */
export function zipMap<T extends TreeLike>(
  trees: readonly [T, ...TreeLike[]],
  fn: (leaves: tf.Tensor[], path: string) => tf.Tensor,
): T {
  const walk = (nodes: unknown[], path: string): unknown => {
    const [first] = nodes;
    if (isLeaf(first)) {
      const missing = nodes.findIndex((n) => !isLeaf(n));
      if (missing >= 0) throw new Error(`tree ${missing} has no tensor at "${path}"`);
      return fn(nodes as tf.Tensor[], path);
    }
    if (!isBranch(first)) return first;
    const child = (k: string) => nodes.map((n) => (n as Record<string, unknown>)?.[k]);
    if (Array.isArray(first)) return first.map((_, i) => walk(child(String(i)), join(path, i)));
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(first)) out[k] = walk(child(k), join(path, k));
    return out;
  };
  return walk([...trees], "") as T;
}

/**
 * Flattens a record into `{ dottedPath: tensor }`, in a stable (insertion) order.
 * @param tree a record of tensors
 * @returns one entry per leaf, keyed by its dotted path
 */
export function flatten(tree: TreeLike): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  forEachLeaf(tree, (t, path) => (out[path] = t));
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
  forEachLeaf(tree, (t) => t.dispose());
}

/**
 * Counts the scalars held by a record (the "parameter count").
 * @param tree a record of tensors
 * @returns the sum of the sizes of its leaves
 */
export function count(tree: TreeLike): number {
  let n = 0;
  forEachLeaf(tree, (t) => (n += t.size));
  return n;
}

/**
 * Lists the leaves of a record, in {@linkcode flatten}'s order.
 * @param tree a record of tensors
 * @returns the tensors
 */
export function leaves(tree: TreeLike): tf.Tensor[] {
  const out: tf.Tensor[] = [];
  forEachLeaf(tree, (t) => out.push(t));
  return out;
}

/**
 * A record of the same structure as `tree` holding `replacements` as its leaves, in
 * {@linkcode leaves}' order (jax's `tree_unflatten` with the tree's own structure).
 * @param tree the structure
 * @param replacements one tensor per leaf of `tree`
 * @returns the new record
 * @throws when the counts differ
 */
export function withLeaves<T extends TreeLike>(tree: T, replacements: readonly tf.Tensor[]): T {
  let i = 0;
  const out = map(tree, () => replacements[i++]);
  if (i !== replacements.length) {
    throw new Error(`withLeaves: the tree has ${i} leaves, ${replacements.length} were given`);
  }
  return out;
}

/**
 * The value of a scalar function of a record and its gradient with respect to every leaf, as a
 * record of the same structure (tfjs's `valueAndGrads` over a tree).
 * @param loss the function, of a record like `params`
 * @param params the point to differentiate at
 * @returns the value and the gradients (the caller owns both)
 */
export function valueAndGrads<T extends TreeLike>(
  loss: (params: T) => tf.Scalar,
  params: T,
): { value: tf.Scalar; grads: T } {
  const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => loss(withLeaves(params, ts)))(
    leaves(params),
  );
  return { value, grads: withLeaves(params, grads) };
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
