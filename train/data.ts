/**
 * Training and test data: the reference's folder layout `<root>/{trainA,trainB,testA,testB}`, or
 * the built-in emoji task `emoji:<from>2<to>` (styles google, twitter, apple, facebook from the
 * npm packages `emoji-datasource-<style>`, fetched by Deno on first use). Images (JPEG, PNG, TIFF,
 * WebP, BMP, PPM, PGM: `image_files.ts`) are decoded, composited on white, and augmented as the reference does: random horizontal flip, resize
 * to about S*286/256, random crop S, scale to [-1, 1]. A and B are drawn independently, each in
 * its own order, reshuffled every pass; one seeded generator makes it all reproducible.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import * as E from "fp-ts/Either";
import { flow, pipe } from "fp-ts/function";
import { type Decoded, orThrow } from "../weights/decoded.ts";
import { imageSize, openImage } from "./image_files.ts";
import type { Rng } from "./random.ts";

/** The extensions the reference accepts, and WebP. */
export const IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];
/** Images with more pixels than this are refused by name (a decompression-bomb guard). */
export const MAX_PIXELS = 50_000_000;
/** The emoji styles of the built-in dataset. */
export const EMOJI_STYLES = ["google", "twitter", "apple", "facebook"] as const;
const EMOJI_VERSION = "16.0.0";

/** A bad dataset (missing or empty folder, unknown style); the message names it. */
export class DatasetError extends Error {
  /**
   * Makes the error.
   * @param message what is wrong, naming the folder or dataset
   */
  constructor(message: string) {
    super(message);
    this.name = "DatasetError";
  }
}

/** The four file lists of a dataset. */
export interface DatasetFiles {
  /** A name for the run folder (e.g. `emoji_google2twitter`). */
  readonly name: string;
  /** Training images of A. */
  readonly trainA: readonly string[];
  /** Training images of B. */
  readonly trainB: readonly string[];
  /** Test images of A. */
  readonly testA: readonly string[];
  /** Test images of B. */
  readonly testB: readonly string[];
  /** Whether testA[i] and testB[i] show the same thing (held-out ground-truth pairs). */
  readonly alignedTest: boolean;
}

/** Where the loader reports files it skips. */
export type Warn = (line: string) => void;

/**
 * The image files of a folder (by their extensions), sorted.
 * @param dir the folder
 * @returns `Right` with their paths, or `Left` with a {@linkcode DatasetError} naming the folder
 *   when it is missing or holds no images
 */
export function imagesIn(dir: string): Decoded<string[], DatasetError> {
  return pipe(
    E.tryCatch(
      () => [...Deno.readDirSync(dir)],
      () => new DatasetError(`dataset folder ${dir} does not exist or cannot be read`),
    ),
    E.map((entries) =>
      entries
        .filter((e) =>
          e.isFile && IMAGE_EXTENSIONS.includes(e.name.split(".").pop()!.toLowerCase())
        )
        .map((e) => `${dir}/${e.name}`)
        .sort()
    ),
    E.filterOrElse(
      (files) => files.length > 0,
      () =>
        new DatasetError(`dataset folder ${dir} holds no images (${IMAGE_EXTENSIONS.join(", ")})`),
    ),
  );
}

/**
 * The image files of a folder; {@linkcode imagesIn}, throwing.
 * @param dir the folder
 * @returns their paths
 * @throws {DatasetError} naming the folder when it is missing or holds no images
 */
export function listImages(dir: string): string[] {
  return orThrow(imagesIn(dir));
}

/** A file left out of a dataset, and why. */
export interface SkippedFile {
  /** The file. */
  readonly file: string;
  /** Why, in a few words. */
  readonly reason: string;
}

/**
 * Checks every file's header (cheap: nothing is decoded): files that are not readable images,
 * or far too large to decode safely, are skipped with a warning naming them.
 * @param files the candidates
 * @param warn where warnings go
 * @returns the usable files and the skipped ones
 */
export async function checkImages(
  files: readonly string[],
  warn: Warn,
): Promise<{ ok: string[]; skipped: SkippedFile[] }> {
  const ok: string[] = [];
  const skipped: SkippedFile[] = [];
  for (const f of files) {
    let reason: string | undefined;
    try {
      const { width, height } = await imageSize(await Deno.readFile(f)); // header only
      if (width * height > MAX_PIXELS) {
        reason = `${width}x${height} is too large to decode safely (limit ${MAX_PIXELS} pixels)`;
      } else if (!width || !height) reason = "not an image";
    } catch (e) {
      reason = `not a readable image (${(e as Error).message})`;
    }
    if (reason === undefined) ok.push(f);
    else {
      warn(`skipping ${f}: ${reason}`);
      skipped.push({ file: f, reason });
    }
  }
  return { ok, skipped };
}

// The emoji package's folder, fetched through Deno's npm support on first use.
async function emojiFolder(
  style: string,
): Promise<
  Decoded<{ dir: string; entries: { image: string; [k: string]: unknown }[] }, DatasetError>
