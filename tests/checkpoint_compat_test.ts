/**
 * Files written before the house was rearranged (main at 975a3f5) still read, and mean the same:
 *
 * - `fixtures/main_checkpoint_0000002.safetensors`: a training checkpoint in format 1 (optimiser
 *   moments keyed by dotted path) from that code's `runTraining(tinyFlags(makeDataset({ train: 2,
 *   test: 2, size: 28 }), results, { ema: "0.9", save_freq: "1", iteration: "3" }))` on cpu, at
 *   iteration 2; `fixtures/main_checkpoint_0000003.json` lists every tensor of the same run's
 *   iteration-3 checkpoint (name, shape, SHA-256 of its bytes) with its generator and data state.
 *   Resumed here for one iteration, the run must write exactly that checkpoint: the same tensor
 *   names, the same bytes, and (format 3) the optimisers' step counts as tensors beside them.
 * - `fixtures/main_shipped_translation.safetensors`: the shipped model's translations (both
 *   directions) of `testPatterns(1, 64)` on cpu by that code; today's code must give them again.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { datasetName } from "../data/dataset.ts";
import { generator } from "../layers/generator.ts";
import { runTraining } from "../train/runner.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { configFromSettings } from "../train/settings.ts";
import { disposeState } from "../train/step.ts";
import { testPatterns } from "../train/samples.ts";
import { flatten, leaves } from "../tree/tree.ts";
import { fromHost } from "../weights/params_io.ts";
import { readGeneratorFile } from "../weights/generator_file.ts";
import { readSafetensors } from "../weights/safetensors.ts";
import { assertClose, makeDataset, tinyFlags } from "./helpers.ts";

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const quiet = { out: () => {}, warn: () => {} };

async function sha256(data: Float32Array): Promise<string> {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("a checkpoint written by main's code loads, and resumes to the very checkpoint main wrote next", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = (extra: string[] = []) =>
      tinyFlags(root, results, { ema: "0.9", save_freq: "1", iteration: "3" }, extra);
    const old = fixture("main_checkpoint_0000002.safetensors");
    assertEquals((await readSafetensors(old)).metadata.format, "ugatit-checkpoint/1");

    // Loaded, its optimiser moments are trees like the parameters they follow.
    await selectBackend("cpu");
    const ck = await loadCheckpoint(old, configFromSettings(flags()));
    const mu = ck.state.optG[1].mu as typeof ck.state.gen;
    assertEquals(ck.state.step, 2);
    assertEquals(mu.genA2B.stem.w.shape, ck.state.gen.genA2B.stem.w.shape);
    assertEquals(Object.keys(flatten(mu)).sort(), Object.keys(flatten(ck.state.gen)).sort());
    disposeState(ck.state);

    // Resumed for the third iteration, it writes what main wrote.
    const dir = `${results}/${datasetName(root)}`;
    await Deno.mkdir(`${dir}/model`, { recursive: true });
    await Deno.copyFile(old, `${dir}/model/latest.safetensors`);
    const run = await runTraining(flags(["--resume"]), { io: quiet });
    assertEquals([run.status, run.step], ["done", 3]);
    const want = JSON.parse(await Deno.readTextFile(fixture("main_checkpoint_0000003.json")));
    const got = await readSafetensors(`${dir}/model/latest.safetensors`);
    assertEquals(got.metadata.format, "ugatit-checkpoint/3");
    assertEquals(
      [Number(got.metadata.step), Number(got.metadata.rng), JSON.parse(got.metadata.streams)],
      [want.step, want.rng, want.streams],
    );
    // Format 3 keeps the optimisers' step counts (numbers in format 1's skeleton) as tensors.
    const counts = ["optD.1.count", "optD.2.count", "optG.1.count", "optG.2.count"];
    assertEquals(Object.keys(got.tensors).sort(), [...Object.keys(want.tensors), ...counts].sort());
    for (const name of counts) {
      assertEquals(Array.from(got.tensors[name].data as Float32Array), [3], name);
    }
    for (
      const [name, [shape, hash]] of Object.entries(want.tensors) as [string, [number[], string]][]
    ) {
      const t = got.tensors[name];
      assertEquals(t.shape, shape, name);
      assertEquals(await sha256(t.data as Float32Array), hash, `${name}: its bytes differ`);
    }
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("the shipped model loads and translates as main's code translated it", async () => {
  await selectBackend("cpu");
  const file = await readGeneratorFile(
    new URL("../models/emoji-google2twitter/generator.safetensors", import.meta.url).pathname,
  );
  const want = (await readSafetensors(fixture("main_shipped_translation.safetensors"))).tensors;
  const G = generator(file.config);
  const x = testPatterns(1, file.config.imgSize!);
  for (const d of ["A2B", "B2A"] as const) {
    const params = fromHost<Parameters<typeof G.apply>[0]>(file.generators[d]!);
    const out = G.apply(params, x);
    for (const [k, t] of Object.entries(out) as [string, tf.Tensor][]) {
      assert(want[`${d}.${k}`], `${d}.${k} is in the fixture`);
      await assertClose(t, want[`${d}.${k}`], 1e-6, `${d} ${k}`);
    }
    tf.dispose([...leaves(params), ...Object.values(out)]);
  }
  x.dispose();
});
