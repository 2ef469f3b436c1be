/**
 * Training pictures as the reference draws them, on pictures already decoded: a domain's shuffled
 * order (reshuffled every pass), a random horizontal flip and a random S x S crop of the picture
 * resized to about S*286/256, all drawn from the run's one seeded generator. Nothing here reads a
 * file or needs Deno, so a browser page draws exactly what Deno draws from the same pictures and
 * the same seed: `DomainStream` (files, decoded by sharp) and {@linkcode PictureStream} (pictures
 * in memory, e.g. decoded by a page's canvas) make the same draws in the same order.
 *
 * @example
 * ```ts
 * import { PictureStream, resizeMargin } from "./pictures.ts";
 * import { Rng } from "./random.ts";
 * const M = resizeMargin(16); // 18: pictures are stored at this side, then cropped to 16
 * const picture = { rgb: new Uint8Array(M * M * 3).fill(255), size: M };
 * const stream = new PictureStream([picture], 16, new Rng(0));
 * const batch = stream.next(2); // [2, 16, 16, 3] in [-1, 1]
 * console.log(batch.shape); // [2, 16, 16, 3]
 * batch.dispose();
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "./random.ts";

/**
 * The side the reference resizes to before its random crop, S+30 at S=256, scaled with S.
 * @param size S
 * @returns the resize side
 */
export function resizeMargin(size: number): number {
  return Math.round((size * 286) / 256);
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

/** A domain's position in its shuffled order; part of a checkpoint. */
export interface StreamState {
  /** The current pass's order (indices into the file list). */
  order: number[];
  /** The next position in `order`. */
  at: number;
}

/**
 * The next index of a domain's shuffled order (a new pass shuffled when the last one is done).
 * @param state where the order stands (undefined: no pass yet)
 * @param count how many pictures the domain has
 * @param rng the run's generator
 * @returns the order after this draw, and the index drawn
 */
export function nextInOrder(
  state: StreamState | undefined,
  count: number,
  rng: Rng,
): { state: StreamState; index: number } {
  const s = !state || state.at >= state.order.length
    ? { order: rng.shuffle(Array.from({ length: count }, (_, i) => i)), at: 0 }
    : state;
  const index = s.order[s.at++];
  return { state: s, index };
}

/**
 * Draws one picture's augmentation: the flip, then the crop's left and top offsets.
 * @param rng the run's generator
 * @param size S
 * @returns the augmentation
 */
export function drawAugmentation(rng: Rng, size: number): Augmentation {
  const m = resizeMargin(size);
  return {
    flip: rng.next() < 0.5,
    left: rng.int(m - size + 1),
    top: rng.int(m - size + 1),
  };
}

/** A decoded square picture: RGB bytes, row by row, composited on white. */
export interface Picture {
  /** `size * size * 3` bytes. */
  readonly rgb: Uint8Array;
  /** Its side. */
  readonly size: number;
}

/**
 * Mirrors (maybe) and crops a picture stored at the margin side, as the training transform does
 * after its resize: the mirror applies to the whole picture, then the crop is taken at
 * `(left, top)` (the order sharp applies them in `DomainStream`'s decoding).
 * @param picture RGB at side `resizeMargin(size)` (or larger)
 * @param size S
 * @param aug the crop offsets and the flip
 * @returns `S * S * 3` bytes
 */
export function cropPicture(picture: Picture, size: number, aug: Augmentation): Uint8Array {
  const { rgb, size: side } = picture;
  if (aug.left + size > side || aug.top + size > side) {
    throw new Error(`a ${side}-pixel picture has no ${size}-pixel crop at ${aug.left},${aug.top}`);
  }
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const sx = aug.flip ? side - 1 - (aug.left + x) : aug.left + x;
      const from = ((aug.top + y) * side + sx) * 3;
      const to = (y * size + x) * 3;
      out[to] = rgb[from];
      out[to + 1] = rgb[from + 1];
      out[to + 2] = rgb[from + 2];
    }
  }
  return out;
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

/**
 * Draws training batches of one domain from pictures in memory, stored at the margin side
 * (`resizeMargin(S)`): the same draws, in the same order, as `DomainStream` makes from files.
 */
export class PictureStream {
  /**
   * @param pictures the domain's pictures, each at side `resizeMargin(size)`
   * @param size S
   * @param rng the run's generator (shared by both domains, so that its state is the whole story)
   * @param state where an earlier stream left off, or undefined to start a pass
   * @throws when there are no pictures, or one is of another side
   */
  constructor(
    readonly pictures: readonly Picture[],
    readonly size: number,
    readonly rng: Rng,
    public state: StreamState | undefined = undefined,
  ) {
    if (!pictures.length) throw new Error("a domain needs at least one picture");
    const m = resizeMargin(size);
    const odd = pictures.findIndex((p) => p.size !== m || p.rgb.length !== m * m * 3);
    if (odd >= 0) {
      throw new Error(
        `picture ${odd + 1} is ${pictures[odd].size} pixels; training at ${size} ` +
          `reads pictures of ${m}`,
      );
    }
  }

  /**
   * The next `n` pictures, cropped and flipped.
   * @param n batch size
   * @returns `[n, S, S, 3]` in [-1, 1] (the caller owns it)
   */
  next(n: number): tf.Tensor4D {
    const images: Uint8Array[] = [];
    while (images.length < n) {
      const drawn = nextInOrder(this.state, this.pictures.length, this.rng);
      this.state = drawn.state;
      const aug = drawAugmentation(this.rng, this.size);
      images.push(cropPicture(this.pictures[drawn.index], this.size, aug));
    }
    return toBatch(images, this.size);
  }
}
