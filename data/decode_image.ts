/**
 * One image file to model input: decoded (JPEG, PNG, TIFF, WebP, BMP, PPM, PGM: `image_files.ts`),
 * composited on white and augmented as the reference does for training (random horizontal flip,
 * resize to about S*286/256, random crop S) or resized to S for testing, then scaled to [-1, 1]
 * in a batch.
 *
 * @example
 * ```ts
 * import { resizeMargin } from "./decode_image.ts";
 * console.log(resizeMargin(256), resizeMargin(64)); // 286 72
 * ```
 *
 * @module
 */
import { flow } from "fp-ts/function";
import { MAX_PIXELS } from "./dataset.ts";
import { openImage } from "./image_files.ts";
import { type Augmentation, resizeMargin } from "./pictures.ts";

// The transform's pure parts live with the in-memory pictures, which a browser page draws too.
export { type Augmentation, resizeMargin, toBatch } from "./pictures.ts";

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
