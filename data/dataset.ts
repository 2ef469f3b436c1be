/**
 * Where data comes from: the reference's folder layout `<root>/{trainA,trainB,testA,testB}`, or
 * the built-in emoji task `emoji:<from>2<to>` (styles google, twitter, apple, facebook from the
 * npm packages `emoji-datasource-<style>`, fetched by Deno on first use, split by code point about
 * 90/10 with aligned test pairs). `--dataset` is decoded into the four file lists; a folder's
 * every file header is checked on opening, so that a run does not meet a broken file hours in.
 *
 * @example
 * ```ts
 * import { datasetName } from "./dataset.ts";
 * console.log(datasetName("emoji:google2twitter"), datasetName("data/selfie2anime/"));
 * // "emoji_google2twitter" "selfie2anime"
 * ```
 *
 * @module
 */
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import { type Decoded, orThrow } from "../decoded/decoded.ts";
import { imageSize } from "./image_files.ts";

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
