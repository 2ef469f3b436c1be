import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertStrictEquals } from "@std/assert";
import { count, dispose, flatten, leaves, map, unflatten } from "../layers/tree.ts";
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
  const doubled = map(tree, (t, p) => (paths.push(p), tf.mul(t, 2))) as { x: tf.Tensor[] };
  assertEquals(paths, ["x.0", "x.1"]);
  assertEquals(doubled.x[1].dataSync()[0], 4);
  dispose(tree);
  dispose(doubled);
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
