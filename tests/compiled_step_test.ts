/**
 * The compiled training step (`Trainer.compile`, `backends/compile.ts`) on a WebGPU adapter (CI:
 * lavapipe; skipped with a notice where there is none): replayed iterations equal eager ones from
 * the same state at two model sizes and with an ablation switch on; a run through the runner,
 * stopped and resumed, equals an uninterrupted one; a non-finite loss reaches the terms of a
 * replayed iteration; and the step-dependent numbers computed on the device (bias corrections,
 * learning rate, the moving average's weight) agree with the host's.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { trainWithReport } from "../cli/train.ts";
import { biasCorrection, biasCorrectionOf } from "../ops/adam_update.ts";
import { referenceRate, referenceSchedule } from "../optim/schedule.ts";
import { configFromSettings } from "../train/settings.ts";
import { disposeState, emaDecay, emaWeight, trainer, type TrainState } from "../train/step.ts";
import { flatten, leaves, withLeaves } from "../tree/tree.ts";
import { readSafetensors } from "../weights/safetensors.ts";
import { makeDataset, relativeError, tinyFlags, webgpuTest } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

// The batches of iteration i, the same for both runs.
const batch = (size: number, i: number) =>
  [1, 2].map((d) => tf.randomUniform([1, size, size, 3], -1, 1, "float32", 100 * d + i)) as [
    tf.Tensor4D,
    tf.Tensor4D,
  ];

// Runs `iterations` of the eager step and of the compiled one from the same state and compares
// every state tensor (parameters, moments, step counts, spectral-norm vectors, moving average).
async function replayEqualsEager(overrides: Record<string, string>) {
  const flags = tinyFlags("unused", "unused", { iteration: "10", ...overrides });
  const model = trainer(configFromSettings(flags));
  const compiled = model.compile({ log: (l) => assert(false, l) });
  let [eager, replayed]: TrainState[] = [model.init(7), model.init(7)];
  let replays = 0;
  for (let i = 0; i < 6; i++) {
    const [a, b] = batch(flags.img_size, i);
    if (compiled.compiled.mode === "replaying") replays++;
    const e = model.step(eager, a, b);
    const r = compiled.step(replayed, a, b);
    const [eTerms, rTerms] = [Object.values(e.terms), Object.values(r.terms)];
    for (const [k, t] of eTerms.entries()) {
      assertEquals(await rTerms[k].data(), await t.data(), `iteration ${i + 1}: a loss term`);
    }
    disposeState(eager);
    disposeState(replayed);
    [eager, replayed] = [e.state, r.state];
    tf.dispose([a, b, ...eTerms, ...rTerms]);
  }
  assert(replays >= 3, `${replays} replayed iterations`);
  const { step: _, ...want } = eager;
  const { step: __, ...got } = replayed;
  const [wantFlat, gotFlat] = [flatten(want), flatten(got)];
  assertEquals(Object.keys(gotFlat).sort(), Object.keys(wantFlat).sort());
  for (const [path, t] of Object.entries(wantFlat)) {
    const error = relativeError(await gotFlat[path].data(), await t.data());
    assert(error <= 1e-5, `${path}: relative error ${error}`);
  }
  const stats = compiled.compiled.stats()!;
  assert(stats.dispatches > 100 && stats.bytes.total > 0);
  compiled.compiled.dispose();
  disposeState(eager);
  disposeState(replayed);
}

webgpuTest("replayed iterations equal eager ones: light model, with a moving average", async () => {
  await replayEqualsEager({ img_size: "24", ch: "2", n_res: "1", n_dis: "4", ema: "0.9" });
});

webgpuTest(
  "replayed iterations equal eager ones: full model (the MLP reads the whole map)",
  async () => {
    await replayEqualsEager({ light: "false", img_size: "32", ch: "2", n_res: "1", n_dis: "4" });
  },
);

webgpuTest(
  "replayed iterations equal eager ones: an ablation (group norm, no CAM in D)",
  async () => {
    await replayEqualsEager({
      img_size: "24",
      ch: "2",
      n_res: "1",
      n_dis: "4",
      decoder_norm: "gn",
      dis_cam: "false",
    });
  },
);

webgpuTest("a replayed run stopped and resumed equals an uninterrupted one", async () => {
  const root = await makeDataset({ train: 3, test: 2, size: 28 });
  const [straight, resumed] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const flags = (results: string, extra: string[] = []) =>
    tinyFlags(root, results, { backend: "webgpu", iteration: "7", print_freq: "100" }, extra);
  try {
    const full = await trainWithReport(flags(straight), quiet);
    assertEquals([full.step, full.status], [7, "done"]);
    const control = { stop: false };
    const first = await trainWithReport(flags(resumed), {
      ...quiet,
      progress: (line) => (control.stop ||= line.includes(" 2/7 ")),
    }, control);
    // Loss terms are read an iteration late on a GPU: the stop comes after iteration 2 or 3, and
    // the resumed run records two iterations and replays the rest.
    assertEquals(first.status, "interrupted");
    assert(first.step >= 2 && first.step <= 3, `stopped at ${first.step}`);
    const rest = await trainWithReport(flags(resumed, ["--resume"]), quiet);
    assertEquals([rest.step, rest.status], [7, "done"]);
    const name = root.split("/").pop();
    const file = (results: string) => `${results}/${name}/model/latest.safetensors`;
    const [a, b] = [await readSafetensors(file(straight)), await readSafetensors(file(resumed))];
    assertEquals(Object.keys(b.tensors).sort(), Object.keys(a.tensors).sort());
    for (const k of Object.keys(a.tensors)) {
      assertEquals(b.tensors[k].data, a.tensors[k].data, k);
    }
    assertEquals([b.metadata.step, b.metadata.rng], [a.metadata.step, a.metadata.rng]);
  } finally {
    for (const d of [root, straight, resumed]) await Deno.remove(d, { recursive: true });
  }
});

webgpuTest("a non-finite parameter reaches the loss terms of a replayed iteration", async () => {
  const flags = tinyFlags("unused", "unused", { img_size: "24", ch: "2", n_res: "1" });
  const model = trainer(configFromSettings(flags));
  const compiled = model.compile({ log: (l) => assert(false, l) });
  let state = model.init(3);
  for (let i = 0; i < 4; i++) {
    const [a, b] = batch(24, i);
    const r = compiled.step(state, a, b);
    tf.dispose([a, b, ...Object.values(r.terms)]);
    disposeState(state);
    state = r.state;
  }
  assertEquals(compiled.compiled.mode, "replaying");
  // A NaN in one discriminator weight: the replayed iteration copies it in and computes with it.
  const [w, ...rest] = leaves(state.dis);
  const poisoned = {
    ...state,
    dis: withLeaves(state.dis, [tf.fill(w.shape, NaN), ...rest]),
  };
  const [a, b] = batch(24, 9);
  const r = compiled.step(poisoned, a, b);
  const values = await Promise.all(Object.values(r.terms).map((t) => t.data()));
  assert(values.some((v) => Number.isNaN(v[0])), "no loss term is NaN");
  compiled.compiled.dispose();
  tf.dispose([a, b, leaves(poisoned.dis)[0]]);
  disposeState(r.state);
  disposeState(state);
});

webgpuTest("the step's numbers computed on the device agree with the host's", async () => {
  for (const t of [1, 2, 10, 100, 1000, 100_000]) {
    for (const b of [0.5, 0.999]) {
      const got = (await biasCorrectionOf(b, tf.scalar(t)).data())[0];
      const error = Math.abs(got - biasCorrection(b, t)) / biasCorrection(b, t);
      assert(error < 1e-6, `1 - ${b}^${t}: ${got} against ${biasCorrection(b, t)}`);
    }
    const weight = (await emaWeight(0.999, tf.scalar(t)).data())[0];
    assert(Math.abs(weight - (1 - emaDecay(0.999, t))) < 1e-7, `moving average at ${t}`);
  }
  const [host, device] = [referenceRate(1e-4, 1000, true), referenceSchedule(1e-4, 1000, true)];
  for (const step of [1, 500, 501, 750, 999, 1000]) {
    const got = (await device(tf.scalar(step)).data())[0];
    assert(Math.abs(got - host(step)) <= 1e-6 * 1e-4, `learning rate at ${step}: ${got}`);
  }
});
