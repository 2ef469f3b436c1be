/**
 * Convolutions of ours in WGSL for the `webgpu` backend: `Conv2D`, `Conv2DBackpropInput` and
 * `Conv2DBackpropFilter`, registered under TensorFlow.js's kernel names in front of the stock
 * kernels (which stay the fallback for what these do not take: dilation, NCHW, other dtypes,
 * empty tensors, flat indices past 2^22), so the layers and the autodiff use them unchanged.
 *
 * Each pass is an implicit GEMM, C[M x N] = A[M x K] B[K x N], whose A (the im2col matrix) is
 * never formed: a workgroup copies a patch of its input (a block of pixels with the filter's halo,
 * `kc` channels, zeros where the padding or the image ends) into workgroup memory once, and every
 * filter tap reads its rows from there, so each input value is loaded from global memory once per
 * workgroup and reused by every tap that covers it.
 *
 * - forward: M = the output pixels of a `th` x `tw` block, N = output channels, K = taps x input
 *   channels; B is the HWIO filter, one filter row of taps at a time in workgroup memory.
 * - input gradient: the same correlation, of the output gradient with the filter flipped and
 *   transposed, split by stride phase: the input pixels whose row and column are congruent mod the
 *   stride see the same taps, so a stride-2 gradient is four stride-1 correlations with the taps
 *   of each phase, and does no work on the zeros a transposed convolution would insert.
 * - filter gradient: M = taps x input channels, N = output channels, K = every output pixel of the
 *   batch, split into slices (split-K): one dispatch writes each slice's partial sums, a second
 *   adds them (WGSL has no float atomics; a program of ours, which a replayed step folds into the
 *   gradient's reader). A workgroup takes `kc` input channels at every tap and walks its slice's
 *   pixel blocks, each an input patch and an output-gradient block in workgroup memory.
 *
 * Each thread accumulates a `tm` x `tn` block of C in registers from vec4 loads of workgroup
 * memory (4 x tm x tn FMAs per tm + tn loads). Where a correlation steps one input column per
 * output column, a thread's pixels are runs side by side, and a run's patch values slide through
 * a window along the filter's columns: R - 1 + taps reads per run and tap row, not R x taps.
 * Every load and store is a vec4 along the channels, the contiguous axis: channel counts that
 * are not a multiple of 4 (the images' 3, the discriminator's single logit) are padded to one
 * first by a copy with zero channels, and the result cropped back, since on a software adapter a
 * scalar load or store costs as much as a vec4. Every size travels as a uniform, so a new image
 * size, channel count, batch or padding compiles nothing; the shader key holds the tile
 * configuration and the patch's size (the filter's size and stride).
 *
 * The tile configuration is chosen per geometry and adapter ({@linkcode convTiles}): on a software
 * adapter (lavapipe, where every load is a per-lane gather costing dozens of FMAs) large blocks
 * per thread and large patches; on a GPU, 4 x 4 blocks over more threads. A software adapter with
 * float32 tiles runs every filter gradient, and the correlations with at most 32 channels on one
 * side, direct instead ({@linkcode directOf}): workgroup memory is plain memory there, so threads
 * read the input and the filter in place, with no copy and no barrier.
 *
 * With {@linkcode setConvFloat16} the tiles in workgroup memory are float16 (the device needs
 * `shader-f16`), converted on their way in and out; the multiply-adds stay float32.
 *
 * Everything runs through tfjs-backend-webgpu's `runWebGPUProgram` (temporaries disposed with
 * `disposeData`), so a recorder of its dispatches sees every step.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { REFLECT_PAD } from "../../ops/reflect_pad.ts";
import { indexDivision, run as runThreads, standInFront } from "./program.ts";
import { type ConvAttrs, convGeometry } from "../conv_geometry.ts";
import {
  REFLECT_PAD_CONV,
  REFLECT_PAD_CONV_FILTER_GRAD,
  type ReflectPadConvAttrs,
} from "../../ops/reflect_pad_conv.ts";

type Info = tf.TensorInfo;
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
type Uniform = { type: "int32" | "float32"; data: number[] };
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: Info[], dtype: tf.DataType, uniforms?: Uniform[]): Info;
  disposeData(dataId: object): boolean;
  device?: {
    adapterInfo?: Record<string, unknown>;
    limits?: Record<string, unknown>;
    features?: ReadonlySet<string>;
  };
}

/** Which convolution pass a program computes. */
export type ConvPass = "forward" | "inputGrad" | "filterGrad";

/**
 * The tile configuration of a convolution program: with the vector widths and the patch's size,
 * all that changes its WGSL. A workgroup has `wgM x wgN` threads, each computing `tm` x `tn` of
 * the GEMM's output, `kc` channels deep per step through workgroup memory over a `th` x `tw`
 * block of pixels (the forward pass and input gradient: the block is the workgroup's output rows,
 * th * tw <= wgM * tm, the rest of the slots idle; the filter gradient: the block is one K step).
 */
export interface ConvTiles {
  /** Threads along M. */
  readonly wgM: number;
  /** Threads along N. */
  readonly wgN: number;
  /** Rows per thread (a multiple of 4 for the filter gradient, whose rows go in quads). */
  readonly tm: number;
  /** Columns per thread (a multiple of 4). */
  readonly tn: number;
  /** Channels per step (a multiple of 4). */
  readonly kc: number;
  /** Pixel block height. */
  readonly th: number;
  /** Pixel block width. */
  readonly tw: number;
}

/** Tile profiles: `software` for CPU-emulated adapters (lavapipe), `gpu` for the rest. */
export type ConvProfile = "software" | "gpu";

/** What a tile choice sees of a pass. */
export interface ConvShape {
  /** The pass. */
  readonly pass: ConvPass;
  /** GEMM columns: output channels (input channels for the input gradient). */
  readonly n: number;
  /** Reduction channels (padded to a multiple of 4): the input's, or the output gradient's. */
  readonly c: number;
  /** Filter taps per axis the patch holds (the input gradient: per stride phase). */
  readonly taps: [number, number];
  /** Input strides per axis. */
  readonly strides: [number, number];
  /** The output grid the pixel blocks cover (rows, columns). */
  readonly grid: [number, number];
}

// Index arithmetic decodes flat indices with float division (exact below 2^22, see divf), which
// LLVM-based software adapters vectorise where integer division by a runtime value is scalar.
const MAX_INDEX = 1 << 22;
const XYZW = ["x", "y", "z", "w"];

// floor(a / b) for 0 <= a < 2^22, b >= 1: the true quotient of a + 0.5 lies at least 0.5 / b from
// an integer, and the rounding error of one f32 division is below 2^22 / b * 2^-24 = 0.25 / b.
const DIVF = `
  fn divf(a : i32, b : i32) -> i32 {
    return i32((f32(a) + 0.5) / f32(b));
  }`;

// TensorFlow.js hands a program its workgroup id through a private variable, which WGSL's
// uniformity analysis takes as varying between a workgroup's threads: a loop whose bound comes
// from it may not hold a barrier (Chrome's compiler refuses such a shader; naga, Deno's, did not
// check). Read once through workgroup memory by `workgroupUniformLoad`, it is uniform.
const UNIFORM_WORKGROUP_ID = "var<workgroup> ugatitWorkgroupId : vec3<u32>;";

/**
 * A tiled program's `main` body with its workgroup id read as a uniform value (`wgId`, see
 * {@linkcode UNIFORM_WORKGROUP_ID}) in place of TensorFlow.js's `workgroupId`.
 */
function withUniformWorkgroupId(body: string): string {
  return `if (localIndex == 0u) { ugatitWorkgroupId = workgroupId; }
    let wgId = workgroupUniformLoad(&ugatitWorkgroupId);
    ${body.replace(/\bworkgroupId\b/g, "wgId")}`;
}

let profileOverride: ConvProfile | undefined;
let tilesOverride: ((shape: ConvShape, profile: ConvProfile) => ConvTiles) | undefined;

/**
 * Replaces the tile choice (tuning on a new device), or restores ours with undefined.
 * @param choose the tiles for a pass's shape on a profile
 */
export function setConvTiles(
  choose: ((shape: ConvShape, profile: ConvProfile) => ConvTiles) | undefined,
): void {
  tilesOverride = choose;
}

/**
 * Forces a tile profile (tests run both on one adapter), or back to the adapter's own with
 * undefined.
 * @param profile the profile, or undefined
 */
export function setConvProfile(profile: ConvProfile | undefined): void {
  profileOverride = profile;
}

function profileOf(backend: WebGPUBackendLike): ConvProfile {
  if (profileOverride) return profileOverride;
  const info = backend.device?.adapterInfo ?? {};
  const software = info.isFallbackAdapter === true || String(info.vendor) === "65541" ||
    /llvmpipe|lavapipe|swiftshader/i.test(String(info.description ?? ""));
  return software ? "software" : "gpu";
}

