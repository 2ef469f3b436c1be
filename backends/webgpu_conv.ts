/**
 * Convolutions of ours in WGSL for the `webgpu` backend: `Conv2D`, `Conv2DBackpropInput` and
 * `Conv2DBackpropFilter`, registered under TensorFlow.js's kernel names in front of the stock
 * kernels (which stay the fallback for what these do not take: dilation, NCHW, other dtypes,
 * sizes past 2^22 elements along one GEMM side), so the layers and the autodiff use them
 * unchanged.
 *
 * Each pass is an implicit GEMM, C[M x N] = A[M x K] B[K x N], tiled:
 *
 * - forward: M = batch x output pixels, N = output channels, K = taps x input channels; A is the
 *   input under the filter window (gathered on the fly), B the HWIO filter as it lies.
 * - input gradient: a convolution of the output gradient with the filter, split by stride phase
 *   (the input pixels whose row and column are congruent mod the stride see the same taps), so a
 *   stride-2 gradient does no work on the zeros a transposed convolution would insert; M = batch x
 *   the phase's pixels, N = input channels, K = the phase's taps x output channels.
 * - filter gradient: M = taps x input channels, N = output channels, K = every output pixel of
 *   the batch, split into slices (split-K): one dispatch writes each slice's partial sums, a second
 *   adds the slices (WGSL has no float atomics).
 *
 * A workgroup computes a BM x BN tile of C: per step of `kt` along K its threads copy the A and B
 * tiles into workgroup memory as vec4s (bounds and padding checked there, zeros outside), then
 * each thread accumulates its `tm` x `tn` block in registers from vec4 loads of those tiles. The
 * vec4s run along whichever side of each operand is contiguous in memory (channels), with scalar
 * copies where a channel count is not a multiple of 4. Every size travels as a uniform, so a new
 * geometry compiles nothing; the shader key holds the tile configuration and vector widths only.
 *
 * The tile configuration is chosen per geometry and adapter ({@linkcode convTiles}): on a software
 * adapter (lavapipe), where every load from memory inside a loop is a per-lane gather costing
 * about 30 FMAs, large blocks per thread (8 x 8) that do the most arithmetic per load; on a GPU,
 * 4 x 4 blocks over more threads.
 *
 * Everything runs through tfjs-backend-webgpu's `runWebGPUProgram` (temporaries disposed with
 * `disposeData`), so a recorder of its dispatches sees every step.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

type Info = tf.TensorInfo;
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
type Uniform = { type: "int32" | "float32"; data: number[] };
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: Info[], dtype: tf.DataType, uniforms?: Uniform[]): Info;
  disposeData(dataId: object): boolean;
  device?: { adapterInfo?: Record<string, unknown>; limits?: Record<string, unknown> };
}
interface ConvAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: [number, number] | number;
  dimRoundingMode?: "floor" | "round" | "ceil";
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

/** Which convolution pass a program computes. */
export type ConvPass = "forward" | "inputGrad" | "filterGrad";

/**
 * The tile configuration of a convolution program: with the vector widths, all that changes its
 * WGSL. A workgroup has `wgM x wgN` threads and computes `wgM * tm` rows by `wgN * tn` columns of
 * the GEMM, `kt` deep per step through workgroup memory.
 */
export interface ConvTiles {
  /** Threads along M (output rows of the GEMM). */
  readonly wgM: number;
  /** Threads along N (output columns). */
  readonly wgN: number;
  /** Rows per thread (a multiple of 4). */
  readonly tm: number;
  /** Columns per thread (a multiple of 4). */
  readonly tn: number;
  /** Depth along K per step (a multiple of 4). */
  readonly kt: number;
}

/** Tile profiles: `software` for CPU-emulated adapters (lavapipe), `gpu` for the rest. */
export type ConvProfile = "software" | "gpu";

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

let profileOverride: ConvProfile | undefined;
let tilesOverride: ((m: number, n: number, profile: ConvProfile) => ConvTiles) | undefined;

/**
 * Replaces the tile choice (tuning on a new device), or restores ours with undefined.
 * @param choose the tiles for an M x N GEMM on a profile
 */
export function setConvTiles(
  choose: ((m: number, n: number, profile: ConvProfile) => ConvTiles) | undefined,
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

const pow2Below = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));
const pow2Above = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * The tile configuration for an M x N GEMM on a profile. Per thread, 16 x 8 or 8 x 8 blocks on
 * a software adapter (each load there costs as much as 30 to 50 FMAs, so the most arithmetic per
 * load wins) and 4 x 4 on a GPU; enough threads along N to cover the columns, the rest along M
 * (no more than the rows need); then the deepest K step whose tiles fit in `storage` bytes of
 * workgroup memory.
 * @param m the GEMM's rows
 * @param n the GEMM's columns
 * @param profile the adapter's profile
 * @param storage workgroup memory available, in bytes
 * @returns the tiles
 */
