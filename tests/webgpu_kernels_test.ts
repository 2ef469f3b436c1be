/**
 * Our WGSL kernels (`backends/webgpu/kernels.ts`) against the cpu backend (whose kernels of ours
 * are tested against composed ops elsewhere): values and gradients of AdaLIN, ILN and instance
 * norm, spectral norm (power iteration, sigma, its gradient), reflection padding, upsampling, Adam
 * steps, small matrix products (`BatchMatMul`), reductions over a run of axes (`Sum`, `Mean`,
 * `Max`) and constant padding (`PadV2`), each of the last three with the stock kernel behind it,
 * on random shapes. Runs on any WebGPU adapter (CI: lavapipe); says that it skipped where there
 * is none.
 */
import * as tf from "@tensorflow/tfjs";
import { assertEquals } from "@std/assert";
import { selectBackend, webgpuUnavailable } from "../backends/mod.ts";
import { WEBGPU_KERNELS } from "../backends/webgpu/kernels.ts";
import { reflectionPad } from "../ops/reflect_pad.ts";
import { upsampleNearest2x } from "../ops/upsample_2x.ts";
import { adaLin, iln, instanceNorm } from "../layers/norm.ts";
import {
  convWeightMatrix,
  initSpectralNormState,
  linearWeightMatrix,
  spectralSigma,
} from "../layers/spectral_norm.ts";
import { referenceAdam } from "../optim/adam.ts";
import { assertClose } from "./helpers.ts";

const unavailable = await webgpuUnavailable();

type Arrays = Record<string, Float32Array>;

// Runs `f` on a backend from seeded inputs and reads every output back.
async function on(backend: "cpu" | "webgpu", f: () => Record<string, tf.Tensor>): Promise<Arrays> {
  await selectBackend(backend);
  const out = f();
  const arrays: Arrays = {};
  for (const [k, t] of Object.entries(out)) arrays[k] = (await t.data()) as Float32Array;
  tf.dispose(Object.values(out));
  return arrays;
}

async function compare(what: string, f: () => Record<string, tf.Tensor>, tolerance = 1e-4) {
  const cpu = await on("cpu", f);
  const gpu = await on("webgpu", f);
  for (const k of Object.keys(cpu)) await assertClose(gpu[k], cpu[k], tolerance, `${what}: ${k}`);
}

// Seeds start at 1: tfjs draws a random seed for 0.
const rand = (shape: number[], seed: number, mean = 0, std = 1) =>
  tf.randomNormal(shape, mean, std, "float32", seed + 1);

// Values and gradients (against fixed random weights on the output) of a normalisation.
function normCase(
  shape: [number, number, number, number],
  seed: number,
  norm: (x: tf.Tensor4D, rho: tf.Tensor1D, gamma: tf.Tensor2D, beta: tf.Tensor2D) => tf.Tensor4D,
  mean = 0,
  withParams = true,
) {
  return () =>
    tf.tidy(() => {
      const [n, , , c] = shape;
      // A large mean checks that the sums lose nothing to cancellation in float32.
      const x = rand(shape, seed, mean, 2) as tf.Tensor4D;
      const rho = tf.randomUniform([c], 0, 1, "float32", seed + 2) as tf.Tensor1D;
      const gamma = rand([n, c], seed + 2, 1, 0.5) as tf.Tensor2D;
      const beta = rand([n, c], seed + 3) as tf.Tensor2D;
      const w = rand(shape, seed + 4);
      const f = (a: tf.Tensor, r: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(
          norm(a as tf.Tensor4D, r as tf.Tensor1D, g as tf.Tensor2D, b as tf.Tensor2D),
          w,
        )) as tf.Scalar;
      // Instance norm has no parameters: its gradient is taken with respect to x alone.
      const vars = withParams ? [x, rho, gamma, beta] : [x];
      const { value, grads } = tf.valueAndGrads((...v: tf.Tensor[]) =>
        f(v[0], v[1] ?? rho, v[2] ?? gamma, v[3] ?? beta)
      )(vars);
      const y = norm(x, rho, gamma, beta);
      const names = ["dx", "drho", "dgamma", "dbeta"];
      return { y, value, ...Object.fromEntries(grads.map((g, i) => [names[i], g])) };
    });
}