/**
 * The comment that asks for WGSL's `enable f16;` (which must open a shader module, before
 * TensorFlow.js's own declarations): the device's shader compiler, wrapped where the device is
 * made (`start.ts`), prepends the directive to any module that holds it.
 */
export const ENABLE_F16 = "// ugatit: enable f16";

let float16 = false;
let float16Refused = false;

/**
 * Stores the convolutions' workgroup tiles (the input patch, the filter rows, the output-gradient
 * block) as float16 where the device has `shader-f16`: half the workgroup memory per value, so
 * larger blocks fit. Products and sums stay float32. Each operand is rounded to float16 once, so
 * an output of K terms is within ((1 + 2^-11)^2 (1 + gamma_K) - 1) sum |a_k b_k| of the exact sum
 * where every operand lies in float16's normal range (2^-14 to 65504 in magnitude); below it an
 * operand is off by up to 2^-25, above it it becomes infinite. Off by default (float32).
 * @param on whether the tiles are float16
 */
export function setConvFloat16(on: boolean): void {
  float16 = on;
  float16Refused = false;
}

/** Whether this backend's convolutions store their tiles as float16 (asked for, and possible). */
function halfOf(backend: WebGPUBackendLike): boolean {
  if (!float16) return false;
  if (backend.device?.features?.has("shader-f16")) return true;
  if (!float16Refused) {
    float16Refused = true;
    console.warn("float16 convolution tiles: this WebGPU device has no shader-f16; float32 kept");
  }
  return false;
}

/**
 * Workgroup memory the device gives a workgroup, in bytes, as {@linkcode convTiles} counts it
 * (4 bytes a value): twice the bytes where the tiles are float16.
 */
function tileStorage(backend: WebGPUBackendLike, half: boolean): number {
  const bytes = Number(backend.device?.limits?.maxComputeWorkgroupStorageSize) || 16384;
  return half ? 2 * bytes : bytes;
}

const range = (n: number) => [...Array(n).keys()];
const pow2Below = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));
const pow2Above = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** The patch a block of th x tw outputs reads: rows and columns of input pixels. */
function patchOf(t: ConvTiles, s: ConvShape): [number, number] {
  return [(t.th - 1) * s.strides[0] + s.taps[0], (t.tw - 1) * s.strides[1] + s.taps[1]];
}

/** Workgroup memory of a configuration, in bytes: the patch and the B (or output-gradient) tile. */
function bytesOf(t: ConvTiles, s: ConvShape): number {
  const [ph, pw] = patchOf(t, s);
  const bn = t.wgN * t.tn;
  const b = s.pass === "filterGrad" ? t.th * t.tw * bn : s.taps[1] * t.kc * bn;
  return 4 * (ph * pw * t.kc + b);
}

/**
 * The tile configuration for a pass on a profile. Per thread, 16 x 8 blocks on a software
 * adapter (each load costs dozens of FMAs there, so the most arithmetic per load wins) and 4 x 4
 * on a GPU; enough threads along N to cover the columns, the rest along M; then the most channels
 * per step (up to 16) and the largest pixel block whose workgroup memory fits in `storage` bytes.
 * @param s the pass's shape
 * @param profile the adapter's profile
 * @param storage workgroup memory available, in bytes
 * @returns the tiles
 */
export function convTiles(s: ConvShape, profile: ConvProfile, storage = 16384): ConvTiles {
  if (tilesOverride) return tilesOverride(s, profile);
  const soft = profile === "software";
  const threads = soft ? 64 : 256;
  const tn = s.n <= 4 || !soft ? 4 : 8;
  const wgN = Math.min(soft ? 8 : 16, pow2Below(Math.ceil(s.n / tn)));
  const kcs = [16, 8, 4].filter((k) => k <= Math.max(4, s.c));
  // Pixel blocks no larger than the grid needs (the discriminator's last layers are 1 x 1 to 5 x 5).
  const [gh, gw] = s.grid.map(pow2Above);
  if (s.pass === "filterGrad") {
    // Threads along M cover the taps x channel quads of kc channels; a K step is a pixel block.
    const taps = s.taps[0] * s.taps[1];
    const tw = Math.min(16, Math.max(4, gw)), th = Math.min(8, gh);
    for (const kc of kcs) {
      const tm = soft ? 16 : 4;
      const wgM = Math.min(threads / wgN, pow2Above(Math.ceil((taps * kc) / tm)));
      for (const [bh, bw] of [[th, tw], [Math.max(1, th / 2), tw], [1, tw], [1, 4]]) {
        const t = { wgM, wgN, tm, tn, kc, th: bh, tw: bw };
        if (bytesOf(t, s) <= storage) return t;
      }
    }
    return { wgM: 8, wgN, tm: 4, tn, kc: 4, th: 1, tw: 4 };
  }
  const tm = Math.min(soft ? 16 : 4, gh * gw);
  // With one thread along N, 16 threads (two SIMD rows of a software adapter) measured as fast
  // as 64 there, and make smaller blocks: more workgroups for the cores.
  const most = soft && wgN === 1 ? 16 : threads / wgN;
  const wgM = Math.min(most, pow2Above(Math.ceil((gh * gw) / tm)));
  // Pixel blocks no wider than the grid, then as tall as the rows per workgroup make them.
  const tw = Math.min(16, gw, wgM * tm);
  for (const kc of kcs) {
    for (let rows = wgM; rows >= 1; rows /= 2) {
      const t = { wgM: rows, wgN, tm, tn, kc, th: (rows * tm) / tw, tw };
      if (t.th >= 1 && Number.isInteger(t.th) && bytesOf(t, s) <= storage) {
        return fewestBlocks(t, s, storage);
      }
    }
  }
  return { wgM: 1, wgN: 1, tm: 4, tn: 4, kc: 4, th: 1, tw: 4 };
}

// Block widths tried against a power of 2 (each a shader of its own).
const BLOCK_WIDTHS = [12, 8, 6, 4];

/**
 * Tiles `t` with the block shape that covers the grid in the fewest blocks, for the same threads
 * and rows per thread (so the same work per block): a block as wide as a power of 2 wastes most
 * of a grid just past one (an 18 x 18 input gradient of a padded 16 x 16 layer took six 8 x 16
 * blocks; three 18 x 6 do). A block's rows stop at the grid's, and its slots past th * tw idle.
 * @param t tiles whose block is th x tw = wgM * tm pixels
 * @param s the pass's shape
 * @param storage workgroup memory available, in bytes
 * @returns the tiles with the block's th and tw chosen (t itself where none saves a quarter)
 */
function fewestBlocks(t: ConvTiles, s: ConvShape, storage: number): ConvTiles {
  const slots = t.wgM * t.tm;
  const count = (u: ConvTiles) => Math.ceil(s.grid[0] / u.th) * Math.ceil(s.grid[1] / u.tw);
  let best = t;
  for (const tw of [t.tw, ...BLOCK_WIDTHS.filter((w) => w < t.tw)]) {
    const u = { ...t, tw, th: Math.min(Math.floor(slots / tw), s.grid[0]) };
    if (bytesOf(u, s) <= storage && count(u) < count(best)) best = u;
  }
  // Only for a quarter of the blocks or more: on lavapipe a 10 x 12 block over a 34 x 34 grid
  // (12 blocks, not 15) measured 6% slower, not 20% faster.
  return count(best) <= 0.75 * count(t) ? best : t;
}

/** Uniform declarations (all i32) and their data, in one order. */
function uniformsOf(values: Record<string, number>): { decl: string; data: Uniform[] } {
  return {
    decl: Object.keys(values).map((k) => `${k} : i32,`).join(" "),
    data: Object.values(values).map((v): Uniform => ({ type: "int32", data: [v] })),
  };
}

/** A vec4 from global memory `buf` at element offset `at` (a multiple of 4) where `ok`, else 0. */
const load4 = (buf: string, at: string, ok: string) =>
  `select(vec4<f32>(0.0), ${buf}[select(0, (${at}) / 4, ${ok})], ${ok})`;
/**
 * The copy of the input patch `P` (ph x pw pixels from (iy0, ix0) of image bb, kq channel quads
 * from c0): zeros outside the image, or with `reflect` the image's reflection there (PyTorch's
 * `ReflectionPad2d`, read in place: no padded copy is made; positions past one reflection, which
 * only a block's unused edge reaches, are clamped into the image).
 */
