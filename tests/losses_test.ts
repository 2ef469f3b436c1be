import * as tf from "@tensorflow/tfjs";
import { assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import {
  bce,
  DEFAULT_WEIGHTS,
  discriminatorObjective,
  evaluate,
  generatorObjective,
  l1,
  mirror,
  mse,
  named,
  sum,
  weighted,
} from "../losses/mod.ts";
import { selectBackend } from "../backends/mod.ts";

await selectBackend("cpu");
const value = (t: tf.Tensor) => t.dataSync()[0];

Deno.test("mse(), l1() and bce() equal their closed forms", () => {
  const x = tf.tensor([0.5, -1, 2]);
  assertAlmostEquals(value(mse(x, 1)), (0.25 + 4 + 1) / 3, 1e-6);
  assertAlmostEquals(value(l1(x, tf.zeros([3]))), 3.5 / 3, 1e-6);
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const expected1 = -[0.5, -1, 2].reduce((s, v) => s + Math.log(sig(v)), 0) / 3;
  const expected0 = -[0.5, -1, 2].reduce((s, v) => s + Math.log(1 - sig(v)), 0) / 3;
  assertAlmostEquals(value(bce(x, 1)), expected1, 1e-6);
  assertAlmostEquals(value(bce(x, 0)), expected0, 1e-6);
  assertAlmostEquals(value(bce(tf.tensor([200]), 0)), 200, 1e-3); // stable for large logits
});

Deno.test("the DSL names, weights, sums and mirrors terms; evaluate() gives total and terms", () => {
  type V = { x: tf.Tensor };
  const size = named<V>("size", (v) => tf.mean(v.x) as tf.Scalar);
  const twice = named<V>("twice", (v) => tf.mul(tf.mean(v.x), 2) as tf.Scalar);
  const objective = mirror(
    sum(weighted(3, size), twice, weighted(0, named<V>("off", () => tf.scalar(NaN)))),
  );
  assertEquals(objective.map((t) => [t.name, t.weight]), [["size_A", 3], ["twice_A", 1], [
    "size_B",
    3,
  ], [
    "twice_B",
    1,
  ]]);
  const { total, terms } = evaluate(objective, {
    A: { x: tf.ones([2]) },
    B: { x: tf.fill([2], 2) },
  });
  assertEquals(Object.fromEntries(Object.entries(terms).map(([k, v]) => [k, value(v)])), {
    size_A: 1,
    twice_A: 2,
    size_B: 2,
    twice_B: 4,
  });
  assertAlmostEquals(value(total), 3 * 1 + 2 + 3 * 2 + 4, 1e-6);
  assertThrows(
    () => evaluate(sum(size, size), { x: tf.ones([1]) }),
    Error,
    'two terms are named "size"',
  );
});

Deno.test("the U-GAT-IT objectives carry the reference's terms and weights", () => {
  assertEquals(generatorObjective(DEFAULT_WEIGHTS).map((t) => `${t.weight}*${t.name}`), [
    "1*adv_A",
    "10*cycle_A",
    "10*identity_A",
    "1000*cam_A",
    "1*adv_B",
    "10*cycle_B",
    "10*identity_B",
    "1000*cam_B",
  ]);
  assertEquals(
    generatorObjective(DEFAULT_WEIGHTS, { camLoss: false }).some((t) => t.name.startsWith("cam")),
    false,
  );
  assertEquals(
    discriminatorObjective({ ...DEFAULT_WEIGHTS, adv: 2 }).map((t) => `${t.weight}*${t.name}`),
    [
      "2*d_adv_A",
      "2*d_adv_B",
    ],
  );
});

Deno.test("the generator objective equals the reference's sum on a hand-made record", () => {
  const out = (v: number, cam: number[]) => ({
    image: tf.fill([1, 2, 2, 3], v) as tf.Tensor4D,
    camLogit: tf.tensor2d([cam]),
    heatmap: tf.zeros([1, 1, 1, 1]) as tf.Tensor4D,
  });
  const judge = (v: number) => ({
    logit: tf.fill([1, 2, 2, 1], v) as tf.Tensor4D,
    camLogit: tf.tensor2d([[v, v]]),
    heatmap: tf.zeros([1, 1, 1, 1]) as tf.Tensor4D,
  });
  const view = {
    real: tf.zeros([1, 2, 2, 3]) as tf.Tensor4D,
    translated: out(0.3, [2, 2]),
    identity: out(0.1, [-1, -1]),
    cycle: out(0.2, [0, 0]),
    judgedFake: { global: judge(0.5), local: judge(0.25) },
  };
  const { terms, total } = evaluate(generatorObjective(DEFAULT_WEIGHTS), { A: view, B: view });
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const adv = 2 * (0.5 ** 2) + 2 * (0.75 ** 2);
  const cam = -Math.log(sig(2)) - Math.log(1 - sig(-1));
  assertAlmostEquals(value(terms.adv_A), adv, 1e-6);
  assertAlmostEquals(value(terms.cycle_A), 0.2, 1e-6);
  assertAlmostEquals(value(terms.identity_A), 0.1, 1e-6);
  assertAlmostEquals(value(terms.cam_A), cam, 1e-5);
  assertAlmostEquals(value(total), 2 * (adv + 10 * 0.2 + 10 * 0.1 + 1000 * cam), 1e-2);
});