Deno.test("webgpu kernels of ours equal the cpu backend, values and gradients", async (t) => {
  if (unavailable) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  await selectBackend("webgpu");
  for (const name of WEBGPU_KERNELS) assertEquals(!!tf.getKernel(name, "webgpu"), true, name);

  const shapes: [number, number, number, number][] = [[2, 5, 7, 12], [1, 9, 11, 3], [
    2,
    16,
    9,
    8,
  ]];
  await t.step("adaLin", async () => {
    for (const [i, s] of shapes.entries()) {
      await compare(`adaLin ${s}`, normCase(s, 10 * i, adaLin));
    }
    await compare("adaLin, mean 100", normCase([2, 12, 12, 16], 7, adaLin, 100));
    // More channels than a reducing workgroup has threads: a thread takes several.
    await compare("adaLin, 300 channels", normCase([2, 3, 4, 300], 8, adaLin));
    // Past 32,768 elements, sums over 64-pixel chunks first: backward only (the batch), then
    // both ways (a sample).
    await compare("adaLin, sums in chunks backward", normCase([2, 40, 40, 16], 9, adaLin, 10));
    await compare("adaLin, sums in chunks", normCase([1, 48, 48, 16], 11, adaLin, 10));
  });
  await t.step("iln and instance norm", async () => {
    for (const [i, s] of shapes.entries()) {
      const ilnOf = (x: tf.Tensor4D, rho: tf.Tensor1D, g: tf.Tensor2D, b: tf.Tensor2D) =>
        iln({ rho, gamma: tf.mean(g, 0) as tf.Tensor1D, beta: tf.mean(b, 0) as tf.Tensor1D }, x);
      await compare(`iln ${s}`, normCase(s, 20 + i, ilnOf));
      await compare(`instanceNorm ${s}`, normCase(s, 30 + i, (x) => instanceNorm(x), 50, false));
    }
  });
  await t.step("reflection padding and upsampling", async () => {
    for (
      const [i, [s, pad]] of ([[[1, 5, 6, 2], 1], [[2, 7, 5, 3], 3], [[1, 4, 4, 1], 2]] as const)
        .entries()
    ) {
      await compare(`reflectionPad ${s} pad ${pad}`, () =>
        tf.tidy(() => {
          const x = rand([...s], 40 + i) as tf.Tensor4D;
          const y = reflectionPad(x, pad);
          const w = rand(y.shape, 50 + i);
          const [dx] = tf.grads((a) => tf.sum(tf.mul(reflectionPad(a as tf.Tensor4D, pad), w)))([
            x,
          ]);
          return { y, dx };
        }), 1e-6);
      await compare(`upsample ${s}`, () =>
        tf.tidy(() => {
          const x = rand([...s], 60 + i) as tf.Tensor4D;
          const y = upsampleNearest2x(x);
          const w = rand(y.shape, 70 + i);
          const [dx] = tf.grads((a) => tf.sum(tf.mul(upsampleNearest2x(a as tf.Tensor4D), w)))([
            x,
          ]);
          return { y, dx };
        }), 1e-6);
    }
  });
  await t.step("spectral norm", async () => {
    const cases = [
      { shape: [4, 4, 3, 5], matrix: convWeightMatrix, rows: 5, cols: 48 },
      { shape: [4, 4, 16, 1], matrix: convWeightMatrix, rows: 1, cols: 256 },
      { shape: [300, 7], matrix: linearWeightMatrix, rows: 7, cols: 300 },
    ];
    for (const [i, { shape, matrix, rows, cols }] of cases.entries()) {
      for (const training of [true, false]) {
        await compare(`spectralSigma ${shape} training ${training}`, () =>
          tf.tidy(() => {
            const w = rand(shape, 100 + i);
            const state = initSpectralNormState(7 + i, rows, cols);
            const [sigma, next] = spectralSigma(w, matrix, state, training);
            const [dw] = tf.grads((x) => spectralSigma(x, matrix, state, training)[0])([w]);
            return { sigma, u: next.u, v: next.v, dw };
          }));
      }
    }
  });
  await t.step("Adam", async () => {
    await compare("three Adam steps", () => {
      const adam = referenceAdam({ lr: 1e-2, weightDecay: 1e-4, iterations: 10, decay: true });
      let params: Record<string, tf.Tensor> = { a: rand([3, 5], 80), b: rand([7], 81) };
      let state = adam.init(params);
      for (let step = 0; step < 3; step++) {
        const grads = { a: rand([3, 5], 90 + step), b: rand([7], 95 + step) };
        const [updates, next] = adam.update(grads, state, params);
        const applied = tf.tidy(() => ({
          a: tf.add(params.a, updates.a),
          b: tf.add(params.b, updates.b),
        }));
        tf.dispose([...Object.values(grads), ...Object.values(updates), ...Object.values(params)]);
        params = applied;
        state = next;
      }
      return params;
    });
  });
  await t.step("small matrix products, values and gradients", async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[2, 16], [16, 16], false, false],
      [[16, 3], [16, 5], true, false],
      [[4, 7], [9, 7], false, true],
      [[3, 6, 2], [3, 5, 6], true, true],
      [[1, 1], [1, 300], false, false],
    ];
    for (const [i, [as, bs, ta, tb]] of cases.entries()) {
      await compare(
        `matMul ${as} x ${bs}${ta ? " A^T" : ""}${tb ? " B^T" : ""}`,
        () =>
          tf.tidy(() => {
            const a = rand(as, 100 + i), b = rand(bs, 110 + i);
            const y = tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D, ta, tb);
            const w = rand(y.shape, 120 + i);
            const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) =>
              tf.sum(tf.mul(tf.matMul(p as tf.Tensor3D, q as tf.Tensor3D, ta, tb), w))
            )([a, b]);
            return { y, da, db };
          }),
      );
    }
    // Past the small products' bound, the stock kernel (the fallback) takes it.
    await compare(
      "matMul 64 x 128 x 160",
      () => tf.tidy(() => ({ y: tf.matMul(rand([64, 128], 130), rand([128, 160], 131)) })),
      1e-3,
    );
  });
  await t.step("constant padding, values and gradients", async () => {
    const cases: [number[], [number, number][], number][] = [
      [[2, 3], [[1, 0], [2, 3]], 0],
      [[2, 4, 5, 3], [[0, 2], [1, 1], [0, 0], [2, 1]], -1.5],
      [[7], [[3, 0]], 0],
    ];
    for (const [i, [shape, paddings, value]] of cases.entries()) {
      await compare(
        `pad [${shape}] by [${paddings.join("; ")}] with ${value}`,
        () =>
          tf.tidy(() => {
            const x = rand(shape, 160 + i);
            const y = tf.pad(x, paddings, value);
            const w = rand(y.shape, 170 + i);
            return {
              y,
              dx: tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.pad(v, paddings, value), w)))(x),
            };
          }),
      );
    }
  });
  await t.step("reductions over a run of axes, values and gradients", async () => {
    const cases: [number[], number[], boolean][] = [
      [[2, 5, 7, 3], [1, 2], false], // spatial pooling
      [[2, 5, 7, 3], [0, 1, 2], true], // a per-channel sum
      [[4, 6], [0], false],
      [[3, 4, 5], [-3, -2], true],
      [[2, 3, 4], [2], false], // the last axis alone: the stock kernel
      [[2, 1, 1, 3], [1, 2], false], // axes of size 1: the input, reshaped
    ];
    for (const [i, [shape, axes, keep]] of cases.entries()) {
      await compare(`sum, mean, max of [${shape}] over [${axes}]`, () =>
        tf.tidy(() => {
          const x = rand(shape, 140 + i);
          const w = rand(tf.sum(x, axes, keep).shape, 150 + i);
          const f = (v: tf.Tensor) =>
            tf.sum(
              tf.mul(
                tf.add(
                  tf.add(tf.sum(v, axes, keep), tf.mean(v, axes, keep)),
                  tf.max(v, axes, keep),
                ),
                w,
              ),
            );
          return {
            sum: tf.sum(x, axes, keep),
            mean: tf.mean(x, axes, keep),
            max: tf.max(x, axes, keep),
            dx: tf.grad(f)(x),
          };
        }));
    }
    // A NaN wins a max, wherever it lies in the run.
    await selectBackend("webgpu");
    const max = tf.tidy(() => tf.max(tf.tensor3d([[[1], [NaN]], [[NaN], [2]], [[3], [4]]]), [1]));
    assertEquals(Array.from(await max.data()), [NaN, NaN, 4]);
    max.dispose();
  });
});
