/**
 * A 5x7 bitmap font for the labels of the toolkit's figures (column names such as `source`,
 * `adain`, `no_cam`), drawn into RGB pixels with no font on the machine: the figures read the same
 * wherever they are made. Lowercase letters (capitals are drawn as lowercase), digits and a few
 * signs; any other character is drawn as a box, so that nothing is dropped silently.
 *
 * @example
 * ```ts
 * import { drawText, textWidth } from "./bitmap_font.ts";
 * const [w, h] = [textWidth("in", 1), 9];
 * const rgb = new Float32Array(w * h * 3).fill(1);
 * drawText(rgb, w, h, "in", 0, 0, 1);
 * console.log(rgb.some((v) => v === 0)); // true: black pixels where the letters are
 * ```
 *
 * @module
 */

/** Line height in font pixels: 7 rows above the baseline, 2 for descenders (g, j, p, q, y). */
export const GLYPH_HEIGHT = 9;
/** Horizontal advance per character in font pixels (5 wide, 1 apart). */
export const GLYPH_ADVANCE = 6;

// Each glyph: 7 rows of 5 pixels down to the baseline, `#` drawn, and 2 more for a descender.
const GLYPHS: Record<string, readonly string[]> = {
  a: [".....", ".....", ".###.", "....#", ".####", "#...#", ".####"],
  b: ["#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."],
  c: [".....", ".....", ".###.", "#....", "#....", "#...#", ".###."],
  d: ["....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"],
  e: [".....", ".....", ".###.", "#...#", "#####", "#....", ".###."],
  f: ["..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."],
  g: [".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."],
  h: ["#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"],
  i: ["..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."],
  j: ["...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."],
  k: ["#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."],
  l: [".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
  m: [".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"],
  n: [".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"],
  o: [".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."],
  p: [".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."],
  q: [".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"],
  r: [".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."],
  s: [".....", ".....", ".####", "#....", ".###.", "....#", "####."],
  t: [".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."],
  u: [".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"],
  v: [".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
  w: [".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."],
  x: [".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"],
  y: [".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."],
  z: [".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"],
  "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
  "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
  "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
  "3": ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
  "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
  "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
  "6": ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
  "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
  "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
  "9": [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
  " ": [".....", ".....", ".....", ".....", ".....", ".....", "....."],
  _: [".....", ".....", ".....", ".....", ".....", ".....", "#####"],
  "-": [".....", ".....", ".....", "#####", ".....", ".....", "....."],
  ".": [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."],
  ",": [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."],
  ":": [".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."],
  "(": ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."],
  ")": [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."],
  "%": ["##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"],
  "/": [".....", "....#", "...#.", "..#..", ".#...", "#....", "....."],
  "+": [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."],
  "=": [".....", ".....", "#####", ".....", "#####", ".....", "....."],
};
const BOX = ["#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"];

/**
 * The width a text takes.
 * @param text the text
 * @param scale pixels per font pixel
 * @returns its width in pixels (the last character's spacing not counted)
 */
export function textWidth(text: string, scale: number): number {
  return text.length ? (text.length * GLYPH_ADVANCE - 1) * scale : 0;
}

/**
 * Draws a text in black into an RGB picture, clipped to the picture and to `maxWidth` pixels.
 * @param rgb the picture's values, row-major, 3 per pixel, changed in place
 * @param width the picture's width
 * @param height the picture's height
 * @param text the text
 * @param x0 the left edge of the first character
 * @param y0 the top of the characters
 * @param scale pixels per font pixel (a positive integer)
 * @param maxWidth no pixel is drawn at or past `x0 + maxWidth` (default: the picture's edge)
 */
export function drawText(
  rgb: Float32Array,
  width: number,
  height: number,
  text: string,
  x0: number,
  y0: number,
  scale: number,
  maxWidth: number = width - x0,
): void {
  const right = Math.min(width, x0 + maxWidth);
  [...text.toLowerCase()].forEach((ch, k) => {
    const glyph = GLYPHS[ch] ?? BOX;
    glyph.forEach((row, gy) => {
      for (let gx = 0; gx < row.length; gx++) {
        if (row[gx] !== "#") continue;
        for (let dy = 0; dy < scale; dy++) {
          for (let dx = 0; dx < scale; dx++) {
            const x = x0 + (k * GLYPH_ADVANCE + gx) * scale + dx;
            const y = y0 + gy * scale + dy;
            if (x < 0 || y < 0 || x >= right || y >= height) continue;
            rgb.fill(0, (y * width + x) * 3, (y * width + x) * 3 + 3);
          }
        }
      }
    });
  });
}
