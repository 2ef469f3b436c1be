/**
 * The one pick of examples (`data/pick.ts`): spread over the whole list, the same on every call,
 * aligned pairs kept; and the pictures that use it (the run's sample pictures, translate with no
 * inputs) show what it picks, not the first files by name.
 */
import { assert, assertEquals, assertNotEquals } from "@std/assert";
import sharp from "sharp";
import { trainWithReport } from "../cli/train.ts";
import { runTranslate } from "../cli/translate.ts";
import { openDataset } from "../data/dataset.ts";
import { loadTestImages } from "../data/domain_stream.ts";
import { pickIndices, pickSpread } from "../data/pick.ts";
import { picturesOf } from "../eval/figure.ts";
import { makeDataset, tinyFlags } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };

Deno.test("pickIndices() takes one position from each equal stretch, the same on every call", () => {
  for (const [length, n] of [[183, 24], [10, 3], [7, 7], [100, 1], [5, 4]]) {
    const at = pickIndices(length, n);
    assertEquals(at.length, n);
    at.forEach((i, k) => {
      const [start, end] = [Math.floor((k * length) / n), Math.floor(((k + 1) * length) / n)];
      assert(
        i >= start && i < end,
        `pick ${k} of ${n} from ${length}: ${i} not in [${start}, ${end})`,
      );
    });
    assertEquals(pickIndices(length, n), at, "a second call picked differently");
  }
  const first = Array.from({ length: 24 }, (_, i) => i);
  assertNotEquals(pickIndices(183, 24), first);
  assertNotEquals(pickIndices(183, 24, 1), pickIndices(183, 24), "the seed changes nothing");
  // The draws within stretches are random: some pick is not its stretch's first item.
  assert(pickIndices(183, 24).some((i, k) => i !== Math.floor((k * 183) / 24)));
  assertEquals(pickIndices(4, 9), [0, 1, 2, 3]);
  assertEquals(pickIndices(4, 0), []);
  assertEquals(pickSpread(["a", "b", "c"], 2).length, 2);
});

Deno.test("the emoji test split's picks are spread over its kinds and pair A with B", async () => {
  const data = await openDataset("emoji:google2twitter", () => {});
  const name = (f: string) => f.split("/").pop()!;
  const picked = pickSpread(data.testA, 24).map(name);
  assertEquals(picked, pickSpread(data.testA, 24).map(name));
  assertNotEquals(picked, data.testA.slice(0, 24).map(name));
  // Flags (two regional indicators, 1f1e6-1f1ff) are 22 of the first 24 by name.
  const flag = (n: string) => /^1f1(e[6-9a-f]|f[0-9a-f])-1f1/.test(n);
  assertEquals(data.testA.slice(0, 24).map(name).filter(flag).length, 22);
  assert(picked.filter(flag).length <= 6, `too many flags: ${picked.filter(flag)}`);
  // Faces (U+1F600-1F64F) are among the picks.
  assert(picked.some((n) => /^1f6[0-4]/.test(n)), `no face in ${picked}`);
  assertEquals(pickSpread(data.testB, 24).map(name), picked); // aligned pairs stay pairs
});

// The first row (the real images) of a sample picture, one picture per column.
async function firstRow(file: string, columns: number, size: number) {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  return Array.from({ length: columns }, (_, c) => {
    const out: number[] = [];
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const at = (y * info.width + c * size + x) * info.channels;
        out.push(data[at], data[at + 1], data[at + 2]);
      }
    }
    return out;
  });
}

Deno.test("the run's sample pictures and translate's grids show the pick, not the first files", async () => {
  const root = await makeDataset({ train: 12, test: 11, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = tinyFlags(root, results, { backend: "wasm", iteration: "1", print_freq: "1" });
    const run = await trainWithReport(flags, quiet);
    const data = await openDataset(root, () => {});
    const files = [...pickSpread(data.trainA, 5), ...pickSpread(data.testA, 5)];
    assertNotEquals(files, [...data.trainA.slice(0, 5), ...data.testA.slice(0, 5)]);
    const { batch } = await loadTestImages(files, 24);
    const expected = (await picturesOf(batch)).map((p) =>
      Array.from(p.rgb, (v) => Math.round(v * 255))
    );
    batch.dispose();
    assertEquals(await firstRow(`${run.dir}/img/A2B_0000001.png`, 10, 24), expected);

    // translate with no inputs: --pick held-out images, in the pick's order
    const out = await runTranslate({ ...flags, pick: 4 }, quiet);
    const stems = (dir: string) =>
      [...Deno.readDirSync(`${out}/${dir}`)].map((e) => e.name)
        .filter((n) => n.endsWith("_input.png")).sort().map((n) =>
          n.slice(5, -"_input.png".length)
        );
    const stem = (f: string) => f.split("/").pop()!.replace(/\.png$/, "");
    assertEquals(stems("A2B"), pickSpread(data.testA, 4).map(stem));
    assertEquals(stems("B2A"), pickSpread(data.testB, 4).map(stem));
    await Deno.remove(out, { recursive: true });
    const all = await runTranslate({ ...flags, pick: 0 }, quiet);
    assertEquals(stems("A2B").length, 11);
    assertEquals(all, out);
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});
