/**
 * The bridge to the reference PyTorch implementation's weights: for a generator or discriminator
 * configuration, every tensor's path in our records, its `state_dict` name in the reference, its
 * shape, and how the layouts differ (convs: our HWIO vs OIHW; linears: `[in, out]` vs
 * `[out, in]`; per-channel norm parameters: `[C]` vs `[1, C, 1, 1]`). The same table converts
 * both ways and is the shape template against which weight files are checked.
 *
 * @module
 */
import type { HostTensor } from "./safetensors.ts";
import { WeightFileError } from "./safetensors.ts";
import type { GeneratorConfig } from "../layers/generator.ts";
import { ADAPTIVE_NORMS } from "../layers/norm.ts";
import type { DiscriminatorConfig } from "../layers/discriminator.ts";

/** How a tensor's layout differs between us and the reference. */
export type Layout = "conv" | "linear" | "channel" | "same";

/** One tensor of a model. */
export interface NameEntry {
  /** Dotted path in our parameter (or, with `state`, spectral-norm state) record. */
  readonly ours: string;
  /** Name in the reference's `state_dict`. */
  readonly theirs: string;
  /** Our shape. */
  readonly shape: readonly number[];
  /** Layout difference. */
  readonly layout: Layout;
  /** Whether it is spectral-norm state (`weight_u`, `weight_v`) rather than a parameter. */
  readonly state?: boolean;
}

const conv = (ours: string, theirs: string, k: number, i: number, o: number): NameEntry => ({
  ours,
  theirs,
  shape: [k, k, i, o],
  layout: "conv",
});
const lin = (ours: string, theirs: string, i: number, o: number): NameEntry => ({
  ours,
  theirs,
  shape: [i, o],
  layout: "linear",
});
const chan = (ours: string, theirs: string, c: number): NameEntry => ({
  ours,
  theirs,
  shape: [c],
  layout: "channel",
});
const vec = (ours: string, theirs: string, n: number, state = false): NameEntry => ({
  ours,
  theirs,
  shape: [n],
  layout: "same",
  state,
});

/**
 * The generator's tensors and their reference names.
 * @param config the generator configuration (defaults as in `generator()`)
 * @returns one entry per parameter
 */
export function generatorNames(config: GeneratorConfig = {}): NameEntry[] {
  const {
    ch = 64,
    nRes = 4,
    imgSize = 256,
    light = false,
    imgCh = 3,
    decoderNorm = "adalin",
    cam = true,
  } = config;
  const adaptive = ADAPTIVE_NORMS.includes(decoderNorm);
  const c = ch * 4;
  const mlpIn = light ? c : c * (imgSize / 4) ** 2;
  const e: NameEntry[] = [
    conv("stem.w", "DownBlock.1.weight", 7, imgCh, ch),
    conv("down.0.w", "DownBlock.5.weight", 3, ch, ch * 2),
    conv("down.1.w", "DownBlock.9.weight", 3, ch * 2, c),
  ];
  for (let i = 0; i < nRes; i++) {
    e.push(conv(`encoder.${i}.conv1.w`, `DownBlock.${12 + i}.conv_block.1.weight`, 3, c, c));
    e.push(conv(`encoder.${i}.conv2.w`, `DownBlock.${12 + i}.conv_block.5.weight`, 3, c, c));
  }
  if (cam) {
    e.push(
      lin("cam.gapFc.w", "gap_fc.weight", c, 1),
      lin("cam.gmpFc.w", "gmp_fc.weight", c, 1),
      conv("cam.conv1x1.w", "conv1x1.weight", 1, 2 * c, c),
      vec("cam.conv1x1.b", "conv1x1.bias", c),
    );
  }
  if (adaptive) {
    e.push(
      lin("mlp.fc1.w", "FC.0.weight", mlpIn, c),
      lin("mlp.fc2.w", "FC.2.weight", c, c),
      lin("gamma.w", "gamma.weight", c, c),
      lin("beta.w", "beta.weight", c, c),
    );
  }
  // The ablations' norm parameters have no reference names; they follow the same pattern.
  const normParams = decoderNorm === "adalin"
    ? ["rho"]
    : decoderNorm === "adain"
    ? []
    : ["gamma", "beta"];
  for (let i = 0; i < nRes; i++) {
    const block = `UpBlock1_${i + 1}`;
    for (const k of [1, 2]) {
      e.push(conv(`decoder.${i}.conv${k}.w`, `${block}.conv${k}.weight`, 3, c, c));
      for (const p of normParams) {
        e.push(chan(`decoder.${i}.norm${k}.${p}`, `${block}.norm${k}.${p}`, c));
      }
    }
  }
  [[2, 3, c], [7, 8, c / 2]].forEach(([convAt, normAt, width], i) => {
    e.push(conv(`up.${i}.conv.w`, `UpBlock2.${convAt}.weight`, 3, width, width / 2));
    for (const p of ["rho", "gamma", "beta"]) {
      e.push(chan(`up.${i}.norm.${p}`, `UpBlock2.${normAt}.${p}`, width / 2));
    }
  });
  e.push(conv("out.w", "UpBlock2.11.weight", 7, ch, imgCh));
  return e;
}

