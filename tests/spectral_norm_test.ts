import * as tf from "@tensorflow/tfjs";
import { assertAlmostEquals, assertEquals } from "@std/assert";
import {
  convWeightMatrix,
  initSpectralNormState,
  linearWeightMatrix,
  spectralNormalize,
  type SpectralNormState,
  stopGradient,
  type WeightMatrix,
} from "../layers/spectral_norm.ts";
import { setOpKernels } from "../ops/kernel.ts";
import { SPECTRAL_SIGMA } from "../ops/spectral_sigma.ts";
import { selectBackend } from "../backends/mod.ts";
import { loadNativeLibraries, setNativeKernels } from "../backends/native/native_kernels.ts";
import { assertClose, assertNoLeak } from "./helpers.ts";

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

// On native and native-cpu the kernels' products run on the native matrix multiply, counted
// here so that the test sees them run.
const native = loadNativeLibraries();
if (typeof native === "string") {
  console.log(`SKIPPED: spectral norm on native backends (${native})`);
}
let gemmCalls = 0;
const counted = typeof native === "string" ? undefined : {
  ...native,
  gemm: (...args: Parameters<typeof native.gemm>) => {
    gemmCalls++;
    native.gemm(...args);
  },
};

for (const backend of ["cpu", "wasm", "native", "native-cpu"] as const) {
  Deno.test({
    name: `spectral norm as one kernel on ${backend} equals the composed ops (conv and linear, ` +
      "gradients)",
    ignore: backend.startsWith("native") && !counted,
    fn: async () => {
      await selectBackend(backend);
      if (backend.startsWith("native")) setNativeKernels(counted);
      const cases: [tf.Tensor, WeightMatrix, number, number][] = [
        [tf.randomNormal([4, 4, 3, 5], 0, 1, "float32", 3), convWeightMatrix, 5, 48],
        [tf.randomNormal([6, 1], 0, 1, "float32", 4), linearWeightMatrix, 1, 6],
      ];
      for (const [w, view, rows, cols] of cases) {
        const state = initSpectralNormState(7, rows, cols);
        const plain: WeightMatrix = (t) => view(t); // no view: the weight's matrix transposed
        const c = tf.randomNormal(w.shape, 0, 1, "float32", 5);
        for (const training of [true, false]) {
          const run = (m: WeightMatrix) => {
            const [wn, next] = spectralNormalize(w, m, state, training);
            const [g] = tf.grads((t) =>
              tf.sum(tf.mul(spectralNormalize(t, m, state, training)[0], c))
            )([w]);
            return [wn, next.u, next.v, g];
          };
          const before = gemmCalls;
          const fused = run(view);
          // Training: two products in the value's pass and two in the gradient's forward pass,
          // else one each; and the gradient's outer product.
          const products = backend.startsWith("native") ? (training ? 5 : 3) : 0;
          assertEquals(gemmCalls - before, products, "the kernels' products on the native GEMM");
          // The composed ops (our kernel turned off), on the plain matrix.
          setOpKernels(false, [SPECTRAL_SIGMA]);
          const composed = run(plain);
          setOpKernels(true, [SPECTRAL_SIGMA]);
          const what = ["normalised weight", "u", "v", "gradient"];
          for (let i = 0; i < 4; i++) {
            await assertClose(
              fused[i],
              composed[i],
              2e-5,
              `${what[i]} ${w.shape} training ${training}`,
            );
          }
          tf.dispose([...fused, ...composed]);
        }
        tf.dispose([w, c, state.u, state.v]);
      }
      await selectBackend("cpu");
    },
  });
}