function patchCopy(
  ph: number,
  pw: number,
  kq: number,
  threads: number,
  reflect: boolean,
  half: boolean,
): string {
  const at = "((bb * uniforms.ih + py) * uniforms.iw + px) * uniforms.c + pc";
  return copySlots("P", ph * pw * kq, threads, (slot) => [
    `
        let pp = ${slot} / ${kq};
        let pc = c0 + (${slot} % ${kq}) * 4;
        ${
      reflect
        ? `let py = reflectInto(iy0 + pp / ${pw}, uniforms.ih);
        let px = reflectInto(ix0 + pp % ${pw}, uniforms.iw);
        let pok = pc < uniforms.c;`
        : `let py = iy0 + pp / ${pw};
        let px = ix0 + pp % ${pw};
        let pok = py >= 0 && py < uniforms.ih && px >= 0 && px < uniforms.iw && pc < uniforms.c;`
    }`,
    load4("x", at, "pok"),
  ], half);
}

// Index k of a reflection-padded axis (shifted by -pad) in [0, n): PyTorch's reflection.
const REFLECT_INTO = `
  fn reflectInto(k : i32, n : i32) -> i32 {
    let a = select(k, -k, k < 0);
    return clamp(select(a, 2 * n - 2 - a, a >= n), 0, n - 1);
  }`;

/**
 * The cooperative copy of `count` vec4 slots into workgroup memory `name`: each thread takes
 * slots tid, tid + threads, ...; `value(slot)` gives the statements and expression of one, stored
 * as float16 with `half`.
 */
function copySlots(
  name: string,
  count: number,
  threads: number,
  value: (slot: string) => [string, string],
  half = false,
): string {
  return range(Math.ceil(count / threads)).map((p) => {
    const slot = `s${name}${p}`;
    const [pre, e] = value(slot);
    const stored = half ? `vec4<f16>(${e})` : e;
    const body = `let ${slot} = tid + ${p * threads};${pre}\n        ${name}[${slot}] = ${stored};`;
    return (p + 1) * threads > count
      ? `if (tid + ${p * threads} < ${count}) { ${body} }`
      : `{ ${body} }`;
  }).join("\n      ");
}

/** A workgroup tile's element type, and a vec4 read from one as float32. */
const tileType = (half: boolean) => (half ? "f16" : "f32");
const readTile = (half: boolean, e: string) => (half ? `vec4<f32>(${e})` : e);

/** Multiply-accumulates of one K quad: fragment expressions in, FMA statements out. */
function fmaSnippet(
  t: ConvTiles,
  aOf: (i: number, k: number) => string,
  bOf: (k: number, j: number) => string,
): string {
  // Each accumulator takes its four FMAs in a row: on a software adapter, where the accumulators
  // live in memory, it is then read and written once per quad rather than four times.
  return range(t.tm).flatMap((i) =>
    range(t.tn).map((j) =>
      `c${i}_${j} = ${
        range(4).reduce((e, k) => `fma(${aOf(i, k)}, ${bOf(k, j)}, ${e})`, `c${i}_${j}`)
      };`
    )
  ).join("\n          ");
}

/** Stores block row i at flat output offset `at` + column (a multiple of 4), columns < `nMax`. */
function storeRow(t: ConvTiles, i: number, ok: string, at: string, nMax: string) {
  return range(t.tn / 4).map((jq) => {
    const n = `n0 + (${jq * t.wgN} + tx) * 4`;
    const v = range(4).map((u) => `c${i}_${jq * 4 + u}`).join(", ");
    return `if (${ok} && ${n} < ${nMax}) { result[(${at} + ${n}) / 4] = vec4<f32>(${v}); }`;
  }).join("\n    ");
}

/**
 * Runs a convolution program: every input and the output read and written as vec4s. `t` gives the
 * workgroup's shape and the shader key's tail: tiles, or a direct correlation's run of pixels.
 */
function run(
  backend: WebGPUBackendLike,
  key: string,
  t: ConvTiles | Direct,
  code: string,
  inputs: Record<string, Info>,
  outputShape: number[],
  dispatch: [number, number, number],
  uniforms: Record<string, number>,
): Info {
  const u = uniformsOf(uniforms);
  const names = Object.keys(inputs);
  const program = {
    variableNames: names,
    variableComponents: names.map(() => 4),
    outputComponent: 4,
    outputShape,
    shaderKey: `ugatit_conv_${key}_${Object.values(t).join("_")}`,
    // y and z in the layout make tfjs call main() without an index (the dispatch is ours).
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch,
    workgroupSize: ("run" in t ? [DIRECT_THREADS, 1, 1] : [t.wgN, t.wgM, 1]) as [
      number,
      number,
      number,
    ],
    uniforms: u.decl,
    getUserCode: () => code,
  };
  return backend.runWebGPUProgram(program, Object.values(inputs), "float32", u.data);
}

// ---- channel padding ------------------------------------------------------------------------

/**
 * `t` viewed as [outer, from, inner] copied to [outer, to, inner]: channels past `from` zero
 * (padding), those past `to` dropped (cropping). A program of ours with a thread per element, so
 * that a recorded step computes a crop inside the chain that reads it (`fuse.ts`).
 */
function resizeAxis(
  backend: WebGPUBackendLike,
  t: Info,
  shape: number[],
  outer: number,
  from: number,
  to: number,
  inner: number,
): Info {
  const size = outer * to * inner;
  const q = indexDivision(size);
  return runThreads(
    backend as unknown as tf.KernelBackend,
    `conv_resize_${q.key}`,
    { src: t },
    shape,
    size,
    { cFrom: from, cTo: to, inner },
    `
        let k = ${q.mod("index", "uniforms.inner")};
        let c = ${q.mod(q.div("index", "uniforms.inner"), "uniforms.cTo")};
        let o = ${q.div("index", "uniforms.inner * uniforms.cTo")};
        let ok = c < uniforms.cFrom;
        let at = select(0, (o * uniforms.cFrom + c) * uniforms.inner + k, ok);
        result[index] = select(0.0, src[at], ok);`,
  );
}

const roundUp4 = (n: number) => Math.ceil(n / 4) * 4;

/** `t` with its last axis resized to `to` channels (zeros added, or channels dropped). */
function resizeChannels(backend: WebGPUBackendLike, t: Info, to: number): Info {
  const outer = t.shape.slice(0, -1);
  const from = t.shape[outer.length];
  const count = outer.reduce((a, b) => a * b, 1);
  return resizeAxis(backend, t, [...outer, to], count, from, to, 1);
}

/** `t` with its last axis cropped to `to` channels (itself where it has them; else it is freed). */
function cropChannels(backend: WebGPUBackendLike, t: Info, to: number): Info {
  if (t.shape[t.shape.length - 1] === to) return t;
  const out = resizeChannels(backend, t, to);
  backend.disposeData(t.dataId);
  return out;
}

/** `t` with its last axis padded with zeros to `to` channels (itself where it has them). */
function padChannels(backend: WebGPUBackendLike, t: Info, to: number, temps: Info[]): Info {
  if (t.shape[t.shape.length - 1] === to) return t;
  const out = resizeChannels(backend, t, to);
  temps.push(out);
  return out;
}

// ---- forward and input gradient ----------------------------------------------------------

/**
 * A correlation of an input [B, ih, iw, c] (c a multiple of 4) with a filter, on a grid of
 * outputs: output (oy, ox) reads input rows oy * sy - offY + ty for taps ty, columns likewise.
 * The forward pass is one (filter as it lies, offsets the padding); the input gradient one per
 * stride phase (the filter's taps of the phase, flipped; offsets from the phase). The pass gives
 * the phase set-up, the B copy of one row of taps and the store.
 */
interface Correlation {
  readonly key: string;
  /** Taps and offsets of the workgroup: defines tapsY, tapsX, offY, offX, sy, sx. */
  readonly head: string;
  /** B slot of filter row `ky` (tap ty of the correlation): statements, expression. */
  bValue(slot: string): [string, string];
  /** B's layout in workgroup memory: vec4 along N (`n`) or along K (`k`). */
  readonly bAlong: "n" | "k";
  /**
   * B read straight from the filter by the direct correlation: statements defining b0..b3, the
   * vec4s of columns n0..n0+3 at K channel c0 + k of tap (ty_, tx_).
   */
  readonly bDirect: string;
  /**
   * Where output pixel (oy, ox) of the grid, batch bb, goes: whether it is stored, its flat offset
   * (plus the column), and the columns' bound.
   */
  out(oy: string, ox: string): [ok: string, at: string, nMax: string];
  /** Whether the input is read reflection-padded (see `patchCopy`), not zero-padded. */
  readonly reflect?: boolean;
}