export function convTiles(m: number, n: number, profile: ConvProfile, storage = 16384): ConvTiles {
  if (tilesOverride) return tilesOverride(m, n, profile);
  const soft = profile === "software";
  const tn = n <= 4 || !soft ? 4 : 8;
  const wgN = Math.min(soft ? 8 : 16, pow2Below(Math.ceil(n / tn)));
  const tm = soft ? (wgN >= 4 ? 16 : 8) : 4;
  // Threads along M: up to 64 (software) or 256 threads, 128 rows (GPU), the rows there are,
  // and at least 8 threads (a software adapter's SIMD width, a quarter of a warp).
  let wgM = Math.min(soft ? 64 / wgN : Math.min(32, 256 / wgN), pow2Above(Math.ceil(m / tm)));
  wgM = Math.max(wgM, Math.ceil(8 / wgN));
  // A is staged unless one thread along N reads it (see directA).
  const rowsStaged = wgN === 1 ? 0 : wgM * tm;
  for (const kt of [32, 16, 8]) {
    if ((rowsStaged + wgN * tn) * kt * 4 <= storage) return { wgM, wgN, tm, tn, kt };
  }
  return { wgM: Math.max(1, Math.floor(wgM / 4)), wgN, tm, tn, kt: 8 };
}

/** Workgroup memory the device gives a workgroup, in bytes. */
function storageOf(backend: WebGPUBackendLike): number {
  return Number(backend.device?.limits?.maxComputeWorkgroupStorageSize) || 16384;
}

const range = (n: number) => [...Array(n).keys()];

/** Uniform declarations (all i32) and their data, in one order. */
function uniformsOf(values: Record<string, number>): { decl: string; data: Uniform[] } {
  return {
    decl: Object.keys(values).map((k) => `${k} : i32,`).join(" "),
    data: Object.values(values).map((v): Uniform => ({ type: "int32", data: [v] })),
  };
}

/**
 * The direction of each operand's vec4s in workgroup memory: A along K (`k`) or along M (`m`),
 * B along K (`k`) or along N (`n`); whichever is contiguous in the tensor it is read from.
 */
interface Layout {
  readonly a: "k" | "m";
  readonly b: "k" | "n";
}

/**
 * An operand of the GEMM as a pass reads it from global memory. Its tile in workgroup memory is
 * `units` x `depth` vec4s at `[depth * units + unit]`: units along M (A) or N (B), each a row or
 * column (vec4 along K) or a quad of them (vec4 along M or N); depth along K, each a K index or a
 * quad of them. A pass says how a unit's fixed part is set up, how a depth index decodes (once
 * per tile, shared by the units), and the vec4 at a unit and depth index.
 */
interface Operand {
  readonly units: number;
  readonly depth: number;
  /** Setup of the unit at tile index `idx`: `let`s named with prefix `u`. */
  unit(u: string, idx: string): string;
  /** Decode of the depth index `idx` of tile `k0`: `let`s named with prefix `d`. */
  depthAt(d: string, idx: string): string;
  /** The vec4 at unit `u` and depth `d`: statements, then the expression. */
  value(u: string, d: string): [string, string];
}

/** The thread-invariant setup and the per-tile copy of an operand into workgroup memory. */
function staging(name: string, op: Operand, threads: number): { setup: string; copy: string } {
  const { units: r, depth: dd } = op;
  const store = (u: string, d: string, unit: string, depth: string) => {
    const [pre, e] = op.value(u, d);
    return `${pre}\n        ${name}[(${depth}) * ${r} + ${unit}] = ${e};`;
  };
  if (threads % r === 0) {
    // Each thread copies one unit at several depths.
    const step = threads / r;
    const unit = r === 1 ? "0" : `tid % ${r}`;
    const copy = range(Math.ceil(dd / step)).map((p) => {
      const depth = `tid / ${r} + ${p * step}`;
      const body = `${op.depthAt(`${name}d`, depth)}${store(`${name}u`, `${name}d`, unit, depth)}`;
      return (p + 1) * step > dd ? `if (${depth} < ${dd}) {${body}\n      }` : `{${body}\n      }`;
    });
    return { setup: op.unit(`${name}u`, unit), copy: copy.join("\n      ") };
  }
  // Each thread copies several units (r is a multiple of threads: both are powers of two) at
  // every depth.
  const each = range(r / threads);
  const unit = (j: number) => `tid + ${j * threads}`;
  const copy = range(dd).map((d) =>
    `{${op.depthAt(`${name}d`, `${d}`)}${
      each.map((j) => store(`${name}u${j}`, `${name}d`, unit(j), `${d}`)).join("")
    }\n      }`
  );
  return {
    setup: each.map((j) => op.unit(`${name}u${j}`, unit(j))).join(""),
    copy: copy.join("\n      "),
  };
}

/** Workgroup memory declarations: A's tile unless A is read directly. */
function sharedDecl(t: ConvTiles, direct: boolean): string {
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  return `
  ${direct ? "" : `var<workgroup> As : array<vec4<f32>, ${(bm * t.kt) / 4}>;`}
  var<workgroup> Bs : array<vec4<f32>, ${(bn * t.kt) / 4}>;`;
}

/**
 * The thread's unit (in the workgroup's tile) holding its block row i: the row itself (A along
 * K) or its quad of rows (A along M).
 */
