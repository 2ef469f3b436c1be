/**
 * The pieces of the toolkit's pictures: the table of pictures (zoom, gaps, groups, labels), the
 * bitmap font, and the report's charts (the moving average over the faint values, the marked
 * checkpoint).
 */
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "@std/assert";
import { drawText, GLYPH_HEIGHT, textWidth } from "../eval/bitmap_font.ts";
import { evalChart, lossChart, movingAverage, smoothingDecay } from "../eval/charts.ts";
import { type Picture, pictureTable, TABLE_BACKGROUND } from "../eval/figure.ts";

// A picture of one colour, with pixel (0, 0) black.
const square = (side: number, v: number): Picture => {
  const rgb = new Float32Array(side * side * 3).fill(v);
  rgb.fill(0, 0, 3);
  return { width: side, height: side, rgb };
};
const at = (p: Picture, x: number, y: number) =>
  Array.from(p.rgb.subarray((y * p.width + x) * 3, (y * p.width + x) * 3 + 3));

Deno.test("pictureTable() places each picture zoomed in its row and column, groups apart", () => {
  const cells = [[square(4, 0.1), square(4, 0.2), square(4, 0.3)], [square(4, 0.4)]];
  const t = pictureTable(cells, { zoom: 3, gap: 1, groupSize: 2, groupGap: 5 });
  // columns 12 px wide: 0-11, gap 1, 13-24, group gap 5, 30-41; rows 0-11, gap 1, 13-24
  assertEquals([t.width, t.height], [42, 25]);
  assertEquals(at(t, 13 + 5, 4).map((v) => v.toFixed(2)), ["0.20", "0.20", "0.20"]);
  assertEquals(at(t, 30 + 11, 11).map((v) => v.toFixed(2)), ["0.30", "0.30", "0.30"]);
  assertEquals(at(t, 2, 13 + 2), [0, 0, 0]); // the black pixel of (1, 0), zoomed to 3x3
  assertEquals(at(t, 3, 13 + 3).map((v) => v.toFixed(2)), ["0.40", "0.40", "0.40"]);
  assertEquals(at(t, 12, 0).map((v) => v.toFixed(2)), Array(3).fill(TABLE_BACKGROUND.toFixed(2)));
  assertEquals(
    at(t, 13 + 5, 13 + 5).map((v) => v.toFixed(2)),
    Array(3).fill(TABLE_BACKGROUND.toFixed(2)),
  ); // a short row
  assertThrows(() => pictureTable([[square(4, 0), square(5, 0)]]), Error, "is 5x5, not 4x4");
});

Deno.test("pictureTable() writes each column's label over it, in black, within the column", () => {
  const labels = ["no_cam", "in"]; // "no_cam" is wider than its column
  const t = pictureTable([[square(20, 1), square(20, 1)]], { labels, gap: 2 });
  const header = GLYPH_HEIGHT + 2 * 2 + 4; // labels at the font's size: "no_cam" is 35 px
  assertEquals(t.height, header + 20);
  const inked = (x0: number, x1: number) => {
    let n = 0;
    for (let y = 0; y < header; y++) {
      for (let x = x0; x < x1; x++) {
        n += at(t, x, y)[0] === 0 ? 1 : 0;
      }
    }
    return n;
  };
  assert(inked(0, 20) > 10 && inked(22, 42) > 10, "a label is missing");
  assertEquals(inked(20, 22), 0, "a label ran into the gap");
});

Deno.test("drawText() draws different letters differently, and unknown ones as a box", () => {
  const draw = (text: string) => {
    const [w, h] = [textWidth(text, 1), GLYPH_HEIGHT];
    const rgb = new Float32Array(w * h * 3).fill(1);
    drawText(rgb, w, h, text, 0, 0, 1);
    return Array.from(rgb).join("");
  };
  const glyphs = [..."abcdefghijklmnopqrstuvwxyz0123456789_-.%"].map(draw);
  assertEquals(new Set(glyphs).size, glyphs.length, "two characters look the same");
  assertEquals(draw("A"), draw("a"));
  assertEquals(draw("\u00e9"), draw("\u00fc")); // both the box
  assert(draw("\u00e9") !== draw(" "));
  assertEquals(textWidth("abc", 2), (3 * 6 - 1) * 2);
});

Deno.test("movingAverage() is the bias-corrected exponential average", () => {
  const avg = movingAverage([1, 3, 3], 0.5);
  assertAlmostEquals(avg[0], 1);
  assertAlmostEquals(avg[1], (0.25 * 1 + 0.5 * 3) / 0.75);
  assertAlmostEquals(avg[2], (0.125 * 1 + 0.25 * 3 + 0.5 * 3) / 0.875);
  assertEquals(movingAverage([2, 2, 2, 2], 0.99), [2, 2, 2, 2]);
  assertEquals([smoothingDecay(3), smoothingDecay(10_000)], [0.9, 0.995]);
});

Deno.test("a loss chart draws the values faintly and their moving average over them", async () => {
  // A noisy falling line: 2,000 iterations, so the raw values are averaged in buckets too.
  let seed = 1;
  const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5);
  const rows = Array.from({ length: 2000 }, (_, i) => ({
    iteration: i + 1,
    cycle_A: 2 - i / 1000 + noise(),
    cycle_B: 1 + noise(),
  }));
  const svg = await lossChart("cycle", rows, ["cycle_A", "cycle_B"]);
  const lines = [...svg.matchAll(/<path[^>]*aria-roledescription="line mark"[^>]*>/g)].map((m) =>
    m[0]
  );
  assertEquals(lines.length, 4, "two series, each raw and averaged");
  assertEquals(lines.filter((l) => /opacity="0.25"/.test(l)).length, 2);
  assert(svg.includes(">cycle</text>") && svg.includes("moving average (0.975)"));
});

Deno.test("an evaluation chart marks the shipped checkpoint with a labelled rule", async () => {
  const rows = [1000, 2000, 3000].map((iteration, i) => ({ iteration, A2B: 0.5 + i / 10 }));
  const plain = await evalChart("as target %", rows, ["A2B"]);
  const marked = await evalChart("as target %", rows, ["A2B"], {
    iteration: 2000,
    label: "eval.json: 2000",
  });
  assert(!plain.includes("rule mark") && !plain.includes("eval.json"));
  assert(
    /aria-roledescription="rule mark"/.test(marked) && marked.includes(">eval.json: 2000</text>"),
  );
});
