/**
 * The ablation: every variant trained and evaluated with each seed on one budget, the table of
 * means and spreads over the seeds, the paper's figure (a column per variant after the source, a
 * row per held-out image drawn by the pick) and the report that shows it.
 */
import { assert, assertEquals, assertNotEquals, assertRejects } from "@std/assert";
import sharp from "sharp";
import { runAblation } from "../cli/ablate.ts";
import { trainWithReport } from "../cli/train.ts";
import { openDataset } from "../data/dataset.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { pickSpread } from "../data/pick.ts";
import { writeAblationFigure } from "../eval/ablation.ts";
import { GLYPH_HEIGHT } from "../eval/bitmap_font.ts";
import { loadTranslator, picturesOf } from "../eval/figure.ts";
import { makeDataset, pngSquare, tinyFlags, zoomedBytes } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

// A cell of a figure written by pictureTable (no groups, gap 2, labels at twice the font's size).
const cell = (file: string, row: number, column: number, side: number) =>
  pngSquare(file, column * (side + 2), GLYPH_HEIGHT * 2 + 2 * 2 + 4 + row * (side + 2), side);

Deno.test("runAblation() trains each variant with each seed, tabulates mean ± sd and draws the figure", async () => {
  const root = await makeDataset({ train: 2, test: 5, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = tinyFlags(root, results, {
      backend: "wasm",
      iteration: "2",
      print_freq: "10",
      save_freq: "10",
      seeds: "2",
      figure_rows: "3",
    });
    const lines: string[] = [];
    const r = await runAblation(flags, ["full", "gn", "no_cam"], {
      out: (l) => lines.push(l),
      warn: () => {},
    });
    assertEquals(r.seeds, [5, 6]);
    assertEquals(Object.keys(r.runs), ["full", "gn", "no_cam"]);
    for (const runs of Object.values(r.runs)) {
      assertEquals(runs.map((e) => e.iteration), [2, 2]);
      assertNotEquals(runs[0].A2B.fid, runs[1].A2B.fid, "the two seeds trained the same model");
    }
    // The printed table: a row per variant, each cell the mean ± sd over the two seeds.
    const header = lines.findIndex((l) => l.startsWith("A2B: variant"));
    const rows = lines.slice(header + 1, header + 5);
    assertEquals(rows.map((l) => l.split(" ")[0]), ["full", "gn", "no_cam", "source"]);
    const [a, b] = r.runs.gn.map((e) => 100 * e.A2B.kid.mean);
    const sd = Math.abs(a - b) / Math.SQRT2;
    assert(rows[1].includes(`${((a + b) / 2).toFixed(2)} ± ${sd.toFixed(2)}`), rows[1]);
    const saved = JSON.parse(await Deno.readTextFile(`${results}/ablate/ablation.json`));
    assertEquals(saved.seeds, [5, 6]);
    assertEquals(Object.keys(saved.variants), ["full", "gn", "no_cam"]);

    // The figure: a column per variant after the source, a row per picked held-out image
    // (4x zoom of 24 px, 2 px apart, under a line of labels).
    const side = 24 * 4;
    for (const d of ["A2B", "B2A"] as const) {
      const meta = await sharp(r.figures[d]).metadata();
      assertEquals([meta.width, meta.height], [
        4 * side + 3 * 2,
        GLYPH_HEIGHT * 2 + 8 + 3 * side + 2 * 2,
      ]);
    }
    const data = await openDataset(root, () => {});
    const picked = pickSpread(data.testA, 3);
    const { batch } = await loadTestImages(picked, 24);
    const sources = await picturesOf(batch);
    for (let row = 0; row < 3; row++) {
      assertEquals(await cell(r.figures.A2B, row, 0, side), zoomedBytes(sources[row].rgb, 24, 4));
    }
    for (const [column, name] of ["full", "gn", "no_cam"].entries()) {
      const t = await loadTranslator(
        `${results}/ablate/${name}/seed_5/${data.name}/model/latest.safetensors`,
        flags,
        "A2B",
      );
      const translated = await t.translate(batch);
      t.dispose();
      for (let row = 0; row < 3; row++) {
        const got = await cell(r.figures.A2B, row, column + 1, side);
        const want = zoomedBytes(translated[row].rgb, 24, 4);
        assert(got.every((v, i) => Math.abs(v - want[i]) <= 1), `${name}, row ${row}`);
      }
    }
    batch.dispose();

    // The report shows the table, both figures and links to every run's report.
    const html = await Deno.readTextFile(r.report);
    const images = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]);
    assertEquals(images, ["ablation_A2B.png", "ablation_B2A.png"]);
    for (const src of images) await Deno.stat(`${results}/ablate/${src}`);
    const links = [...html.matchAll(/<a href="([^"]+)"/g)].map((m) => m[1]);
    assertEquals(links.length, 6);
    for (const href of links) await Deno.stat(`${results}/ablate/${href}`);
    assert(html.includes("<td>no_cam</td><td>2</td>"));

    await assertRejects(
      () => runAblation(flags, ["gn2"], quiet),
      Error,
      "--variants: unknown gn2",
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("the ablation figure ends with the true targets where the data has aligned pairs", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = tinyFlags(root, results, { backend: "wasm", iteration: "1", print_freq: "10" });
    const run = await trainWithReport(flags, quiet);
    const data = await openDataset(root, () => {});
    const file = `${results}/figure.png`;
    const drawn = await writeAblationFigure(
      file,
      [{ label: "full", checkpoint: `${run.dir}/model/latest.safetensors` }],
      data.testA,
      data.testB,
      flags,
      "A2B",
    );
    assertEquals(drawn, { rows: 2, labels: ["source", "full", "target"] });
    const { batch } = await loadTestImages(data.testB, 24);
    const targets = await picturesOf(batch);
    batch.dispose();
    for (let row = 0; row < 2; row++) {
      assertEquals(await cell(file, row, 2, 96), zoomedBytes(targets[row].rgb, 24, 4));
    }
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});