function rowUnit(t: ConvTiles, l: Layout, i: number): string {
  return l.a === "k" ? `${i * t.wgM} + ty` : `${Math.floor(i / 4) * t.wgM} + ty`;
}

/** The thread's row (in the workgroup's tile) of block row i. */
function rowOf(t: ConvTiles, l: Layout, i: number): string {
  return l.a === "k" ? rowUnit(t, l, i) : `(${rowUnit(t, l, i)}) * 4 + ${i % 4}`;
}

/** The thread's first column of column quad jq (4 consecutive columns). */
function colOf(t: ConvTiles, jq: number): string {
  return `(${jq * t.wgN} + tx) * 4`;
}

/** Where A is read directly: the thread's units, set up once. */
function directSetup(t: ConvTiles, l: Layout, a: Operand): string {
  const n = l.a === "k" ? t.tm : t.tm / 4;
  return range(n).map((i) => a.unit(`r${i}`, rowUnit(t, l, l.a === "k" ? i : 4 * i))).join("");
}

/**
 * The multiply-accumulate of one K tile: per quad of K, the thread's A fragments (from workgroup
 * memory, or straight from global memory where `direct`) and B fragments as vec4 loads, then
 * tm * tn * 4 FMAs into its accumulators `c{i}_{j}`.
 */
function computeSnippet(t: ConvTiles, l: Layout, direct?: Operand): string {
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  const rows = range(t.tm), cols = range(t.tn);
  const loads: string[] = [];
  let aOf: (i: number, k: number) => string;
  let bOf: (k: number, j: number) => string;
  if (l.a === "k") {
    if (direct) loads.push(direct.depthAt("dq", "q"));
    for (const i of rows) {
      if (!direct) {
        loads.push(`let a${i} = As[q * ${bm} + ${rowUnit(t, l, i)}];`);
        continue;
      }
      const [pre, e] = direct.value(`r${i}`, "dq");
      loads.push(`${pre}\n        let a${i} = ${e};`);
    }
    aOf = (i, k) => `a${i}.${XYZW[k]}`;
  } else {
    for (let k = 0; k < 4; k++) {
      if (direct) loads.push(direct.depthAt(`dq${k}`, `q * 4 + ${k}`));
      for (let iq = 0; iq < t.tm / 4; iq++) {
        if (!direct) {
          loads.push(`let a${iq}_${k} = As[(q * 4 + ${k}) * ${bm / 4} + ${iq * t.wgM} + ty];`);
          continue;
        }
        const [pre, e] = direct.value(`r${iq}`, `dq${k}`);
        loads.push(`${pre}\n        let a${iq}_${k} = ${e};`);
      }
    }
    aOf = (i, k) => `a${Math.floor(i / 4)}_${k}.${XYZW[i % 4]}`;
  }
  if (l.b === "n") {
    for (let k = 0; k < 4; k++) {
      for (let jq = 0; jq < t.tn / 4; jq++) {
        loads.push(`let b${jq}_${k} = Bs[(q * 4 + ${k}) * ${bn / 4} + ${jq * t.wgN} + tx];`);
      }
    }
    bOf = (k, j) => `b${Math.floor(j / 4)}_${k}.${XYZW[j % 4]}`;
  } else {
    cols.forEach((j) =>
      loads.push(`let b${j} = Bs[q * ${bn} + ${colOf(t, Math.floor(j / 4))} + ${j % 4}];`)
    );
    bOf = (k, j) => `b${j}.${XYZW[k]}`;
  }
  // Each accumulator takes its four FMAs in a row: on a software adapter, where the accumulators
  // live in memory, it is then read and written once per quad rather than four times.
  const fmas = rows.flatMap((i) =>
    cols.map((j) =>
      `c${i}_${j} = ${
        range(4).reduce((e, k) => `fma(${aOf(i, k)}, ${bOf(k, j)}, ${e})`, `c${i}_${j}`)
      };`
    )
  );
  return `
      for (var q = 0; q < ${t.kt / 4}; q++) {
        ${loads.join("\n        ")}
        ${fmas.join("\n        ")}
      }`;
}

/** A convolution GEMM program: its WGSL pieces, the rest being common. */
interface GemmParts {
  readonly key: string;
  readonly tiles: ConvTiles;
  readonly layout: Layout;
  readonly a: Operand;
  readonly b: Operand;
  /** Values of the workgroup before the operands' setup, `kBeg` and `kEnd` (its K range) among them. */
  readonly head: string;
  /** Stores block row i of the accumulators `c{i}_{j}`. */
  store(i: number): string;
}

/** Whether A goes straight from global memory: one thread along N reads each value once. */
const directA = (t: ConvTiles) => t.wgN === 1;

