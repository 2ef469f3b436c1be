/**
 * Kernels of ours in WGSL for the `webgpu` backend: implementations of our ops (`ops/`, which
 * define their names, inputs, outputs and attributes, as the CPU kernels in `../cpu/` implement
 * them too), so the layers pick them up unchanged:
 *
 * - `UgatitLayerInstanceNorm` / `...Grad` (AdaLIN, ILN, IN): 3 dispatches forward and 7 backward,
 *   where the composed ops take about 30 and 60. Per-channel sums run in two stages (64-pixel
 *   chunks, then over the chunks) so that the work spreads over the GPU; sums of deviations are
 *   taken from the channel mean (backward) or from each channel's first pixel (forward), so float32
 *   loses no digits to cancellation.
 * - `UgatitAdamUpdate`: the reference optimiser's per-tensor update in 3 dispatches (new first
 *   moment, new second moment, the update), where the composed chain takes about 15.
 * - `UgatitSpectralSigma` / `...Grad`: spectral norm's power iteration and sigma in 4 dispatches
 *   (2 without the iteration) and its gradient `v u^T` in one, where the composed ops take about 25.
 * - `UgatitReflectPad` / `...Grad`, `UgatitUpsample2x` / `...Grad`: one gather pass each way.
 *
 * A program here is one thread per output element (or per work item, `threads`), written with
 * tfjs-backend-webgpu's program interface: inputs are read as flat arrays by their names, the
 * output is `result`, and the attributes travel as uniforms, so a shape or learning-rate change
 * compiles nothing new.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { ACTIVATION_GRAD, useActivationGradients } from "../../ops/activation_grad.ts";
import { ADAM_UPDATE, type AdamUpdateAttrs } from "../../ops/adam_update.ts";
import { LERP } from "../../ops/lerp.ts";
import { LIN_NORM, LIN_NORM_GRAD, type LinNormAttrs } from "../../ops/lin_norm.ts";
import { REFLECT_PAD, REFLECT_PAD_GRAD, type ReflectPadAttrs } from "../../ops/reflect_pad.ts";
import {
  SPECTRAL_SIGMA,
  SPECTRAL_SIGMA_GRAD,
  spectralPacking,
  type SpectralSigmaAttrs,
} from "../../ops/spectral_sigma.ts";
import { UPSAMPLE_2X, UPSAMPLE_2X_GRAD } from "../../ops/upsample_2x.ts";
import { registerWebGpuConvKernels } from "./conv.ts";

type Info = tf.TensorInfo;
type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
type Uniform = { type: "int32" | "float32"; data: number[] };
/** The part of tfjs-backend-webgpu's `WebGPUBackend` these kernels use. */
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: Info[], dtype: tf.DataType, uniforms?: Uniform[]): Info;
}

const WORKGROUP = 128;
const CHUNK = 64; // pixels per partial sum
const EPS = 1e-5;

/**
 * Runs one WGSL program with a thread per work item. `body` sees `index` (the work item, already
 * checked against `uniforms.threads`), the inputs as arrays by their names, `result`, the
 * `uniforms` (i32, or f32 where named in `floats`) and the functions in `prelude`.
 */