function correlationCode(t: ConvTiles, s: ConvShape, p: Correlation, half: boolean): string {
  const [ph, pw] = patchOf(t, s);
  const kq = t.kc / 4, bn = t.wgN * t.tn, threads = t.wgM * t.wgN;
  const tapsW = s.taps[1];
  const bCount = tapsW * t.kc * bn / 4;
  // A thread's rows of the block come in runs of R pixels side by side where the correlation
  // steps one column per pixel: a run reads the R - 1 + tapsX patch values of a channel quad and
  // tap row once each, in a window that slides one column per tap, where R pixels apart read
  // R * tapsX (on lavapipe the patch reads were about half a 3 x 3 convolution's time).
  const R = s.strides[1] === 1 ? gcd(t.tm, t.tw) : 1;
  // Run g of the thread starts at pixel (g * wgM + ty) * R of the block, row-major over tw
  // columns. Runs past the block's th * tw pixels are idle: they read the block's last run and
  // store nothing.
  const used = t.th * t.tw;
  const idle = (g: number) => (g + 1) * t.wgM * R > used;
  const first = (g: number) => R === 1 ? `(${g * t.wgM} + ty)` : `(${g * t.wgM} + ty) * ${R}`;
  const start = (g: number) => idle(g) ? `min(${first(g)}, ${used - R})` : `(${first(g)})`;
  // Block row i of the accumulators: pixel i % R of run i / R.
  const pixel = (i: number) => R === 1 ? start(i) : `(${start(Math.floor(i / R))} + ${i % R})`;
  const patch = patchCopy(ph, pw, kq, threads, p.reflect ?? false, half);
  const b = copySlots("Bs", bCount, threads, (slot) => p.bValue(slot), half);
  const loads = R > 1
    ? []
    : range(t.tm).map((i) => `let a${i} = ${readTile(half, `P[base${i} + tapOff + q]`)};`);
  let bOf: (k: number, j: number) => string;
  if (p.bAlong === "n") {
    for (let k = 0; k < 4; k++) {
      for (let jq = 0; jq < t.tn / 4; jq++) {
        loads.push(
          `let b${jq}_${k} = ${
            readTile(half, `Bs[(tx_ * ${t.kc} + q * 4 + ${k}) * ${bn / 4} + ${jq * t.wgN} + tx]`)
          };`,
        );
      }
    }
    bOf = (k, j) => `b${Math.floor(j / 4)}_${k}.${XYZW[j % 4]}`;
  } else {
    range(t.tn).forEach((j) =>
      loads.push(
        `let b${j} = ${
          readTile(
            half,
            `Bs[(tx_ * ${kq} + q) * ${bn} + (${Math.floor(j / 4) * t.wgN} + tx) * 4 + ${j % 4}]`,
          )
        };`,
      )
    );
    bOf = (k, j) => `b${j}.${XYZW[k]}`;
  }
  const acc = range(t.tm).flatMap((i) => range(t.tn).map((j) => `var c${i}_${j} = 0.0;`));
  const body = `
    let tid = i32(localIndex);
    let tx = i32(localId.x);
    let ty = i32(localId.y);
    let blocks = uniforms.blocksY * uniforms.blocksX;
    let bb = divf(i32(workgroupId.x), blocks);
    let br = i32(workgroupId.x) - bb * blocks;
    let by = divf(br, uniforms.blocksX);
    let oy0 = by * ${t.th};
    let ox0 = (br - by * uniforms.blocksX) * ${t.tw};
    let n0 = i32(workgroupId.y) * ${bn};
    ${p.head}
    let iy0 = oy0 * sy - offY;
    let ix0 = ox0 * sx - offX;
    ${
    range(t.tm / R).map((g) =>
      `let base${g} = ((${start(g)} / ${t.tw}) * sy * ${pw} + (${
        start(g)
      } % ${t.tw}) * sx) * ${kq};`
    ).join("\n    ")
  }
    ${acc.join(" ")}
    for (var c0 = 0; c0 < uniforms.c; c0 += ${t.kc}) {
      ${patch}
      for (var ty_ = 0; ty_ < tapsY; ty_++) {
        ${b}
        workgroupBarrier();
        ${R > 1 ? runTaps(t, R, pw, kq, half, loads, bOf) : pixelTaps(t, pw, kq, loads, bOf)}
        workgroupBarrier();
      }
    }
    ${
    range(t.tm).map((i) => {
      const g = Math.floor(i / R);
      const store = storeRow(
        t,
        i,
        ...p.out(`(oy0 + ${pixel(i)} / ${t.tw})`, `(ox0 + ${pixel(i)} % ${t.tw})`),
      );
      return idle(g) ? `if (${first(g)} < ${used}) { ${store} }` : store;
    }).join("\n    ")
  }`;
  return `${half ? ENABLE_F16 : ""}
  var<workgroup> P : array<vec4<${tileType(half)}>, ${ph * pw * kq}>;
  var<workgroup> Bs : array<vec4<${tileType(half)}>, ${bCount}>;
  ${UNIFORM_WORKGROUP_ID}
  ${DIVF}
  ${REFLECT_INTO}
  fn main() {
    ${withUniformWorkgroupId(body)}
  }`;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** A row of taps, each block row read from the patch at every tap (its own pixel base). */
function pixelTaps(
  t: ConvTiles,
  pw: number,
  kq: number,
  loads: string[],
  bOf: (k: number, j: number) => string,
): string {
  return `for (var tx_ = 0; tx_ < tapsX; tx_++) {
          let tapOff = (ty_ * ${pw} + tx_) * ${kq};
          for (var q = 0; q < ${kq}; q++) {
            ${loads.join("\n            ")}
            ${fmaSnippet(t, (i, k) => `a${i}.${XYZW[k]}`, bOf)}
          }
        }`;
}

/**
 * A row of taps over runs of R pixels: per channel quad, window w{g}_r holds the patch value pixel
 * r of run g reads at the current tap; one new value a run per tap, the rest shifted along.
 */
function runTaps(
  t: ConvTiles,
  R: number,
  pw: number,
  kq: number,
  half: boolean,
  bLoads: string[],
  bOf: (k: number, j: number) => string,
): string {
  const runs = range(t.tm / R);
  const at = (g: number, col: string) => readTile(half, `P[base${g} + rowOff + (${col}) * ${kq}]`);
  const init = runs.flatMap((g) => [
    ...range(R - 1).map((r) => `var w${g}_${r} = ${at(g, String(r))};`),
    `var w${g}_${R - 1} : vec4<f32>;`,
  ]);
  const next = runs.map((g) => `w${g}_${R - 1} = ${at(g, `tx_ + ${R - 1}`)};`);
  const shift = runs.flatMap((g) => range(R - 1).map((r) => `w${g}_${r} = w${g}_${r + 1};`));
  return `for (var q = 0; q < ${kq}; q++) {
          let rowOff = ty_ * ${pw * kq} + q;
          ${init.join("\n          ")}
          for (var tx_ = 0; tx_ < tapsX; tx_++) {
            ${[...next, ...bLoads].join("\n            ")}
            ${fmaSnippet(t, (i, k) => `w${Math.floor(i / R)}_${i % R}.${XYZW[k]}`, bOf)}
            ${shift.join(" ")}
          }
        }`;
}

// ---- the direct correlation (software adapters) --------------------------------------------

/** A direct correlation's thread: `run` output pixels side by side, one column quad. */
interface Direct {
  readonly run: number;
}

const DIRECT_THREADS = 16;
const DIRECT_MAX_RUN = 16;

/**
 * The direct correlation for a pass, or undefined where the tiles are used: on a software adapter
 * with float32 tiles, where the dispatch fits, for every filter gradient and for the correlations
 * with at most 32 channels on one side. Workgroup memory is plain memory there, behind the same
 * caches as the input, so staging a patch in it adds copies and barriers and saves little: read in
 * place, a 7 x 7 convolution of 4 channels at 96 px took 1.7 ms, not 6.7 tiled. With 64 channels
 * or more on both sides the tiles' filter, shared by a workgroup's pixels, paid for its copies (at
 * 64 px, 256 to 128 channels: 35 ms tiled, 65 direct; `BENCHMARKS.md`).
 * A thread's run is at most 16 pixels, as even as a grid row splits into (24 columns: 12 + 12).
 * @param s the pass's shape
 * @param profile the adapter's profile
 * @param half whether the tiles are float16 (then they are used)
 * @param batch images in the batch
 * @returns the run, or undefined
 */
function directOf(
  s: ConvShape,
  profile: ConvProfile,
  half: boolean,
  batch: number,
): Direct | undefined {
  if (profile !== "software" || half) return undefined;
  if (s.pass !== "filterGrad" && Math.min(s.c, s.n) > 32) return undefined;
  const runsX = Math.ceil(s.grid[1] / DIRECT_MAX_RUN);
  const run = Math.ceil(s.grid[1] / runsX);
  const groups = Math.ceil((batch * s.grid[0] * runsX) / DIRECT_THREADS);
  return groups <= 65535 ? { run } : undefined;
}

/**
 * The direct correlation: each thread accumulates `run` output pixels of one grid row (a vec4 of
 * four columns each) from the input and the filter in global memory, with no workgroup memory and
 * no barrier. Along a row of taps its pixels' input values slide through a window (as in
 * `runTaps`), once per stride phase of the columns: R - 1 reads fill it, then one read per tap.
 */
function directCode(d: Direct, p: Correlation): string {
  const R = d.run;
  const rows = range(R);
  // Input column `col` (from ix0) of row ry: zeros outside the image, or its reflection.
  const read = (col: string) =>
    p.reflect
      ? `x[(rowAt + reflectInto(ix0 + ${col}, uniforms.iw) * uniforms.c) / 4]`
      : `select(vec4<f32>(0.0), x[(rowAt + clamp(ix0 + ${col}, 0, uniforms.iw - 1) * uniforms.c) / 4], rowOk && ix0 + ${col} >= 0 && ix0 + ${col} < uniforms.iw)`;
  const fma = rows.map((i) =>
    `a${i} = fma(vec4<f32>(w${i}.w), b3, fma(vec4<f32>(w${i}.z), b2, fma(vec4<f32>(w${i}.y), b1, fma(vec4<f32>(w${i}.x), b0, a${i}))));`
  );
  return `
  ${REFLECT_INTO}
  fn main() {
    let runsX = (uniforms.ow + ${R - 1}) / ${R};
    let perImage = uniforms.oh * runsX;
    let thread = i32(workgroupId.x) * ${DIRECT_THREADS} + i32(localIndex);
    let live = thread < uniforms.batch * perImage;
    let bb = min(thread / perImage, uniforms.batch - 1);
    let rest = thread - (thread / perImage) * perImage;
    let oy = rest / runsX;
    let ox0 = (rest - oy * runsX) * ${R};
    let n0 = i32(workgroupId.y) * 4;
    ${p.head}
    let iy0 = oy * sy - offY;
    let ix0 = ox0 * sx - offX;
    ${rows.map((i) => `var a${i} = vec4<f32>(0.0);`).join(" ")}
    ${rows.map((i) => `var w${i} : vec4<f32>;`).join(" ")}
    for (var c0 = 0; c0 < uniforms.c; c0 += 4) {
      for (var ty_ = 0; ty_ < tapsY; ty_++) {
        let iy = iy0 + ty_;
        ${
    p.reflect ? "let ry = reflectInto(iy, uniforms.ih);" : `let rowOk = iy >= 0 && iy < uniforms.ih;
        let ry = clamp(iy, 0, uniforms.ih - 1);`
  }
        let rowAt = (bb * uniforms.ih + ry) * uniforms.iw * uniforms.c + c0;
        // Columns of one phase mod sx: pixel i at tap tx_ reads column i * sx + tx_.
        for (var phase = 0; phase < sx; phase++) {
          ${
    rows.slice(0, -1).map((i) => `w${i} = ${read(`${i} * sx + phase`)};`).join("\n          ")
  }
          for (var tx_ = phase; tx_ < tapsX; tx_ += sx) {
            w${R - 1} = ${read(`${R - 1} * sx + tx_`)};
            ${p.bDirect}
            ${fma.join("\n            ")}
            ${rows.slice(0, -1).map((i) => `w${i} = w${i + 1};`).join(" ")}
          }
        }
      }
    }
    ${
    rows.map((i) => {
      const [ok, at, nMax] = p.out("oy", `(ox0 + ${i})`);
      return `if (live && ${ok} && n0 < ${nMax}) { result[(${at} + n0) / 4] = a${i}; }`;
    }).join("\n    ")
  }
  }`;
}

/**
 * Runs a correlation over its shape's grid of outputs (a workgroup a pixel block, column tile and
 * phase; or directly, a thread a run of pixels and a column quad), into an output of `outShape`
 * whose channels are padded to a multiple of 4; then crops them to `n` and frees `temps` (the
 * channel-padded copies). With `half`, its tiles are float16.
 */
function correlate(
  backend: WebGPUBackendLike,
  t: ConvTiles | Direct,
  shape: ConvShape,
  corr: Correlation,
  inputs: { x: Info; w: Info },
  outShape: number[],
  n: number,
  phases: number,
  uniforms: Record<string, number>,
  temps: Info[],
  half: boolean,
): Info {
  let out: Info;
  if ("run" in t) {
    const runs = outShape[0] * shape.grid[0] * Math.ceil(shape.grid[1] / t.run);
    out = run(
      backend,
      `${corr.key}_direct`,
      t,
      directCode(t, corr),
      inputs,
      outShape,
      [Math.ceil(runs / DIRECT_THREADS), shape.n / 4, phases],
      { ...uniforms, batch: outShape[0] },
    );
  } else {
    const blocks = blocksOf(t, outShape[0], ...shape.grid);
    out = run(
      backend,
      `${corr.key}${half ? "_f16" : ""}`,
      t,
      correlationCode(t, shape, corr, half),
      inputs,
      outShape,
      [blocks.count, Math.ceil(shape.n / (t.wgN * t.tn)), phases],
      { ...blocks.uniforms, ...uniforms },
    );
  }
  temps.forEach((d) => backend.disposeData(d.dataId));
  return cropChannels(backend, out, n);
}

/** Dispatch and block uniforms of a correlation over a grid of gh x gw outputs per image. */
function blocksOf(t: ConvTiles, batch: number, gh: number, gw: number) {
  const blocksY = Math.ceil(gh / t.th), blocksX = Math.ceil(gw / t.tw);
  return { count: batch * blocksY * blocksX, uniforms: { blocksY, blocksX } };
}

function forward(
  backend: WebGPUBackendLike,
  x: Info,
  w: Info,
  g: tf.backend_util.Conv2DInfo,
  profile: ConvProfile,
  reflect = false,
): Info {
  const { batchSize, inHeight, inWidth, outHeight, outWidth } = g;
  const { filterHeight: kh, filterWidth: kw } = g;
  const c = roundUp4(g.inChannels), n = roundUp4(g.outChannels);
  const temps: Info[] = [];
  x = padChannels(backend, x, c, temps);
  w = padChannels(backend, w, n, temps);
  if (c !== g.inChannels) {
    w = resizeAxis(backend, w, [kh, kw, c, n], kh * kw, g.inChannels, c, n);
    temps.push(w);
  }
  const shape: ConvShape = {
    pass: "forward",
    n,
    c,
    taps: [kh, kw],
    strides: [g.strideHeight, g.strideWidth],
    grid: [outHeight, outWidth],
  };
  const half = halfOf(backend);
  const t = convTiles(shape, profile, tileStorage(backend, half));
  const bn = t.wgN * t.tn;
  const corr: Correlation = {
    key: `fwd_${kh}_${kw}_${shape.strides.join("_")}${reflect ? "_reflect" : ""}`,
    reflect,
    head: `
    let tapsY = uniforms.kh;
    let tapsX = uniforms.kw;
    let offY = uniforms.pt;
    let offX = uniforms.pl;
    let sy = uniforms.sy;
    let sx = uniforms.sx;`,
    // Slot: (tap tx_, channel k, column quad) of filter row ty_: W[ty_, tx_, c0 + k, n..n+3].
    bValue: (slot) => [
      `
        let bq = ${slot} % ${bn / 4};
        let bk = (${slot} / ${bn / 4}) % ${t.kc};
        let bt = ${slot} / ${(bn / 4) * t.kc};
        let bnn = n0 + bq * 4;
        let bok = bt < tapsX && c0 + bk < uniforms.c && bnn < uniforms.n;`,
      load4("w", "((ty_ * uniforms.kw + bt) * uniforms.c + c0 + bk) * uniforms.n + bnn", "bok"),
    ],
    bAlong: "n",
    bDirect: range(4).map((k) =>
      `let b${k} = w[(((ty_ * uniforms.kw + tx_) * uniforms.c + c0 + ${k}) * uniforms.n + n0) / 4];`
    ).join("\n            "),
    out: (oy, ox) => [
      `${oy} < uniforms.oh && ${ox} < uniforms.ow`,
      `((bb * uniforms.oh + ${oy}) * uniforms.ow + ${ox}) * uniforms.n`,
      "uniforms.n",
    ],
  };
  return correlate(
    backend,
    directOf(shape, profile, half, batchSize) ?? t,
    shape,
    corr,
    { x, w },
    [batchSize, outHeight, outWidth, n],
    g.outChannels,
    1,
    {
      ih: inHeight,
      iw: inWidth,
      c,
      n,
      oh: outHeight,
      ow: outWidth,
      kh,
      kw,
      sy: g.strideHeight,
      sx: g.strideWidth,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
    },
    temps,
    half,
  );
}

function inputGrad(
  backend: WebGPUBackendLike,
  dy: Info,
  w: Info,
  g: tf.backend_util.Conv2DInfo,
  profile: ConvProfile,
): Info {
  const { batchSize, inHeight, inWidth, outHeight, outWidth } = g;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = g;
  const oc = roundUp4(g.outChannels), ic = roundUp4(g.inChannels);
  const temps: Info[] = [];
  dy = padChannels(backend, dy, oc, temps);
  w = padChannels(backend, w, oc, temps);
  if (ic !== g.inChannels) {
    w = resizeAxis(backend, w, [kh, kw, ic, oc], kh * kw, g.inChannels, ic, oc);
    temps.push(w);
  }
  const qh = Math.ceil(inHeight / sh), qw = Math.ceil(inWidth / sw);
  const shape: ConvShape = {
    pass: "inputGrad",
    n: ic,
    c: oc,
    taps: [Math.ceil(kh / sh), Math.ceil(kw / sw)],
    strides: [1, 1],
    grid: [qh, qw],
  };
  const half = halfOf(backend);
  const t = convTiles(shape, profile, tileStorage(backend, half));
  const bn = t.wgN * t.tn, kq = t.kc / 4;
  const corr: Correlation = {
    key: `dgrad_${shape.taps.join("_")}`,
    // The phase (ry, rx) of this workgroup, its first filter taps (ky0, kx0), its taps per axis,
    // and where its correlation starts: phase pixel q reads output-gradient rows
    // q + (ry + pt) / sh - j for its taps j, i.e. rows q - offY + ty with ty = tapsY - 1 - j.
    head: `
    let ry = i32(workgroupId.z) / uniforms.sw;
    let rx = i32(workgroupId.z) - ry * uniforms.sw;
    let ky0 = (ry + uniforms.pt) % uniforms.sh;
    let kx0 = (rx + uniforms.pl) % uniforms.sw;
    let tapsY = (uniforms.kh - ky0 + uniforms.sh - 1) / uniforms.sh;
    let tapsX = (uniforms.kw - kx0 + uniforms.sw - 1) / uniforms.sw;
    let offY = tapsY - 1 - (ry + uniforms.pt) / uniforms.sh;
    let offX = tapsX - 1 - (rx + uniforms.pl) / uniforms.sw;
    let sy = 1;
    let sx = 1;`,
    // Slot: (tap tx_, output-channel quad, column) of row ty_: the filter at tap
    // (ky0 + (tapsY - 1 - ty_) * sh, kx0 + (tapsX - 1 - tx_) * sw), contiguous along the quad.
    bValue: (slot) => [
      `
        let bcol = ${slot} % ${bn};
        let bq = (${slot} / ${bn}) % ${kq};
        let bt = ${slot} / ${bn * kq};
        let bky = ky0 + (tapsY - 1 - ty_) * uniforms.sh;
        let bkx = kx0 + (tapsX - 1 - bt) * uniforms.sw;
        let bok = bt < tapsX && n0 + bcol < uniforms.ic && c0 + bq * 4 < uniforms.c;`,
      load4(
        "w",
        "((bky * uniforms.kw + bkx) * uniforms.ic + n0 + bcol) * uniforms.c + c0 + bq * 4",
        "bok",
      ),
    ],
    bAlong: "k",
    // The filter's vec4s run along K (output channels): four columns read, then transposed.
    bDirect: `let bky = ky0 + (tapsY - 1 - ty_) * uniforms.sh;
            let bkx = kx0 + (tapsX - 1 - tx_) * uniforms.sw;
            let bat = ((bky * uniforms.kw + bkx) * uniforms.ic + n0) * uniforms.c + c0;
            ${range(4).map((j) => `let m${j} = w[(bat + ${j} * uniforms.c) / 4];`).join(" ")}
            ${
      range(4).map((k) => `let b${k} = vec4<f32>(${range(4).map((j) => `m${j}.${XYZW[k]}`)});`)
        .join(" ")
    }`,
    out: (qy, qx) => {
      const iy = `(${qy} * uniforms.sh + ry)`, ix = `(${qx} * uniforms.sw + rx)`;
      return [
        `${qy} < uniforms.oh && ${qx} < uniforms.ow && ${iy} < uniforms.h && ${ix} < uniforms.w`,
        `((bb * uniforms.h + ${iy}) * uniforms.w + ${ix}) * uniforms.ic`,
        "uniforms.ic",
      ];
    },
  };
  return correlate(
    backend,
    directOf(shape, profile, half, batchSize) ?? t,
    shape,
    corr,
    { x: dy, w },
    [batchSize, inHeight, inWidth, ic],
    g.inChannels,
    sh * sw,
    {
      ih: outHeight,
      iw: outWidth,
      c: oc,
      ic,
      oh: qh,
      ow: qw,
      h: inHeight,
      w: inWidth,
      kh,
      kw,
      sh,
      sw,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
    },
    temps,
    half,
  );
}

// ---- filter gradient -----------------------------------------------------------------------

/**
 * How many K slices the filter gradient splits into: enough workgroups to fill the device
 * (`target`), each slice at least `minBlocks` pixel blocks deep.
 * @param tilesMN workgroups of one slice
 * @param blocks pixel blocks of the batch
 * @param profile the adapter's profile
 * @returns the slice count
 */
export function splitCount(tilesMN: number, blocks: number, profile: ConvProfile): number {
  const target = profile === "software" ? 16 : 512;
  const minBlocks = profile === "software" ? 4 : 2;
  const most = Math.max(1, Math.floor(blocks / minBlocks));
  return Math.max(1, Math.min(most, Math.ceil(target / tilesMN), 1024));
}

function filterGrad(
  backend: WebGPUBackendLike,
  x: Info,
  dy: Info,
  g: tf.backend_util.Conv2DInfo,
  profile: ConvProfile,
  reflect = false,
): Info {
  const { batchSize, inHeight, inWidth, outHeight, outWidth } = g;
  const { filterHeight: kh, filterWidth: kw } = g;
  const c = roundUp4(g.inChannels), n = roundUp4(g.outChannels);
  const temps: Info[] = [];
  x = padChannels(backend, x, c, temps);
  dy = padChannels(backend, dy, n, temps);
  const shape: ConvShape = {
    pass: "filterGrad",
    n,
    c,
    taps: [kh, kw],
    strides: [g.strideHeight, g.strideWidth],
    grid: [outHeight, outWidth],
  };
  const half = halfOf(backend);
  const taps = kh * kw;
  const direct = directOf(shape, profile, half, batchSize) &&
    filterGradDirect(backend, x, dy, g, reflect);
  if (direct) {
    temps.forEach((d) => backend.disposeData(d.dataId));
    return cropFilter(backend, direct, g, c);
  }
  const t = convTiles(shape, profile, tileStorage(backend, half));
  const [ph, pw] = patchOf(t, shape);
  const bn = t.wgN * t.tn, kq = t.kc / 4, threads = t.wgM * t.wgN;
  // Units of M: (tap, channel quad) of the workgroup's kc channels; a thread has tm / 4 of them.
  const units = taps * kq, perTile = (t.wgM * t.tm) / 4;
  const tilesPerChunk = Math.ceil(units / perTile), chunks = Math.ceil(c / t.kc);
  const blocks = blocksOf(t, batchSize, outHeight, outWidth);
  const splits = splitCount(chunks * tilesPerChunk * Math.ceil(n / bn), blocks.count, profile);
  const perSlice = Math.ceil(blocks.count / splits);
  const slices = Math.ceil(blocks.count / perSlice);
  const m = taps * c;
  const unit = (iq: number) => `(mt * ${perTile} + ${iq * t.wgM} + ty)`;
  const patch = patchCopy(ph, pw, kq, threads, reflect, half);
  // The output gradient at the block's pixels, column quads along N.
  const grads = copySlots("D", t.th * t.tw * bn / 4, threads, (slot) => [
    `
        let dp = ${slot} / ${bn / 4};
        let doy = oy0 + dp / ${t.tw};
        let dox = ox0 + dp % ${t.tw};
        let dn = n0 + (${slot} % ${bn / 4}) * 4;
        let dok = doy < uniforms.oh && dox < uniforms.ow;`,
    load4(
      "dy",
      "((bb * uniforms.oh + doy) * uniforms.ow + dox) * uniforms.n + dn",
      "dok && dn < uniforms.n",
    ),
  ], half);
  const loads: string[] = [];
  for (let k = 0; k < 4; k++) {
    const p = `(p4 * 4 + ${k})`;
    loads.push(
      `let off${k} = ((${p} / ${t.tw}) * uniforms.sy * ${pw} + (${p} % ${t.tw}) * uniforms.sx) * ${kq};`,
    );
    for (let iq = 0; iq < t.tm / 4; iq++) {
      loads.push(`let a${iq}_${k} = ${readTile(half, `P[base${iq} + off${k}]`)};`);
    }
    for (let jq = 0; jq < t.tn / 4; jq++) {
      loads.push(
        `let b${jq}_${k} = ${readTile(half, `D[${p} * ${bn / 4} + ${jq * t.wgN} + tx]`)};`,
      );
    }
  }
  const acc = range(t.tm).flatMap((i) => range(t.tn).map((j) => `var c${i}_${j} = 0.0;`));
  const body = `
    let tid = i32(localIndex);
    let tx = i32(localId.x);
    let ty = i32(localId.y);
    let cm = i32(workgroupId.x) / ${tilesPerChunk};
    let mt = i32(workgroupId.x) - cm * ${tilesPerChunk};
    let c0 = cm * ${t.kc};
    let n0 = i32(workgroupId.y) * ${bn};
    let z = i32(workgroupId.z);
    let blocks = uniforms.blocksY * uniforms.blocksX;
    ${
    range(t.tm / 4).map((iq) => `
    let u${iq} = ${unit(iq)};
    let tap${iq} = u${iq} / ${kq};
    let ky${iq} = tap${iq} / ${kw};
    let base${iq} = (ky${iq} * ${pw} + tap${iq} - ky${iq} * ${kw}) * ${kq} + u${iq} % ${kq};`).join(
      "",
    )
  }
    ${acc.join(" ")}
    let blkEnd = min(uniforms.blocksAll, (z + 1) * uniforms.slice);
    for (var blk = z * uniforms.slice; blk < blkEnd; blk++) {
      let bb = divf(blk, blocks);
      let br = blk - bb * blocks;
      let by = divf(br, uniforms.blocksX);
      let oy0 = by * ${t.th};
      let ox0 = (br - by * uniforms.blocksX) * ${t.tw};
      let iy0 = oy0 * uniforms.sy - uniforms.pt;
      let ix0 = ox0 * uniforms.sx - uniforms.pl;
      ${patch}
      ${grads}
      workgroupBarrier();
      for (var p4 = 0; p4 < ${(t.th * t.tw) / 4}; p4++) {
        ${loads.join("\n        ")}
        ${
    fmaSnippet(t, (i, k) =>
      `a${Math.floor(i / 4)}_${k}.${XYZW[i % 4]}`, (k, j) =>
      `b${Math.floor(j / 4)}_${k}.${XYZW[j % 4]}`)
  }
      }
      workgroupBarrier();
    }
    ${
    range(t.tm).map((i) => {
      const iq = Math.floor(i / 4);
      const cc = `(c0 + (u${iq} % ${kq}) * 4 + ${i % 4})`;
      return storeRow(
        t,
        i,
        `u${iq} < ${units} && ${cc} < uniforms.c`,
        `(z * ${m} + tap${iq} * uniforms.c + ${cc}) * uniforms.n`,
        "uniforms.n",
      );
    }).join("\n    ")
  }`;
  const code = `${half ? ENABLE_F16 : ""}
  var<workgroup> P : array<vec4<${tileType(half)}>, ${ph * pw * kq}>;
  var<workgroup> D : array<vec4<${tileType(half)}>, ${t.th * t.tw * bn / 4}>;
  ${UNIFORM_WORKGROUP_ID}
  ${DIVF}
  ${REFLECT_INTO}
  fn main() {
    ${withUniformWorkgroupId(body)}
  }`;
  const padded = [kh, kw, c, n];
  const partials = run(
    backend,
    `wgrad_${kh}_${kw}_${shape.strides.join("_")}${reflect ? "_reflect" : ""}${half ? "_f16" : ""}`,
    t,
    code,
    { x, dy },
    slices > 1 ? [slices, m, n] : padded,
    [chunks * tilesPerChunk, Math.ceil(n / bn), slices],
    {
      ...blocks.uniforms,
      blocksAll: blocks.count,
      slice: perSlice,
      ih: inHeight,
      iw: inWidth,
      c,
      n,
      oh: outHeight,
      ow: outWidth,
      sy: g.strideHeight,
      sx: g.strideWidth,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
    },
  );
  let dw = partials;
  if (slices > 1) {
    dw = sumSlices(backend, partials, padded, slices);
    backend.disposeData(partials.dataId);
  }
  temps.forEach((d) => backend.disposeData(d.dataId));
  return cropFilter(backend, dw, g, c);
}

/** The filter gradient `dw` [kh, kw, c, n] back to the filter's channels (disposing `dw`). */
function cropFilter(
  backend: WebGPUBackendLike,
  dw: Info,
  g: tf.backend_util.Conv2DInfo,
  c: number,
): Info {
  // Output channels (the last axis), then input channels.
  dw = cropChannels(backend, dw, g.outChannels);
  if (c === g.inChannels) return dw;
  const { filterHeight: kh, filterWidth: kw } = g;
  const cropped = resizeAxis(
    backend,
    dw,
    [kh, kw, g.inChannels, g.outChannels],
    kh * kw,
    c,
    g.inChannels,
    g.outChannels,
  );
  backend.disposeData(dw.dataId);
  return cropped;
}

// Threads the direct filter gradient aims for, slicing its reduction over rows where its filter
// rows x channel quads x column quads are fewer.
const DIRECT_FILTER_THREADS = 512;

/**
 * The filter gradient read in place (software adapters, see {@linkcode directOf}): a thread takes
 * one filter row, input-channel quad and output-channel quad, kw x 4 vec4 accumulators, and walks
 * its slice of output rows pixel by pixel, each pixel one output-gradient read and `sx` new input
 * values into a window along the filter's row. Slices' partial sums are added by `sumSlices`.
 * @returns the gradient with padded channels, [kh, kw, c, n], or undefined where the dispatch
 * would not fit
 */
function filterGradDirect(
  backend: WebGPUBackendLike,
  x: Info,
  dy: Info,
  g: tf.backend_util.Conv2DInfo,
  reflect: boolean,
): Info | undefined {
  const { batchSize, inHeight, inWidth, outHeight, outWidth } = g;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sy, strideWidth: sx } = g;
  const c = roundUp4(g.inChannels), n = roundUp4(g.outChannels);
  const units = kh * (c / 4) * (n / 4), rows = batchSize * outHeight;
  const perSlice = Math.ceil(rows / Math.min(rows, Math.ceil(DIRECT_FILTER_THREADS / units)));
  const slices = Math.ceil(rows / perSlice);
  const groups = Math.ceil((units * slices) / DIRECT_THREADS);
  if (groups > 65535) return undefined;
  const cols = range(kw), quad = range(4);
  const keep = Math.max(0, kw - sx); // window values kept from one pixel to the next
  const read = (col: string) =>
    reflect
      ? `x[(rowAt + reflectInto(${col}, uniforms.iw) * uniforms.c) / 4]`
      : `select(vec4<f32>(0.0), x[(rowAt + clamp(${col}, 0, uniforms.iw - 1) * uniforms.c) / 4], rowOk && ${col} >= 0 && ${col} < uniforms.iw)`;
  const code = `
  ${REFLECT_INTO}
  fn main() {
    let nqs = uniforms.n / 4;
    let units = ${kh} * (uniforms.c / 4) * nqs;
    let thread = i32(workgroupId.x) * ${DIRECT_THREADS} + i32(localIndex);
    let live = thread < units * uniforms.slices;
    let at = min(thread, units * uniforms.slices - 1);
    let z = at / units;
    let u = at - z * units;
    let ky = u / (units / ${kh});
    let cn = u - ky * (units / ${kh});
    let cq = cn / nqs;
    let n0 = (cn - cq * nqs) * 4;
    ${cols.flatMap((j) => quad.map((k) => `var a${j}_${k} = vec4<f32>(0.0);`)).join(" ")}
    ${cols.map((j) => `var w${j} : vec4<f32>;`).join(" ")}
    let rowEnd = min(uniforms.rows, (z + 1) * uniforms.perSlice);
    for (var r = z * uniforms.perSlice; r < rowEnd; r++) {
      let bb = r / uniforms.oh;
      let oy = r - bb * uniforms.oh;
      let iy = oy * ${sy} - uniforms.pt + ky;
      ${
    reflect ? "let ry = reflectInto(iy, uniforms.ih);" : `let rowOk = iy >= 0 && iy < uniforms.ih;
      let ry = clamp(iy, 0, uniforms.ih - 1);`
  }
      let rowAt = (bb * uniforms.ih + ry) * uniforms.iw * uniforms.c + cq * 4;
      let dyAt = r * uniforms.ow * uniforms.n + n0;
      ${range(keep).map((j) => `w${j} = ${read(`${j} - uniforms.pl`)};`).join("\n      ")}
      for (var ox = 0; ox < uniforms.ow; ox++) {
        let ix = ox * ${sx} - uniforms.pl;
        ${cols.slice(keep).map((j) => `w${j} = ${read(`ix + ${j}`)};`).join("\n        ")}
        let d = dy[(dyAt + ox * uniforms.n) / 4];
        ${
    cols.flatMap((j) =>
      quad.map((k) => `a${j}_${k} = fma(vec4<f32>(w${j}.${XYZW[k]}), d, a${j}_${k});`)
    )
      .join("\n        ")
  }
        ${range(keep).map((j) => `w${j} = w${j + sx};`).join(" ")}
      }
    }
    if (live) {
      let row = (z * ${kh} + ky) * ${kw};
      ${
    cols.flatMap((j) =>
      quad.map((k) =>
        `result[(((row + ${j}) * uniforms.c + cq * 4 + ${k}) * uniforms.n + n0) / 4] = a${j}_${k};`
      )
    ).join("\n      ")
  }
    }
  }`;
  const padded = [kh, kw, c, n];
  const partials = run(
    backend,
    `wgrad_${kh}_${kw}_${sy}_${sx}${reflect ? "_reflect" : ""}_direct`,
    { run: kw }, // 16 threads a workgroup (a thread: one row of taps)
    code,
    { x, dy },
    slices > 1 ? [slices, kh * kw * c, n] : padded,
    [groups, 1, 1],
    {
      slices,
      perSlice,
      rows,
      ih: inHeight,
      iw: inWidth,
      c,
      n,
      oh: outHeight,
      ow: outWidth,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
    },
  );
  if (slices === 1) return partials;
  const dw = sumSlices(backend, partials, padded, slices);
  backend.disposeData(partials.dataId);
  return dw;
}