function gemmCode(p: GemmParts): string {
  const { tiles: t, layout: l } = p;
  const threads = t.wgM * t.wgN;
  const direct = directA(t);
  const a = direct ? undefined : staging("As", p.a, threads);
  const b = staging("Bs", p.b, threads);
  const acc = range(t.tm).flatMap((i) => range(t.tn).map((j) => `var c${i}_${j} = 0.0;`));
  return `
  ${sharedDecl(t, direct)}
  ${DIVF}
  fn main() {
    let tid = i32(localIndex);
    let tx = i32(localId.x);
    let ty = i32(localId.y);
    let m0 = i32(workgroupId.x) * ${t.wgM * t.tm};
    let n0 = i32(workgroupId.y) * ${t.wgN * t.tn};
    ${p.head}
    ${direct ? directSetup(t, l, p.a) : a!.setup}
    ${b.setup}
    ${acc.join(" ")}
    for (var k0 = kBeg; k0 < kEnd; k0 += ${t.kt}) {
      ${a?.copy ?? ""}
      ${b.copy}
      workgroupBarrier();
      ${computeSnippet(t, l, direct ? p.a : undefined)}
      workgroupBarrier();
    }
    ${range(t.tm).map((i) => p.store(i)).join("\n")}
  }`;
}

/** Stores one accumulator row at flat output offset `at` + column, columns < `nMax`. */
function storeRow(t: ConvTiles, i: number, ok: string, at: string, nMax: string, vec: boolean) {
  return range(t.tn / 4).map((jq) => {
    const n = `n0 + ${colOf(t, jq)}`;
    const v = range(4).map((u) => `c${i}_${jq * 4 + u}`);
    if (vec) {
      return `if (${ok} && ${n} < ${nMax}) { result[(${at} + ${n}) / 4] = vec4<f32>(${
        v.join(", ")
      }); }`;
    }
    return range(4).map((u) =>
      `if (${ok} && ${n} + ${u} < ${nMax}) { result[${at} + ${n} + ${u}] = ${v[u]}; }`
    ).join("\n    ");
  }).join("\n    ");
}

/** A vec4 from global memory `buf` at element offset `at` (a multiple of 4) where `ok`, else 0. */
const load4 = (buf: string, at: string, ok: string) =>
  `select(vec4<f32>(0.0), ${buf}[select(0, (${at}) / 4, ${ok})], ${ok})`;
/** A scalar from `buf` at `at` where `ok`, else 0. */
const load1 = (buf: string, at: string, ok: string) =>
  `select(0.0, ${buf}[select(0, ${at}, ${ok})], ${ok})`;

/**
 * A vec4 of four values along K: one decode and one vec4 load where the channels are a multiple
 * of 4 (the four share a tap), else four decodes (suffixes `_0`..`_3`) and four scalar loads.
 * `decode(d, k)` defines `let`s with prefix d for K index k; `at(d)` is the element offset and
 * `ok(d)` the condition, both given a decode's prefix.
 */
function alongK(
  vec: boolean,
  decode: (d: string, k: string) => string,
  k: string,
): {
  depthAt: (d: string) => string;
  value: (
    buf: string,
    at: (d: string) => string,
    ok: (d: string) => string,
    d: string,
  ) => [string, string];
} {
  return {
    depthAt: (d) =>
      vec ? decode(d, k) : range(4).map((u) => decode(`${d}_${u}`, `(${k} + ${u})`)).join(""),
    value: (buf, at, ok, d) =>
      vec ? ["", load4(buf, at(d), ok(d))] : [
        "",
        `vec4<f32>(${
          range(4).map((u) => load1(buf, at(`${d}_${u}`), ok(`${d}_${u}`))).join(", ")
        })`,
      ],
  };
}

/** A B operand read along N from a [K, N] matrix `buf` (K index `k0 + depth`, column quads). */
function alongN(
  buf: string,
  bn: number,
  kt: number,
  vecN: boolean,
  kOk: (k: string) => string,
): Operand {
  return {
    units: bn / 4,
    depth: kt,
    unit: (u, idx) => `
    let ${u}N = n0 + (${idx}) * 4;`,
    depthAt: (d, idx) => `
        let ${d}K = k0 + ${idx};`,
    value: (u, d) => {
      const at = `${d}K * uniforms.n + ${u}N`;
      if (vecN) return ["", load4(buf, at, `${kOk(`${d}K`)} && ${u}N < uniforms.n`)];
      return [
        "",
        `vec4<f32>(${
          range(4).map((c) =>
            load1(buf, `${at} + ${c}`, `${kOk(`${d}K`)} && ${u}N + ${c} < uniforms.n`)
          )
            .join(", ")
        })`,
      ];
    },
  };
}

function runGemm(
  backend: WebGPUBackendLike,
  parts: GemmParts,
  variableNames: string[],
  variableComponents: number[],
  inputs: Info[],
  outputShape: number[],
  outVec: boolean,
  dispatch: [number, number, number],
  uniforms: Record<string, number>,
): Info {
  const u = uniformsOf(uniforms);
  const t = parts.tiles;
  const program = {
    variableNames,
    variableComponents,
    outputComponent: outVec ? 4 : 1,
    outputShape,
    shaderKey: `ugatit_conv_${parts.key}_${t.wgM}_${t.wgN}_${t.tm}_${t.tn}_${t.kt}_${outVec}`,
    // y and z in the layout make tfjs call main() without an index (the dispatch is ours).
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch,
    workgroupSize: [t.wgN, t.wgM, 1] as [number, number, number],
    uniforms: u.decl,
    getUserCode: () => gemmCode(parts),
  };
  return backend.runWebGPUProgram(program, inputs, "float32", u.data);
}

