import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertStrictEquals } from "@std/assert";
import {
  count,
  dispose,
  flatten,
  leaves,
  map,
  unflatten,
  valueAndGrads,
  withLeaves,
  zipMap,
} from "../tree/tree.ts";
import { splitKey, uniform } from "../layers/init.ts";
import { selectBackend } from "../backends/mod.ts";

await selectBackend("cpu");

Deno.test("flatten() names leaves by dotted path and unflatten() rebuilds arrays and objects", () => {
  const tree = { a: { w: tf.ones([2, 3]) }, list: [{ b: tf.zeros([1]) }, { b: tf.zeros([4]) }] };
  const flat = flatten(tree);
  assertEquals(Object.keys(flat), ["a.w", "list.0.b", "list.1.b"]);
  const back = unflatten(flat) as typeof tree;
  assertStrictEquals(back.a.w, tree.a.w);
  assertEquals(Array.isArray(back.list), true);
  assertStrictEquals(back.list[1].b, tree.list[1].b);
  assertEquals(count(tree), 6 + 1 + 4);
  assertEquals(leaves(tree).length, 3);
  dispose(tree);
  assertEquals(tree.a.w.isDisposed, true);
});

Deno.test("map() keeps the structure and passes each leaf's path", () => {
  const tree = { x: [tf.scalar(1), tf.scalar(2)] };
  const paths: string[] = [];
  const doubled = map(tree, (t, p) => (paths.push(p), tf.mul(t, 2)));
  assertEquals(paths, ["x.0", "x.1"]);
  assertEquals(doubled.x[1].dataSync()[0], 4);
  dispose(tree);
  dispose(doubled);
});

Deno.test("zipMap() pairs leaves by key, whatever the other records' key order", () => {
  const a = { w: tf.scalar(1), b: [tf.scalar(2)] };
  const b = { b: [tf.scalar(20)], w: tf.scalar(10) }; // same structure, keys in another order
  const paths: string[] = [];
  const sum = zipMap([a, b], ([x, y], p) => (paths.push(p), tf.add(x, y)));
  assertEquals(paths, ["w", "b.0"]);
  assertEquals([sum.w.dataSync()[0], sum.b[0].dataSync()[0]], [11, 22]);
  let error = "";
  try {
    zipMap([a, { w: tf.scalar(0) }], ([x]) => x);
  } catch (e) {
    error = (e as Error).message;
  }
  assertEquals(error, 'tree 1 has no tensor at "b.0"');
  dispose([a, b, sum]);
});

Deno.test("withLeaves() rebuilds a tree from its leaves; valueAndGrads() differentiates a tree", () => {
  const tree = { u: tf.scalar(3), v: [tf.scalar(4)] };
  const copy = withLeaves(tree, leaves(tree).map((t) => tf.mul(t, 2)));
  assertEquals([copy.u.dataSync()[0], copy.v[0].dataSync()[0]], [6, 8]);
  // d/du (u^2 v) = 2uv = 24, d/dv = u^2 = 9
  const { value, grads } = valueAndGrads((p) => tf.mul(tf.square(p.u), p.v[0]) as tf.Scalar, tree);
  assertEquals([value.dataSync()[0], grads.u.dataSync()[0], grads.v[0].dataSync()[0]], [36, 24, 9]);
  dispose([tree, copy, grads, value]);
});

Deno.test("splitKey() is deterministic and gives distinct keys; uniform() is reproducible", () => {
  assertEquals(splitKey(7, 3), splitKey(7, 3));
  assertEquals(new Set([...splitKey(7, 3), ...splitKey(8, 3)]).size, 6);
  const a = uniform(5, [100], 0.5);
  const b = uniform(5, [100], 0.5);
  assertEquals(a.dataSync(), b.dataSync());
  const [z1, z2] = [uniform(0, [4], 1), uniform(0, [4], 1)]; // key 0 is a key like any other
  assertEquals(z1.dataSync(), z2.dataSync());
  const values = Array.from(a.dataSync());
  assertEquals(values.every((v) => v >= -0.5 && v <= 0.5), true);
  tf.dispose([a, b]);
});
