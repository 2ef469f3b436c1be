import * as tf from "@tensorflow/tfjs";
import { assertAlmostEquals, assertEquals } from "@std/assert";
import { adaLin, iln, initIln, instanceNorm, layerNorm } from "../layers/norm.ts";
import { setOpKernels } from "../ops/kernel.ts";
import { LIN_NORM } from "../ops/lin_norm.ts";
import { selectBackend } from "../backends/mod.ts";
import { loadNativeLibraries } from "../backends/native/native_kernels.ts";
import { assertClose, assertNoLeak } from "./helpers.ts";

await selectBackend("cpu");

const x = tf.randomNormal([2, 5, 4, 3], 1, 2, "float32", 11) as tf.Tensor4D;

// Hand-computed per-sample, per-channel normalisation with the unbiased variance, in plain JS.
function unbiasedInstanceNorm(values: Float32Array, [n, h, w, c]: number[]): Float32Array {
  const out = new Float32Array(values.length);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const idx: number[] = [];
      for (let i = 0; i < h * w; i++) idx.push(((b * h * w) + i) * c + ch);
      const mean = idx.reduce((s, i) => s + values[i], 0) / idx.length;
      const v = idx.reduce((s, i) => s + (values[i] - mean) ** 2, 0) / (idx.length - 1);
      for (const i of idx) out[i] = (values[i] - mean) / Math.sqrt(v + 1e-5);
    }
  }
  return out;
}

Deno.test("adaLin() equals unbiased instance norm when rho is 1", async () => {
  const y = adaLin(x, tf.ones([3]), tf.ones([2, 3]), tf.zeros([2, 3]));
  await assertClose(y, unbiasedInstanceNorm(x.dataSync() as Float32Array, x.shape), 1e-5);
});

Deno.test("adaLin() equals layer norm when rho is 0, then scales by gamma and shifts by beta", async () => {
  const gamma = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
  const beta = tf.tensor2d([[0.5, 0, -0.5], [1, 1, 1]]);
  const y = adaLin(x, tf.zeros([3]), gamma, beta);
  const expected = tf.add(
    tf.mul(layerNorm(x), tf.reshape(gamma, [2, 1, 1, 3])),
    tf.reshape(beta, [2, 1, 1, 3]),
  );
  await assertClose(y, expected, 1e-6);
  // layer norm statistics: every sample has mean 0 and unbiased variance ~1
  const ln = layerNorm(x);
  const { mean, variance } = tf.moments(ln, [1, 2, 3]);
  assertAlmostEquals(mean.dataSync()[0], 0, 1e-5);
  assertAlmostEquals(variance.dataSync()[1] * 60 / 59, 1, 1e-3);
});

Deno.test("instanceNorm() uses the biased variance, as PyTorch's InstanceNorm2d", () => {
  const { variance } = tf.moments(instanceNorm(x), [1, 2]);
  for (const v of variance.dataSync()) assertAlmostEquals(v, 1, 1e-3);
});

Deno.test("iln() at its initial parameters is layer norm; at rho 1, gamma 2 it is 2 * IN", async () => {
  await assertClose(iln(initIln(3), x), layerNorm(x), 1e-6);
  const p = {
    rho: tf.ones([3]) as tf.Tensor1D,
    gamma: tf.fill([3], 2) as tf.Tensor1D,
    beta: tf.zeros([3]) as tf.Tensor1D,
  };
  const expected = unbiasedInstanceNorm(x.dataSync() as Float32Array, x.shape).map((v) => 2 * v);
  await assertClose(iln(p, x), expected, 1e-5);
});

Deno.test("norms leave no tensors behind", () => {
  const rho = tf.fill([3], 0.3) as tf.Tensor1D;
  const g = tf.ones([2, 3]) as tf.Tensor2D;
  const p = initIln(3);
  assertNoLeak(() => adaLin(x, rho, g, g));
  assertNoLeak(() => iln(p, x));
  assertNoLeak(() => instanceNorm(x));
});

// Every input's gradient of a random weighting of the output, and the output itself.
async function normResults(
  f: (x: tf.Tensor4D, p: tf.Tensor[]) => tf.Tensor,
  params: tf.Tensor[],
  c: number,
  [h, w]: readonly number[] = [6, 5],
) {
  const xs = tf.randomNormal([2, h, w, c], 0.5, 3, "float32", 21) as tf.Tensor4D;
  const weight = tf.randomNormal([2, h, w, c], 0, 1, "float32", 22);
  const loss = (...a: tf.Tensor[]) => tf.sum(tf.mul(f(a[0] as tf.Tensor4D, a.slice(1)), weight));
  const grads = tf.grads(loss)([xs, ...params]);
  const y = f(xs, params);
  const out = [await y.data(), ...(await Promise.all(grads.map((g) => g.data())))];
  tf.dispose([xs, weight, y, ...grads]);
  return out;
}

// 7 channels: the JavaScript passes everywhere; 8: the SIMD passes on wasm, and on native-cpu
// staged through a WebAssembly memory of their own, 64x72 pixels of 32 channels in three blocks.
const native = loadNativeLibraries();
if (typeof native === "string") console.log(`SKIPPED: norms on native-cpu (${native})`);
const NORM_CASES = [
  ["cpu", 7, [6, 5]],
  ["wasm", 7, [6, 5]],
  ["wasm", 8, [6, 5]],
  ["native-cpu", 7, [6, 5]],
  ["native-cpu", 8, [6, 5]],
  ["native-cpu", 32, [64, 72]],
] as const;
for (const [backend, c, hw] of NORM_CASES) {
  Deno.test({
    name: `one-kernel norms on ${backend} (${c} channels, ${
      hw.join("x")
    }) equal the composed ones, gradients included`,
    ignore: backend === "native-cpu" && typeof native === "string",
    fn: () => normsMatch(backend, c, hw),
  });
}

async function normsMatch(
  backend: "cpu" | "wasm" | "native-cpu",
  c: number,
  hw: readonly number[],
) {
  await selectBackend(backend);
  const rho = tf.randomUniform([c], 0, 1, "float32", 1);
  const gamma = tf.randomNormal([2, c], 1, 0.5, "float32", 2);
  const beta = tf.randomNormal([2, c], 0, 0.5, "float32", 3);
  const cases: [string, (x: tf.Tensor4D, p: tf.Tensor[]) => tf.Tensor, tf.Tensor[]][] = [
    ["instanceNorm", (x) => instanceNorm(x), []],
    [
      "adaLin",
      (x, [r, g, b]) => adaLin(x, r as tf.Tensor1D, g as tf.Tensor2D, b as tf.Tensor2D),
      [
        rho,
        gamma,
        beta,
      ],
    ],
    ["iln", (x, [r, g, b]) => iln({ rho: r, gamma: g, beta: b } as never, x), [
      rho,
      tf.randomNormal([c], 1, 0.5, "float32", 4),
      tf.randomNormal([c], 0, 0.5, "float32", 5),
    ]],
  ];
  for (const [name, f, params] of cases) {
    setOpKernels(false, [LIN_NORM]);
    const composed = await normResults(f, params, c, hw);
    setOpKernels(true, [LIN_NORM]);
    const before = tf.memory().numTensors;
    const fused = await normResults(f, params, c, hw);
    assertEquals(tf.memory().numTensors, before, `${name} leaves no tensors`);
    const what = ["output", "dx", "drho", "dgamma", "dbeta"];
    for (let i = 0; i < composed.length; i++) {
      await assertClose(fused[i], composed[i], 2e-5, `${name} on ${backend}: ${what[i]}`);
    }
  }
}