// ---- forward -------------------------------------------------------------------------------

function forward(
  backend: WebGPUBackendLike,
  x: Info,
  w: Info,
  g: tf.backend_util.Conv2DInfo,
  t: ConvTiles,
): Info {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth, outChannels } = g;
  const vecC = c % 4 === 0, vecN = outChannels % 4 === 0;
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  const l: Layout = { a: "k", b: "n" };
  // K index k: tap (ky, kx) and input channel.
  const k4 = (idx: string) =>
    alongK(vecC, (d, k) => `
        let ${d}Tap = divf(${k}, uniforms.c);
        let ${d}Ch = ${k} - ${d}Tap * uniforms.c;
        let ${d}Ky = divf(${d}Tap, uniforms.kw);
        let ${d}Kx = ${d}Tap - ${d}Ky * uniforms.kw;
        let ${d}Ok = ${k} < uniforms.k;`, `k0 + (${idx}) * 4`);
  // A unit: a row, i.e. an output pixel (b, oy, ox), and where its window starts in the input.
  const a: Operand = {
    units: bm,
    depth: t.kt / 4,
    unit: (u, idx) => `
    let ${u}M = m0 + ${idx};
    let ${u}B = divf(${u}M, uniforms.ohw);
    let ${u}R = ${u}M - ${u}B * uniforms.ohw;
    let ${u}Oy = divf(${u}R, uniforms.ow);
    let ${u}Iy = ${u}Oy * uniforms.sh - uniforms.pt;
    let ${u}Ix = (${u}R - ${u}Oy * uniforms.ow) * uniforms.sw - uniforms.pl;
    let ${u}Ok = ${u}M < uniforms.m;
    let ${u}Base = ${u}B * uniforms.h;`,
    depthAt: (d, idx) => k4(idx).depthAt(d),
    value: (u, d) => {
      const y = (dd: string) => `(${u}Iy + ${dd}Ky)`, xx = (dd: string) => `(${u}Ix + ${dd}Kx)`;
      return k4("0").value(
        "x",
        (dd) => `((${u}Base + ${y(dd)}) * uniforms.w + ${xx(dd)}) * uniforms.c + ${dd}Ch`,
        (dd) =>
          `${u}Ok && ${dd}Ok && ${y(dd)} >= 0 && ${y(dd)} < uniforms.h && ${xx(dd)} >= 0 && ` +
          `${xx(dd)} < uniforms.w`,
        d,
      );
    },
  };
  const parts: GemmParts = {
    key: `fwd_${vecC}_${vecN}_${directA(t)}`,
    tiles: t,
    layout: l,
    a,
    b: alongN("w", bn, t.kt, vecN, (k) => `${k} < uniforms.k`),
    head: "let kBeg = 0;\n    let kEnd = uniforms.k;",
    store: (i) => {
      const m = `(m0 + ${rowOf(t, l, i)})`;
      return storeRow(t, i, `${m} < uniforms.m`, `${m} * uniforms.n`, "uniforms.n", vecN);
    },
  };
  const m = batchSize * outHeight * outWidth;
  return runGemm(
    backend,
    parts,
    ["x", "w"],
    [vecC ? 4 : 1, vecN ? 4 : 1],
    [x, w],
    [batchSize, outHeight, outWidth, outChannels],
    vecN,
    [Math.ceil(m / bm), Math.ceil(outChannels / bn), 1],
    {
      m,
      n: outChannels,
      k: g.filterHeight * g.filterWidth * c,
      c,
      h: inHeight,
      w: inWidth,
      ow: outWidth,
      ohw: outHeight * outWidth,
      kw: g.filterWidth,
      sh: g.strideHeight,
      sw: g.strideWidth,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
    },
  );
}

// ---- input gradient ------------------------------------------------------------------------

