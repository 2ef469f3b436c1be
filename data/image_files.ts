/**
 * Image files in, a sharp pipeline out: JPEG, PNG, TIFF and WebP are sharp's own; BMP is decoded
 * with `bmp-ts` and PPM / PGM (Netpbm, binary or plain) by the small reader here, since sharp's
 * prebuilt libvips reads neither. The format is told by the file's first bytes, not its name.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import sharp from "sharp";
import * as bmp from "bmp-ts";

/** An image's size, from its header. */
export interface ImageSize {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
}

const isBmp = (b: Uint8Array) => b.length > 26 && b[0] === 0x42 && b[1] === 0x4d; // "BM"
const isPnm = (b: Uint8Array) =>
  b.length > 2 && b[0] === 0x50 && "2356".includes(String.fromCharCode(b[1]));

// A Netpbm header: magic, width, height and (but for bitmaps) the largest value, separated by
// white space, with comments from '#' to the end of a line.
function pnmHeader(
  b: Uint8Array,
): { kind: string; width: number; height: number; max: number; start: number } {
  const fields: string[] = [];
  let i = 0;
  while (fields.length < 4 && i < b.length) {
    const c = b[i];
    if (c === 0x23) { // '#'
      while (i < b.length && b[i] !== 0x0a) i++;
    } else if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) i++;
    else {
      let word = "";
      while (i < b.length && !(b[i] === 0x20 || (b[i] >= 0x09 && b[i] <= 0x0d) || b[i] === 0x23)) {
        word += String.fromCharCode(b[i++]);
      }
      fields.push(word);
    }
  }
  const [kind, width, height, max] = [
    fields[0],
    Number(fields[1]),
    Number(fields[2]),
    Number(fields[3]),
  ];
  if (![width, height, max].every((v) => Number.isInteger(v) && v > 0) || max > 65535) {
    throw new Error(`not a readable ${kind} image (header ${fields.join(" ")})`);
  }
  return { kind, width, height, max, start: i + 1 }; // one white-space byte ends the header
}

// Netpbm gray (P2, P5) or colour (P3, P6) samples as 8-bit RGB.
function readPnm(b: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const { kind, width, height, max, start } = pnmHeader(b);
  const channels = kind === "P2" || kind === "P5" ? 1 : 3;
  const n = width * height * channels;
  const samples = new Float64Array(n);
  if (kind === "P5" || kind === "P6") {
    const wide = max > 255;
    if (b.length < start + n * (wide ? 2 : 1)) throw new Error(`${kind} data is truncated`);
    for (let k = 0; k < n; k++) {
      samples[k] = wide ? (b[start + 2 * k] << 8) | b[start + 2 * k + 1] : b[start + k];
    }
  } else {
    const words = new TextDecoder().decode(b.subarray(start)).replace(/#[^\n]*/g, " ").trim()
      .split(/\s+/);
    if (words.length < n) throw new Error(`${kind} data is truncated`);
    for (let k = 0; k < n; k++) samples[k] = Number(words[k]);
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) {
      const v = samples[p * channels + (channels === 1 ? 0 : c)];
      rgb[3 * p + c] = Math.round((Math.min(Math.max(v, 0), max) * 255) / max);
    }
  }
  return { width, height, rgb };
}

// A BMP as RGBA; where every alpha byte is 0 (24-bit and most 32-bit files), it is opaque.
function readBmp(b: Uint8Array): { width: number; height: number; rgba: Uint8Array } {
  // bmp-ts reads through Node's Buffer methods.
  const image = bmp.decode(Buffer.from(b.buffer, b.byteOffset, b.length), { toRGBA: true });
  const rgba = new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.length);
  let alpha = false;
  for (let k = 3; k < rgba.length && !alpha; k += 4) alpha = rgba[k] !== 0;
  if (!alpha) { for (let k = 3; k < rgba.length; k += 4) rgba[k] = 255; }
  return { width: image.width, height: image.height, rgba };
}

// The size in a BMP or Netpbm header; undefined for the formats sharp reads itself.
function ownFormatSize(bytes: Uint8Array): ImageSize | undefined {
  if (isBmp(bytes)) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const core = view.getUint32(14, true) === 12; // the old OS/2 header has 16-bit sizes
    const width = core ? view.getUint16(18, true) : Math.abs(view.getInt32(18, true));
    const height = core ? view.getUint16(20, true) : Math.abs(view.getInt32(22, true));
    return { width, height };
  }
  if (isPnm(bytes)) {
    const { width, height } = pnmHeader(bytes);
    return { width, height };
  }
  return undefined;
}

/**
 * An image's size from its header alone (nothing is decoded).
 * @param bytes the file's bytes
 * @returns the size
 * @throws when the bytes are not an image this toolkit reads
 */
export async function imageSize(bytes: Uint8Array): Promise<ImageSize> {
  const own = ownFormatSize(bytes);
  if (own) return own;
  const { width = 0, height = 0 } = await sharp(bytes, { limitInputPixels: false }).metadata();
  return { width, height };
}

/**
 * A sharp pipeline reading the image, whatever its format.
 * @param bytes the file's bytes
 * @param maxPixels images with more pixels are refused (a decompression-bomb guard)
 * @returns the pipeline
 * @throws when the bytes are not an image this toolkit reads, or too large
 */
export function openImage(bytes: Uint8Array, maxPixels: number): sharp.Sharp {
  const own = ownFormatSize(bytes);
  if (!own) return sharp(bytes, { limitInputPixels: maxPixels });
  if (own.width * own.height > maxPixels) { // checked before decoding
    throw new Error(`${own.width}x${own.height} is too large (limit ${maxPixels} pixels)`);
  }
  const raw = isBmp(bytes)
    ? (({ width, height, rgba }) => ({ data: rgba, width, height, channels: 4 as const }))(
      readBmp(bytes),
    )
    : (({ width, height, rgb }) => ({ data: rgb, width, height, channels: 3 as const }))(
      readPnm(bytes),
    );
  const { data, ...size } = raw;
  return sharp(data, { raw: size });
}
