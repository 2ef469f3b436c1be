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

/** Workgroup memory declarations for a tile configuration and layout. */
function sharedDecl(t: ConvTiles, direct: boolean): string {
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  return `
  ${direct ? "" : `var<workgroup> As : array<vec4<f32>, ${(bm * t.kt) / 4}>;`}
  var<workgroup> Bs : array<vec4<f32>, ${(bn * t.kt) / 4}>;`;
}

/** The thread's row (in the workgroup's tile) of block row i, for the A layout. */
function rowOf(t: ConvTiles, l: Layout, i: number): string {
  return l.a === "k" ? `${i * t.wgM} + ty` : `(${Math.floor(i / 4) * t.wgM} + ty) * 4 + ${i % 4}`;
}

/** The thread's first column of column quad jq (4 consecutive columns). */
function colOf(t: ConvTiles, jq: number): string {
  return `(${jq * t.wgN} + tx) * 4`;
}

/**
 * The multiply-accumulate of one K tile from workgroup memory: per quad of K, the thread's A and
 * B fragments as vec4 loads, then tm * tn * 4 FMAs into its accumulators `c{i}_{j}`.
 */
function computeSnippet(t: ConvTiles, l: Layout, direct?: DirectA): string {
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn;
  const rows = range(t.tm), cols = range(t.tn);
  const loads: string[] = [];
  let aOf: (i: number, k: number) => string;
  let bOf: (k: number, j: number) => string;
  if (direct) {
    loads.push("let kq = k0 + q * 4;", direct.decode);
    rows.forEach((i) => loads.push(direct.load(i)));
    aOf = (i, k) => `a${i}.${XYZW[k]}`;
  } else if (l.a === "k") {
    rows.forEach((i) => loads.push(`let a${i} = As[q * ${bm} + ${rowOf(t, l, i)}];`));
    aOf = (i, k) => `a${i}.${XYZW[k]}`;
  } else {
    for (let k = 0; k < 4; k++) {
      for (let iq = 0; iq < t.tm / 4; iq++) {
        loads.push(`let a${iq}_${k} = As[(q * 4 + ${k}) * ${bm / 4} + ${iq * t.wgM} + ty];`);
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

/**
 * The cooperative copy of `slots` vec4 slots into workgroup memory, each thread taking slots
 * tid, tid + threads, ...: `setup(p)` runs once before the K loop (its `let`s name slot p's
 * fixed part), `stage(p)` each K tile (assigning the slot).
 */
interface Slots {
  readonly count: number;
  setup(p: number, slot: string): string;
  stage(p: number): string;
}

/**
 * A read straight from global memory into the thread's fragments (no staging): where a
 * workgroup has one thread along N, each A value has one reader, and staging it would only add a
 * copy. `setup(i)` runs once for the thread's block row i, `decode` per K quad `kq`, and
 * `load(i)` defines `a{i}` (a vec4 along K).
 */
interface DirectA {
  setup(i: number): string;
  readonly decode: string;
  load(i: number): string;
}

function slotLines(t: ConvTiles, s: Slots, part: "setup" | "stage"): string {
  const threads = t.wgM * t.wgN;
  const n = Math.ceil(s.count / threads);
  return range(n).map((p) => {
    const slot = `(tid + ${p * threads})`;
    if (part === "setup") return s.setup(p, slot);
    // Slots past the tile (when threads do not divide it) copy nothing.
    const guard = (p + 1) * threads > s.count;
    return guard ? `if (${slot} < ${s.count}) { ${s.stage(p)} }` : `{ ${s.stage(p)} }`;
  }).join("\n");
}

/** A convolution GEMM program: its WGSL pieces, the rest being common. */
interface GemmParts {
  readonly key: string;
  readonly tiles: ConvTiles;
  readonly layout: Layout;
  readonly a: Slots;
  readonly b: Slots;
  /** A read without staging (then `a` is unused). */
  readonly direct?: DirectA;
  /** Values of the workgroup (phase, K range) before the slots' setup. */
  readonly head: string;
  /** The K tiles' range: `kBeg`, `kEnd` are defined in `head`. */
  /** Stores accumulator row i (columns quads as `v`, at column `n`): code using `c{i}_{j}`. */
  store(i: number): string;
}

function gemmCode(p: GemmParts): string {
  const { tiles: t, layout: l } = p;
  const acc = range(t.tm).flatMap((i) => range(t.tn).map((j) => `var c${i}_${j} = 0.0;`));
  return `
  ${sharedDecl(t, !!p.direct)}
  ${DIVF}
  fn main() {
    let tid = i32(localIndex);
    let tx = i32(localId.x);
    let ty = i32(localId.y);
    let m0 = i32(workgroupId.x) * ${t.wgM * t.tm};
    let n0 = i32(workgroupId.y) * ${t.wgN * t.tn};
    ${p.head}
    ${p.direct ? range(t.tm).map((i) => p.direct!.setup(i)).join("\n") : slotLines(t, p.a, "setup")}
    ${slotLines(t, p.b, "setup")}
    ${acc.join(" ")}
    for (var k0 = kBeg; k0 < kEnd; k0 += ${t.kt}) {
      ${p.direct ? "" : slotLines(t, p.a, "stage")}
      ${slotLines(t, p.b, "stage")}
      workgroupBarrier();
      ${computeSnippet(t, l, p.direct)}
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
    shaderKey: `ugatit_conv_${parts.key}_${
      parts.direct ? "direct" : "staged"
    }_${t.wgM}_${t.wgN}_${t.tm}_${t.tn}_${t.kt}_${outVec}`,
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

/**
 * The A operand of a pass read along K (forward, input gradient): how a row's fixed part is set
 * up, how a K index decodes, and the value of a row at a decoded K index (statements, then the
 * expression).
 */
interface RowsAlongK {
  row(v: string, m: string): string;
  decode(s: string, k: string): string;
  value(v: string, s: string): [string, string];
}

/** The A slots (staged) and the direct read of a pass whose A runs along K. */
function operandA(t: ConvTiles, r: RowsAlongK, vec: boolean): { slots: Slots; direct: DirectA } {
  const bm = t.wgM * t.tm, kq = t.kt / 4;
  // A vec4 of four K indices: one decode when they share a tap (vec), else one each.
  const quad = (v: string, k: string, decoded: boolean) => {
    if (vec) {
      const [pre, e] = r.value(v, "");
      return { pre: (decoded ? "" : r.decode("", k)) + pre, e };
    }
    const parts = range(4).map((u) => r.value(v, `_${u}`));
    return {
      pre: (decoded ? "" : range(4).map((u) => r.decode(`_${u}`, `(${k} + ${u})`)).join("")) +
        parts.map(([pre]) => pre).join(""),
      e: `vec4<f32>(${parts.map(([, e]) => e).join(", ")})`,
    };
  };
  const slots: Slots = {
    count: bm * kq,
    setup: (p, slot) => `
    let aRow${p} = ${slot} / ${kq};
    let aQ${p} = ${slot} % ${kq};${r.row(`a${p}`, `m0 + aRow${p}`)}`,
    stage: (p) => {
      const { pre, e } = quad(`a${p}`, `k0 + aQ${p} * 4`, false);
      return `${pre}
      As[aQ${p} * ${bm} + aRow${p}] = ${e};`;
    },
  };
  const direct: DirectA = {
    setup: (i) => r.row(`r${i}`, `m0 + ${rowOf(t, { a: "k", b: "n" }, i)}`),
    decode: vec
      ? r.decode("", "kq")
      : range(4).map((u) => r.decode(`_${u}`, `(kq + ${u})`)).join(""),
    load: (i) => {
      const { pre, e } = quad(`r${i}`, "kq", true);
      return `${pre}
        let a${i} = ${e};`;
    },
  };
  return { slots, direct };
}

/** Whether A goes straight from global memory: one thread along N reads each value once. */
const directA = (t: ConvTiles) => t.wgN === 1;

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
  // Row m: output pixel (b, oy, ox), where its window starts in the input; K: (ky, kx, ci).
  const rows: RowsAlongK = {
    row: (v, m) => `
    let ${v}M = ${m};
    let ${v}B = divf(${v}M, uniforms.ohw);
    let ${v}R = ${v}M - ${v}B * uniforms.ohw;
    let ${v}Oy = divf(${v}R, uniforms.ow);
    let ${v}Iy = ${v}Oy * uniforms.sh - uniforms.pt;
    let ${v}Ix = (${v}R - ${v}Oy * uniforms.ow) * uniforms.sw - uniforms.pl;
    let ${v}Ok = ${v}M < uniforms.m;
    let ${v}Base = ${v}B * uniforms.h;`,
    decode: (s, k) => `
        let tap${s} = divf(${k}, uniforms.c);
        let ch${s} = ${k} - tap${s} * uniforms.c;
        let ky${s} = divf(tap${s}, uniforms.kw);
        let kx${s} = tap${s} - ky${s} * uniforms.kw;
        let kOk${s} = ${k} < uniforms.k;`,
    value: (v, s) => [
      `
        let ${v}Y${s} = ${v}Iy + ky${s};
        let ${v}X${s} = ${v}Ix + kx${s};
        let ${v}In${s} = ${v}Ok && kOk${s} && ${v}Y${s} >= 0 && ${v}Y${s} < uniforms.h &&
          ${v}X${s} >= 0 && ${v}X${s} < uniforms.w;`,
      (vecC ? load4 : load1)(
        "x",
        `((${v}Base + ${v}Y${s}) * uniforms.w + ${v}X${s}) * uniforms.c + ch${s}`,
        `${v}In${s}`,
      ),
    ],
  };
  const { slots: a, direct } = operandA(t, rows, vecC);
  // B slot: (k, column quad) of the [kt x BN] filter tile; rows of HWIO are contiguous in N.
  const b: Slots = {
    count: t.kt * bn / 4,
    setup: (p, slot) => `
    let bK${p} = ${slot} / ${bn / 4};
    let bN${p} = n0 + (${slot} % ${bn / 4}) * 4;`,
    stage: (p) => {
      const k = `k0 + bK${p}`;
      const at = `(${k}) * uniforms.n + bN${p}`;
      const value = vecN
        ? load4("w", at, `${k} < uniforms.k && bN${p} < uniforms.n`)
        : `vec4<f32>(${
          range(4).map((u) =>
            load1("w", `${at} + ${u}`, `${k} < uniforms.k && bN${p} + ${u} < uniforms.n`)
          ).join(", ")
        })`;
      return `Bs[bK${p} * ${bn / 4} + (bN${p} - n0) / 4] = ${value};`;
    },
  };
  const parts: GemmParts = {
    key: `fwd_${vecC}_${vecN}`,
    tiles: t,
    layout: l,
    a,
    b,
    direct: directA(t) ? direct : undefined,
    head: "let kBeg = 0;\n    let kEnd = uniforms.k;",
    store: (i) => {
      const m = `(m0 + ${rowOf(t, l, i)})`;
      return storeRow(t, i, `${m} < uniforms.m`, `${m} * uniforms.n`, "uniforms.n", vecN);
    },
  };
  const m = batchSize * outHeight * outWidth;
  const k = g.filterHeight * g.filterWidth * c;
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
  const bm = t.wgM * t.tm, bn = t.wgN * t.tn, kq = t.kt / 4;
  const l: Layout = { a: "k", b: "k" };
  // K index of the phase: its tap (jy, jx) among the phase's taps and its output channel.
  const decode = (s: string, k: string) => `
        let tap${s} = divf(${k}, uniforms.oc);
        let ch${s} = ${k} - tap${s} * uniforms.oc;
        let jy${s} = divf(tap${s}, tx_);
        let jx${s} = tap${s} - jy${s} * tx_;
        let kOk${s} = ${k} < kEnd;`;
  // The phase (ry, rx) of this workgroup, its first taps (ky0, kx0), the offsets from a phase
  // pixel to the output pixel of its first tap, and its taps per axis.
  const head = `
    let ry = i32(workgroupId.z) / uniforms.sw;
    let rx = i32(workgroupId.z) - ry * uniforms.sw;
    let ky0 = (ry + uniforms.pt) % uniforms.sh;
    let kx0 = (rx + uniforms.pl) % uniforms.sw;
    let dy0 = (ry + uniforms.pt) / uniforms.sh;
    let dx0 = (rx + uniforms.pl) / uniforms.sw;
    let ty_ = (uniforms.kh - ky0 + uniforms.sh - 1) / uniforms.sh;
    let tx_ = (uniforms.kw - kx0 + uniforms.sw - 1) / uniforms.sw;
    let kBeg = 0;
    let kEnd = ty_ * tx_ * uniforms.oc;`;
  // Row m of a phase: batch b, phase pixel (qy, qx), input pixel (qy * sh + ry, qx * sw + rx).
  const rowInfo = (v: string, m: string) => `
    let ${v}M = ${m};
    let ${v}B = divf(${v}M, uniforms.qhw);
    let ${v}R = ${v}M - ${v}B * uniforms.qhw;
    let ${v}Qy = divf(${v}R, uniforms.qw);
    let ${v}Qx = ${v}R - ${v}Qy * uniforms.qw;
    let ${v}Iy = ${v}Qy * uniforms.sh + ry;
    let ${v}Ix = ${v}Qx * uniforms.sw + rx;
    let ${v}Ok = ${v}M < uniforms.mq && ${v}Iy < uniforms.h && ${v}Ix < uniforms.w;`;
  const rows: RowsAlongK = {
    row: rowInfo,
    decode,
    value: (v, s) => [
      `
        let ${v}Y${s} = ${v}Qy + dy0 - jy${s};
        let ${v}X${s} = ${v}Qx + dx0 - jx${s};
        let ${v}In${s} = ${v}Ok && kOk${s} && ${v}Y${s} >= 0 && ${v}Y${s} < uniforms.oh &&
          ${v}X${s} >= 0 && ${v}X${s} < uniforms.ow;`,
      (vecO ? load4 : load1)(
        "dy",
        `((${v}B * uniforms.oh + ${v}Y${s}) * uniforms.ow + ${v}X${s}) * uniforms.oc + ch${s}`,
        `${v}In${s}`,
      ),
    ],
  };
  const { slots: a, direct } = operandA(t, rows, vecO);
  // B slot: (column, k quad): W[ky, kx, column, oc..oc+3], contiguous along the output channels.
  const b: Slots = {
    count: bn * kq,
    setup: (p, slot) => `
    let bCol${p} = ${slot} / ${kq};
    let bQ${p} = ${slot} % ${kq};
    let bN${p} = n0 + bCol${p};`,
    stage: (p) => {
      const value = (s: string) =>
        (vecO ? load4 : load1)(
          "w",
          `(((ky0 + jy${s} * uniforms.sh) * uniforms.kw + kx0 + jx${s} * uniforms.sw) * ` +
            `uniforms.ic + bN${p}) * uniforms.oc + ch${s}`,
          `bN${p} < uniforms.ic && kOk${s}`,
        );
      const k = `k0 + bQ${p} * 4`;
      const body = vecO
        ? `${decode("", k)}
      let v = ${value("")};`
        : `${range(4).map((u) => decode(`_${u}`, `(${k} + ${u})`)).join("")}
      let v = vec4<f32>(${range(4).map((u) => value(`_${u}`)).join(", ")});`;
      return `${body}
      Bs[bQ${p} * ${bn} + bCol${p}] = v;`;
    },
  };
  const parts: GemmParts = {
    key: `dgrad_${vecO}_${vecN}`,
    tiles: t,
    layout: l,
    a,
    b,
    direct: directA(t) ? direct : undefined,
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
  const rowInfo = (v: string, row: string) => `
    let ${v}Tap = divf(${row}, uniforms.c);
    let ${v}C = ${row} - ${v}Tap * uniforms.c;
    let ${v}Ky = divf(${v}Tap, uniforms.kw);
    let ${v}Kx = ${v}Tap - ${v}Ky * uniforms.kw;
    let ${v}Ok = ${row} < uniforms.m;`;
  // A slot: (k, row quad) of the [kt x BM] tile: x at output pixel k's window, rows' channels.
  const a: Slots = {
    count: t.kt * bm / 4,
    setup: (p, slot) => {
      const head = `
    let aK${p} = ${slot} / ${bm / 4};
    let aRow${p} = (${slot} % ${bm / 4}) * 4;`;
      // A vec4 of rows shares its tap when C % 4 == 0; else each row has its own.
      return head +
        (vecC
          ? rowInfo(`a${p}`, `(m0 + aRow${p})`)
          : range(4).map((u) => rowInfo(`a${p}_${u}`, `(m0 + aRow${p} + ${u})`)).join(""));
    },
    stage: (p) => {
      const pix = `
        let px = k0 + aK${p};
        let pb = divf(px, uniforms.ohw);
        let pr = px - pb * uniforms.ohw;
        let poy = divf(pr, uniforms.ow);
        let pIy = poy * uniforms.sh - uniforms.pt;
        let pIx = (pr - poy * uniforms.ow) * uniforms.sw - uniforms.pl;
        let pOk = px < kEnd;`;
      const one = (v: string, out: string) => `
        {
          let iy = pIy + ${v}Ky;
          let ix = pIx + ${v}Kx;
          let ok = pOk && ${v}Ok && iy >= 0 && iy < uniforms.h && ix >= 0 && ix < uniforms.w;
          ${out} = ${
        (vecC ? load4 : load1)(
          "x",
          `((pb * uniforms.h + iy) * uniforms.w + ix) * uniforms.c + ${v}C`,
          "ok",
        )
      };
        }`;
      const body = vecC
        ? one(`a${p}`, "v")
        : range(4).map((u) => one(`a${p}_${u}`, `v.${XYZW[u]}`)).join("");
      return `{${pix}
        var v = vec4<f32>(0.0);${body}
        As[aK${p} * ${bm / 4} + aRow${p} / 4] = v;
      }`;
    },
  };
  // B slot: (k, column quad) of the [kt x BN] tile: dy at output pixel k, contiguous in N.
  const b: Slots = {
    count: t.kt * bn / 4,
    setup: (p, slot) => `
    let bK${p} = ${slot} / ${bn / 4};
    let bN${p} = n0 + (${slot} % ${bn / 4}) * 4;`,
    stage: (p) => {
      const px = `k0 + bK${p}`;
      const at = `(${px}) * uniforms.n + bN${p}`;
      const value = vecN
        ? load4("dy", at, `${px} < kEnd && bN${p} < uniforms.n`)
        : `vec4<f32>(${
          range(4).map((u) =>
            load1("dy", `${at} + ${u}`, `${px} < kEnd && bN${p} + ${u} < uniforms.n`)
          )
            .join(", ")
        })`;
      return `Bs[bK${p} * ${bn / 4} + (bN${p} - n0) / 4] = ${value};`;
    },
  };
  const parts: GemmParts = {
    key: `wgrad_${vecC}_${vecN}`,
    tiles: t,
    layout: l,
    a,
    b,
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