/**
 * The sum over the first axis of `partials` [slices, ...], shaped `shape`: a program of ours with
 * a thread per element, so that a recorded step folds it into the chain that reads the gradient
 * (`fuse.ts`: Adam's update, or the sum of a weight's gradients from its uses).
 */
function sumSlices(
  backend: WebGPUBackendLike,
  partials: Info,
  shape: number[],
  slices: number,
): Info {
  const size = shape.reduce((a, b) => a * b, 1);
  return runThreads(
    backend as unknown as tf.KernelBackend,
    "conv_sum_slices",
    { partials },
    shape,
    size,
    { size, slices },
    `
        var acc = 0.0;
        for (var s = 0; s < uniforms.slices; s++) { acc += partials[s * uniforms.size + index]; }
        result[index] = acc;`,
  );
}

// ---- kernels -------------------------------------------------------------------------------

/** The geometry, or undefined where the stock kernel should run. */
function geometryOf(
  xShape: number[],
  filterShape: number[],
  attrs: ConvAttrs,
  inputs: Info[],
): tf.backend_util.Conv2DInfo | undefined {
  if (inputs.some((t) => t.dtype !== "float32")) return undefined;
  const g = convGeometry(xShape, filterShape, attrs);
  if (!g) return undefined;
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: c, outChannels: oc } = g;
  // Empty tensors go to the stock kernel; flat indices that divf decodes must stay below 2^22.
  if ([b * h * w * c, b * g.outHeight * g.outWidth * oc, c * oc].some((s) => s === 0)) {
    return undefined;
  }
  if (b * Math.max(h * w, g.outHeight * g.outWidth) >= MAX_INDEX) return undefined;
  return g;
}

