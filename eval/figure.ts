/**
 * Figures that show a model: a table of pictures with a label over each column, each picture
 * zoomed by whole pixels (nearest neighbour, so that a 64-pixel emoji stays sharp at 2x), the
 * columns and rows a few grey pixels apart. The model card's grid (`deno task card`: source,
 * translation, true target, several triples to a line) and the ablation figure (`deno task
 * ablate`: a row per held-out image, a column per variant) are both such tables of translations
 * made by a {@linkcode Translator}.
 *
 * @example
 * ```ts
 * import { pictureTable, type Picture } from "./figure.ts";
 * const square = (v: number): Picture => ({
 *   width: 4,
 *   height: 4,
 *   rgb: new Float32Array(4 * 4 * 3).fill(v),
 * });
 * const table = pictureTable([[square(0), square(1)]], { labels: ["a", "b"], zoom: 2 });
 * console.log(table.width, table.height); // 18 and 8 plus the labels' line
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { writeAtomically } from "../files/write_file.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { type GeneratorSettings, loadGenerators } from "../train/checkpoint.ts";
import { dispose } from "../tree/tree.ts";
import type { Direction } from "../weights/generator_file.ts";
import { fromHost } from "../weights/params_io.ts";
import { WeightFileError } from "../weights/safetensors.ts";
import { drawText, GLYPH_HEIGHT, textWidth } from "./bitmap_font.ts";

/** An RGB picture on the host: values in [0, 1], row-major, 3 per pixel. */
export interface Picture {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** `width * height * 3` values. */
  readonly rgb: Float32Array;
}

/** How {@linkcode pictureTable} lays pictures out. */
export interface TableOptions {
  /** A label over each column (none: no labels' line). */
  readonly labels?: readonly string[];
  /** Each picture drawn this many times larger (a whole number; default 1). */
  readonly zoom?: number;
  /** Grey pixels between columns and between rows (default 2). */
  readonly gap?: number;
  /** Columns come in groups of this many (e.g. source, translation, target); 0: no groups. */
  readonly groupSize?: number;
  /** Grey pixels between groups of columns (default 12). */
  readonly groupGap?: number;
}

/** The grey between pictures and behind the labels. */
export const TABLE_BACKGROUND = 0.82;

/**
 * Lays pictures out as a table: row r, column c is `cells[r][c]`, zoomed; a row shorter than the
 * longest leaves its last cells grey. Every picture must have the first one's size.
 * @param cells the pictures by row
 * @param options labels, zoom, gaps and groups of columns
 * @returns the table as one picture
 */
export function pictureTable(
  cells: readonly (readonly Picture[])[],
  { labels, zoom = 1, gap = 2, groupSize = 0, groupGap = 12 }: TableOptions = {},
): Picture {
  const first = cells.find((r) => r.length)?.[0];
  if (!first) throw new Error("pictureTable: no pictures");
  const [cw, ch] = [first.width * zoom, first.height * zoom];
  const columns = Math.max(labels?.length ?? 0, ...cells.map((r) => r.length));
  // Each column's left edge: `gap` between columns, `groupGap` between groups.
  const lefts: number[] = [];
  for (let c = 0, x = 0; c < columns; c++) {
    lefts.push(x);
    x += cw + (groupSize > 0 && (c + 1) % groupSize === 0 ? groupGap : gap);
  }
  const width = columns ? lefts[columns - 1] + cw : 0;
  // Labels at twice the font's size where the longest fits its column, else at its size.
  const longest = Math.max(0, ...(labels ?? []).map((l) => textWidth(l, 1)));
  const scale = longest * 2 <= cw ? 2 : 1;
  const header = labels ? GLYPH_HEIGHT * scale + 2 * gap + 4 : 0;
  const height = header + cells.length * ch + Math.max(0, cells.length - 1) * gap;
  const rgb = new Float32Array(width * height * 3).fill(TABLE_BACKGROUND);
  labels?.forEach((label, c) => {
    const x = lefts[c] + Math.max(0, Math.floor((cw - textWidth(label, scale)) / 2));
    drawText(rgb, width, height, label, x, gap + 2, scale, lefts[c] + cw - x);
  });
  cells.forEach((row, r) => {
    const top = header + r * (ch + gap);
    row.forEach((p, c) => {
      if (p.width !== first.width || p.height !== first.height) {
        throw new Error(
          `pictureTable: picture (${r}, ${c}) is ${p.width}x${p.height}, not ` +
            `${first.width}x${first.height}`,
        );
      }
      for (let y = 0; y < ch; y++) {
        const src = Math.floor(y / zoom) * p.width;
        const dst = (top + y) * width + lefts[c];
        for (let x = 0; x < cw; x++) {
          const s = (src + Math.floor(x / zoom)) * 3;
          rgb.set(p.rgb.subarray(s, s + 3), (dst + x) * 3);
        }
      }
    });
  });
  return { width, height, rgb };
}