> {
  const spec = `npm:emoji-datasource-${style}@${EMOJI_VERSION}/emoji.json`;
  try {
    const entries = (await import(spec, { with: { type: "json" } })).default;
    return E.right({ dir: new URL(".", import.meta.resolve(spec)).pathname, entries });
  } catch (e) {
    return E.left(
      new DatasetError(
        `emoji:${style}: cannot load the npm package emoji-datasource-${style} (${
          (e as Error).message
        })`,
      ),
    );
  }
}

/**
 * The run-folder name of a dataset: `emoji_<from>2<to>`, or the folder's own name.
 * @param spec the `--dataset` value
 * @returns the name
 */
export function datasetName(spec: string): string {
  if (spec.startsWith("emoji:")) return `emoji_${spec.slice("emoji:".length)}`;
  const root = spec.replace(/\/+$/, "");
  return root.split("/").pop() || root;
}

/** A dataset's files, and those left out of it. */
export interface OpenedDataset extends DatasetFiles {
  /** Files skipped when the dataset was opened (their headers are not readable images). */
  readonly skipped: readonly SkippedFile[];
}

/**
 * Resolves `--dataset`: `emoji:<from>2<to>`, or a folder with trainA, trainB, testA, testB whose
 * every file's header is checked (skipped files are reported to `warn` and listed).
 * @param spec the flag's value
 * @param warn where skipped files are reported
 * @returns `Right` with the file lists, or `Left` with a {@linkcode DatasetError} naming the folder
 *   or dataset that is missing or empty
 */
export async function decodeDataset(
  spec: string,
  warn: Warn = console.warn,
): Promise<Decoded<OpenedDataset, DatasetError>> {
  if (spec.startsWith("emoji:")) {
    const m = /^emoji:([a-z]+)2([a-z]+)$/.exec(spec);
    const styles = EMOJI_STYLES as readonly string[];
    if (!m || !styles.includes(m[1]) || !styles.includes(m[2]) || m[1] === m[2]) {
      return E.left(
        new DatasetError(
          `--dataset ${spec}: expected emoji:<from>2<to> with two of ${EMOJI_STYLES.join(", ")}`,
        ),
      );
    }
    const from = await emojiFolder(m[1]);
    if (E.isLeft(from)) return from;
    const to = await emojiFolder(m[2]);
    if (E.isLeft(to)) return to;
    // Code points drawn in both styles, split by a hash of the code point: about 10% held out,
    // the same in every run and for every pair of styles.
    const both = from.right.entries
      .filter((e) => e[`has_img_${m[1]}`] && e[`has_img_${m[2]}`])
      .map((e) => e.image)
      .sort();
    const held = (name: string) =>
      [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261) >>> 0;
    const test = both.filter((n) => held(n) % 10 === 0);
    const train = both.filter((n) => held(n) % 10 !== 0);
    const path = (f: { dir: string }, style: string) => (n: string) =>
      `${f.dir}img/${style}/64/${n}`;
    return E.right({
      name: datasetName(spec),
      trainA: train.map(path(from.right, m[1])),
      trainB: train.map(path(to.right, m[2])),
      testA: test.map(path(from.right, m[1])),
      testB: test.map(path(to.right, m[2])),
      alignedTest: true,
      skipped: [],
    });
  }
  const root = spec.replace(/\/+$/, "");
  const lists: Record<string, string[]> = {};
  const skipped: SkippedFile[] = [];
  for (const part of ["trainA", "trainB", "testA", "testB"]) {
    const files = imagesIn(`${root}/${part}`);
    if (E.isLeft(files)) return files;
    const checked = await checkImages(files.right, warn);
    if (!checked.ok.length) {
      return E.left(new DatasetError(`dataset folder ${root}/${part} holds no readable images`));
    }
    lists[part] = checked.ok;
    skipped.push(...checked.skipped);
  }
  if (skipped.length) warn(`${skipped.length} file(s) skipped in ${root}`);
  return E.right({
    name: datasetName(spec),
    trainA: lists.trainA,
    trainB: lists.trainB,
    testA: lists.testA,
    testB: lists.testB,
    alignedTest: false,
    skipped,
  });
}

/**
 * Resolves `--dataset`; {@linkcode decodeDataset}, throwing.
 * @param spec the flag's value
 * @param warn where skipped files are reported
 * @returns the file lists
 * @throws {DatasetError} naming the folder or dataset that is missing or empty
 */
export async function openDataset(spec: string, warn: Warn = console.warn): Promise<OpenedDataset> {
  return orThrow(await decodeDataset(spec, warn));
}

/** How one training image is augmented; drawn from the generator so that runs replay exactly. */
export interface Augmentation {
  /** Mirror left-right. */
  readonly flip: boolean;
  /** Crop offset (left). */
  readonly left: number;
  /** Crop offset (top). */
  readonly top: number;
}

/**
 * The side the reference resizes to before its random crop, S+30 at S=256, scaled with S.
 * @param size S
 * @returns the resize side
 */
export function resizeMargin(size: number): number {
  return Math.round((size * 286) / 256);
}

