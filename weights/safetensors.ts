/**
 * The safetensors weight format: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw little-endian data. Reading executes
 * nothing and checks everything: the header's length and JSON, every dtype, shape and byte range
 * (in bounds, sized to the shape, not overlapping), and NaN or infinite values, with errors that
 * name the file and the tensor.
 *
 * @example
 * ```ts
 * import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * console.log(decodeSafetensors(bytes).tensors.w.data); // Float32Array [1, 2]
 * ```
 *
 * @module
 */

import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import { type Decoded, orThrow } from "../decoded/decoded.ts";
import { writeAtomically } from "../files/write_file.ts";

export { writeAtomically, WriteError } from "../files/write_file.ts";

/** Data types this toolkit reads and writes. */
export type SafetensorsDtype = "F16" | "F32" | "F64" | "I32" | "I64";

/**
 * One tensor on the host: dtype, shape and data (F32 and F64 as floats, F16 as its raw 16-bit
 * patterns, see `half.ts`, I32 and I64 as ints).
 */
export interface HostTensor {
  /** Stored data type. */
  readonly dtype: SafetensorsDtype;
  /** Shape. */
  readonly shape: readonly number[];
  /** Values in row-major order. */
  readonly data: Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array;
}

/** A decoded file: tensors by name, and the free-form string metadata. */
export interface SafetensorsFile {
  /** Tensors by name. */
  readonly tensors: Record<string, HostTensor>;
  /** The `__metadata__` entry (strings only). */
  readonly metadata: Record<string, string>;
}

const BYTES: Record<SafetensorsDtype, number> = { F16: 2, F32: 4, F64: 8, I32: 4, I64: 8 };
const MAX_HEADER = 100 * 1024 * 1024;

/** A file that is not valid safetensors, or does not fit the model; names file and tensor. */
export class WeightFileError extends Error {
  /**
   * Makes the error.
   * @param message what is wrong, naming the file and tensor
   */
  constructor(message: string) {
    super(message);
    this.name = "WeightFileError";
  }
}

/**
 * Encodes tensors (sorted by name) and metadata as safetensors bytes.
 * @param tensors tensors by name
 * @param metadata optional string metadata
 * @returns the file's bytes
 */
export function encodeSafetensors(
  tensors: Record<string, HostTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) {
      throw new WeightFileError(
        `tensor "${name}": shape [${t.shape}] does not hold ${t.data.length} values`,
      );
    }
    const bytes = size * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8; // keeps the data 8-byte aligned
  if (padded !== json.length) {
    json = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(padded - json.length));
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const name of names) {
    const t = tensors[name];
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(bytes, at); // typed arrays are little-endian on every platform Deno runs on
    at += bytes.length;
  }
  return out;
}

type Header = Record<string, unknown>;
type Checked<A> = Decoded<A, WeightFileError>;

// The header: its length in bounds, then a JSON object; and where the data begins.
function headerOf(bytes: Uint8Array, fail: (msg: string) => WeightFileError): Checked<{
  header: Header;
  dataStart: number;
}> {
  if (bytes.length < 8) {
    return E.left(fail(`too short for a safetensors file (${bytes.length} bytes)`));
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(Math.min(MAX_HEADER, bytes.length - 8))) {
    return E.left(fail(`header length ${headerLen} exceeds the file (${bytes.length} bytes)`));
  }
  const dataStart = 8 + Number(headerLen);
  return pipe(
    E.tryCatch(
      () =>
        JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart))),
      (e) => fail(`header is not valid JSON (${(e as Error).message})`),
    ),
    E.filterOrElse(
      (h): h is Header => h !== null && typeof h === "object" && !Array.isArray(h),
      () => fail("header is not a JSON object"),
    ),
    E.map((header) => ({ header, dataStart })),
  );
}

// The `__metadata__` entry: strings only.
function metadataOf(header: Header, fail: (msg: string) => WeightFileError): Checked<
  Record<string, string>
> {
  const entries = Object.entries((header.__metadata__ ?? {}) as Record<string, unknown>);
  const bad = entries.find(([, v]) => typeof v !== "string");
  return bad ? E.left(fail(`metadata "${bad[0]}" is not a string`)) : E.right(
    Object.fromEntries(entries) as Record<string, string>,
  );
}

