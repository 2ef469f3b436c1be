/**
 * `deno task export`: a run's generators alone, in float32 or float16 and in our or the
 * reference's names; `translate` and `readGeneratorFile` load them, and (where PyTorch is
 * installed) the reference's own generator loads the reference-named file and translates as ours.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertLess, assertRejects } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { runExport } from "../cli/export.ts";
import { FlagError, parseFlags } from "../cli/flags.ts";
import { TRANSLATE_FLAGS } from "../cli/translate.ts";
import { DatasetError, openDataset } from "../data/dataset.ts";
import sharp from "sharp";
import { trainWithReport } from "../cli/train.ts";
import { runTranslate } from "../cli/translate.ts";
import { fromHost, readGeneratorFile, readSafetensors, writeSafetensors } from "../mod.ts";
import { assertClose, findTorchPython, makeDataset, tinyFlags } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

Deno.test("export writes generator files that translate, in float32, float16 and PyTorch's names", async () => {
  const root = await makeDataset({ train: 3, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = (extra: string[] = [], o: Record<string, string> = {}) =>
      tinyFlags(root, results, { iteration: "2", ...o }, extra);
    await trainWithReport(flags(), quiet);
    const f32 = await runExport(flags([], { out: `${results}/g32.safetensors` }), quiet);
    const f16 = await runExport(flags(["--half"], { out: `${results}/g16.safetensors` }), quiet);
    const ref = await runExport(
      flags(["--reference_names"], { out: `${results}/ref.safetensors`, direction: "A2B" }),
      quiet,
    );
    // float16 is half the size, and within its precision of the float32 file
    assertLess(Deno.statSync(f16).size, 0.6 * Deno.statSync(f32).size);
    const [a, b] = [await readGeneratorFile(f32), await readGeneratorFile(f16)];
    assertEquals(a.config.ch, 2);
    for (const [k, t] of Object.entries(a.generators.A2B!)) {
      await assertClose(b.generators.A2B![k].data as Float32Array, t.data as Float32Array, 1e-3, k);
    }
    // the reference-named file maps back to the same tensors; it holds A2B only
    const r = await readGeneratorFile(ref);
    assertEquals(Object.keys(r.generators), ["A2B"]);
    for (const [k, t] of Object.entries(a.generators.A2B!)) {
      assertEquals(
        Array.from(r.generators.A2B![k].data as Float32Array),
        Array.from(t.data as Float32Array),
        k,
      );
    }
    // translate reads a generator file as it reads a checkpoint: the same pictures
    const fromCkpt = await runTranslate(flags([], { backend: "cpu" }), quiet);
    const picture = (dir: string) =>
      Deno.readFileSync(
        `${dir}/A2B/${[...Deno.readDirSync(`${dir}/A2B`)].map((e) => e.name).sort()[0]}`,
      );
    const first = picture(fromCkpt);
    await Deno.rename(fromCkpt, `${results}/from_checkpoint`);
    const fromFile = await runTranslate(flags([], { backend: "cpu", checkpoint: f32 }), quiet);
    assertEquals(picture(fromFile), first);
    await assertRejects(
      () => runTranslate(flags([], { checkpoint: ref, direction: "B2A" }), quiet),
      FlagError,
      "holds only A2B, not B2A",
    );
    // a named file that is not an image is an error naming it; --size resizes (light models)
    await Deno.writeTextFile(`${results}/notes.png`, "not a picture");
    await assertRejects(
      () => runTranslate(flags([`${results}/notes.png`], { checkpoint: f32 }), quiet),
      DatasetError,
      `${results}/notes.png: not a readable image`,
    );
    const probe = `${root}/testA/${[...Deno.readDirSync(`${root}/testA`)][0].name}`;
    const sized = await runTranslate(
      flags([probe], { checkpoint: f32, size: "32", direction: "A2B" }),
      quiet,
    );
    const stem = probe.split("/").pop()!.replace(/\.[^.]+$/, "");
    const meta = await sharp(`${sized}/A2B/0000_${stem}.png`).metadata();
    assertEquals([meta.width, meta.height], [32, 32]);
    await assertRejects(
      () => runTranslate(flags([probe], { model: "no-such-model" }), quiet),
      FlagError,
      '--model: no model "no-such-model"',
    );

    const python = await findTorchPython();
    if (!python) {
      console.log("  SKIPPED (the PyTorch part): PyTorch is not installed");
      return;
    }
    await selectBackend("cpu");
    const x = tf.randomUniform([1, 24, 24, 3], -1, 1, "float32", 3) as tf.Tensor4D;
    const params = fromHost<GeneratorParams>(a.generators.A2B!);
    const ours = generator(a.config).apply(params, x);
    const nchw = tf.transpose(x, [0, 3, 1, 2]);
    await writeSafetensors(`${results}/in.safetensors`, {
      input: { dtype: "F32", shape: nchw.shape, data: (await nchw.data()) as Float32Array },
    });
    const script = new URL("../tools/pytorch/run_generator.py", import.meta.url).pathname;
    const run = await new Deno.Command(python, {
      args: [script, ref, "A2B", `${results}/in.safetensors`, `${results}/out.safetensors`],
      stderr: "piped",
    }).output();
    assert(run.success, new TextDecoder().decode(run.stderr));
    const theirs = (await readSafetensors(`${results}/out.safetensors`)).tensors;
    const oursNchw = tf.transpose(ours.image, [0, 3, 1, 2]);
    await assertClose(oursNchw, theirs.image.data as Float32Array, 1e-4, "image");
    await assertClose(ours.camLogit!, theirs.cam_logit.data as Float32Array, 1e-4, "cam_logit");
    tf.dispose([x, nchw, oursNchw, ours.image, ours.camLogit!, ours.heatmap]);
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("the shipped model translates a held-out emoji right after a clone (--model)", async () => {
  const results = await Deno.makeTempDir();
  try {
    const file = await readGeneratorFile("models/emoji-google2twitter/generator.safetensors");
    assertEquals([file.config.imgSize, file.config.ch, file.config.light, file.half], [
      64,
      32,
      true,
      true,
    ]);
    assertEquals(Object.keys(file.generators).sort(), ["A2B", "B2A"]);
    const data = await openDataset("emoji:google2twitter", () => {});
    const flags = parseFlags(TRANSLATE_FLAGS, [
      "--model",
      "emoji-google2twitter",
      "--backend",
      "wasm",
      "--result_dir",
      results,
      "--direction",
      "A2B",
      data.testA[0],
    ]);
    const out = await runTranslate(flags, quiet);
    assertEquals(out, `${results}/translate_emoji-google2twitter`);
    const written = [...Deno.readDirSync(`${out}/A2B`)].map((e) => e.name).sort();
    assertEquals(written.length, 3); // translation, CAM heatmap, input
    assert((await Deno.readTextFile(`${out}/index.html`)).includes("A2B: 1 image(s)"));
  } finally {
    await Deno.remove(results, { recursive: true });
  }
});
