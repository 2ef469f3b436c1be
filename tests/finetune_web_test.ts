/**
 * The page's fine-tune panel in a real browser: a tiny model (float16, its discriminators beside
 * its generators) fine-tuned N iterations in headless Chromium's worker on pictures the test
 * supplies, on WebGPU (SwiftShader's Vulkan), WebGL (SwiftShader) and WebAssembly, against Deno's
 * `fineTune` of the same file on the same pictures with the same seed (the cpu backend). The
 * first iteration's loss terms, the weights after N iterations (within what Adam's arithmetic
 * allows, below) and the downloaded file (it loads in Deno and translates as the page did after
 * the fine-tune) are compared; no console error (a worker's counted); a screenshot of the panel
 * mid-training is written (`results/web/finetune_panel.png`). A backend the browser does not offer
 * here, or no Chromium, is said to be skipped.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import sharp from "sharp";
import { describeBackend } from "../backends/backend.ts";
import { selectBackend } from "../backends/mod.ts";
import { runExport } from "../cli/export.ts";
import { trainWithReport } from "../cli/train.ts";
import { type Picture, resizeMargin } from "../data/pictures.ts";
import { writeAtomically } from "../files/write_file.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { buildWeb, serveFolder } from "../tools/build_web.ts";
import { type Page, withChromium } from "../tools/chromium.ts";
import { fineTune } from "../train/finetune.ts";
import { SHIPPED_RECIPE } from "../train/settings.ts";
import { dispose } from "../tree/tree.ts";
import type { PanelResult } from "../web/finetune_panel.ts";
import { fromHost, readGeneratorFile } from "../weights/mod.ts";
import { type GeneratorFile, generatorFileFrom } from "../weights/generator_file.ts";
import { decodeSafetensors } from "../weights/safetensors.ts";
import { assertClose, chromiumTest, makeDataset, tinyFlags } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };
const N = 3; // iterations
const SEED = 7;
const S = 24; // tinyFlags' image size
/**
 * How far the page's weights after N iterations may be from Deno's, as the root of the summed
 * squared differences over that of Deno's update, on every backend: in float32 the same step in
 * another summation order agrees to a few ulps, except where a gradient is at rounding level and
 * the two take opposite steps of about lr each. A tenth allows such flips on 0.25% of the
 * weights; a wrong picture, crop or gradient moves the weights apart by the order of the update
 * itself. (Measured here: below 1e-4 on WebGPU, WebGL and WebAssembly.)
 */
const UPDATE_TOLERANCE = 0.1;

/**
 * The most one Adam step (b1 0.5, b2 0.999, as the reference's) can move a parameter, in units of
 * the learning rate, at step t: |mhat / sqrt(vhat)| <= sqrt(sum_i w_i^2 / u_i) by Cauchy-Schwarz,
 * where w_i and u_i are the bias-corrected weights of gradient i in the two moments (1 at t = 1,
 * where the step is g / |g|). Coupled weight decay is part of the gradient, so it is covered.
 */
function adamStepBound(t: number, b1 = 0.5, b2 = 0.999): number {
  let sum = 0;
  for (let i = 1; i <= t; i++) {
    const w = ((1 - b1) * b1 ** (t - i)) / (1 - b1 ** t);
    const u = ((1 - b2) * b2 ** (t - i)) / (1 - b2 ** t);
    sum += (w * w) / u;
  }
  return Math.sqrt(sum);
}

// Both generators' tensors of a generator file, by name.
function generatorTensors(file: GeneratorFile): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const d of ["A2B", "B2A"] as const) {
    for (const [k, t] of Object.entries(file.generators[d]!)) {
      out.set(`${d}.${k}`, Float32Array.from(t.data as ArrayLike<number>));
    }
  }
  return out;
}

const decode = (bytes: Uint8Array, name: string) => {
  const f = generatorFileFrom(decodeSafetensors(bytes, name), name);
  if (f._tag === "Left") throw f.left;
  return f.right;
};

// Pictures the test supplies: 3 per domain, of sizes other than the training side (the page
// resizes them), A warm and B cool with a bright square whose place varies.
async function writePictures(dir: string): Promise<Record<"A" | "B", string[]>> {
  const out: Record<"A" | "B", string[]> = { A: [], B: [] };
  for (const [d, tint] of [["A", [200, 60, 40]], ["B", [40, 90, 210]]] as const) {
    for (let k = 0; k < 3; k++) {
      const side = 30 + 7 * k;
      const rgb = new Uint8Array(side * side * 3);
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          const inSquare = Math.abs(x - 8 - 5 * k) < 6 && Math.abs(y - side / 2) < 6;
          for (let c = 0; c < 3; c++) {
            rgb[(y * side + x) * 3 + c] = inSquare
              ? 250 - 40 * c
              : (tint[c] + 11 * x + 5 * y) % 256;
          }
        }
      }
      const name = `pics/${d}${k}.png`;
      await sharp(rgb, { raw: { width: side, height: side, channels: 3 } }).png()
        .toFile(`${dir}/${name}`);
      out[d].push(name);
    }
  }
  return out;
}

