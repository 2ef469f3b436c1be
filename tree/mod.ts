/**
 * Parameter records as trees (jax's pytrees): nested readonly objects and arrays of tensors, with
 * `map` and `zipMap` over one or several records, `flatten` / `unflatten` to and from dotted
 * paths (the names checkpoints and weight files use), `leaves`, `withLeaves`, `count`, `dispose`,
 * `valueAndGrads` over a record, and `tidy` for any record type. Layers, losses, the optimiser and
 * the training step all work on such records.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { count, flatten, map, zipMap } from "./mod.ts";
 * const params = { conv: { w: tf.ones([3, 3, 1, 2]) }, blocks: [{ b: tf.zeros([2]) }] };
 * console.log(Object.keys(flatten(params)), count(params)); // ["conv.w", "blocks.0.b"] 20
 * const halved = map(params, (t) => tf.mul(t, 0.5));
 * const sum = zipMap([params, halved], ([a, b]) => tf.add(a, b)); // conv.w is 1.5 everywhere
 * ```
 *
 * @module
 */
export * from "./tree.ts";