function run(
  backend: tf.KernelBackend,
  key: string,
  inputs: Record<string, Info>,
  outputShape: number[],
  threads: number,
  uniforms: Record<string, number>,
  body: string,
  { floats = [], prelude = "" }: { floats?: readonly string[]; prelude?: string } = {},
): Info {
  const names = Object.keys(inputs);
  const decl = Object.keys(uniforms)
    .map((u) => `${u} : ${floats.includes(u) ? "f32" : "i32"},`)
    .join(" ");
  const program = {
    variableNames: names,
    outputShape,
    shaderKey: `ugatit_${key}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.max(1, Math.ceil(threads / WORKGROUP)), 1, 1] as [number, number, number],
    workgroupSize: [WORKGROUP, 1, 1] as [number, number, number],
    uniforms: `threads : i32, ${decl}`,
    getUserCode: () => `
      ${prelude}
      fn main(index : i32) {
        if (index >= uniforms.threads) { return; }
        ${body}
      }`,
  };
  const data: Uniform[] = [
    { type: "int32", data: [threads] },
    ...Object.entries(uniforms).map(([u, v]): Uniform => ({
      type: floats.includes(u) ? "float32" : "int32",
      data: [v],
    })),
  ];
  return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(
    program,
    names.map((n) => inputs[n]),
    "float32",
    data,
  );
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

// Rows of a packed output start at a multiple of this many floats (256 bytes, WebGPU's default
// storage-offset alignment): a replayed step binds each row as a view, with no copy.
const ROW_ALIGN = 64;

/**
 * Rows of a packed `[k, stride]` output, each its first `n` values as a tensor of `shape` (a slice,
 * then a reshape; a replayed step binds them as views of the packed buffer).
 * @param count how many rows, from `first`
 * @param release whether to release the packed output afterwards (the last call on it)
 */
function unpackRows(
  backend: tf.KernelBackend,
  packed: Info,
  n: number,
  shape: number[],
  count = packed.shape[0],
  release = true,
  first = 0,
): Info[] {
  const slice = tf.getKernel("Slice", "webgpu")!.kernelFunc;
  const reshape = tf.getKernel("Reshape", "webgpu")!.kernelFunc;
  const rows = Array.from({ length: count }, (_, k) => {
    const row = slice({
      inputs: { x: packed },
      backend,
      attrs: { begin: [first + k, 0], size: [1, n] },
    }) as Info;
    const out = reshape({ inputs: { x: row }, backend, attrs: { shape } }) as Info;
    backend.disposeData(row.dataId);
    return out;
  });
  if (release) backend.disposeData(packed.dataId);
  return rows;
}

// ---- layer-instance normalisation -----------------------------------------------------------

/** Chunk sums `[N, P, C, 2]` of `a` and `a * (b - shift)` per channel over 64-pixel chunks. */
function chunkSums(
  backend: tf.KernelBackend,
  key: string,
  inputs: Record<string, Info>,
  [n, hw, c]: number[],
  a: string,
  b: string,
  shift: string,
): Info {
  const chunks = Math.ceil(hw / CHUNK);
  return run(
    backend,
    `lin_chunks_${key}`,
    inputs,
    [n, chunks, c, 2],
    n * chunks * c,
    { hw, c, chunks },
    `
        let ch = index % uniforms.c;
        let k = (index / uniforms.c) % uniforms.chunks;
        let s = index / (uniforms.c * uniforms.chunks);
        let base = s * uniforms.hw * uniforms.c;
        let shift = ${shift};
        let end = min(uniforms.hw, (k + 1) * ${CHUNK});
        var sa = 0.0;
        var sab = 0.0;
        for (var p = k * ${CHUNK}; p < end; p++) {
          let i = base + p * uniforms.c + ch;
          let av = ${a};
          sa += av;
          sab += av * (${b} - shift);
        }
        result[2 * index] = sa;
        result[2 * index + 1] = sab;`,
  );
}

/** Channel sums `[N, C, 2]` from chunk sums `[N, P, C, 2]`. */
function channelTotals(backend: tf.KernelBackend, chunks: Info, [n, , c]: number[]): Info {
  const p = chunks.shape[1];
  return run(
    backend,
    "lin_totals",
    { chunks },
    [n, c, 2],
    n * c,
    { c, p },
    `
        let ch = index % uniforms.c;
        let s = index / uniforms.c;
        var t0 = 0.0;
        var t1 = 0.0;
        for (var k = 0; k < uniforms.p; k++) {
          let i = 2 * ((s * uniforms.p + k) * uniforms.c + ch);
          t0 += chunks[i];
          t1 += chunks[i + 1];
        }
        result[2 * index] = t0;
        result[2 * index + 1] = t1;`,
  );
}

function linNormForwardKernel({ inputs, backend, attrs }: Args): Info[] {
  const { x, rho, gamma, beta } = inputs as Record<string, Info>;
  const { unbiased, mixLn } = attrs as unknown as LinNormAttrs;
  const [n, h, w, c] = x.shape;
  const hw = h * w;
  const dims = [n, hw, c];
  // Sums of x - x[first pixel] and its square, per channel: the shift keeps float32 exact enough.
  const chunks = chunkSums(backend, "fwd", { x }, dims, "x[i] - shift", "x[i]", "x[base + ch]");
  const totals = channelTotals(backend, chunks, dims);
  backend.disposeData(chunks.dataId);
  // stats per sample: channel means, channel 1/std, the sample mean, its 1/std (as on the CPU).
  const stats = run(
    backend,
    "lin_stats",
    { x, totals },
    [n, 2 * c + 2],
    n * (2 * c + 2),
    { hw, c, dIn: unbiased ? hw - 1 : hw, dLn: unbiased ? hw * c - 1 : hw * c },
    `
        let width = 2 * uniforms.c + 2;
        let j = index % width;
        let s = index / width;
        let hwf = f32(uniforms.hw);
        // channel means and squared deviations from the shifted sums S1, S2 (shift: pixel 0):
        // mean = shift + S1 / hw, M2 = S2 - S1^2 / hw
        if (j < 2 * uniforms.c) {
          let ch = j % uniforms.c;
          let s1 = totals[2 * (s * uniforms.c + ch)];
          let s2 = totals[2 * (s * uniforms.c + ch) + 1];
          if (j < uniforms.c) {
            result[index] = x[s * uniforms.hw * uniforms.c + ch] + s1 / hwf;
          } else {
            let m2 = max(0.0, s2 - s1 * s1 / hwf);
            result[index] = inverseSqrt(m2 / f32(uniforms.dIn) + ${EPS});
          }
          return;
        }
        var total = 0.0;
        for (var ch = 0; ch < uniforms.c; ch++) {
          total += x[s * uniforms.hw * uniforms.c + ch] * hwf + totals[2 * (s * uniforms.c + ch)];
        }
        let mu = total / (hwf * f32(uniforms.c));
        if (j == 2 * uniforms.c) {
          result[index] = mu;
          return;
        }
        var lnSq = 0.0;
        for (var ch = 0; ch < uniforms.c; ch++) {
          let s1 = totals[2 * (s * uniforms.c + ch)];
          let s2 = totals[2 * (s * uniforms.c + ch) + 1];
          let mc = x[s * uniforms.hw * uniforms.c + ch] + s1 / hwf;
          lnSq += max(0.0, s2 - s1 * s1 / hwf) + hwf * (mc - mu) * (mc - mu);
        }
        result[index] = inverseSqrt(lnSq / f32(uniforms.dLn) + ${EPS});`,
  );
  backend.disposeData(totals.dataId);
  const y = run(
    backend,
    `lin_out_${mixLn}`,
    mixLn ? { x, stats, rho, gamma, beta } : { x, stats, gamma, beta } as Record<string, Info>,
    x.shape,
    size(x.shape),
    { hw, c },
    `
        let ch = index % uniforms.c;
        let s = index / (uniforms.hw * uniforms.c);
        let st = s * (2 * uniforms.c + 2);
        let r = ${mixLn ? "rho[ch]" : "1.0"};
        let g = gamma[s * uniforms.c + ch];
        let rin = stats[st + uniforms.c + ch];
        let rln = stats[st + 2 * uniforms.c + 1];
        let a = (r * rin + (1.0 - r) * rln) * g;
        let b = -(r * rin * stats[st + ch] + (1.0 - r) * rln * stats[st + 2 * uniforms.c]) * g +
          beta[s * uniforms.c + ch];
        result[index] = x[index] * a + b;`,
  );
  return [y, stats];
}

function linNormBackwardKernel({ inputs, backend, attrs }: Args): Info[] {
  const { dy, x, stats, rho, gamma } = inputs as Record<string, Info>;
  const { unbiased, mixLn } = attrs as unknown as LinNormAttrs;
  const [n, h, w, c] = x.shape;
  const hw = h * w;
  const dims = [n, hw, c];
  // gsum = sum dy, cin = sum dy (x - mean_c), per sample and channel.
  const chunks = chunkSums(
    backend,
    "bwd",
    { dy, x, stats },
    dims,
    "dy[i]",
    "x[i]",
    "stats[s * (2 * uniforms.c + 2) + ch]",
  );
  const totals = channelTotals(backend, chunks, dims);
  backend.disposeData(chunks.dataId);
  const r = mixLn ? "rho[ch]" : "1.0";
  // Per (sample, channel): the shared terms of dgamma, drho and dx.
  const common = `
        let st = s * (2 * uniforms.c + 2);
        let mu = stats[st + 2 * uniforms.c];
        let rln = stats[st + 2 * uniforms.c + 1];
        let gsum = totals[2 * (s * uniforms.c + ch)];
        let cin = totals[2 * (s * uniforms.c + ch) + 1];
        let mc = stats[st + ch];
        let rin = stats[st + uniforms.c + ch];
        let cln = cin + (mc - mu) * gsum;
        let r = ${r};
        let g = gamma[s * uniforms.c + ch];`;
  const io: Record<string, Info> = mixLn ? { totals, stats, rho, gamma } : { totals, stats, gamma };
  // One pass per (sample, channel) writes dbeta, dgamma, drho (its threads of sample 0 sum over
  // the samples) and the coefficients of dx = dy P + x Q + R, as four rows at aligned strides (a
  // replayed step binds each as a view); LN's sums l1, l2 run over all channels.
  const stride = Math.ceil((3 * n * c) / ROW_ALIGN) * ROW_ALIGN;
  const packed = run(
    backend,
    `lin_grads_${mixLn}`,
    io,
    [4, stride],
    n * c,
    {
      c,
      n,
      hw,
      stride,
      dIn: unbiased ? hw - 1 : hw,
      dLn: unbiased ? hw * c - 1 : hw * c,
    },
    `
        let ch = index % uniforms.c;
        let s = index / uniforms.c;
        ${common}
        result[index] = gsum;
        result[uniforms.stride + index] = r * rin * cin + (1.0 - r) * rln * cln;
        if (s == 0) {
          ${
      mixLn
        ? `var acc = 0.0;
          for (var s = 0; s < uniforms.n; s++) {
            ${common}
            acc += g * (rin * cin - rln * cln);
          }
          result[2 * uniforms.stride + ch] = acc;`
        : "result[2 * uniforms.stride + ch] = 0.0;"
    }
        }
        var l1 = 0.0;
        var l2 = 0.0;
        for (var q = 0; q < uniforms.c; q++) {
          let gq = totals[2 * (s * uniforms.c + q)];
          let clnq = totals[2 * (s * uniforms.c + q) + 1] + (stats[st + q] - mu) * gq;
          let gl = gamma[s * uniforms.c + q] * (1.0 - ${mixLn ? "rho[q]" : "1.0"});
          l1 += gl * gq;
          l2 += gl * rln * clnq;
        }
        let k = rin * rin * rin * g * r * cin / f32(uniforms.dIn);
        let kl = rln * rln * l2 / f32(uniforms.dLn);
        let hwf = f32(uniforms.hw);
        let at = 3 * uniforms.stride + 3 * index;
        result[at] = rin * g * r + rln * g * (1.0 - r);
        result[at + 1] = -k - kl;
        result[at + 2] = -rin * g * r * gsum / hwf + k * mc - rln * l1 / (hwf * f32(uniforms.c)) +
          kl * mu;`,
  );
  const [dbeta, dgamma] = unpackRows(backend, packed, n * c, [n, c], 2, false);
  const [drho] = unpackRows(backend, packed, c, [c], 1, false, 2);
  const [coefs] = unpackRows(backend, packed, 3 * n * c, [n, c, 3], 1, true, 3);
  backend.disposeData(totals.dataId);
  const dx = run(
    backend,
    "lin_dx",
    { dy, x, coefs },
    x.shape,
    size(x.shape),
    { hw, c },
    `
        let j = 3 * (index / (uniforms.hw * uniforms.c) * uniforms.c + index % uniforms.c);
        result[index] = dy[index] * coefs[j] + x[index] * coefs[j + 1] + coefs[j + 2];`,
  );
  backend.disposeData(coefs.dataId);
  return [dx, drho, dgamma, dbeta];
}

// ---- Adam --------------------------------------------------------------------------------------

// Adam's bias correction 1 - b^t as -expm1(t ln b); expm1 by its series where exp(y) - 1 would
// cancel (|y| < 0.1: the next term is below 3e-10 of the sum).
const BIAS_CORRECTION = `
      fn ugatitBiasCorrection(logB : f32, t : f32) -> f32 {
        let y = t * logB;
        if (y > -0.1) {
          return -y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 +
            y / 720.0)))));
        }
        return 1.0 - exp(y);
      }`;

function adamKernel({ inputs, backend, attrs }: Args): Info[] {
  const { g, p, m, v, t, lr } = inputs as Record<string, Info>;
  const a = attrs as unknown as AdamUpdateAttrs;
  const n = size(g.shape);
  const stride = Math.ceil(n / ROW_ALIGN) * ROW_ALIGN;
  // One pass writes the update (or the updated parameter), the new first and the new second
  // moment as three rows. The step count and learning rate are read from tensors: they change
  // every iteration, and a replayed step keeps its uniforms.
  const packed = run(
    backend,
    "adam",
    { g, p, m, v, t, lr },
    [3, stride],
    n,
    {
      stride,
      wd: a.weightDecay,
      b1: a.b1,
      b2: a.b2,
      logB1: Math.log(a.b1),
      logB2: Math.log(a.b2),
      eps: a.eps,
      apply: a.apply ? 1 : 0,
    },
    `
        let gi = g[index] + uniforms.wd * p[index];
        let mi = uniforms.b1 * m[index] + (1.0 - uniforms.b1) * gi;
        let vi = uniforms.b2 * v[index] + (1.0 - uniforms.b2) * gi * gi;
        let step = -lr[0] / ugatitBiasCorrection(uniforms.logB1, t[0]);
        let root = 1.0 / sqrt(ugatitBiasCorrection(uniforms.logB2, t[0]));
        let update = step * mi / (sqrt(vi) * root + uniforms.eps);
        if (uniforms.apply == 1) {
          result[index] = p[index] + update;
        } else {
          result[index] = update;
        }
        result[uniforms.stride + index] = mi;
        result[2 * uniforms.stride + index] = vi;`,
    { floats: ["wd", "b1", "b2", "logB1", "logB2", "eps"], prelude: BIAS_CORRECTION },
  );
  return unpackRows(backend, packed, n, g.shape);
}

// ---- spectral norm ------------------------------------------------------------------------

// A conv weight's rows of A = W^T are in the weight's own order (h, w, in); torch orders v as
// (in, h, w). Index maps both ways (identity for a linear weight: kh = 0).
const SN_INDEX = `
        fn torchOfOwn(i : i32) -> i32 {
          if (uniforms.kh == 0) { return i; }
          return (i % uniforms.cin) * uniforms.kh * uniforms.kw + i / uniforms.cin;
        }
        fn ownOfTorch(j : i32) -> i32 {
          if (uniforms.kh == 0) { return j; }
          let taps = uniforms.kh * uniforms.kw;
          return (j % taps) * uniforms.cin + j / taps;
        }`;
const SN_EPS = 1e-12;
const SN_CHUNK = 256;

function spectralSigmaKernel({ inputs, backend, attrs }: Args): Info {
  const { a, u, v } = inputs as Record<string, Info>;
  const { training, kh, kw, cin } = attrs as unknown as SpectralSigmaAttrs;
  const [cols, rows] = a.shape;
  const chunks = Math.ceil(cols / SN_CHUNK);
  const dims = { rows, cols, kh, kw, cin, chunks };
  const free: Info[] = [];
  let vOwn: Info; // [cols]: v in the weight's order (normalised A u when training)
  let norm: Info | undefined; // chunk sums of squares of A u, when training
  if (training) {
    const t = run(
      backend,
      "sn_au",
      { a, u },
      [cols],
      cols,
      dims,
      `
        var acc = 0.0;
        for (var j = 0; j < uniforms.rows; j++) { acc += a[index * uniforms.rows + j] * u[j]; }
        result[index] = acc;`,
    );
    norm = run(
      backend,
      "sn_sq",
      { t },
      [chunks],
      chunks,
      { cols },
      `
        var acc = 0.0;
        for (var i = index * ${SN_CHUNK}; i < min(uniforms.cols, (index + 1) * ${SN_CHUNK}); i++) {
          acc += t[i] * t[i];
        }
        result[index] = acc;`,
    );
    vOwn = t;
    free.push(t, norm);
  } else {
    vOwn = run(
      backend,
      "sn_vown",
      { v },
      [cols],
      cols,
      dims,
      "result[index] = v[torchOfOwn(index)];",
      { prelude: SN_INDEX },
    );
    free.push(vOwn);
  }
  // Where A u was not normalised yet, each reader divides by its norm.
  const scale = norm
    ? `var sq = 0.0;
        for (var k = 0; k < uniforms.chunks; k++) { sq += norm[k]; }
        let inv = 1.0 / max(sqrt(sq), ${SN_EPS});`
    : "let inv = 1.0;";
  const withNorm = (io: Record<string, Info>) => (norm ? { ...io, norm } : io);
  // s = A^T v
  const sv = run(
    backend,
    `sn_atv_${training}`,
    withNorm({ a, vown: vOwn }),
    [rows],
    rows,
    dims,
    `
        ${scale}
        var acc = 0.0;
        for (var i = 0; i < uniforms.cols; i++) { acc += a[i * uniforms.rows + index] * (vown[i] * inv); }
        result[index] = acc;`,
  );
  free.push(sv);
  const at = spectralPacking(rows, cols);
  const packed = run(
    backend,
    `sn_pack_${training}`,
    // (u is read only when it is kept: a binding no code reads is left out of the layout)
    training ? withNorm({ sv, vown: vOwn }) : { sv, u, vown: vOwn },
    [at.size],
    at.size,
    { ...dims, atU: at.u, atV: at.v },
    `
        ${scale}
        var ss = 0.0;
        ${training ? "for (var j = 0; j < uniforms.rows; j++) { ss += sv[j] * sv[j]; }" : ""}
        let invS = 1.0 / max(sqrt(ss), ${SN_EPS});
        let k = index - uniforms.atU;
        if (index == 0) {
          var sigma = 0.0;
          for (var j = 0; j < uniforms.rows; j++) {
            sigma += ${training ? "sv[j] * invS" : "u[j]"} * sv[j];
          }
          result[0] = sigma;
        } else if (index >= uniforms.atV) {
          result[index] = vown[ownOfTorch(index - uniforms.atV)] * inv;
        } else if (k >= 0 && k < uniforms.rows) {
          result[index] = ${training ? "sv[k] * invS" : "u[k]"};
        } else {
          result[index] = 0.0;
        }`,
    { prelude: SN_INDEX },
  );
  for (const t of free) backend.disposeData(t.dataId);
  return packed;
}

function spectralSigmaGradKernel({ inputs, backend, attrs }: Args): Info {
  const { dy, packed } = inputs as Record<string, Info>;
  const { rows, kh, kw, cin } = attrs as unknown as SpectralSigmaAttrs & { rows: number };
  const at = spectralPacking(rows, 0);
  const cols = packed.shape[0] - at.v;
  return run(
    backend,
    "sn_grad",
    { dy, packed },
    [cols, rows],
    cols * rows,
    { rows, cols, kh, kw, cin, atU: at.u, atV: at.v },
    `
        let r = index % uniforms.rows;
        let i = index / uniforms.rows;
        result[index] = dy[0] * packed[uniforms.atV + torchOfOwn(i)] * packed[uniforms.atU + r];`,
    { prelude: SN_INDEX },
  );
}

// ---- reflection padding and upsampling ----------------------------------------------------

// The NHWC coordinates (s, i, j, q) of output element `index` in an [N, h, w, C] tensor.
const nhwcOf = (h: string, w: string) => `
        let q = index % uniforms.c;
        let j = (index / uniforms.c) % ${w};
        let i = (index / (uniforms.c * ${w})) % ${h};
        let s = index / (uniforms.c * ${w} * ${h});`;

// PyTorch's reflection of padded index k (already shifted by -pad) into [0, n).
const REFLECT = `
        fn reflectIndex(k : i32, n : i32) -> i32 {
          if (k < 0) { return -k; }
          if (k >= n) { return 2 * n - 2 - k; }
          return k;
        }`;

function reflectPadKernel({ inputs, backend, attrs }: Args): Info {
  const { x } = inputs as { x: Info };
  const { padH, padW } = attrs as unknown as ReflectPadAttrs;
  const [n, h, w, c] = x.shape;
  const [hp, wp] = [h + 2 * padH, w + 2 * padW];
  return run(
    backend,
    "reflect_pad",
    { x },
    [n, hp, wp, c],
    n * hp * wp * c,
    { h, w, c, hp, wp, padH, padW },
    `
        ${nhwcOf("uniforms.hp", "uniforms.wp")}
        let si = reflectIndex(i - uniforms.padH, uniforms.h);
        let sj = reflectIndex(j - uniforms.padW, uniforms.w);
        result[index] = x[((s * uniforms.h + si) * uniforms.w + sj) * uniforms.c + q];`,
    { prelude: REFLECT },
  );
}

// Padded rows that reflect onto row i of n (pad p): i + p itself, its mirror above the top
// (p - i, for 1 <= i <= p) and its mirror below the bottom (2n - 2 - i + p, for n-2-p < i <= n-2).
const SOURCES = `
        fn sources(i : i32, n : i32, p : i32) -> vec3<i32> {
          var out = vec3<i32>(i + p, -1, -1);
          if (i >= 1 && i <= p) { out.y = p - i; }
          if (i > n - 2 - p && i <= n - 2) { out.z = 2 * n - 2 - i + p; }
          return out;
        }`;

function reflectPadGradKernel({ inputs, backend, attrs }: Args): Info {
  const { dy } = inputs as { dy: Info };
  const { padH, padW } = attrs as unknown as ReflectPadAttrs;
  const [n, hp, wp, c] = dy.shape;
  const [h, w] = [hp - 2 * padH, wp - 2 * padW];
  return run(
    backend,
    "reflect_pad_grad",
    { dy },
    [n, h, w, c],
    n * h * w * c,
    { h, w, c, hp, wp, padH, padW },
    `
        ${nhwcOf("uniforms.h", "uniforms.w")}
        let rows = sources(i, uniforms.h, uniforms.padH);
        let cols = sources(j, uniforms.w, uniforms.padW);
        var acc = 0.0;
        for (var a = 0; a < 3; a++) {
          if (rows[a] < 0) { continue; }
          for (var b = 0; b < 3; b++) {
            if (cols[b] < 0) { continue; }
            acc += dy[((s * uniforms.hp + rows[a]) * uniforms.wp + cols[b]) * uniforms.c + q];
          }
        }
        result[index] = acc;`,
    { prelude: SOURCES },
  );
}

function upsampleKernel({ inputs, backend }: Args): Info {
  const { x } = inputs as { x: Info };
  const [n, h, w, c] = x.shape;
  return run(
    backend,
    "upsample2x",
    { x },
    [n, 2 * h, 2 * w, c],
    n * 4 * h * w * c,
    { h, w, c },
    `
        ${nhwcOf("(2 * uniforms.h)", "(2 * uniforms.w)")}
        result[index] = x[((s * uniforms.h + i / 2) * uniforms.w + j / 2) * uniforms.c + q];`,
  );
}

function upsampleGradKernel({ inputs, backend }: Args): Info {
  const { dy } = inputs as { dy: Info };
  const [n, h2, w2, c] = dy.shape;
  const [h, w] = [h2 / 2, w2 / 2];
  return run(
    backend,
    "upsample2x_grad",
    { dy },
    [n, h, w, c],
    n * h * w * c,
    { h, w, c },
    `
        ${nhwcOf("uniforms.h", "uniforms.w")}
        let row = 2 * uniforms.w * uniforms.c;
        let top = ((s * 2 * uniforms.h + 2 * i) * 2 * uniforms.w + 2 * j) * uniforms.c + q;
        result[index] = dy[top] + dy[top + uniforms.c] + dy[top + row] + dy[top + row + uniforms.c];`,
  );
}

// ---- moving averages ------------------------------------------------------------------------

function lerpKernel({ inputs, backend }: Args): Info {
  const { a, b, w } = inputs as Record<string, Info>;
  return run(
    backend,
    "lerp",
    { a, b, w },
    a.shape,
    size(a.shape),
    {},
    // The product stored first: float32 after each operation, as the composed kernels.
    `let d = (b[index] - a[index]) * w[0];
        result[index] = a[index] + d;`,
  );
}

// ---- ReLU and leaky ReLU gradients ------------------------------------------------------------

function activationGradKernel({ inputs, backend, attrs }: Args): Info {
  const { dy, x } = inputs as { dy: Info; x: Info };
  const { alpha } = attrs as unknown as { alpha: number };
  // The factor of dy: 1 where x > 0, alpha elsewhere; a NaN x gives NaN under ReLU (dy times
  // step(NaN), as the stock gradient) and alpha under leaky ReLU (NaN > 0 is false).
  return run(
    backend,
    "activation_grad",
    { dy, x },
    x.shape,
    size(x.shape),
    { alpha, relu: alpha === 0 ? 1 : 0 },
    `
        let v = x[index];
        var f = uniforms.alpha;
        if (v > 0.0) {
          f = 1.0;
        } else if (uniforms.relu == 1 && !(v <= 0.0)) {
          f = uniforms.NAN;
        }
        result[index] = dy[index] * f;`,
    { floats: ["alpha"] },
  );
}

let kernelsOn = true;

/**
 * Turns these kernels off (the layers then use composed ops on webgpu) or back on, before
 * {@linkcode registerWebGpuKernels} runs; `UGATIT_WEBGPU_KERNELS=off` does the same from outside.
 * For comparisons.
 * @param on whether to register them
 */
export function setWebGpuKernels(on: boolean): void {
  kernelsOn = on;
}

/** The kernels this file registers for `webgpu`. */
export const WEBGPU_KERNELS: readonly string[] = [
  LIN_NORM,
  LIN_NORM_GRAD,
  ADAM_UPDATE,
  SPECTRAL_SIGMA,
  SPECTRAL_SIGMA_GRAD,
  REFLECT_PAD,
  REFLECT_PAD_GRAD,
  UPSAMPLE_2X,
  UPSAMPLE_2X_GRAD,
  ACTIVATION_GRAD,
  LERP,
];

/**
 * Registers (or, when turned off, unregisters) these kernels for the `webgpu` backend.
 * @returns whether they are registered
 */
export function registerWebGpuKernels(): boolean {
  const table: [string, (args: Args) => Info | Info[]][] = [
    [LIN_NORM, linNormForwardKernel],
    [LIN_NORM_GRAD, linNormBackwardKernel],
    [ADAM_UPDATE, adamKernel],
    [SPECTRAL_SIGMA, spectralSigmaKernel],
    [SPECTRAL_SIGMA_GRAD, spectralSigmaGradKernel],
    [REFLECT_PAD, reflectPadKernel],
    [REFLECT_PAD_GRAD, reflectPadGradKernel],
    [UPSAMPLE_2X, upsampleKernel],
    [UPSAMPLE_2X_GRAD, upsampleGradKernel],
    [ACTIVATION_GRAD, activationGradKernel],
    [LERP, lerpKernel],
  ];
  for (const [kernelName, kernel] of table) {
    if (tf.getKernel(kernelName, "webgpu")) tf.unregisterKernel(kernelName, "webgpu");
    if (!kernelsOn) continue;
    tf.registerKernel({
      kernelName,
      backendName: "webgpu",
      kernelFunc: kernel as unknown as tf.KernelFunc,
    });
  }
  if (kernelsOn) useActivationGradients();
  registerWebGpuConvKernels(kernelsOn);
  return kernelsOn;
}
