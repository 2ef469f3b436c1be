/**
 * The freeing backward pass (backends/backprop.ts): the same gradients as TensorFlow.js's own, bit
 * for bit, on a whole training step; little live at the end of a backward pass; no tensor left behind;
 * second-order gradients still right.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertLess } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { setFreeingBackprop } from "../backends/backprop.ts";
import { DEFAULT_WEIGHTS } from "../losses/objectives.ts";
import { disposeState, trainer } from "../train/step.ts";
import { flatten } from "../tree/tree.ts";

Deno.test("freeing backprop: a training step's parameters equal the stock engine's bit for bit", async () => {
  await selectBackend("wasm");
  const t = trainer({
    generator: { ch: 4, nRes: 1, imgSize: 24, light: true },
    global: { ch: 4, nLayers: 5 },
    local: { ch: 4, nLayers: 3 },
    weights: DEFAULT_WEIGHTS,
    lr: 1e-3,
    weightDecay: 1e-4,
    iterations: 10,
    decay: false,
  });
  const a = tf.randomUniform([2, 24, 24, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const b = tf.randomUniform([2, 24, 24, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  const after = (freeing: boolean) => {
    setFreeingBackprop(freeing);
    const s0 = t.init(3);
    const { state, terms } = t.step(s0, a, b);
    const values = Object.fromEntries(
      Object.entries(flatten({ gen: state.gen, dis: state.dis })).map(([k, v]) => [
        k,
        Array.from(v.dataSync()),
      ]),
    );
    tf.dispose(Object.values(terms));
    disposeState(s0);
    disposeState(state);
    return values;
  };
  try {
    const before = tf.memory().numTensors;
    const stock = after(false);
    const ours = after(true);
    assertEquals(tf.memory().numTensors, before, "no tensor left behind");
    assertEquals(Object.keys(ours).sort(), Object.keys(stock).sort());
    for (const k of Object.keys(stock)) assertEquals(ours[k], stock[k], k);
  } finally {
    setFreeingBackprop(true);
    tf.dispose([a, b]);
  }
});

Deno.test("freeing backprop: at the end of a deep chain's backward pass, little is still live", async () => {
  await selectBackend("wasm");
  const x = tf.randomUniform([1 << 16], -1, 1, "float32", 4); // 256 KiB a tensor
  let liveAtEnd = 0;
  // The chain's first op: its gradient runs last in the backward pass, and notes what is live.
  const probe = tf.customGrad((v) => ({
    value: (v as tf.Tensor).clone(),
    gradFunc: (dy: tf.Tensor) => {
      liveAtEnd = tf.memory().numBytes;
      return dy.clone();
    },
  })) as (v: tf.Tensor) => tf.Tensor;
  const chain = (v: tf.Tensor) => {
    let h = probe(v);
    for (let i = 0; i < 40; i++) h = tf.sin(tf.mul(h, 1.01));
    return tf.sum(h) as tf.Scalar;
  };
  const run = (freeing: boolean) => {
    setFreeingBackprop(freeing);
    const before = tf.memory().numTensors;
    const { value, grads } = tf.valueAndGrads(chain)([x]);
    const values = grads[0].dataSync().slice();
    tf.dispose([value, ...grads]);
    assertEquals(tf.memory().numTensors, before, `tensors left behind (freeing: ${freeing})`);
    return { live: liveAtEnd, values };
  };
  try {
    const stock = run(false);
    const ours = run(true);
    assertEquals(Array.from(ours.values), Array.from(stock.values));
    // Stock: every saved activation and every intermediate gradient (over 160 tensors of 256
    // KiB); ours: the input, its gradient and a few more.
    assert(stock.live > 120 * 2 ** 18, `stock: ${stock.live} bytes`);
    assertLess(ours.live, 10 * 2 ** 18, `ours: ${ours.live} bytes`);
  } finally {
    setFreeingBackprop(true);
    x.dispose();
  }
});

Deno.test("freeing backprop: second-order gradients (stock path inside) stay right", async () => {
  await selectBackend("wasm");
  const x = tf.tensor1d([-2, 0.5, 3]);
  const d2 = tf.grad(tf.grad((v: tf.Tensor) => tf.sum(tf.pow(v, 3))))(x); // 6x
  assertEquals(Array.from(d2.dataSync()), [-12, 3, 18]);
  const dd = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.tanh(v), tf.square(v))))(x);
  const want = [-2, 0.5, 3].map((v) => (1 - Math.tanh(v) ** 2) * v * v + 2 * v * Math.tanh(v));
  Array.from(dd.dataSync()).forEach((g, i) => assert(Math.abs(g - want[i]) < 1e-5, `${g}`));
  tf.dispose([x, d2, dd]);
});
