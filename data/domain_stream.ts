/**
 * Data as the training runner and the evaluation draw it: training batches of one domain in a
 * shuffled order, reshuffled every pass, augmented with draws from the run's one seeded generator
 * (so that its state and the stream's position replay a run exactly, and a checkpoint stores
 * both); test images resized without augmentation. Files that fail to decode are skipped by name.
 *
 * @example
 * ```ts ignore
 * import { DomainStream } from "./domain_stream.ts";
 * import { Rng } from "./random.ts";
 * const stream = new DomainStream(["a.png", "b.png"], 64, new Rng(0), undefined);
 * const batch = await stream.next(2); // [2, 64, 64, 3] in [-1, 1]
 * ```
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { DatasetError, type Warn } from "./dataset.ts";
import { decodeImage } from "./decode_image.ts";
import { drawAugmentation, nextInOrder, type StreamState, toBatch } from "./pictures.ts";
import type { Rng } from "./random.ts";

export type { StreamState } from "./pictures.ts";

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
      const drawn = nextInOrder(this.state, this.files.length, this.rng);
      this.state = drawn.state;
      const index = drawn.index;
      if (this.#bad.has(index)) continue;
      const aug = drawAugmentation(this.rng, this.size);
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
