import * as tf from "@tensorflow/tfjs";
import { assertAlmostEquals, assertEquals } from "@std/assert";
import {
  convWeightMatrix,
  initSpectralNormState,
  spectralNormalize,
  type SpectralNormState,
  stopGradient,
} from "../layers/spectral_norm.ts";
import { selectBackend } from "../backends/mod.ts";
import { assertNoLeak } from "./helpers.ts";

await selectBackend("cpu");

// Largest singular value by many power iterations in plain JS (the closed form we check against).
function topSingularValue(m: number[][]): number {
  let v = m[0].map(() => 1);
  let sigma = 0;
  for (let it = 0; it < 500; it++) {
    const u = m.map((row) => row.reduce((s, a, j) => s + a * v[j], 0));
    const w = v.map((_, j) => m.reduce((s, row, i) => s + row[j] * u[i], 0));
    const norm = Math.hypot(...w);
    v = w.map((a) => a / norm);
    sigma = Math.sqrt(norm);
  }
  return sigma;
}

Deno.test("spectralNormalize() gives a weight whose top singular value is ~1 after power iterations", () => {
  const w = tf.randomNormal([4, 4, 3, 5], 0, 1, "float32", 3) as tf.Tensor4D;
  let state: SpectralNormState = initSpectralNormState(9, 5, 48);
  let normalized = w;
  for (let i = 0; i < 30; i++) {
    const [wn, next] = spectralNormalize(w, convWeightMatrix, state, true);
    tf.dispose([state.u, state.v]);
    if (normalized !== w) normalized.dispose();
    [normalized, state] = [wn, next];
  }
  const m = convWeightMatrix(normalized).arraySync();
  assertAlmostEquals(topSingularValue(m), 1, 1e-3);
  const raw = topSingularValue(convWeightMatrix(w).arraySync());
  assertAlmostEquals(w.dataSync()[0] / normalized.dataSync()[0], raw, raw * 1e-3);
});

Deno.test("spectralNormalize() in evaluation mode keeps u and v", () => {
  const w = tf.randomNormal([2, 6], 0, 1, "float32", 4);
  const state = initSpectralNormState(1, 6, 2);
  const [, next] = spectralNormalize(w, (t) => tf.transpose(t as tf.Tensor2D), state, false);
  assertEquals(next.u.dataSync(), state.u.dataSync());
  assertEquals(next.v.dataSync(), state.v.dataSync());
  const [, trained] = spectralNormalize(w, (t) => tf.transpose(t as tf.Tensor2D), state, true);
  assertEquals(
    Array.from(trained.u.dataSync()).every((a, i) => a === state.u.dataSync()[i]),
    false,
  );
});

Deno.test("spectral norm differentiates sigma through W only, and leaves no tensors behind", () => {
  const w = tf.randomNormal([3, 3, 2, 4], 0, 1, "float32", 5) as tf.Tensor4D;
  const state = initSpectralNormState(2, 4, 18);
  const g = tf.grad((w: tf.Tensor) =>
    tf.sum(spectralNormalize(w, convWeightMatrix, state, true)[0])
  )(w);
  assertEquals(g.shape, w.shape);
  assertEquals(tf.max(tf.abs(g)).dataSync()[0] > 0, true);
  const zero = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(stopGradient(t), t)))(tf.ones([2]));
  assertEquals(Array.from(zero.dataSync()), [1, 1]);
  assertNoLeak(() => spectralNormalize(w, convWeightMatrix, state, true) as unknown as tf.Tensor[]);
});