interface PageRun {
  readonly result: Omit<PanelResult, "file"> & { readonly file: number[] };
  readonly pictures: Record<"A" | "B", number[][]>;
  readonly download: number[];
  readonly translated: number[];
  readonly errors: string[];
}

// One fine-tune in the page on `backend`: the pictures added as dropping them does, the run
// started as the start button does, a screenshot once an iteration is shown, the download link's
// bytes, then the probe translated by the fine-tuned generators the panel handed to the page.
async function runInPage(
  page: Page,
  url: string,
  backend: string,
  pics: Record<"A" | "B", string[]>,
  screenshot?: string,
): Promise<PageRun | string> {
  await page.goto(`${url}?backend=${backend}`);
  await page.evaluate("ugatitDemo.ready");
  const shown = await page.evaluate<string>("document.getElementById('backend').textContent");
  if (shown !== backend) return `the page offers no ${backend} here (it chose ${shown})`;
  for (const d of ["A", "B"] as const) {
    await page.evaluate(`ugatitDemo.addPictures('${d}', ${JSON.stringify(pics[d])})`);
  }
  const pictures = await page.evaluate<Record<"A" | "B", number[][]>>(
    "Promise.all([ugatitDemo.pictures('A'), ugatitDemo.pictures('B')]).then(([A, B]) => ({ A, B }))",
  );
  await page.evaluate(`globalThis.fineTuning = ugatitDemo.fineTune(${N}, ${SEED}, 1); 0`);
  if (screenshot) {
    await page.evaluate(`new Promise((ok) => { const t = setInterval(() => {
      if (Number(document.body.dataset.ftStep ?? 0) >= 1) { clearInterval(t); ok(0); } }, 20); })`);
    await page.evaluate("document.getElementById('finetune').scrollIntoView(); 0");
    await writeAtomically(screenshot, await page.screenshot());
  }
  // (The file's bytes as numbers: the protocol returns plain JSON.)
  const result = await page.evaluate<PageRun["result"]>(
    "globalThis.fineTuning.then((r) => ({ ...r, file: Array.from(r.file) }))",
  );
  const download = await page.evaluate<number[]>(
    "fetch(document.getElementById('ft-download').href).then((r) => r.arrayBuffer())" +
      ".then((b) => Array.from(new Uint8Array(b)))",
  );
  const translated = (await page.evaluate<{ output: number[] }>(
    "ugatitDemo.translateUrl('probe.png')",
  )).output;
  return { result, pictures, download, translated, errors: page.errors.splice(0) };
}