/**
 * The discriminator's tensors and their reference names, spectral-norm vectors included
 * (entries with `state: true`; our state paths mirror the parameter paths).
 * @param config the discriminator configuration
 * @returns one entry per parameter and state vector
 */
export function discriminatorNames(config: DiscriminatorConfig): NameEntry[] {
  const { ch = 64, nLayers, imgCh = 3, cam = true } = config;
  const e: NameEntry[] = [];
  const sn = (ours: string, theirs: string, rows: number, cols: number) =>
    e.push(
      vec(`${ours}.u`, `${theirs}.weight_u`, rows, true),
      vec(`${ours}.v`, `${theirs}.weight_v`, cols, true),
    );
  let inCh = imgCh;
  let outCh = ch;
  for (let i = 0; i < nLayers - 1; i++) {
    const at = `model.${1 + 3 * i}`;
    e.push(
      conv(`convs.${i}.w`, `${at}.weight_orig`, 4, inCh, outCh),
      vec(`convs.${i}.b`, `${at}.bias`, outCh),
    );
    sn(`convs.${i}`, at, outCh, inCh * 16);
    [inCh, outCh] = [outCh, outCh * 2];
  }
  const cd = inCh;
  if (cam) {
    e.push(
      lin("cam.gapFc.w", "gap_fc.weight_orig", cd, 1),
      lin("cam.gmpFc.w", "gmp_fc.weight_orig", cd, 1),
    );
    sn("cam.gapFc", "gap_fc", 1, cd);
    sn("cam.gmpFc", "gmp_fc", 1, cd);
    e.push(
      conv("cam.conv1x1.w", "conv1x1.weight", 1, 2 * cd, cd),
      vec("cam.conv1x1.b", "conv1x1.bias", cd),
    );
  }
  e.push(conv("out.w", "conv.weight_orig", 4, cd, 1));
  sn("out", "conv", 1, cd * 16);
  return e;
}

function theirShape(entry: NameEntry): number[] {
  const s = entry.shape;
  switch (entry.layout) {
    case "conv":
      return [s[3], s[2], s[0], s[1]];
    case "linear":
      return [s[1], s[0]];
    case "channel":
      return [1, s[0], 1, 1];
    case "same":
      return [...s];
  }
}