function inputGrad(
  backend: WebGPUBackendLike,
  dy: Info,
  w: Info,
  g: tf.backend_util.Conv2DInfo,
  t: ConvTiles,
): Info {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels: oc } = g;
  const { strideHeight: sh, strideWidth: sw } = g;
  const vecO = oc % 4 === 0, vecN = inChannels % 4 === 0;
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  const l: Layout = { a: "k", b: "k" };
  // K index of the phase: its tap (jy, jx) among the phase's taps and its output channel.
  const k4 = (idx: string) =>
    alongK(vecO, (d, k) => `
        let ${d}Tap = divf(${k}, uniforms.oc);
        let ${d}Ch = ${k} - ${d}Tap * uniforms.oc;
        let ${d}Jy = divf(${d}Tap, phaseKw);
        let ${d}Jx = ${d}Tap - ${d}Jy * phaseKw;
        let ${d}Ok = ${k} < kEnd;`, `k0 + (${idx}) * 4`);
  // The phase (ry, rx) of this workgroup, its first taps (ky0, kx0), the offsets from a phase
  // pixel to the output pixel of its first tap, and its taps per axis.
  const head = `
    let ry = i32(workgroupId.z) / uniforms.sw;
    let rx = i32(workgroupId.z) - ry * uniforms.sw;
    let ky0 = (ry + uniforms.pt) % uniforms.sh;
    let kx0 = (rx + uniforms.pl) % uniforms.sw;
    let dy0 = (ry + uniforms.pt) / uniforms.sh;
    let dx0 = (rx + uniforms.pl) / uniforms.sw;
    let phaseKh = (uniforms.kh - ky0 + uniforms.sh - 1) / uniforms.sh;
    let phaseKw = (uniforms.kw - kx0 + uniforms.sw - 1) / uniforms.sw;
    let kBeg = 0;
    let kEnd = phaseKh * phaseKw * uniforms.oc;`;
  // Row m of a phase: batch b, phase pixel (qy, qx), input pixel (qy * sh + ry, qx * sw + rx).
  const rowInfo = (u: string, m: string) => `
    let ${u}M = ${m};
    let ${u}B = divf(${u}M, uniforms.qhw);
    let ${u}R = ${u}M - ${u}B * uniforms.qhw;
    let ${u}Qy = divf(${u}R, uniforms.qw);
    let ${u}Qx = ${u}R - ${u}Qy * uniforms.qw;
    let ${u}Iy = ${u}Qy * uniforms.sh + ry;
    let ${u}Ix = ${u}Qx * uniforms.sw + rx;
    let ${u}Ok = ${u}M < uniforms.mq && ${u}Iy < uniforms.h && ${u}Ix < uniforms.w;`;
  const a: Operand = {
    units: bm,
    depth: t.kt / 4,
    unit: (u, idx) => rowInfo(u, `m0 + ${idx}`),
    depthAt: (d, idx) => k4(idx).depthAt(d),
    value: (u, d) => {
      const y = (dd: string) => `(${u}Qy + dy0 - ${dd}Jy)`;
      const xx = (dd: string) => `(${u}Qx + dx0 - ${dd}Jx)`;
      return k4("0").value(
        "dy",
        (dd) =>
          `((${u}B * uniforms.oh + ${y(dd)}) * uniforms.ow + ${xx(dd)}) * uniforms.oc + ${dd}Ch`,
        (dd) =>
          `${u}Ok && ${dd}Ok && ${y(dd)} >= 0 && ${y(dd)} < uniforms.oh && ${xx(dd)} >= 0 && ` +
          `${xx(dd)} < uniforms.ow`,
        d,
      );
    },
  };
  // B unit: a column (input channel): W[ky, kx, column, oc..oc+3], contiguous along K.
  const b: Operand = {
    units: bn,
    depth: t.kt / 4,
    unit: (u, idx) => `
    let ${u}N = n0 + ${idx};`,
    depthAt: (d, idx) => k4(idx).depthAt(d),
    value: (u, d) =>
      k4("0").value(
        "w",
        (dd) =>
          `(((ky0 + ${dd}Jy * uniforms.sh) * uniforms.kw + kx0 + ${dd}Jx * uniforms.sw) * ` +
          `uniforms.ic + ${u}N) * uniforms.oc + ${dd}Ch`,
        (dd) => `${u}N < uniforms.ic && ${dd}Ok`,
        d,
      ),
  };
  const parts: GemmParts = {
    key: `dgrad_${vecO}_${vecN}_${directA(t)}`,
    tiles: t,
    layout: l,
    a,
    b,
    head,
    store: (i) =>
      `{${rowInfo("o", `m0 + ${rowOf(t, l, i)}`)}
    let at = ((oB * uniforms.h + oIy) * uniforms.w + oIx) * uniforms.ic;
    ${storeRow(t, i, "oOk", "at", "uniforms.ic", vecN)}
    }`,
  };
  const qh = Math.ceil(inHeight / sh), qw = Math.ceil(inWidth / sw);
  const mq = batchSize * qh * qw;
  return runGemm(
    backend,
    parts,
    ["dy", "w"],
    [vecO ? 4 : 1, vecO ? 4 : 1],
    [dy, w],
    [batchSize, inHeight, inWidth, inChannels],
    vecN,
    [Math.ceil(mq / bm), Math.ceil(inChannels / bn), sh * sw],
    {
      mq,
      qw,
      qhw: qh * qw,
      h: inHeight,
      w: inWidth,
      ic: inChannels,
      oc,
      oh: outHeight,
      ow: outWidth,
      kh: g.filterHeight,
      kw: g.filterWidth,
      sh,
      sw,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
    },
  );
}

// ---- filter gradient -----------------------------------------------------------------------

/**
 * How many K slices the filter gradient splits into: enough workgroups to fill the device
 * (`target`), each slice at least `minTiles` K tiles deep.
 * @param tilesMN workgroups of one slice
 * @param k the reduction length (output pixels of the batch)
 * @param kt the tile depth
 * @param profile the adapter's profile
 * @returns the slice count
 */
export function splitCount(tilesMN: number, k: number, kt: number, profile: ConvProfile): number {
  const target = profile === "software" ? 16 : 512;
  const minTiles = profile === "software" ? 8 : 4;
  const most = Math.max(1, Math.floor(k / (kt * minTiles)));
  return Math.max(1, Math.min(most, Math.ceil(target / tilesMN), 1024));
}

