/**
 * Fine-tuning from a model file (`train/finetune.ts`, `train/loop.ts`): the state a file starts
 * (its discriminators where `export --discriminators` stored them, float16 included; fresh ones,
 * said in a line, where it has none), `deno task train --model` starting there, the in-memory
 * run the page makes (stop, pause, a diverging loss, a failed device: each keeps the last good
 * weights), and the same draws from pictures in memory as from files.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertLess, assertRejects } from "@std/assert";
import sharp from "sharp";
import { selectBackend } from "../backends/mod.ts";
import { describeBackend } from "../backends/backend.ts";
import { runExport } from "../cli/export.ts";
import { FlagError } from "../cli/flags.ts";
import { modelFile, trainWithReport } from "../cli/train.ts";
import { listImages } from "../data/dataset.ts";
import { DomainStream } from "../data/domain_stream.ts";
import { type Picture, PictureStream, resizeMargin } from "../data/pictures.ts";
import { Rng } from "../data/random.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { fineTune, modelSettingsOf, startingState } from "../train/finetune.ts";
import { configFromSettings, SHIPPED_RECIPE } from "../train/settings.ts";
import { disposeState, trainer } from "../train/step.ts";
import { flatten } from "../tree/tree.ts";
import { decodeSafetensors, type GeneratorFile, readGeneratorFile } from "../weights/mod.ts";
import { generatorFileFrom } from "../weights/generator_file.ts";
import { makeDataset, tinyFlags } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

// The largest absolute difference between a record of tensors and host tensors by the same paths.
async function largestChange(
  record: object,
  host: Record<string, { data: unknown }>,
): Promise<number> {
  let most = 0;
  for (const [path, t] of Object.entries(flatten(record))) {
    const a = await t.data();
    const b = host[path].data as Float32Array;
    for (let i = 0; i < a.length; i++) most = Math.max(most, Math.abs(a[i] - b[i]));
  }
  return most;
}

// A tiny model trained 2 iterations (seed 5), exported with and without its discriminators.
async function tinyModel(root: string, results: string) {
  const flags = (o: Record<string, string> = {}, extra: string[] = []) =>
    tinyFlags(root, results, { iteration: "2", ...o }, extra);
  await trainWithReport(flags(), quiet);
  const withD = await runExport(
    flags({ out: `${results}/with_d.safetensors` }, ["--discriminators", "--half"]),
    quiet,
  );
  const withoutD = await runExport(flags({ out: `${results}/without_d.safetensors` }), quiet);
  return {
    flags,
    withD,
    withoutD,
    checkpoint: `${results}/${root.split("/").pop()}/model/latest.safetensors`,
  };
}

Deno.test("a file with discriminators (export --discriminators, float16) starts all six networks; one without starts fresh ones and says so", async () => {
  await selectBackend("cpu");
  const root = await makeDataset({ train: 3, test: 1, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const { flags, withD, withoutD, checkpoint } = await tinyModel(root, results);
    const [fileD, file] = [await readGeneratorFile(withD), await readGeneratorFile(withoutD)];
    assert(fileD.half && fileD.discriminators && !file.discriminators);
    const settings = modelSettingsOf(fileD, { n_dis: 9, dis_cam: false });
    assertEquals([settings.n_dis, settings.dis_cam, settings.ch, settings.img_size], [
      4,
      true,
      2,
      24,
    ]);
    const config = configFromSettings({ ...SHIPPED_RECIPE, ...settings, iteration: 10 });
    const model = trainer(config);
    const ck = await loadCheckpoint(checkpoint, config);

    const lines: string[] = [];
    const fromD = startingState(model, fileD, {
      seed: 7,
      source: withD,
      log: (l) => lines.push(l),
    });
    assertEquals(lines, []);
    assertEquals(fromD.step, 0);
    // Every network as trained, within float16's rounding (2^-11 relative, half a unit).
    for (const group of ["gen", "dis", "sn"] as const) {
      for (const [path, t] of Object.entries(flatten(fromD[group]))) {
        const want = await flatten(ck.state[group])[path].data();
        const got = await t.data();
        for (let i = 0; i < got.length; i++) {
          assertLess(
            Math.abs(got[i] - want[i]),
            Math.abs(want[i]) * 2 ** -11 + 6e-8,
            `${group}.${path}`,
          );
        }
      }
    }
    // The moving average begins at the generators; the optimisers begin afresh.
    assertEquals(await largestChange(fromD.ema!, await hostOf(fromD.gen)), 0);
    assertEquals((await fromD.optG[2].count.data())[0], 0);

    const fromG = startingState(model, file, {
      seed: 7,
      source: withoutD,
      log: (l) => lines.push(l),
    });
    assertEquals(lines, [`${withoutD} holds no discriminators: starting fresh ones (seed 7)`]);
    const fresh = model.init(7);
    assertEquals(await largestChange(fromG.dis, await hostOf(fresh.dis)), 0);
    assertEquals(await largestChange(fromG.sn, await hostOf(fresh.sn)), 0);
    for (const s of [fromD, fromG, fresh, ck.state]) disposeState(s);

    // One generator is not enough to fine-tune; a file of another model does not fit.
    const a2b = await runExport(
      flags({ out: `${results}/a2b.safetensors`, direction: "A2B" }),
      quiet,
    );
    const only = await readGeneratorFile(a2b);
    assert(/holds A2B only; fine-tuning needs both generators/.test(
      (() => {
        try {
          startingState(model, only, { seed: 0, source: a2b, log: () => {} });
          return "";
        } catch (e) {
          return (e as Error).message;
        }
      })(),
    ));
    const other = trainer(
      configFromSettings({ ...SHIPPED_RECIPE, ...settings, ch: 4, iteration: 1 }),
    );
    let refused = "";
    try {
      startingState(other, fileD, { seed: 0, source: withD, log: () => {} });
    } catch (e) {
      refused = (e as Error).message;
    }
    assert(
      refused.startsWith(`${withD}: tensor "`) && refused.includes("the model needs"),
      refused,
    );
    await assertRejects(
      () =>
        runExport(
          flags({ out: `${results}/x.safetensors`, direction: "A2B" }, ["--discriminators"]),
          quiet,
        ),
      FlagError,
      "--discriminators: fine-tuning needs both generators",
    );
    await assertRejects(
      () =>
        runExport(
          flags({ checkpoint: withoutD, out: `${results}/y.safetensors` }, ["--discriminators"]),
          quiet,
        ),
      FlagError,
      `--discriminators: ${withoutD} holds no discriminators`,
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

// Host copies of a record's tensors by path.
async function hostOf(record: object): Promise<Record<string, { data: Float32Array }>> {
  const out: Record<string, { data: Float32Array }> = {};
  for (const [path, t] of Object.entries(flatten(record))) {
    out[path] = { data: (await t.data()) as Float32Array };
  }
  return out;
}

Deno.test("deno task train --model starts from the file's weights: one iteration moves no weight further than the learning rate", async () => {
  const root = await makeDataset({ train: 3, test: 1, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const { withD, withoutD } = await tinyModel(root, results);
    const lr = 1e-4;
    for (const [file, fresh] of [[withD, false], [withoutD, true]] as const) {
      const out = `${results}/ft_${fresh ? "fresh" : "shipped"}`;
      const lines: string[] = [];
      // Another seed than the model's: a fresh start would be far from the file's weights.
      // Shape flags that differ from the file's are set aside (ch 8 here): the file's shape wins.
      const flags = tinyFlags(root, out, {
        model: file,
        iteration: "1",
        seed: "11",
        lr: String(lr),
        ch: "8",
      });
      const r = await trainWithReport(flags, {
        out: (l) => lines.push(l),
        warn: (l) => lines.push(l),
      });
      assertEquals(r.status, "done");
      assert(lines.some((l) => l.includes(`starting from ${file}`)), lines.join("\n"));
      assertEquals(
        lines.some((l) => l === `${file} holds no discriminators: starting fresh ones (seed 11)`),
        fresh,
      );
      const start = await readGeneratorFile(file);
      const settings = modelSettingsOf(start, { n_dis: 4, dis_cam: true });
      assertEquals(settings.ch, 2);
      const config = configFromSettings({ ...SHIPPED_RECIPE, ...settings, iteration: 1 });
      const ck = await loadCheckpoint(`${r.dir}/model/latest.safetensors`, config);
      assertEquals([ck.state.step, ck.flags.model, ck.flags.ch], [1, file, 2]);
      // Adam's first step moves a weight by lr * g / (|g| + eps) <= lr; rho clipping only
      // pulls back. A fresh start (seed 11) would be whole initialisations away.
      const bound = lr * (1 + 1e-3);
      const gen = { genA2B: start.generators.A2B!, genB2A: start.generators.B2A! };
      const genHost = Object.fromEntries(
        Object.entries(gen).flatMap(([net, h]) =>
          Object.entries(h).map(([p, t]) => [`${net}.${p}`, t])
        ),
      );
      assertLess(await largestChange(ck.state.gen, genHost), bound);
      const model = trainer(config);
      const init = model.init(11);
      const disStart = fresh ? await hostOf(init.dis) : Object.fromEntries(
        Object.entries(start.discriminators!.networks).flatMap(([net, h]) =>
          Object.entries(h).map(([p, t]) => [`${net}.${p}`, t])
        ),
      );
      assertLess(await largestChange(ck.state.dis, disStart), bound);
      const far = await largestChange(init.gen, genHost);
      assert(far > 100 * lr, `a fresh start is only ${far} away`);
      disposeState(init);
      disposeState(ck.state);
    }
    assertEquals(modelFile(withD), withD);
    assert(
      modelFile("emoji-google2twitter").endsWith(
        "models/emoji-google2twitter/generator.safetensors",
      ),
    );
    let named = "";
    try {
      modelFile(`${results}/missing.safetensors`);
    } catch (e) {
      named = (e as Error).message;
    }
    assertEquals(
      named,
      `--model: ${results}/missing.safetensors is not a file (a generator file, or a model's name)`,
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

// A tiny model file (both generators, no discriminators), decoded.
async function tinyFile(): Promise<GeneratorFile> {
  const { generator } = await import("../layers/generator.ts");
  const { toHost } = await import("../weights/params_io.ts");
  const { encodeGeneratorFile } = await import("../weights/generator_file.ts");
  const config = { ch: 2, nRes: 1, imgSize: 24, light: true };
  const g = generator(config);
  const [a, b] = [g.init(0), g.init(1)];
  const bytes = encodeGeneratorFile({ A2B: await toHost(a), B2A: await toHost(b) }, config);
  tf.dispose([...Object.values(flatten(a)), ...Object.values(flatten(b))]);
  const file = generatorFileFrom(decodeSafetensors(bytes), "tiny.safetensors");
  if (file._tag === "Left") throw file.left;
  return file.right;
}

// Pictures of one colour with a bright square whose place varies, at the margin side of 24.
function pictures(n: number, hue: [number, number, number]): Picture[] {
  const M = resizeMargin(24);
  return Array.from({ length: n }, (_, k) => {
    const rgb = new Uint8Array(M * M * 3);
    for (let i = 0; i < M * M; i++) {
      const [x, y] = [i % M, Math.floor(i / M)];
      const inside = x >= k && x < k + 6 && y >= 4 && y < 10;
      rgb.set(inside ? [250, 250, 250] : hue, 3 * i);
    }
    return { rgb, size: M };
  });
}

Deno.test("an in-memory fine-tune stops keeping its weights, pauses without changing them, and keeps the last good ones when a loss diverges or the device fails", async () => {
  await selectBackend("wasm");
  const model = await tinyFile();
  const base = {
    model,
    name: "tiny.safetensors",
    pictures: { A: pictures(3, [200, 40, 40]), B: pictures(2, [40, 40, 200]) },
    iterations: 6,
    backend: describeBackend("wasm"),
    log: () => {},
    keepEvery: 2,
  };
  const straight = await fineTune(base);
  assertEquals([straight.status, straight.step, straight.mode], [
    "done",
    6,
    "eager (wasm runs steps as they come)",
  ]);
  const read = (bytes: Uint8Array) => {
    const f = generatorFileFrom(decodeSafetensors(bytes), "tuned");
    if (f._tag === "Left") throw f.left;
    return f.right;
  };
  const tuned = read(straight.file);
  assertEquals([tuned.metadata.step, tuned.metadata.weights, tuned.metadata.fine_tuned_from], [
    "6",
    "ema",
    "tiny.safetensors",
  ]);
  const moved = Object.entries(tuned.generators.A2B!).some(([p, t]) =>
    (t.data as Float32Array).some((v, i) =>
      v !== (model.generators.A2B![p].data as Float32Array)[i]
    )
  );
  assert(moved, "six iterations changed no weight");

  // Paused for a second after iteration 2: the same weights, and the pause is no training time.
  const control: { stop: boolean; paused?: Promise<void> } = { stop: false };
  let seconds = 0;
  const t0 = performance.now();
  const paused = await fineTune({
    ...base,
    control,
    onProgress: (p) => {
      seconds = p.seconds;
      if (p.step === 2) {
        control.paused = new Promise((ok) =>
          setTimeout(() => {
            control.paused = undefined;
            ok();
          }, 1000)
        );
      }
    },
  });
  const wall = (performance.now() - t0) / 1000;
  assertEquals(paused.file, straight.file);
  assert(wall > 1 && seconds < wall - 0.9, `${seconds} s of training in ${wall} s`);

  // Stopped after iteration 4: the weights of iteration 4 are kept (the copy made there).
  const stop = { stop: false };
  const stopped = await fineTune({
    ...base,
    control: stop,
    onProgress: (p) => void (p.step === 4 && (stop.stop = true)),
  });
  assertEquals([stopped.status, stopped.step, read(stopped.file).metadata.step], [
    "interrupted",
    4,
    "4",
  ]);

  // A diverging loss (float32 overflows the adversarial weight) keeps the copy before it.
  const diverged = await fineTune({ ...base, recipe: { ...SHIPPED_RECIPE, adv_weight: 1e39 } });
  assertEquals(diverged.status, "diverged");
  assert(
    diverged.end.bad && /^[a-z_]+_[AB]$/.test(diverged.end.bad.term),
    JSON.stringify(diverged.end),
  );
  assertEquals(diverged.step, 0);
  assertEquals(read(diverged.file).generators.A2B, model.generators.A2B);

  // The device fails before iteration 6 (asked between iterations), or a step throws because it
  // did: the copy of iteration 4 is kept, with the reason.
  let asked = 0;
  const lost = await fineTune({
    ...base,
    deviceFailure: () => (++asked >= 6 ? "the WebGPU device was lost (unknown): test" : undefined),
  });
  assertEquals([lost.status, lost.step, lost.end.good, lost.end.failure], [
    "device_lost",
    4,
    5,
    "the WebGPU device was lost (unknown): test",
  ]);
  assertEquals(lost.file, stopped.file, "the kept weights are not iteration 4's");
  let steps = 0;
  const thrown = await fineTune({
    ...base,
    onProgress: () => void steps++,
    deviceFailure: (
      e,
    ) => (e instanceof Error && e.message === "out of memory" ? "out of memory" : undefined),
    between: () => {
      if (steps === 3) throw new Error("out of memory");
      return Promise.resolve();
    },
  });
  assertEquals([thrown.status, thrown.step, thrown.end.failure], [
    "device_lost",
    2,
    "out of memory",
  ]);
  // Any other error ends the run as failed, with its message and the copy of iteration 4.
  let calls = 0;
  const broken = await fineTune({
    ...base,
    between: () =>
      ++calls === 6 ? Promise.reject(new Error("not a device failure")) : Promise.resolve(),
  });
  assertEquals([broken.status, broken.step, broken.end.failure], [
    "failed",
    4,
    "not a device failure",
  ]);
  assertEquals(broken.file, stopped.file, "the kept weights are not iteration 4's");
});

Deno.test("pictures in memory draw the same batches as their files: the order, the flips and the crops", async () => {
  await selectBackend("cpu");
  const S = 24;
  const M = resizeMargin(S);
  const root = await makeDataset({ train: 4, test: 1, size: M });
  try {
    const files = listImages(`${root}/trainA`);
    const decoded = await Promise.all(files.map(async (f) => {
      const raw = await sharp(f).removeAlpha().raw().toBuffer();
      return { rgb: new Uint8Array(raw), size: M };
    }));
    const fromFiles = new DomainStream(files, S, new Rng(3), undefined, () => {});
    const inMemory = new PictureStream(decoded, S, new Rng(3));
    for (let i = 0; i < 6; i++) { // over a pass boundary
      const [a, b] = [await fromFiles.next(1), inMemory.next(1)];
      assertEquals(await a.data(), await b.data(), `batch ${i}`);
      tf.dispose([a, b]);
    }
    assertEquals(fromFiles.state, inMemory.state);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
