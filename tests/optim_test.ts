import * as tf from "@tensorflow/tfjs";
import { assertAlmostEquals, assertEquals } from "@std/assert";
import {
  addDecayedWeights,
  applyUpdates,
  chain,
  clipRho,
  referenceAdam,
  referenceRate,
  referenceSchedule,
  scaleByAdam,
  updateThenApply,
} from "../optim/mod.ts";
import { selectBackend } from "../backends/mod.ts";
import { loadNativeLibraries } from "../backends/native/native_kernels.ts";
import { setOpKernels } from "../ops/kernel.ts";
import { ADAM_UPDATE } from "../ops/adam_update.ts";
import { assertClose } from "./helpers.ts";

await selectBackend("cpu");

Deno.test("referenceAdam() equals two hand-computed torch.optim.Adam steps with coupled weight decay", () => {
  const lr = 0.1, wd = 0.01, b1 = 0.5, b2 = 0.999, eps = 1e-8;
  let p = [1.5, -2];
  const grads = [[0.3, -0.4], [-0.2, 0.1]];
  let m = [0, 0], v = [0, 0];
  const opt = referenceAdam({ lr, weightDecay: wd, iterations: 100, decay: true });
  let params = { w: tf.tensor1d(p) };
  let state = opt.init(params);
  grads.forEach((g, step) => {
    // by hand, as torch.optim.Adam does: g += wd * p; moments; bias correction; p -= lr * mhat / (sqrt(vhat) + eps)
    const t = step + 1;
    const gd = g.map((gi, i) => gi + wd * p[i]);
    m = m.map((mi, i) => b1 * mi + (1 - b1) * gd[i]);
    v = v.map((vi, i) => b2 * vi + (1 - b2) * gd[i] ** 2);
    p = p.map((pi, i) =>
      pi - lr * (m[i] / (1 - b1 ** t)) / (Math.sqrt(v[i] / (1 - b2 ** t)) + eps)
    );
    const [updates, next] = opt.update({ w: tf.tensor1d(g) }, state, params);
    params = applyUpdates(params, updates);
    state = next;
  });
  const got = Array.from(params.w.dataSync());
  got.forEach((g, i) => assertAlmostEquals(g, p[i], 1e-6));
});

Deno.test("referenceRate() is constant, then linear to 0 over the second half", () => {
  const s = referenceRate(1e-4, 100, true);
  assertEquals([s(1), s(50)], [1e-4, 1e-4]);
  assertAlmostEquals(s(75), 0.5e-4, 1e-12);
  assertAlmostEquals(s(100), 0, 1e-12);
  assertEquals(referenceRate(1e-4, 100, false)(100), 1e-4);
});

Deno.test("referenceSchedule() of a step tensor gives referenceRate()'s rate, in float32", () => {
  for (const decay of [true, false]) {
    const host = referenceRate(1e-4, 100, decay);
    const device = referenceSchedule(1e-4, 100, decay);
    for (const step of [1, 50, 51, 75, 99, 100]) {
      const rate = device(tf.scalar(step));
      assertEquals(rate.dataSync()[0], Math.fround(host(step)), `step ${step}`);
    }
  }
});

Deno.test("chain() composes transformations in order and clipRho() clips only rho", () => {
  const t = chain(addDecayedWeights(0.5), scaleByAdam());
  const params = { w: tf.tensor1d([2]) };
  const [u, [decayState, adam]] = t.update({ w: tf.tensor1d([1]) }, t.init(params), params);
  assertAlmostEquals(u.w.dataSync()[0], 1, 1e-6); // the first Adam step is g / |g| = 1
  // The chain's state: its parts', in order.
  assertEquals([decayState, adam.count.dataSync()[0]], [{}, 1]);
  const clipped = clipRho({ a: { rho: tf.tensor1d([-0.5, 0.5, 1.5]), w: tf.tensor1d([-3, 3]) } });
  assertEquals(Array.from(clipped.a.rho.dataSync()), [0, 0.5, 1]);
  assertEquals(Array.from(clipped.a.w.dataSync()), [-3, 3]);
});

Deno.test("the optimiser works on any parameter tree: nested records and arrays keep their shape", () => {
  const opt = referenceAdam({ lr: 0.1, weightDecay: 0, iterations: 10, decay: false });
  const params = { net: { convs: [{ w: tf.ones([2]) }, { w: tf.ones([3]) }], b: tf.zeros([1]) } };
  const grads = { net: { convs: [{ w: tf.ones([2]) }, { w: tf.fill([3], -1) }], b: tf.ones([1]) } };
  const [updates, state] = opt.update(grads, opt.init(params), params);
  const next = applyUpdates(params, updates);
  assertEquals(Array.isArray(next.net.convs), true);
  assertEquals(Array.from(next.net.convs[1].w.dataSync()).map((v) => +v.toFixed(6)), [
    1.1,
    1.1,
    1.1,
  ]);
  assertEquals(Array.from(next.net.b.dataSync()).map((v) => +v.toFixed(6)), [-0.1]);
  const mu = state[1].mu as typeof params;
  assertEquals(mu.net.convs[0].w.shape, [2]); // the moments follow the parameters' tree
});

// native-cpu runs the kernel's SIMD loop through a staging memory (backends/simd.ts).
const native = loadNativeLibraries();
if (typeof native === "string") console.log(`SKIPPED: Adam on native-cpu (${native})`);

for (const backend of ["cpu", "wasm", "native-cpu"] as const) {
  const name = `referenceAdam() as one kernel on ${backend} equals the composed chain`;
  const ignore = backend === "native-cpu" && typeof native === "string";
  Deno.test({ name, ignore }, async () => {
    await selectBackend(backend);
    const params = {
      a: tf.randomNormal([3, 4], 0, 1, "float32", 1),
      b: tf.randomNormal([5], 0, 1, "float32", 2),
    };
    const run = (fused: boolean) => {
      setOpKernels(fused, [ADAM_UPDATE]);
      const opt = referenceAdam({ lr: 0.01, weightDecay: 1e-4, iterations: 4, decay: true });
      let state = opt.init(params);
      let p: Record<string, tf.Tensor> = { ...params };
      for (let step = 0; step < 4; step++) {
        const grads = {
          a: tf.randomNormal([3, 4], 0, 1, "float32", 10 + step),
          b: tf.randomNormal([5], 0, 1, "float32", 20 + step),
        };
        const [updates, next] = opt.update(grads, state, p);
        p = applyUpdates(p, updates);
        state = next;
      }
      setOpKernels(true, [ADAM_UPDATE]);
      return { p, count: state[1].count, mu: state[1].mu as typeof params };
    };
    const composed = run(false);
    const fused = run(true);
    // The step applied in the kernel gives what the update and a separate add give, bit for bit.
    const opt = referenceAdam({ lr: 0.01, weightDecay: 1e-4, iterations: 4, decay: true });
    const grads = { a: tf.randomNormal([3, 4], 0, 1, "float32", 7), b: tf.randomNormal([5]) };
    const [stepped] = opt.step!(grads, opt.init(params), params);
    const [twoSteps] = updateThenApply(opt, grads, opt.init(params), params);
    for (const k of ["a", "b"] as const) {
      assertEquals(
        await stepped[k].data(),
        await twoSteps[k].data(),
        `${k}, applied in the kernel`,
      );
    }
    assertEquals(fused.count.dataSync()[0], 4);
    for (const k of ["a", "b"] as const) {
      await assertClose(fused.p[k], composed.p[k], 1e-6, `parameter ${k}`);
      await assertClose(fused.mu[k], composed.mu[k], 1e-6, `first moment ${k}`);
    }
  });
}