// One tensor's entry: dtype, shape and byte range checked against the data, then its values.
function tensorOf(
  name: string,
  entry: unknown,
  data: Uint8Array,
  allowNonFinite: boolean,
  fail: (msg: string) => WeightFileError,
): Checked<{ name: string; begin: number; end: number; tensor: HostTensor }> {
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const dtype = e?.dtype as SafetensorsDtype;
  if (!(typeof dtype === "string" && dtype in BYTES)) {
    return E.left(
      fail(
        `tensor "${name}": unsupported dtype ${JSON.stringify(e?.dtype)} (F16, F32, F64, I32, I64)`,
      ),
    );
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    return E.left(fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of sizes`));
  }
  const offsets = e.data_offsets;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
  ) {
    return E.left(
      fail(`tensor "${name}": data_offsets ${JSON.stringify(offsets)} are not a [begin, end] pair`),
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > data.length) {
    return E.left(
      fail(`tensor "${name}": data ends at ${end}, past the data (${data.length} bytes)`),
    );
  }
  const size = (shape as number[]).reduce((a, b) => a * b, 1);
  if (end - begin !== size * BYTES[dtype]) {
    return E.left(
      fail(
        `tensor "${name}": shape [${shape}] needs ${size * BYTES[dtype]} bytes, data has ${
          end - begin
        }`,
      ),
    );
  }
  const raw = data.slice(begin, end); // a copy, aligned
  const values = dtype === "F32"
    ? new Float32Array(raw.buffer)
    : dtype === "F64"
    ? new Float64Array(raw.buffer)
    : dtype === "F16"
    ? new Uint16Array(raw.buffer)
    : dtype === "I32"
    ? new Int32Array(raw.buffer)
    : new BigInt64Array(raw.buffer);
  if (!allowNonFinite && dtype !== "I32" && dtype !== "I64") {
    // F16: all exponent bits set is an infinity or a NaN
    const bad = dtype === "F16"
      ? (values as Uint16Array).findIndex((h) => (h & 0x7c00) === 0x7c00)
      : (values as Float32Array).findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      const v = dtype === "F16" ? `0x${(values[bad] as number).toString(16)} (F16)` : values[bad];
      return E.left(fail(`tensor "${name}": value ${v} at index ${bad} is not finite`));
    }
  }
  return E.right({ name, begin, end, tensor: { dtype, shape: shape as number[], data: values } });
}

/**
 * Decodes and validates safetensors bytes: the header, then every tensor, then that no two
 * tensors' bytes overlap.
 * @param bytes the file's bytes
 * @param source a name for error messages (the file path)
 * @param options `allowNonFinite` to accept NaN and infinities
 * @returns `Right` with tensors and metadata, or `Left` with a {@linkcode WeightFileError}
 *   naming the source and tensor
 */
export function safetensorsFromBytes(
  bytes: Uint8Array,
  source = "<bytes>",
  { allowNonFinite = false }: { allowNonFinite?: boolean } = {},
): Decoded<SafetensorsFile, WeightFileError> {
  const fail = (msg: string) => new WeightFileError(`${source}: ${msg}`);
  type Entry = { name: string; begin: number; end: number; tensor: HostTensor };
  const noOverlap = (entries: readonly Entry[]): Checked<readonly Entry[]> => {
    const ranges = [...entries].sort((a, b) => a.begin - b.begin);
    const i = ranges.findIndex((r, k) => k > 0 && r.begin < ranges[k - 1].end);
    return i < 0
      ? E.right(entries)
      : E.left(fail(`tensors "${ranges[i - 1].name}" and "${ranges[i].name}" overlap`));
  };
  return pipe(
    headerOf(bytes, fail),
    E.chain(({ header, dataStart }) =>
      pipe(
        metadataOf(header, fail),
        E.chain((metadata) =>
          pipe(
            Object.entries(header).filter(([name]) => name !== "__metadata__"),
            E.traverseArray(([name, entry]) =>
              tensorOf(name, entry, bytes.subarray(dataStart), allowNonFinite, fail)
            ),
            E.chain(noOverlap),
            E.map((entries): SafetensorsFile => ({
              metadata,
              tensors: Object.fromEntries(entries.map((e) => [e.name, e.tensor])),
            })),
          )
        ),
      )
    ),
  );
}

/**
 * Decodes and validates safetensors bytes; {@linkcode safetensorsFromBytes}, throwing.
 * @param bytes the file's bytes
 * @param source a name for error messages (the file path)
 * @param options `allowNonFinite` to accept NaN and infinities
 * @returns tensors and metadata
 * @throws {WeightFileError} naming the source and tensor when anything does not add up
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source = "<bytes>",
  options: { allowNonFinite?: boolean } = {},
): SafetensorsFile {
  return orThrow(safetensorsFromBytes(bytes, source, options));
}

/**
 * Reads and validates a safetensors file.
 * @param path the file
 * @returns tensors and metadata
 * @throws {WeightFileError} naming the file and tensor
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new WeightFileError(`${path}: cannot read (${(e as Error).message})`);
  }
  return decodeSafetensors(bytes, path);
}

/**
 * Writes a safetensors file atomically: to a temporary file beside it, then renamed over it, so
 * that a crash mid-write leaves the previous file intact; a failure of the file system is a
 * `WriteError` naming the file, what was being written and the cause (the temporary file removed).
 * @param path the file
 * @param tensors tensors by name
 * @param metadata optional string metadata
 * @param what what the file is, for the message of a failed write
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, HostTensor>,
  metadata: Record<string, string> = {},
  what = "a safetensors file",
): Promise<void> {
  await writeAtomically(path, encodeSafetensors(tensors, metadata), what);
}