// Permutes a row-major array: `perm[k]` is the source axis of output axis k.
function permute(data: Float32Array, shape: readonly number[], perm: number[]): Float32Array {
  const outShape = perm.map((p) => shape[p]);
  const srcStrides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const strides = perm.map((p) => srcStrides[p]);
  const out = new Float32Array(data.length);
  const idx = new Array(outShape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let k = 0; k < idx.length; k++) src += idx[k] * strides[k];
    out[o] = data[src];
    for (let k = idx.length - 1; k >= 0; k--) {
      if (++idx[k] < outShape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

function convert(entry: NameEntry, t: HostTensor, toTheirs: boolean): HostTensor {
  const data = t.data as Float32Array;
  const shape = toTheirs ? theirShape(entry) : [...entry.shape];
  if (entry.layout === "conv") {
    // HWIO -> OIHW is perm [3, 2, 0, 1]; OIHW -> HWIO is [2, 3, 1, 0]
    return {
      dtype: "F32",
      shape,
      data: permute(data, t.shape, toTheirs ? [3, 2, 0, 1] : [2, 3, 1, 0]),
    };
  }
  if (entry.layout === "linear") {
    return { dtype: "F32", shape, data: permute(data, t.shape, [1, 0]) };
  }
  return { dtype: "F32", shape, data };
}

function take(
  entries: readonly NameEntry[],
  tensors: Record<string, HostTensor>,
  key: (e: NameEntry) => string,
  expected: (e: NameEntry) => readonly number[],
  source: string,
): void {
  for (const e of entries) {
    const t = tensors[key(e)];
    if (!t) throw new WeightFileError(`${source}: tensor "${key(e)}" is missing`);
    const want = expected(e);
    if (t.dtype !== "F32") {
      throw new WeightFileError(`${source}: tensor "${key(e)}" is ${t.dtype}, expected F32`);
    }
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new WeightFileError(
        `${source}: tensor "${key(e)}" has shape [${t.shape}], the model needs [${want}]`,
      );
    }
  }
}

/**
 * Converts our tensors (by dotted path) to the reference's names and layouts.
 * @param entries from {@linkcode generatorNames} or {@linkcode discriminatorNames}
 * @param ours our tensors by path (state vectors under their state paths)
 * @returns the reference's `state_dict` tensors by name
 */
export function toReference(
  entries: readonly NameEntry[],
  ours: Record<string, HostTensor>,
): Record<string, HostTensor> {
  take(entries, ours, (e) => e.ours, (e) => e.shape, "toReference");
  return Object.fromEntries(entries.map((e) => [e.theirs, convert(e, ours[e.ours], true)]));
}

/**
 * Converts a reference `state_dict` (names and layouts) to our paths and layouts, checking that
 * every tensor is there with the shape the configuration needs.
 * @param entries from {@linkcode generatorNames} or {@linkcode discriminatorNames}
 * @param theirs the reference's tensors by name (extra names are ignored)
 * @param source the file, for error messages
 * @returns `{ params, state }`: our tensors by path
 * @throws {WeightFileError} naming the tensor that is missing or misshapen
 */
export function fromReference(
  entries: readonly NameEntry[],
  theirs: Record<string, HostTensor>,
  source = "state_dict",
): { params: Record<string, HostTensor>; state: Record<string, HostTensor> } {
  take(entries, theirs, (e) => e.theirs, theirShape, source);
  const params: Record<string, HostTensor> = {};
  const state: Record<string, HostTensor> = {};
  for (const e of entries) (e.state ? state : params)[e.ours] = convert(e, theirs[e.theirs], false);
  return { params, state };
}

/**
 * Checks tensors against a model's template (ours paths and shapes) and returns them: every
 * tensor present, F32, and shaped as the configuration needs; nothing unexpected.
 * @param entries the template
 * @param tensors our tensors by path
 * @param source the file, for error messages
 * @throws {WeightFileError} naming the tensor
 */
export function checkAgainst(
  entries: readonly NameEntry[],
  tensors: Record<string, HostTensor>,
  source: string,
): void {
  take(entries, tensors, (e) => e.ours, (e) => e.shape, source);
  const known = new Set(entries.map((e) => e.ours));
  const extra = Object.keys(tensors).filter((k) => !known.has(k));
  if (extra.length) {
    throw new WeightFileError(
      `${source}: tensor "${extra[0]}" is not part of this model's configuration`,
    );
  }
}
