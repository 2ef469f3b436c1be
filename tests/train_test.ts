import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertLess } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import type { GeneratorConfig } from "../layers/generator.ts";
import { DEFAULT_WEIGHTS } from "../losses/objectives.ts";
import { trainWithReport } from "../cli/train.ts";
import { disposeState, emaDecay, trainer, type TrainState } from "../train/step.ts";
import { flatten } from "../tree/tree.ts";
import { loadGenerators } from "../train/checkpoint.ts";
import { runTranslate } from "../cli/translate.ts";
import { runEval } from "../eval/evaluate.ts";
import { runExport } from "../cli/export.ts";
import { readSafetensors } from "../weights/safetensors.ts";
import { makeDataset, RUN_AS_TASK, tinyFlags } from "./helpers.ts";

const TINY = {
  generator: { ch: 4, nRes: 1, imgSize: 24, light: true },
  global: { ch: 4, nLayers: 5 },
  local: { ch: 4, nLayers: 3 },
};

Deno.test("training steps keep the tensor count flat and lower the reconstruction losses", async () => {
  await selectBackend("wasm");
  const t = trainer({
    ...TINY,
    weights: DEFAULT_WEIGHTS,
    lr: 2e-3,
    weightDecay: 1e-4,
    iterations: 100,
    decay: false,
  });
  let state = t.init(0);
  const a = tf.randomUniform([2, 24, 24, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const b = tf.randomUniform([2, 24, 24, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  const counts: number[] = [];
  const recon: number[] = [];
  for (let i = 0; i < 12; i++) {
    const { state: next, terms } = t.step(state, a, b);
    recon.push(
      ["cycle_A", "cycle_B", "identity_A", "identity_B"].reduce(
        (s, k) => s + terms[k].dataSync()[0],
        0,
      ),
    );
    tf.dispose(Object.values(terms));
    disposeState(state);
    state = next;
    counts.push(tf.memory().numTensors);
  }
  assertEquals(new Set(counts.slice(1)).size, 1, `tensor counts ${counts}`);
  assertLess(
    recon.at(-1)!,
    recon[0] * 0.95,
    `reconstruction losses ${recon.map((r) => r.toFixed(3))}`,
  );
  assertEquals(state.step, 12);
  // rho stays within [0, 1] after clipping
  const rhos = Object.entries(flatten(state.gen)).filter(([k]) => k.endsWith(".rho")).flatMap((
    [, v],
  ) => Array.from(v.dataSync()));
  assert(rhos.every((r) => r >= 0 && r <= 1));
  disposeState(state);
  tf.dispose([a, b]);
});

const quiet = { out: () => {}, warn: () => {} };

Deno.test("the generators' moving average (--ema) follows the weights, warm-up first", async () => {
  await selectBackend("wasm");
  assertEquals([emaDecay(0.999, 0), emaDecay(0.999, 8), emaDecay(0.999, 1e6)], [0.1, 0.5, 0.999]);
  const t = trainer({
    ...TINY,
    weights: DEFAULT_WEIGHTS,
    lr: 1e-2,
    weightDecay: 1e-4,
    iterations: 10,
    decay: false,
    ema: 0.5,
  });
  const s0 = t.init(0);
  const gen = (s: TrainState) => flatten(s.gen);
  const ema = (s: TrainState) => flatten(s.ema!);
  const key = Object.keys(gen(s0)).find((k) => k.endsWith("conv.weight")) ??
    Object.keys(gen(s0))[0];
  assertEquals(Object.keys(ema(s0)).sort(), Object.keys(gen(s0)).sort());
  assertEquals(Array.from(ema(s0)[key].dataSync()), Array.from(gen(s0)[key].dataSync()));
  const a = tf.randomUniform([1, 24, 24, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const b = tf.randomUniform([1, 24, 24, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  let state = s0;
  const before: Float32Array[] = [];
  for (let i = 0; i < 2; i++) {
    before.push(ema(state)[key].dataSync() as Float32Array);
    const { state: next, terms } = t.step(state, a, b);
    tf.dispose(Object.values(terms));
    const d = emaDecay(0.5, i);
    const [e, g] = [ema(next)[key].dataSync(), gen(next)[key].dataSync()];
    for (let j = 0; j < e.length; j++) {
      const want = d * before[i][j] + (1 - d) * g[j];
      assert(Math.abs(e[j] - want) < 1e-6, `${key}[${j}] at step ${i + 1}: ${e[j]} vs ${want}`);
    }
    assert(e.some((v, j) => v !== g[j]), "the average differs from the weights");
    disposeState(state);
    state = next;
  }
  disposeState(state);
  tf.dispose([a, b]);
});

Deno.test("a run with --ema saves the average; translate, export and eval use it unless --use_ema false", async () => {
  const root = await makeDataset({ train: 3, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const run = await trainWithReport(
      tinyFlags(root, results, { ema: "0.9", save_freq: "1" }),
      quiet,
    );
    assertEquals(run.status, "done");
    const path = `${run.dir}/model/latest.safetensors`;
    const { tensors } = await tensorsOf(path);
    const ema = Object.keys(tensors).filter((k) => k.startsWith("ema.")).sort();
    const gen = Object.keys(tensors).filter((k) => k.startsWith("gen.")).sort();
    assertEquals(ema, gen.map((k) => k.replace(/^gen\./, "ema.")));
    const flags = tinyFlags(root, results, { checkpoint: path });
    const averaged = await loadGenerators(path, flags);
    const trained = await loadGenerators(path, { ...flags, use_ema: false });
    assertEquals([averaged.averaged, trained.averaged], [true, false]);
    const k = Object.keys(averaged.generators.A2B!)[0];
    assertEquals(
      Array.from(averaged.generators.A2B![k].data as Float32Array),
      tensors[`ema.genA2B.${k}`],
    );
    assertEquals(
      Array.from(trained.generators.A2B![k].data as Float32Array),
      tensors[`gen.genA2B.${k}`],
    );
    const exported = await runExport(flags, quiet);
    assertEquals((await readSafetensors(exported)).metadata.weights, "ema");

    // Every kept checkpoint both ways: two curves side by side in the report.
    const all = { backend: "wasm", checkpoint: "all" };
    const byEma = await runEval(tinyFlags(root, results, all), quiet);
    const byRaw = await runEval(tinyFlags(root, results, all, ["--use_ema", "false"]), quiet);
    assertEquals([byEma.weights, byRaw.weights], ["ema", "trained"]);
    assert(byEma.A2B.kid.mean !== byRaw.A2B.kid.mean);
    const files = [...Deno.readDirSync(run.dir)].map((e) => e.name).filter((n) =>
      n.startsWith("eval")
    );
    assertEquals(files.sort(), [
      "eval.json",
      ...[1, 2, 3].map((i) => `eval_000000${i}.json`),
      "eval_raw.json",
      ...[1, 2, 3].map((i) => `eval_raw_000000${i}.json`),
    ]);
    const html = await Deno.readTextFile(`${run.dir}/report.html`);
    for (const series of ["A2B", "A2B as trained", "B2A as trained", "A2B source"]) {
      assert(html.includes(`>${series}</text>`), series);
    }
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

async function tensorsOf(path: string) {
  const { tensors, metadata } = await readSafetensors(path);
  return {
    tensors: Object.fromEntries(
      Object.entries(tensors).map(([k, v]) => [k, Array.from(v.data as Float32Array)]),
    ),
    metadata,
  };
}

Deno.test("a run stopped after N steps and resumed equals an uninterrupted run (cpu); eval and translate read it", async () => {
  const root = await makeDataset({ train: 3, test: 2, size: 28 });
  const [straight, resumed] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    const full = await trainWithReport(tinyFlags(root, straight), quiet);
    assertEquals([full.step, full.status], [3, "done"]);

    const control = { stop: false };
    const first = await trainWithReport(tinyFlags(root, resumed), {
      ...quiet,
      progress: (line) => (control.stop = line.includes(" 2/3 ")),
    }, control);
    assertEquals([first.step, first.status], [2, "interrupted"]);
    // as if a crash had logged an iteration after the checkpoint, and cut a line short
    const name0 = root.split("/").pop();
    await Deno.writeTextFile(
      `${resumed}/${name0}/log.jsonl`,
      '{"iteration":3,"stale":true}\n{"itera',
      {
        append: true,
      },
    );
    const rest = await trainWithReport(tinyFlags(root, resumed, {}, ["--resume"]), quiet);
    assertEquals([rest.step, rest.status], [3, "done"]);

    const name = root.split("/").pop();
    const a = await tensorsOf(`${straight}/${name}/model/latest.safetensors`);
    const b = await tensorsOf(`${resumed}/${name}/model/latest.safetensors`);
    assertEquals(Object.keys(b.tensors).sort(), Object.keys(a.tensors).sort());
    for (const k of Object.keys(a.tensors)) assertEquals(b.tensors[k], a.tensors[k], k);
    assertEquals([b.metadata.step, b.metadata.rng], [a.metadata.step, a.metadata.rng]);

    const log = (await Deno.readTextFile(`${resumed}/${name}/log.jsonl`)).trim().split("\n").map((
      l,
    ) => JSON.parse(l));
    assertEquals(log.map((r) => r.iteration), [1, 2, 3]);
    assert(!log.some((r) => r.stale));
    assert("cam_A" in log[0] && "d_adv_B" in log[0]);
    const pictures = [...Deno.readDirSync(`${straight}/${name}/img`)].map((e) => e.name).sort();
    assertEquals(pictures, [
      "A2B_0000001.png",
      "A2B_0000002.png",
      "B2A_0000001.png",
      "B2A_0000002.png",
    ]);

    const scores = await runEval(tinyFlags(root, straight, { backend: "wasm" }), quiet);
    assertEquals([scores.iteration, scores.A2B.images, scores.B2A.images], [3, 2, 2]);
    assert([scores.A2B.kid.mean, scores.A2B.fid, scores.B2A.source.fid].every(Number.isFinite));
    assertEquals(scores.A2B.paired, undefined); // folder datasets have no aligned pairs
    assert(
      [scores.classifierAccuracy, scores.A2B.classifier.translated].every((v) => v >= 0 && v <= 1),
    );
    assertEquals(JSON.parse(await Deno.readTextFile(`${straight}/${name}/eval.json`)).iteration, 3);

    const out = await runTranslate(tinyFlags(root, straight, { backend: "wasm" }), quiet);
    const html = await Deno.readTextFile(`${out}/index.html`);
    assert(html.includes("A2B: 2 image(s)") && html.includes("B2A: 2 image(s)"));
    assertEquals([...Deno.readDirSync(`${out}/A2B`)].length, 2 * 3); // translation, CAM, input
  } finally {
    for (const d of [root, straight, resumed]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("a NaN or infinite loss stops the run naming the term and keeps the last checkpoint", async () => {
  const root = await makeDataset({ train: 2, test: 1, size: 28 });
  const results = await Deno.makeTempDir();
  const latest = `${results}/${root.split("/").pop()}/model/latest.safetensors`;
  try {
    const good = await trainWithReport(
      tinyFlags(root, results, { iteration: "2", backend: "wasm" }),
      quiet,
    );
    assertEquals(good.status, "done");
    const warnings: string[] = [];
    // float32 overflows: the discriminator's parameters become NaN in the next step
    const flags = tinyFlags(root, results, {
      adv_weight: "1e39",
      iteration: "6",
      save_freq: "1",
      backend: "wasm",
    }, [
      "--resume",
    ]);
    const r = await trainWithReport(flags, { out: () => {}, warn: (l) => warnings.push(l) });
    assertEquals([r.status, r.step], ["diverged", 2]);
    const line = warnings.find((w) => w.startsWith("stopped at iteration 3"))!;
    assert(/loss term \w+ is (NaN|Infinity|-Infinity)/.test(line), line);
    assert(line.includes(`the last good checkpoint is ${latest} (iteration 2)`), line);
    const ck = await readSafetensors(latest); // refuses non-finite values
    assertEquals(ck.metadata.step, "2");
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("every ablation of the paper's Table 1 trains a step with its own objective", async () => {
  await selectBackend("wasm");
  const a = tf.randomUniform([1, 24, 24, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const variants: { generator: GeneratorConfig; dis: boolean }[] = [
    { generator: { ...TINY.generator, cam: false }, dis: true },
    { generator: TINY.generator, dis: false },
    ...(["in", "ln", "adain", "gn"] as const).map((n) => ({
      generator: { ...TINY.generator, decoderNorm: n },
      dis: true,
    })),
  ];
  for (const v of variants) {
    const t = trainer({
      generator: v.generator,
      global: { ...TINY.global, cam: v.dis },
      local: { ...TINY.local, cam: v.dis },
      weights: DEFAULT_WEIGHTS,
      lr: 1e-4,
      weightDecay: 1e-4,
      iterations: 10,
      decay: false,
    });
    const s = t.init(1);
    const { state, terms } = t.step(s, a, a);
    const names = Object.keys(terms);
    assertEquals(names.includes("cam_A"), v.generator.cam !== false, JSON.stringify(v));
    assert(Object.values(terms).every((x) => Number.isFinite(x.dataSync()[0])));
    tf.dispose(Object.values(terms));
    disposeState(s);
    disposeState(state);
  }
  a.dispose();
});

Deno.test("Ctrl-C during `deno task train` saves a checkpoint and exits cleanly", async () => {
  const root = await makeDataset({ train: 2, test: 1, size: 28 });
  const results = await Deno.makeTempDir();
  const run = `${results}/${root.split("/").pop()}`;
  try {
    const main = new URL("../cli/train.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        ...RUN_AS_TASK,
        main,
        "--dataset",
        root,
        "--result_dir",
        results,
        "--backend",
        "wasm",
        "--img_size",
        "24",
        "--ch",
        "2",
        "--n_res",
        "1",
        "--n_dis",
        "4",
        "--iteration",
        "100000",
        "--print_freq",
        "1000",
        "--save_freq",
        "1000",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = async () =>
      (await Deno.readTextFile(`${run}/log.jsonl`).catch(() => "")).trim().split("\n").filter(
        Boolean,
      );
    for (let waited = 0; (await lines()).length < 2; waited += 100) {
      if (waited > 60_000) throw new Error("no training progress within a minute");
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGINT");
    const { code, stdout } = await child.output();
    const text = new TextDecoder().decode(stdout);
    assertEquals(code, 0, text);
    assert(text.includes("(continue with --resume)"), text);
    const { metadata } = await readSafetensors(`${run}/model/latest.safetensors`);
    assertEquals(Number(metadata.step), (await lines()).length);
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});
