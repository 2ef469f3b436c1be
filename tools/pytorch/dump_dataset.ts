/**
 * Writes a dataset's images as raw bytes for the PyTorch recipe search (`recipe_search.py`), so
 * that it trains on exactly what `deno task train` decodes: training images composited on white
 * and resized to the reference's pre-crop side (`resizeMargin(S)`; the crop and flip are drawn in
 * Python), test images resized to S.
 *
 *     deno run -A tools/pytorch/dump_dataset.ts emoji:google2twitter 64 out/
 *
 * writes `trainA.u8 trainB.u8 testA.u8 testB.u8` (N x side x side x 3, row-major RGB), the
 * training images at S too (`trainA64.u8 trainB64.u8`, for the judge), and
 * `meta.json` (the counts, the sides, and whether testA[i] and testB[i] are pairs).
 *
 * @module
 */
import { openDataset } from "../../data/dataset.ts";
import { decodeImage, resizeMargin } from "../../data/decode_image.ts";

const [spec, sizeArg, out] = Deno.args;
if (!spec || !sizeArg || !out) {
  console.error("usage: dump_dataset.ts DATASET SIZE OUT_DIR");
  Deno.exit(2);
}
const size = Number(sizeArg);
const ds = await openDataset(spec);
const margin = resizeMargin(size);
await Deno.mkdir(out, { recursive: true });
const meta: Record<string, unknown> = { dataset: spec, size, margin, paired: ds.alignedTest };
// trainA64/trainB64: the training images at S, as `deno task eval` trains its judge on them.
const splits = [
  ["trainA", ds.trainA, margin],
  ["trainB", ds.trainB, margin],
  ["testA", ds.testA, size],
  ["testB", ds.testB, size],
  ["trainA64", ds.trainA, size],
  ["trainB64", ds.trainB, size],
] as const;
for (const [split, files, side] of splits) {
  const bytes = new Uint8Array(files.length * side * side * 3);
  for (const [i, f] of files.entries()) {
    // The test transform at the margin's side is the training transform before its crop.
    const img = await decodeImage(f, side);
    bytes.set(img, i * side * side * 3);
  }
  await Deno.writeFile(`${out}/${split}.u8`, bytes);
  meta[split] = { count: files.length, side };
  console.log(`${split}: ${files.length} images at ${side}px`);
}
await Deno.writeTextFile(`${out}/meta.json`, JSON.stringify(meta, null, 2));