chromiumTest(
  "the page fine-tunes in headless Chromium as Deno does, on WebGPU, WebGL and WebAssembly",
  async (exe) => {
    const root = await makeDataset({ train: 3, test: 1, size: 28 });
    const results = await Deno.makeTempDir();
    try {
      const out = `${results}/g.safetensors`;
      const flags = tinyFlags(root, results, { iteration: "2", out }, [
        "--discriminators",
        "--half",
      ]);
      await trainWithReport(flags, quiet);
      const model = await runExport(flags, quiet);
      const start = await readGeneratorFile(model);
      assert(start.discriminators, "export --discriminators stored the discriminators");
      const site = await buildWeb(`${results}/site`, { model, emoji: 2 });
      await Deno.mkdir(`${site}/pics`);
      const pics = await writePictures(site);
      const probe = Uint8Array.from({ length: S * S * 3 }, (_, i) => (i * 53 + 7) % 256);
      await sharp(probe, { raw: { width: S, height: S, channels: 3 } }).png()
        .toFile(`${site}/probe.png`);

      const { server, url } = serveFolder(site, 0);
      const runs: Record<string, PageRun> = {};
      const shot = "results/web/finetune_panel.png";
      await Deno.mkdir("results/web", { recursive: true });
      try {
        await withChromium(exe, async (page) => {
          for (const backend of ["webgpu", "webgl", "wasm"]) {
            const t0 = performance.now();
            const run = await runInPage(page, url, backend, pics, backend === "webgl" ? shot : "");
            if (typeof run === "string") console.log(`  SKIPPED ${backend}: ${run}`);
            else {
              runs[backend] = run;
              console.log(
                `  ${backend}: ${N} iterations in ${
                  ((performance.now() - t0) / 1000).toFixed(1)
                } s ` +
                  `with the page's start-up (${run.result.mode}): ${run.result.line}`,
              );
            }
          }
        }, { webgpu: true });
      } finally {
        await server.shutdown();
      }
      assert(Object.keys(runs).length > 0, "no backend ran in the page");
      console.log(`  screenshot of the panel mid-training: ${shot}`);

      // Deno's fine-tune of the same file on the same pictures, as the page's worker decoded them.
      await selectBackend("cpu");
      const first = Object.values(runs)[0];
      const M = resizeMargin(S);
      const asPictures = (rows: number[][]): Picture[] =>
        rows.map((r) => ({ rgb: Uint8Array.from(r), size: M }));
      const termsByStep: Record<string, number>[] = [];
      const ours = await fineTune({
        model: start,
        name: model.split("/").pop()!,
        pictures: { A: asPictures(first.pictures.A), B: asPictures(first.pictures.B) },
        iterations: N,
        seed: SEED,
        backend: describeBackend("cpu"),
        log: () => {},
        onProgress: (p) => void termsByStep.push(p.terms),
      });
      assertEquals([ours.status, ours.step], ["done", N]);
      const deno = generatorTensors(decode(ours.file, "deno"));
      const before = generatorTensors(start);

      // A parameter moves by at most lr * adamStepBound(t) at step t (the learning rate is constant
      // over the first half of a run and decays after, so lr bounds it). Two correct float32 runs
      // differ in rounding: where a gradient is far above its rounding the steps agree closely, but
      // where it is at rounding level (cancellation, a bias before a norm) its sign is noise, and
      // the two steps can be opposite. So each weight may differ by twice the sum of the bounds,
      // plus float32 rounding of the weight. The moving average (the file's weights) is a convex
      // combination of the iterates, so the same bound holds for it. That bound alone would pass a
      // run on other pictures, so the first iteration's loss terms, computed from the same start on
      // the first batch (the pictures, their order, flips and crops), must agree as a forward pass
      // does (1e-3 relative, the page's translation test's tolerance for float32 with a different
      // summation order), and the page's weights must be near Deno's against the size of Deno's
      // update (UPDATE_TOLERANCE).
      const lr = SHIPPED_RECIPE.lr;
      let allowed = 0;
      for (let t = 1; t <= N; t++) allowed += 2 * lr * adamStepBound(t);
      for (const [backend, run] of Object.entries(runs)) {
        const r = run.result;
        assertEquals(run.errors, [], `${backend}: console errors`);
        assertEquals([r.status, r.step, r.backend], ["done", N, backend]);
        assertEquals(run.pictures, first.pictures, `${backend}: the page decoded other pictures`);
        assertEquals(r.terms.length, N);
        // The file's discriminators are used (no fresh ones), and on SwiftShader (the adapter this
        // browser is given) the page says that it uses TensorFlow.js's convolutions.
        assert(!r.lines.some((l) => l.includes("no discriminators")), r.lines.join("\n"));
        if (backend === "webgpu") {
          assert(r.lines.some((l) => l.includes("SwiftShader")), r.lines.join("\n"));
        }
        for (const [k, v] of Object.entries(termsByStep[0])) {
          const err = Math.abs(r.terms[0][k] - v) / Math.max(Math.abs(v), 1e-6);
          assert(err < 1e-3, `${backend}: iteration 1's ${k} is ${r.terms[0][k]}, Deno's ${v}`);
        }
        const downloaded = Uint8Array.from(run.download);
        assertEquals(Array.from(downloaded), r.file, `${backend}: the download is the result`);
        const page = generatorTensors(decode(downloaded, `${backend}.safetensors`));
        assertEquals([...page.keys()].sort(), [...deno.keys()].sort());
        let worst = 0;
        let [moved, apart, pageMoved] = [0, 0, 0];
        for (const [k, d] of deno) {
          const p = page.get(k)!;
          const b = before.get(k)!;
          for (let i = 0; i < d.length; i++) {
            const bound = allowed + 1e-6 * Math.abs(d[i]);
            worst = Math.max(worst, Math.abs(p[i] - d[i]) / bound);
            moved += (d[i] - b[i]) ** 2;
            apart += (p[i] - d[i]) ** 2;
            pageMoved = Math.max(pageMoved, Math.abs(p[i] - b[i]));
          }
        }
        console.log(
          `  ${backend}: worst weight difference ${worst.toExponential(2)} of the bound ` +
            `(${allowed.toExponential(2)}); |page - Deno| / |Deno's update| = ` +
            `${Math.sqrt(apart / moved).toExponential(2)}`,
        );
        assert(worst <= 1, `${backend}: a weight differs from Deno's by ${worst} times the bound`);
        assert(pageMoved > lr / 2, `${backend}: the page's fine-tune moved no weight`);
        const relative = Math.sqrt(apart / moved);
        assert(
          relative < UPDATE_TOLERANCE,
          `${backend}: the page's weights are ${relative} of Deno's update away from Deno's`,
        );

        // The downloaded file in Deno (translate --checkpoint reads it with readGeneratorFile).
        const path = `${results}/${backend}_finetuned.safetensors`;
        await Deno.writeFile(path, downloaded);
        const file = await readGeneratorFile(path);
        const x = tf.tidy(() =>
          tf.sub(tf.div(tf.tensor4d(probe, [1, S, S, 3], "float32"), 127.5), 1) as tf.Tensor4D
        );
        const params = fromHost<GeneratorParams>(file.generators.A2B!);
        const y = generator(file.config).apply(params, x);
        await assertClose(run.translated, y.image, 1e-3, `${backend}: the page's translation`);
        tf.dispose([x, y.image, y.camLogit!, y.heatmap]);
        dispose(params);
      }
    } finally {
      for (const d of [root, results]) await Deno.remove(d, { recursive: true });
    }
  },
);