// A convolution of ours, or undefined where the stock kernel should run.
type Kernel = (args: Args) => Info | undefined;

const conv2dKernel: Kernel = (args) => {
  const { x, filter } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = geometryOf(x.shape, filter.shape, attrs, [x, filter]);
  if (!g) return undefined;
  const backend = args.backend as unknown as WebGPUBackendLike;
  return forward(backend, x, filter, g, profileOf(backend));
};

const conv2dBackpropInputKernel: Kernel = (args) => {
  const { dy, filter } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = geometryOf(attrs.inputShape!, filter.shape, attrs, [dy, filter]);
  if (!g) return undefined;
  const backend = args.backend as unknown as WebGPUBackendLike;
  return inputGrad(backend, dy, filter, g, profileOf(backend));
};

const conv2dBackpropFilterKernel: Kernel = (args) => {
  const { x, dy } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = geometryOf(x.shape, attrs.filterShape!, attrs, [x, dy]);
  if (!g) return undefined;
  const backend = args.backend as unknown as WebGPUBackendLike;
  return filterGrad(backend, x, dy, g, profileOf(backend));
};

// ---- reflection padding read in place (ops/reflect_pad_conv.ts) ------------------------------

// The op's geometry: the convolution of the padded input, its padding read by reflection.
function reflectGeometry(
  xShape: number[],
  filterShape: number[],
  { pad, stride }: ReflectPadConvAttrs,
  inputs: Info[],
) {
  return geometryOf(xShape, filterShape, { strides: stride, pad }, inputs);
}