function filterGrad(
  backend: WebGPUBackendLike,
  x: Info,
  dy: Info,
  g: tf.backend_util.Conv2DInfo,
  t: ConvTiles,
  profile: ConvProfile,
): Info {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth, outChannels: oc } = g;
  const vecC = c % 4 === 0, vecN = oc % 4 === 0;
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  const l: Layout = { a: "m", b: "n" };
  const m = g.filterHeight * g.filterWidth * c;
  const k = batchSize * outHeight * outWidth;
  const tilesMN = Math.ceil(m / bm) * Math.ceil(oc / bn);
  const splits = splitCount(tilesMN, k, t.kt, profile);
  const perSlice = Math.ceil(Math.ceil(k / splits) / t.kt) * t.kt;
  const slices = Math.ceil(k / perSlice);
  // Row m = (ky, kx, ci): tap and channel.
  const rowInfo = (u: string, row: string) => `
    let ${u}Tap = divf(${row}, uniforms.c);
    let ${u}C = ${row} - ${u}Tap * uniforms.c;
    let ${u}Ky = divf(${u}Tap, uniforms.kw);
    let ${u}Kx = ${u}Tap - ${u}Ky * uniforms.kw;
    let ${u}Ok = ${row} < uniforms.m;`;
  // A unit: a quad of rows (one tap when C % 4 == 0, else a tap each); depth: an output pixel.
  const a: Operand = {
    units: bm / 4,
    depth: t.kt,
    unit: (u, idx) =>
      vecC
        ? rowInfo(u, `(m0 + (${idx}) * 4)`)
        : range(4).map((r) => rowInfo(`${u}_${r}`, `(m0 + (${idx}) * 4 + ${r})`)).join(""),
    depthAt: (d, idx) => `
        let ${d}P = k0 + ${idx};
        let ${d}B = divf(${d}P, uniforms.ohw);
        let ${d}R = ${d}P - ${d}B * uniforms.ohw;
        let ${d}Oy = divf(${d}R, uniforms.ow);
        let ${d}Iy = ${d}Oy * uniforms.sh - uniforms.pt;
        let ${d}Ix = (${d}R - ${d}Oy * uniforms.ow) * uniforms.sw - uniforms.pl;
        let ${d}Ok = ${d}P < kEnd;`,
    value: (u, d) => {
      const one = (uu: string) => {
        const y = `(${d}Iy + ${uu}Ky)`, xx = `(${d}Ix + ${uu}Kx)`;
        return [
          `((${d}B * uniforms.h + ${y}) * uniforms.w + ${xx}) * uniforms.c + ${uu}C`,
          `${d}Ok && ${uu}Ok && ${y} >= 0 && ${y} < uniforms.h && ${xx} >= 0 && ${xx} < uniforms.w`,
        ];
      };
      if (vecC) return ["", load4("x", ...(one(u) as [string, string]))];
      return [
        "",
        `vec4<f32>(${
          range(4).map((r) => load1("x", ...(one(`${u}_${r}`) as [string, string]))).join(", ")
        })`,
      ];
    },
  };
  const parts: GemmParts = {
    key: `wgrad_${vecC}_${vecN}_${directA(t)}`,
    tiles: t,
    layout: l,
    a,
    // B: dy at output pixel k, contiguous along N.
    b: alongN("dy", bn, t.kt, vecN, (kk) => `${kk} < kEnd`),
    head: `
    let kBeg = i32(workgroupId.z) * uniforms.slice;
    let kEnd = min(uniforms.k, kBeg + uniforms.slice);`,
    store: (i) => {
      const row = `(m0 + ${rowOf(t, l, i)})`;
      return storeRow(
        t,
        i,
        `${row} < uniforms.m`,
        `(i32(workgroupId.z) * uniforms.m + ${row}) * uniforms.n`,
        "uniforms.n",
        vecN,
      );
    },
  };
  const filterShape = [g.filterHeight, g.filterWidth, c, oc];
  const partials = runGemm(
    backend,
    parts,
    ["x", "dy"],
    [vecC ? 4 : 1, vecN ? 4 : 1],
    [x, dy],
    slices > 1 ? [slices, m, oc] : filterShape,
    vecN,
    [Math.ceil(m / bm), Math.ceil(oc / bn), slices],
    {
      m,
      n: oc,
      k,
      c,
      h: inHeight,
      w: inWidth,
      ow: outWidth,
      ohw: outHeight * outWidth,
      kw: g.filterWidth,
      sh: g.strideHeight,
      sw: g.strideWidth,
      pt: g.padInfo.top,
      pl: g.padInfo.left,
      slice: perSlice,
    },
  );
  if (slices === 1) return partials;
  const out = sumSlices(backend, partials, filterShape, slices);
  backend.disposeData(partials.dataId);
  return out;
}

const REDUCE_THREADS = 64;

