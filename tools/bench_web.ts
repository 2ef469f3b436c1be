/**
 * `deno task bench:web`: iterations per second of the page's fine-tuning (its worker, the same
 * loop as Deno's) in headless Chromium, per backend, on the model the page ships: the page built
 * with `build:web`, the page's held-out emoji as domain A and their other-style twins as domain B,
 * iterations started as the panel's start button starts them. Prints a table and one JSON line
 * per backend.
 *
 *     deno task bench:web --backends webgpu,webgl --iterations 6 --warmup 2
 *
 * Flags: `--model` (default the shipped `models/emoji-google2twitter/generator.safetensors`),
 * `--backends` (default `webgpu,webgl,wasm`; WebGPU on SwiftShader's Vulkan and WebGL on
 * SwiftShader where there is no GPU), `--iterations N` (default 6) and `--warmup N` (default 2:
 * the first iterations compile shaders and, on WebGPU, record the step to replay; the rate is over
 * the iterations after them, from the times the page's loop reports, pauses left out).
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import { buildWeb, serveFolder } from "./build_web.ts";
import { findChromium, withChromium } from "./chromium.ts";
import type { PanelResult } from "../web/finetune_panel.ts";

const args = parseArgs(Deno.args, {
  string: ["model", "backends", "iterations", "warmup"],
  default: {
    model: new URL("../models/emoji-google2twitter/generator.safetensors", import.meta.url)
      .pathname,
    backends: "webgpu,webgl,wasm",
    iterations: "6",
    warmup: "2",
  },
});
const iterations = Number(args.iterations);
const warmup = Number(args.warmup);
if (!Number.isInteger(iterations) || !Number.isInteger(warmup) || warmup < 1) {
  console.error("--iterations and --warmup: whole numbers, --warmup at least 1");
  Deno.exit(2);
}
if (iterations <= warmup) {
  console.error(`--iterations (${iterations}) must exceed --warmup (${warmup})`);
  Deno.exit(2);
}
const exe = await findChromium();
if (!exe) {
  console.error("no chromium here (apt-get install chromium)");
  Deno.exit(2);
}

const out = await Deno.makeTempDir();
try {
  const site = await buildWeb(out, { model: String(args.model), emoji: 24 });
  const { emojiB } = JSON.parse(await Deno.readTextFile(`${site}/site.json`));
  const { server, url } = serveFolder(site, 0);
  const rows: Record<string, unknown>[] = [];
  try {
    await withChromium(exe, async (page) => {
      for (const backend of String(args.backends).split(",")) {
        await page.goto(`${url}?backend=${backend}`);
        await page.evaluate("ugatitDemo.ready");
        const shown = await page.evaluate<string>(
          "document.getElementById('backend').textContent",
        );
        if (shown !== backend) {
          console.log(`${backend}: not offered here (the page chose ${shown}); skipped`);
          continue;
        }
        await page.evaluate(`ugatitDemo.addPictures('B', ${JSON.stringify(emojiB)})`);
        const t0 = performance.now();
        await page.evaluate(
          `globalThis.benched = ugatitDemo.fineTune(${iterations}, 0, ${iterations})` +
            ".then((r) => (globalThis.benchResult = r), (e) => " +
            "(globalThis.benchResult = { error: String(e) })); 0",
        );
        // The panel's status line every 20 s while it runs (start-up can take minutes).
        while (!(await page.evaluate<boolean>("'benchResult' in globalThis"))) {
          await page.evaluate(
            "Promise.race([globalThis.benched, new Promise((ok) => " +
              "setTimeout(ok, 20000))]).then(() => 0)",
          );
          const status = await page.evaluate<string>(
            "document.getElementById('ft-status').textContent",
          );
          console.log(`  ${backend}: ${status}`);
        }
        // Without the file's bytes (megabytes as a JSON array).
        const r = await page.evaluate<Omit<PanelResult, "file"> | { error: string }>(
          "(({ file: _, ...r }) => r)(globalThis.benchResult)",
        );
        if ("error" in r) {
          console.log(`${backend}: ${r.error}`);
          continue;
        }
        const wall = (performance.now() - t0) / 1000;
        const s = r.seconds;
        const rate = (s.length - warmup) / (s[s.length - 1] - s[warmup - 1]);
        const row = {
          backend,
          mode: r.mode,
          iterations: s.length,
          warmup,
          it_per_s: Number(rate.toPrecision(3)),
          first_s: Number(s[0].toFixed(1)),
          wall_s: Number(wall.toFixed(1)),
          lines: r.lines,
          errors: page.errors.splice(0),
        };
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    }, { webgpu: true });
  } finally {
    await server.shutdown();
  }
  console.log("\n| backend | it/s after warm-up | first iteration (s) | step |");
  console.log("| --- | --- | --- | --- |");
  for (const r of rows) {
    console.log(`| ${r.backend} | ${r.it_per_s} | ${r.first_s} | ${r.mode} |`);
  }
} finally {
  await Deno.remove(out, { recursive: true });
}