// Where our kernel cannot run: the padded copy, then the convolution as registered.
function paddedThen(
  args: Args,
  x: Info,
  { pad }: ReflectPadConvAttrs,
  run: (padded: Info) => Info,
): Info {
  const padded = tf.getKernel(REFLECT_PAD, "webgpu")!.kernelFunc({
    inputs: { x },
    backend: args.backend,
    attrs: { padH: pad, padW: pad },
  }) as Info;
  const out = run(padded);
  args.backend.disposeData(padded.dataId);
  return out;
}

function reflectPadConvKernel(args: Args): Info {
  const { x, filter } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ReflectPadConvAttrs;
  const backend = args.backend as unknown as WebGPUBackendLike;
  const g = reflectGeometry(x.shape, filter.shape, attrs, [x, filter]);
  if (g) return forward(backend, x, filter, g, profileOf(backend), true);
  return paddedThen(args, x, attrs, (padded) =>
    tf.getKernel("Conv2D", "webgpu")!.kernelFunc({
      inputs: { x: padded, filter },
      backend: args.backend,
      attrs: { strides: attrs.stride, pad: "valid", dataFormat: "NHWC", dilations: 1 },
    }) as Info);
}

function reflectPadConvFilterGradKernel(args: Args): Info {
  const { x, dy } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ReflectPadConvAttrs & { filterShape: number[] };
  const backend = args.backend as unknown as WebGPUBackendLike;
  const g = reflectGeometry(x.shape, attrs.filterShape, attrs, [x, dy]);
  if (g) return filterGrad(backend, x, dy, g, profileOf(backend), true);
  return paddedThen(
    args,
    x,
    attrs,
    (padded) =>
      tf.getKernel("Conv2DBackpropFilter", "webgpu")!.kernelFunc({
        inputs: { x: padded, dy },
        backend: args.backend,
        attrs: {
          strides: attrs.stride,
          pad: "valid",
          dataFormat: "NHWC",
          dilations: 1,
          filterShape: attrs.filterShape,
        },
      }) as Info,
  );
}