/** The sum over the first axis of `partials` [slices, ...], shaped `shape`. */
function sumSlices(
  backend: WebGPUBackendLike,
  partials: Info,
  shape: number[],
  slices: number,
): Info {
  const size = shape.reduce((a, b) => a * b, 1);
  const vec = size % 4 === 0;
  const items = vec ? size / 4 : size;
  const u = uniformsOf({ items, slices });
  const zero = vec ? "vec4<f32>(0.0)" : "0.0";
  const program = {
    variableNames: ["partials"],
    variableComponents: [vec ? 4 : 1],
    outputComponent: vec ? 4 : 1,
    outputShape: shape,
    shaderKey: `ugatit_conv_sum_${vec}`,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(items / REDUCE_THREADS), 1, 1] as [number, number, number],
    workgroupSize: [REDUCE_THREADS, 1, 1] as [number, number, number],
    uniforms: u.decl,
    getUserCode: () => `
  fn main() {
    let i = i32(globalId.x);
    if (i >= uniforms.items) { return; }
    var acc = ${zero};
    for (var s = 0; s < uniforms.slices; s++) { acc += partials[s * uniforms.items + i]; }
    result[i] = acc;
  }`,
  };
  return backend.runWebGPUProgram(program, [partials], "float32", u.data);
}

// ---- kernels -------------------------------------------------------------------------------

function dilated(d: ConvAttrs["dilations"]): boolean {
  return d !== undefined && (Array.isArray(d) ? d.some((v) => v !== 1) : d !== 1);
}

/** The geometry, or undefined where the stock kernel should run. */
function geometryOf(
  xShape: number[],
  filterShape: number[],
  attrs: ConvAttrs,
  inputs: Info[],
): tf.backend_util.Conv2DInfo | undefined {
  if (attrs.dataFormat === "NCHW" || dilated(attrs.dilations)) return undefined;
  if (inputs.some((t) => t.dtype !== "float32")) return undefined;
  const g = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: c, outChannels: oc } = g;
  // Empty tensors go to the stock kernel; flat indices that divf decodes must stay below 2^22.
  if ([b * h * w * c, b * g.outHeight * g.outWidth * oc, c * oc].some((s) => s === 0)) {
    return undefined;
  }
  const decoded = [
    b * g.outHeight * g.outWidth,
    b * h * w,
    g.filterHeight * g.filterWidth * c * oc,
  ];
  if (decoded.some((s) => s >= MAX_INDEX)) return undefined;
  return g;
}

type Kernel = (args: Args, stock: tf.KernelFunc) => Info;

const conv2dKernel: Kernel = (args, stock) => {
  const { x, filter } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = geometryOf(x.shape, filter.shape, attrs, [x, filter]);
  if (!g) return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  const backend = args.backend as unknown as WebGPUBackendLike;
  const m = g.batchSize * g.outHeight * g.outWidth;
  const tiles = convTiles(m, g.outChannels, profileOf(backend), storageOf(backend));
  return forward(backend, x, filter, g, tiles);
};

const conv2dBackpropInputKernel: Kernel = (args, stock) => {
  const { dy, filter } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = geometryOf(attrs.inputShape!, filter.shape, attrs, [dy, filter]);
  if (!g) return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  const backend = args.backend as unknown as WebGPUBackendLike;
  const m = g.batchSize * Math.ceil(g.inHeight / g.strideHeight) *
    Math.ceil(g.inWidth / g.strideWidth);
  const tiles = convTiles(m, g.inChannels, profileOf(backend), storageOf(backend));
  return inputGrad(backend, dy, filter, g, tiles);
};

const conv2dBackpropFilterKernel: Kernel = (args, stock) => {
  const { x, dy } = args.inputs as Record<string, Info>;
  const attrs = args.attrs as unknown as ConvAttrs;
  const g = geometryOf(x.shape, attrs.filterShape!, attrs, [x, dy]);
  if (!g) return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  const backend = args.backend as unknown as WebGPUBackendLike;
  const profile = profileOf(backend);
  const m = g.filterHeight * g.filterWidth * g.inChannels;
  const tiles = convTiles(m, g.outChannels, profile, storageOf(backend));
  return filterGrad(backend, x, dy, g, tiles, profile);
};

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

// The stock kernels, captured once, before ours replaced them.
const stockKernels = new Map<string, tf.KernelConfig>();
const ourFuncs = new Set<tf.KernelFunc>();

/**
 * Registers our convolutions for `webgpu` in front of the stock ones (kept as the fallback), or,
 * with `on` false, puts the stock ones back.
 * @param on whether ours should run
 */
export function registerWebGpuConvKernels(on: boolean): void {
  for (const name of WEBGPU_CONV_KERNELS) {
    const current = tf.getKernel(name, "webgpu");
    if (current && !ourFuncs.has(current.kernelFunc)) stockKernels.set(name, current);
    const stock = stockKernels.get(name);
    if (!stock) throw new Error(`webgpu backend: kernel ${name} is missing`);
    if (current) tf.unregisterKernel(name, "webgpu");
    if (!on) {
      tf.registerKernel(stock);
      continue;
    }
    const kernelFunc = ((args: Args) => OURS[name](args, stock.kernelFunc)) as tf.KernelFunc;
    ourFuncs.add(kernelFunc);
    tf.registerKernel({
      kernelName: name,
      backendName: "webgpu",
      kernelFunc,
      setupFunc: stock.setupFunc,
      disposeFunc: stock.disposeFunc,
    });
  }
}