// The steps of decodeImage's transform, each a function of a sharp pipeline (sharp crops after
// resizing when extract() follows resize()).
type Pipeline = ReturnType<typeof openImage>;
const onWhite = (img: Pipeline) =>
  img.flatten({ background: "#ffffff" }).toColourspace("srgb") as Pipeline;
const resizeTo = (side: number) => (img: Pipeline) => img.resize(side, side, { fit: "fill" });
const cropAt = (left: number, top: number, side: number) => (img: Pipeline) =>
  img.extract({ left, top, width: side, height: side });
const mirror = (on: boolean) => (img: Pipeline) => (on ? img.flop() : img);

/**
 * Decodes one image as RGB bytes, composited on white, resized (and for training cropped and
 * flipped).
 * @param file the image
 * @param size S
 * @param aug the augmentation, or undefined for the test transform (resize to S)
 * @returns `S * S * 3` bytes
 */
export async function decodeImage(
  file: string,
  size: number,
  aug?: Augmentation,
): Promise<Uint8Array> {
  const m = resizeMargin(size);
  // The reference's transforms as one flow: on white, then (training) resize to the margin, crop
  // and maybe mirror, or (test) resize to S.
  const transform = flow(
    onWhite,
    aug ? flow(resizeTo(m), cropAt(aug.left, aug.top, size), mirror(aug.flip)) : resizeTo(size),
  );
  const img = transform(openImage(await Deno.readFile(file), MAX_PIXELS));
  const data = await img.removeAlpha().raw().toBuffer();
  if (data.length !== size * size * 3) {
    throw new Error(`decoded ${data.length} bytes, expected ${size * size * 3}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

/**
 * Makes a `[N, S, S, 3]` tensor in [-1, 1] from decoded images.
 * @param images RGB bytes, `S * S * 3` each
 * @param size S
 * @returns the batch
 */
export function toBatch(images: readonly Uint8Array[], size: number): tf.Tensor4D {
  const data = new Float32Array(images.length * size * size * 3);
  images.forEach((img, i) => {
    for (let j = 0; j < img.length; j++) data[i * img.length + j] = img[j] / 127.5 - 1;
  });
  return tf.tensor4d(data, [images.length, size, size, 3]);
}

/** A domain's position in its shuffled order; part of a checkpoint. */
export interface StreamState {
  /** The current pass's order (indices into the file list). */
  order: number[];
  /** The next position in `order`. */
  at: number;
}

/**
 * Draws training batches from one domain: a shuffled order, reshuffled each pass; files that fail
 * to decode are skipped with a warning naming them (and dropped for the rest of the run).
 */
export class DomainStream {
  /** The files still in use. */
  readonly files: string[];
  /** Files skipped so far because they failed to decode. */
  skipped = 0;
  #bad = new Set<number>();

  /**
   * @param files the domain's training images
   * @param size S
   * @param rng the run's generator (shared, so that its state is the whole story)
   * @param state where a resumed run left off, or undefined to start a pass
   * @param warn where skipped files are reported
   */
  constructor(
    files: readonly string[],
    readonly size: number,
    readonly rng: Rng,
    public state: StreamState | undefined,
    readonly warn: Warn = console.warn,
  ) {
    this.files = [...files];
  }

  /**
   * Decodes the next `n` images (augmented).
   * @param n batch size
   * @returns `[n, S, S, 3]` in [-1, 1]
   */
  async next(n: number): Promise<tf.Tensor4D> {
    const images: Uint8Array[] = [];
    while (images.length < n) {
      if (this.#bad.size >= this.files.length) {
        throw new DatasetError("every image of a domain failed to decode");
      }
      if (!this.state || this.state.at >= this.state.order.length) {
        this.state = { order: this.rng.shuffle(this.files.map((_, i) => i)), at: 0 };
      }
      const index = this.state.order[this.state.at++];
      if (this.#bad.has(index)) continue;
      const m = resizeMargin(this.size);
      const aug = {
        flip: this.rng.next() < 0.5,
        left: this.rng.int(m - this.size + 1),
        top: this.rng.int(m - this.size + 1),
      };
      try {
        images.push(await decodeImage(this.files[index], this.size, aug));
      } catch (e) {
        this.#bad.add(index);
        this.skipped++;
        this.warn(`skipping ${this.files[index]}: cannot decode (${(e as Error).message})`);
      }
    }
    return toBatch(images, this.size);
  }
}

/**
 * Decodes test images (resized to S, no augmentation); unreadable ones are skipped by name.
 * @param files the images
 * @param size S
 * @param warn where skipped files are reported
 * @returns the batch and the files it holds
 */
export async function loadTestImages(
  files: readonly string[],
  size: number,
  warn: Warn = console.warn,
): Promise<{ batch: tf.Tensor4D; files: string[] }> {
  const images: Uint8Array[] = [];
  const used: string[] = [];
  for (const f of files) {
    try {
      images.push(await decodeImage(f, size));
      used.push(f);
    } catch (e) {
      warn(`skipping ${f}: cannot decode (${(e as Error).message})`);
    }
  }
  if (!images.length) {
    throw new DatasetError(`none of ${files.length} test image(s) could be decoded`);
  }
  return { batch: toBatch(images, size), files: used };
}