/** The kernel names these convolutions register under. */
export const WEBGPU_CONV_KERNELS: readonly string[] = [
  "Conv2D",
  "Conv2DBackpropInput",
  "Conv2DBackpropFilter",
];

const OURS: Record<string, Kernel> = {
  Conv2D: conv2dKernel,
  Conv2DBackpropInput: conv2dBackpropInputKernel,
  Conv2DBackpropFilter: conv2dBackpropFilterKernel,
};

/**
 * Registers our convolutions for `webgpu` in front of the stock ones (kept as the fallback), or,
 * with `on` false, puts the stock ones back.
 * @param on whether ours should run
 */
export function registerWebGpuConvKernels(on: boolean): void {
  const fused: [string, (args: Args) => Info][] = [
    [REFLECT_PAD_CONV, reflectPadConvKernel],
    [REFLECT_PAD_CONV_FILTER_GRAD, reflectPadConvFilterGradKernel],
  ];
  for (const [kernelName, kernel] of fused) {
    if (tf.getKernel(kernelName, "webgpu")) tf.unregisterKernel(kernelName, "webgpu");
    if (on) {
      tf.registerKernel({
        kernelName,
        backendName: "webgpu",
        kernelFunc: kernel as unknown as tf.KernelFunc,
      });
    }
  }
  for (const name of WEBGPU_CONV_KERNELS) standInFront(name, OURS[name], on);
}
