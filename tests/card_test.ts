/**
 * `deno task card`: the model card's grid of held-out images drawn by the pick, each as source,
 * translation and (aligned pairs) true target at 2x; for a run, and for the shipped model.
 */
import { assertEquals, assertRejects } from "@std/assert";
import sharp from "sharp";
import { CARD_FLAGS, runCard } from "../cli/card.ts";
import { parseFlags } from "../cli/flags.ts";
import { trainWithReport } from "../cli/train.ts";
import { openDataset } from "../data/dataset.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { pickSpread } from "../data/pick.ts";
import { GLYPH_HEIGHT } from "../eval/bitmap_font.ts";
import { loadTranslator, picturesOf } from "../eval/figure.ts";
import { makeDataset, pngSquare, tinyFlags, zoomedBytes } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

// Pictures of files at a side.
async function picturesOfFiles(files: readonly string[], side: number) {
  const { batch } = await loadTestImages(files, side);
  const pictures = await picturesOf(batch);
  return { batch, pictures };
}

Deno.test("runCard() writes a run's held-out images as source and translation pairs, four to a line", async () => {
  const root = await makeDataset({ train: 2, test: 9, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = tinyFlags(root, results, { backend: "wasm", iteration: "1", print_freq: "10" });
    const run = await trainWithReport(flags, quiet);
    const card = parseFlags(CARD_FLAGS, [
      ...["--dataset", root, "--result_dir", results, "--backend", "wasm"],
      ...["--pairs", "5", "--out", `${results}/card`],
    ]);
    const files = await runCard(card, quiet);
    assertEquals(files, [`${results}/card/held_out_A2B.png`, `${results}/card/held_out_B2A.png`]);
    // No aligned pairs in a folder dataset: groups of two 48-px cells (24 px at 2x), 12 px apart;
    // labels at the font's size ("translated" is wider than 2 x 48 px at twice it).
    const header = GLYPH_HEIGHT + 2 * 2 + 4;
    for (const f of files) {
      const meta = await sharp(f).metadata();
      assertEquals([meta.width, meta.height], [4 * (2 * 48 + 2) + 3 * 12, header + 2 * 48 + 2]);
    }
    const data = await openDataset(root, () => {});
    const { batch, pictures } = await picturesOfFiles(pickSpread(data.testA, 5), 24);
    const t = await loadTranslator(`${run.dir}/model/latest.safetensors`, card, "A2B");
    const translated = await t.translate(batch);
    t.dispose();
    batch.dispose();
    for (let i = 0; i < 5; i++) {
      const [line, k] = [Math.floor(i / 4), i % 4];
      const [left, top] = [k * (2 * 48 + 2 + 12), header + line * (48 + 2)];
      assertEquals(await pngSquare(files[0], left, top, 48), zoomedBytes(pictures[i].rgb, 24, 2));
      const got = await pngSquare(files[0], left + 50, top, 48);
      const want = zoomedBytes(translated[i].rgb, 24, 2);
      assertEquals(got.every((v, j) => Math.abs(v - want[j]) <= 1), true, `translation ${i}`);
    }
    await assertRejects(
      () => runCard({ ...card, model: "emoji-google2twitter", checkpoint: "x" }, quiet),
      Error,
      "--model and --checkpoint: give one of them",
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("runCard() shows the shipped model's 24 picked held-out emoji beside their true targets", async () => {
  const results = await Deno.makeTempDir();
  try {
    const card = parseFlags(CARD_FLAGS, [
      ...["--model", "emoji-google2twitter", "--backend", "wasm", "--direction", "A2B"],
      ...["--out", results],
    ], { light: true, img_size: 64, ch: 32 });
    const [file] = await runCard(card, quiet);
    assertEquals(file, `${results}/held_out_A2B.png`);
    // 24 triples of 128-px cells, four to a line; labels at twice the font's size.
    const header = GLYPH_HEIGHT * 2 + 2 * 2 + 4;
    const meta = await sharp(file).metadata();
    assertEquals([meta.width, meta.height], [4 * (3 * 128 + 2 * 2) + 3 * 12, header + 6 * 130 - 2]);
    const data = await openDataset("emoji:google2twitter", () => {});
    const sources = await picturesOfFiles(pickSpread(data.testA, 24), 64);
    const targets = await picturesOfFiles(pickSpread(data.testB, 24), 64);
    sources.batch.dispose();
    targets.batch.dispose();
    for (const i of [0, 9, 23]) {
      const [line, k] = [Math.floor(i / 4), i % 4];
      const [left, top] = [k * (3 * 128 + 2 * 2 + 12), header + line * 130];
      const source = await pngSquare(file, left, top, 128);
      assertEquals(source, zoomedBytes(sources.pictures[i].rgb, 64, 2), `source ${i}`);
      const target = await pngSquare(file, left + 2 * 130, top, 128);
      assertEquals(target, zoomedBytes(targets.pictures[i].rgb, 64, 2), `target ${i}`);
    }
  } finally {
    await Deno.remove(results, { recursive: true });
  }
});
