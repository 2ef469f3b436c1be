/**
 * The translation page in a real browser: `build:web` with an exported generator, served on
 * localhost, opened in headless Chromium, which translates a picture on the backend it offers;
 * the page's output must equal the Deno translation of the same picture, with no console error,
 * and a screenshot is written (`results/web/demo.png`). Says that it skipped without Chromium.
 */
import * as tf from "@tensorflow/tfjs";
import { assertEquals } from "@std/assert";
import sharp from "sharp";
import { selectBackend } from "../backends/mod.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { openDataset } from "../data/dataset.ts";
import { pickSpread } from "../data/pick.ts";
import { buildWeb, serveFolder } from "../tools/build_web.ts";
import { runExport } from "../cli/export.ts";
import { trainWithReport } from "../cli/train.ts";
import { fromHost, readGeneratorFile } from "../weights/mod.ts";
import { withChromium } from "../tools/chromium.ts";
import { assertClose, chromiumTest, makeDataset, tinyFlags } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

chromiumTest(
  "the demo page translates in headless Chromium as Deno does, with no console error",
  async (exe) => {
    const root = await makeDataset({ train: 3, test: 1, size: 28 });
    const results = await Deno.makeTempDir();
    try {
      const flags = tinyFlags(root, results, { iteration: "2", out: `${results}/g.safetensors` });
      await trainWithReport(flags, quiet);
      const model = await runExport(flags, quiet);
      const site = await buildWeb(`${results}/site`, { model, emoji: 3 });
      // The test emoji: the held-out Google emoji the one pick draws, not the first by name.
      const emoji = await openDataset("emoji:google2twitter", () => {});
      const shown = JSON.parse(await Deno.readTextFile(`${site}/site.json`)).emoji;
      assertEquals(shown, pickSpread(emoji.testA, 3).map((f) => `emoji/${f.split("/").pop()}`));
      // A picture at the model's size, so that neither side resamples it.
      const S = 24;
      const rgb = Uint8Array.from({ length: S * S * 3 }, (_, i) => (i * 53 + 7) % 256);
      await sharp(rgb, { raw: { width: S, height: S, channels: 3 } }).png().toFile(
        `${site}/probe.png`,
      );

      const { server, url } = serveFolder(site, 0);
      try {
        const page = await withChromium(exe, async (page) => {
          await page.goto(url);
          const r = await page.evaluate<{ backend: string; output: number[]; ms: number }>(
            "ugatitDemo.translateUrl('probe.png')",
          );
          const shown = await page.evaluate<string>(
            "document.getElementById('backend').textContent",
          );
          const emoji = await page.evaluate<number>(
            "document.querySelectorAll('#emoji img').length",
          );
          await page.evaluate("document.querySelector('#emoji img').click()");
          await page.evaluate("new Promise((ok) => setTimeout(ok, 1500))");
          const translated = await page.evaluate<string>("document.body.dataset.translated");
          await Deno.mkdir("results/web", { recursive: true });
          await Deno.writeFile("results/web/demo.png", await page.screenshot());
          return { ...r, shown, emoji, translated, errors: [...page.errors] };
        });
        console.log(
          `  the page ran on ${page.backend} in ${
            page.ms.toFixed(0)
          } ms; screenshot results/web/demo.png`,
        );
        assertEquals(page.errors, []);
        assertEquals(page.shown, page.backend);
        assertEquals([page.emoji, page.translated], [3, "2"]); // the probe, then a test emoji

        await selectBackend("cpu");
        const file = await readGeneratorFile(model);
        const x = tf.tidy(() =>
          tf.sub(tf.div(tf.tensor4d(rgb, [1, S, S, 3], "float32"), 127.5), 1) as tf.Tensor4D
        );
        const params = fromHost<GeneratorParams>(file.generators.A2B!);
        const ours = generator(file.config).apply(params, x);
        await assertClose(
          page.output,
          ours.image,
          1e-3,
          `the page's translation (${page.backend})`,
        );
        tf.dispose([x, ours.image, ours.camLogit!, ours.heatmap]);
      } finally {
        await server.shutdown();
      }
    } finally {
      for (const d of [root, results]) await Deno.remove(d, { recursive: true });
    }
  },
);