/**
 * The pictures of a batch of images.
 * @param batch `[N, H, W, 3]` in [-1, 1] (as the model takes and gives them)
 * @returns N pictures in [0, 1]
 */
export async function picturesOf(batch: tf.Tensor4D): Promise<Picture[]> {
  const [n, height, width] = batch.shape;
  const values = await batch.data();
  const size = height * width * 3;
  return Array.from({ length: n }, (_, i) => ({
    width,
    height,
    rgb: Float32Array.from(values.subarray(i * size, (i + 1) * size), (v) => (v + 1) / 2),
  }));
}

/**
 * Writes a picture as a PNG (lossless, compressed hard: these pictures are kept in the
 * repository), atomically (a temporary file, then a rename).
 * @param path the file
 * @param picture the picture (values clipped to [0, 1])
 */
export async function writePicture(path: string, picture: Picture): Promise<void> {
  const bytes = Uint8Array.from(
    picture.rgb,
    (v) => Math.round(Math.min(1, Math.max(0, v)) * 255),
  );
  const png = await sharp(bytes, {
    raw: { width: picture.width, height: picture.height, channels: 3 },
  }).png({ compressionLevel: 9, adaptiveFiltering: true }).toBuffer();
  await writeAtomically(
    path,
    new Uint8Array(png.buffer, png.byteOffset, png.byteLength),
    "a picture",
  );
}

/** One direction's generator, loaded, translating batches into pictures. */
export interface Translator {
  /** The side of the images it was trained at. */
  readonly size: number;
  /** The iteration its file was saved at (as the file records it). */
  readonly step: string;
  /**
   * Translates a batch, in chunks of 16.
   * @param batch `[N, S, S, 3]` in [-1, 1] (any S a light model takes; a full one takes `size`)
   * @returns the N translations
   */
  readonly translate: (batch: tf.Tensor4D) => Promise<Picture[]>;
  /** Frees its weights. */
  readonly dispose: () => void;
}

/**
 * Loads one direction's generator of a checkpoint or generator file (the moving average where it
 * has one, unless `use_ema` is false) to translate batches with.
 * @param path the checkpoint or generator file
 * @param settings `use_ema`, and the model settings a checkpoint lacks
 * @param direction which generator
 * @returns the translator (call its `dispose` when done)
 * @throws {WeightFileError} when the file holds no generator of that direction
 */
export async function loadTranslator(
  path: string,
  settings: GeneratorSettings,
  direction: Direction,
): Promise<Translator> {
  const model = await loadGenerators(path, settings);
  const host = model.generators[direction];
  if (!host) throw new WeightFileError(`${path} holds no ${direction} generator`);
  const params = fromHost<GeneratorParams>(host);
  const size = model.config.imgSize!;
  const translate = async (batch: tf.Tensor4D) => {
    const G = generator({ ...model.config, imgSize: batch.shape[1] });
    const pictures: Picture[] = [];
    for (let i = 0; i < batch.shape[0]; i += 16) {
      const image = tf.tidy(() =>
        G.apply(params, batch.slice(i, Math.min(16, batch.shape[0] - i))).image
      );
      pictures.push(...await picturesOf(image));
      image.dispose();
    }
    return pictures;
  };
  return { size, step: model.step, translate, dispose: () => dispose(params) };
}
