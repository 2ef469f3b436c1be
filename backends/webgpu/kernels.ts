/**
 * Kernels of ours in WGSL for the `webgpu` backend: implementations of our ops (`ops/`, which
 * define their names, inputs, outputs and attributes, as the CPU kernels in `../cpu/` implement
 * them too), so the layers pick them up unchanged:
 *
 * - `UgatitLayerInstanceNorm` / `...Grad` (AdaLIN, ILN, IN): 2 dispatches each way for tensors
 *   of up to 32,768 elements (a sample forward, the batch backward), 3 for larger ones, where the
 *   composed ops take about 30 and 60. Per-channel sums run in one workgroup (per sample forward)
 *   that also derives the statistics, or for larger tensors in two stages (64-pixel chunks over
 *   the GPU first); sums of deviations are taken from the channel mean (backward) or from each
 *   channel's first pixel (forward), so float32 loses no digits to cancellation.
 * - `UgatitAdamUpdate`: the reference optimiser's per-tensor update in one pass (the update, the
 *   new first and second moments as rows of one output), where the composed chain takes about 15.
 * - `UgatitSpectralSigma` / `...Grad`: spectral norm's power iteration and sigma in 3 dispatches
 *   (with the iteration or without; one workgroup's one dispatch for a training step's weights of
 *   up to 65,536 elements) and its gradient `v u^T` in one, where the composed ops take about 25.
 * - `UgatitReflectPad` / `...Grad`, `UgatitUpsample2x` / `...Grad`: one gather pass each way.
 * - `UgatitMeanSquaredError` / `...Grad`: the least-squares loss term in one reducing pass, its
 *   gradient in one.
 * - `UgatitDividePerPass` / `...Grad`: stacked passes divided by their sigmas in one pass; back,
 *   the input's gradient and partial sums of `dy * y` in one pass over the GPU, every sigma's
 *   gradient from them in one more (both in one workgroup's one pass up to 32,768 elements).
 *
 * A program here is one thread per output element (or per work item, `threads`), or a workgroup
 * per group for reductions, run by `program.ts`: inputs are read as flat arrays by their names,
 * the output is `result`, and the attributes travel as uniforms, so a shape or learning-rate
 * change compiles nothing new. A program of threads carries its WGSL on the program object
 * (`OwnWgsl`), so that a recorded step may compute it inside the elementwise chain that reads it
 * (where it has a thread per output element ending in its one write), or a chain inside it
 * (`fuse.ts`).
 *
 * - `BatchMatMul` (TensorFlow.js's kernel name), for small products: a thread per output element,
 *   in front of the stock kernel, which takes the rest; likewise `Sum`, `Mean` and `Max` over one
 *   run of axes, and `PadV2` (a constant around a tensor).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { ACTIVATION_GRAD, useActivationGradients } from "../../ops/activation_grad.ts";
import { ADAM_UPDATE, type AdamUpdateAttrs } from "../../ops/adam_update.ts";
import { DIVIDE_PER_PASS, DIVIDE_PER_PASS_GRAD, sigmaInputs } from "../../ops/divide_per_pass.ts";
import { LERP } from "../../ops/lerp.ts";
import { MEAN_SQUARED_ERROR, MEAN_SQUARED_ERROR_GRAD } from "../../ops/mean_squared_error.ts";
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
import {
  type Args,
  GROUP,
  type IndexDivision,
  indexDivision,
  type Info,
  run,
  runGroups,
  size,
  standInFront,
} from "./program.ts";

const CHUNK = 64; // pixels per partial sum
const EPS = 1e-5;

// Rows of a packed output start at a multiple of this many floats (256 bytes, WebGPU's default
// storage-offset alignment): a replayed step binds each row as a view, with no copy.
const ROW_ALIGN = 64;

/**
 * Rows of a packed `[k, stride]` output, each its first `n` values as a tensor of `shape` (a slice,
 * then a reshape; a replayed step binds them as views of the packed buffer).
 * @param count how many rows, from `first`
 * @param release whether to release the packed output afterwards (the last call on it)
 * @param rowsShape `[k, stride]`, where the packed output is flat
 */
function unpackRows(
  backend: tf.KernelBackend,
  packed: Info,
  n: number,
  shape: number[],
  count = packed.shape[0],
  release = true,
  first = 0,
  rowsShape?: number[],
): Info[] {
  const slice = tf.getKernel("Slice", "webgpu")!.kernelFunc;
  const reshape = tf.getKernel("Reshape", "webgpu")!.kernelFunc;
  // A flat packed output is read as rows of this shape.
  const x = rowsShape
    ? reshape({ inputs: { x: packed }, backend, attrs: { shape: rowsShape } }) as Info
    : packed;
  const rows = Array.from({ length: count }, (_, k) => {
    const row = slice({
      inputs: { x },
      backend,
      attrs: { begin: [first + k, 0], size: [1, n] },
    }) as Info;
    const out = reshape({ inputs: { x: row }, backend, attrs: { shape } }) as Info;
    backend.disposeData(row.dataId);
    return out;
  });
  if (rowsShape) backend.disposeData(x.dataId);
  if (release) backend.disposeData(packed.dataId);
  return rows;
}

// ---- layer-instance normalisation -----------------------------------------------------------

// A sample (forward) or a batch (backward) of at most this many elements has its per-channel sums
// taken by one workgroup, in the dispatch that uses them; larger ones first sum 64-pixel chunks
// over the whole device. One workgroup saves a dispatch (tens of microseconds on a software
// adapter, `deno task bench:dispatch`) but runs on one of lavapipe's cores: past this size the
// chunks' dispatch pays for itself (`BENCHMARKS.md`). The division by sigmas' gradient uses it too.
const ONE_GROUP_SUMS = 1 << 15;

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
  const q = indexDivision(n * chunks * c);
  return run(
    backend,
    `lin_chunks_${key}_${q.key}`,
    inputs,
    [n, chunks, c, 2],
    n * chunks * c,
    { hw, c, chunks },
    `
        let ch = ${q.mod("index", "uniforms.c")};
        let k = ${q.mod(q.div("index", "uniforms.c"), "uniforms.chunks")};
        let s = ${q.div("index", "uniforms.c * uniforms.chunks")};
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

// Workgroup memory of `channelSums`.
const CHANNEL_SUMS = `
      var<workgroup> ugatitSumA : array<f32, ${GROUP}>;
      var<workgroup> ugatitSumB : array<f32, ${GROUP}>;`;

/**
 * WGSL for a workgroup (in uniform control flow) that takes sample `s`'s per-channel sums of `a`
 * and `a * (b - shift)` (as {@linkcode chunkSums}, where `i` is the element, `base` the sample's
 * first and `ch` the channel) and runs `then` for each channel, with `ch`, `shift` and the sums
 * `sa`, `sab` in scope, on thread `ch % 256`: the thread a `for (ch = tid; ...; ch += 256)` loop
 * gives that channel. A channel's pixels are split among 256 / C threads (with C > 256, a thread
 * takes a channel of every 256), whose partial sums meet in workgroup memory.
 */
function channelSums(a: string, b: string, shift: string, then: string): string {
  return `
        {
          let cpr = min(uniforms.c, ${GROUP}); // channels per round
          let lanes = ${GROUP} / cpr; // threads per channel
          let lane = tid / cpr;
          let base = s * uniforms.hw * uniforms.c;
          for (var c0 = 0; c0 < uniforms.c; c0 += cpr) {
            let ch = c0 + tid - lane * cpr;
            var sa = 0.0;
            var sab = 0.0;
            if (lane < lanes && ch < uniforms.c) {
              let shift = ${shift};
              for (var p = lane; p < uniforms.hw; p += lanes) {
                let i = base + p * uniforms.c + ch;
                let av = ${a};
                sa += av;
                sab += av * (${b} - shift);
              }
            }
            ugatitSumA[tid] = sa;
            ugatitSumB[tid] = sab;
            workgroupBarrier();
            if (lane == 0 && ch < uniforms.c) {
              for (var l = 1; l < lanes; l++) {
                sa += ugatitSumA[l * cpr + tid];
                sab += ugatitSumB[l * cpr + tid];
              }
              let shift = ${shift};
              ${then}
            }
            workgroupBarrier(); // every partial is read before the next round writes
          }
        }`;
}

/**
 * WGSL that runs `then` per channel of sample `s` with the sums `sa`, `sab` of {@linkcode
 * chunkSums}' output `chunks` (and `ch`, `shift` in scope), on the threads of `channelSums`.
 */
function sumsFromChunks(shift: string, then: string): string {
  return `
        for (var ch = tid; ch < uniforms.c; ch += ${GROUP}) {
          var sa = 0.0;
          var sab = 0.0;
          for (var k = 0; k < uniforms.p; k++) {
            let i = 2 * ((s * uniforms.p + k) * uniforms.c + ch);
            sa += chunks[i];
            sab += chunks[i + 1];
          }
          let shift = ${shift};
          ${then}
        }`;
}

function linNormForwardKernel({ inputs, backend, attrs }: Args): Info[] {
  const { x, rho, gamma, beta } = inputs as Record<string, Info>;
  const { unbiased, mixLn } = attrs as unknown as LinNormAttrs;
  const [n, h, w, c] = x.shape;
  const hw = h * w;
  const dims = [n, hw, c];
  // Sums of x - x[first pixel] and its square, per channel: the shift keeps float32 exact enough.
  const [a, b, shift] = ["x[i] - shift", "x[i]", "x[s * uniforms.hw * uniforms.c + ch]"];
  const oneGroup = hw * c <= ONE_GROUP_SUMS;
  const chunks = oneGroup ? undefined : chunkSums(backend, "fwd", { x }, dims, a, b, shift);
  // Channel means and squared deviations from the shifted sums S1, S2 (shift: pixel 0):
  // mean = shift + S1 / hw, M2 = S2 - S1^2 / hw. M2 waits in the 1/std slot.
  const perChannel = `
          result[st + ch] = shift + sa / hwf;
          result[st + uniforms.c + ch] = max(0.0, sab - sa * sa / hwf);
          part += shift * hwf + sa;`;
  // stats per sample: channel means, channel 1/std, the sample mean, its 1/std (as on the CPU),
  // a workgroup per sample: its threads take their channels' sums, then the group sums channels.
  const stats = runGroups(
    backend,
    `lin_stats_${oneGroup}`,
    chunks ? { x, chunks } : { x },
    [n, 2 * c + 2],
    n,
    {
      hw,
      c,
      p: chunks?.shape[1] ?? 0,
      dIn: unbiased ? hw - 1 : hw,
      dLn: unbiased ? hw * c - 1 : hw * c,
    },
    `
        let s = group;
        let st = s * (2 * uniforms.c + 2);
        let hwf = f32(uniforms.hw);
        var part = 0.0;
        ${oneGroup ? channelSums(a, b, shift, perChannel) : sumsFromChunks(shift, perChannel)}
        let mu = groupSum(part) / (hwf * f32(uniforms.c));
        // The sample's squared deviations: each channel's M2 and its mean's distance from mu.
        var lnPart = 0.0;
        for (var ch = tid; ch < uniforms.c; ch += ${GROUP}) {
          let mc = result[st + ch];
          let m2 = result[st + uniforms.c + ch];
          lnPart += m2 + hwf * (mc - mu) * (mc - mu);
          result[st + uniforms.c + ch] = inverseSqrt(m2 / f32(uniforms.dIn) + ${EPS});
        }
        let lnSq = groupSum(lnPart);
        if (tid == 0) {
          result[st + 2 * uniforms.c] = mu;
          result[st + 2 * uniforms.c + 1] = inverseSqrt(lnSq / f32(uniforms.dLn) + ${EPS});
        }`,
    { prelude: oneGroup ? CHANNEL_SUMS : "" },
  );
  if (chunks) backend.disposeData(chunks.dataId);
  const q = indexDivision(size(x.shape));
  const y = run(
    backend,
    `lin_out_${mixLn}_${q.key}`,
    mixLn ? { x, stats, rho, gamma, beta } : { x, stats, gamma, beta } as Record<string, Info>,
    x.shape,
    size(x.shape),
    { hw, c },
    `
        let ch = ${q.mod("index", "uniforms.c")};
        let s = ${q.div("index", "uniforms.hw * uniforms.c")};
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
  const [a, b, shift] = ["dy[i]", "x[i]", "stats[s * (2 * uniforms.c + 2) + ch]"];
  const oneGroup = n * hw * c <= ONE_GROUP_SUMS;
  const chunks = oneGroup
    ? undefined
    : chunkSums(backend, "bwd", { dy, x, stats }, dims, a, b, shift);
  const r = mixLn ? "rho[ch]" : "1.0";
  const io: Record<string, Info> = {
    ...(chunks ? { chunks } : { dy, x }),
    stats,
    ...(mixLn ? { rho } : {}),
    gamma,
  };
  const perChannel = `
          let gsum = sa;
          let cin = sab;
          let sc = s * uniforms.c + ch;
          let mc = stats[st + ch];
          let rin = stats[st + uniforms.c + ch];
          let cln = cin + (mc - mu) * gsum;
          let r = ${r};
          let g = gamma[sc];
          result[sc] = gsum;
          result[uniforms.stride + sc] = r * rin * cin + (1.0 - r) * rln * cln;
          ${mixLn ? "result[2 * uniforms.stride + ch] += g * (rin * cin - rln * cln);" : ""}
          result[3 * uniforms.stride + 3 * sc] = cin; // kept for the coefficients below
          p1 += g * (1.0 - r) * gsum;
          p2 += g * (1.0 - r) * rln * cln;`;
  // One workgroup writes dbeta, dgamma, drho (summed over the samples) and the coefficients of
  // dx = dy P + x Q + R, as four rows at aligned strides (a replayed step binds each as a view).
  // Per sample, each thread takes its channels' sums (gsum = sum dy, cin = sum dy (x - mean_c))
  // and the group sums LN's l1 and l2 over all channels.
  const stride = Math.ceil((3 * n * c) / ROW_ALIGN) * ROW_ALIGN;
  const packed = runGroups(
    backend,
    `lin_grads_${mixLn}_${oneGroup}`,
    io,
    [4, stride],
    1,
    {
      c,
      n,
      hw,
      p: chunks?.shape[1] ?? 0,
      stride,
      dIn: unbiased ? hw - 1 : hw,
      dLn: unbiased ? hw * c - 1 : hw * c,
    },
    `
        let hwf = f32(uniforms.hw);
        for (var ch = tid; ch < uniforms.c; ch += ${GROUP}) { result[2 * uniforms.stride + ch] = 0.0; }
        for (var s = 0; s < uniforms.n; s++) {
          let st = s * (2 * uniforms.c + 2);
          let mu = stats[st + 2 * uniforms.c];
          let rln = stats[st + 2 * uniforms.c + 1];
          var p1 = 0.0;
          var p2 = 0.0;
          ${oneGroup ? channelSums(a, b, shift, perChannel) : sumsFromChunks(shift, perChannel)}
          let l1 = groupSum(p1);
          let l2 = groupSum(p2);
          let kl = rln * rln * l2 / f32(uniforms.dLn);
          for (var ch = tid; ch < uniforms.c; ch += ${GROUP}) {
            let sc = s * uniforms.c + ch;
            let at = 3 * uniforms.stride + 3 * sc;
            let gsum = result[sc];
            let cin = result[at];
            let mc = stats[st + ch];
            let rin = stats[st + uniforms.c + ch];
            let r = ${r};
            let g = gamma[sc];
            let k = rin * rin * rin * g * r * cin / f32(uniforms.dIn);
            result[at] = rin * g * r + rln * g * (1.0 - r);
            result[at + 1] = -k - kl;
            result[at + 2] = -rin * g * r * gsum / hwf + k * mc - rln * l1 / (hwf * f32(uniforms.c)) +
              kl * mu;
          }
        }`,
    { prelude: oneGroup ? CHANNEL_SUMS : "" },
  );
  if (chunks) backend.disposeData(chunks.dataId);
  const [dbeta, dgamma] = unpackRows(backend, packed, n * c, [n, c], 2, false);
  const [drho] = unpackRows(backend, packed, c, [c], 1, false, 2);
  const [coefs] = unpackRows(backend, packed, 3 * n * c, [n, c, 3], 1, true, 3);
  const q = indexDivision(size(x.shape));
  const dx = run(
    backend,
    `lin_dx_${q.key}`,
    { dy, x, coefs },
    x.shape,
    size(x.shape),
    { hw, c },
    `
        let j = 3 * (${q.div("index", "uniforms.hw * uniforms.c")} * uniforms.c +
          ${q.mod("index", "uniforms.c")});
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
// (in, h, w). Index maps both ways, as WGSL expressions of `i` (identity for a linear weight:
// kh = 0), by the division `d` (for the weight's size); written in the body, not as functions
// of the uniforms, so that a recorded step may fold the gradient into the chain that reads it.
const torchOfOwn = (kh: number, d: IndexDivision, i: string) =>
  kh === 0
    ? i
    : `(${d.mod(i, "uniforms.cin")} * uniforms.kh * uniforms.kw + ${d.div(i, "uniforms.cin")})`;
const ownOfTorch = (kh: number, d: IndexDivision, j: string) =>
  kh === 0
    ? j
    : `(${d.mod(j, "uniforms.kh * uniforms.kw")} * uniforms.cin + ${
      d.div(j, "uniforms.kh * uniforms.kw")
    })`;
const SN_EPS = 1e-12;

// A training step's power iteration runs in one workgroup for weights up to this many elements
// (every discriminator weight of the light model at 96 px and ch 4): one dispatch, not three.
const ONE_GROUP_SIGMA = 1 << 16;

/**
 * The training step's power iteration and sigma in one workgroup: v = A u over the threads,
 * written unnormalised into v's rows of the packed output (in torch's order) and read back after
 * a storage barrier; then s = A^T v, u = s / |s| and sigma = u . s, each sum over the group.
 */
function spectralSigmaOneGroup(backend: tf.KernelBackend, a: Info, u: Info, dims: SnDims): Info {
  const { rows, cols, kh } = dims;
  const at = spectralPacking(rows, cols);
  const d = indexDivision(cols);
  const own = torchOfOwn(kh, d, "i");
  return runGroups(
    backend,
    `sn_one_group_${kh === 0}_${d.key}`,
    { a, u },
    [at.size],
    1,
    { ...dims, atU: at.u, atV: at.v },
    `
        // The packing's gaps (and the slots of sigma's row) are zeros.
        for (var k = tid; k < uniforms.atV; k += ${GROUP}) { result[k] = 0.0; }
        var sq = 0.0;
        for (var i = tid; i < uniforms.cols; i += ${GROUP}) {
          var acc = 0.0;
          for (var j = 0; j < uniforms.rows; j++) { acc += a[i * uniforms.rows + j] * u[j]; }
          result[uniforms.atV + ${own}] = acc;
          sq += acc * acc;
        }
        let inv = 1.0 / max(sqrt(groupSum(sq)), ${SN_EPS});
        storageBarrier();
        var ss = 0.0;
        for (var r = tid; r < uniforms.rows; r += ${GROUP}) {
          var acc = 0.0;
          for (var i = 0; i < uniforms.cols; i++) {
            acc += a[i * uniforms.rows + r] * result[uniforms.atV + ${own}];
          }
          acc = acc * inv;
          result[uniforms.atU + r] = acc;
          ss += acc * acc;
        }
        let invS = 1.0 / max(sqrt(groupSum(ss)), ${SN_EPS});
        var sigma = 0.0;
        for (var r = tid; r < uniforms.rows; r += ${GROUP}) {
          let s = result[uniforms.atU + r];
          result[uniforms.atU + r] = s * invS;
          sigma += s * invS * s;
        }
        let total = groupSum(sigma);
        if (tid == 0) { result[0] = total; }
        // v normalised in place (each thread its own rows, written above).
        for (var i = tid; i < uniforms.cols; i += ${GROUP}) {
          result[uniforms.atV + ${own}] *= inv;
        }`,
  );
}

type SnDims = { rows: number; cols: number; kh: number; kw: number; cin: number };

function spectralSigmaKernel({ inputs, backend, attrs }: Args): Info {
  const { a, u, v } = inputs as Record<string, Info>;
  const { training, kh, kw, cin } = attrs as unknown as SpectralSigmaAttrs;
  const [cols, rows] = a.shape;
  const dims = { rows, cols, kh, kw, cin };
  if (training && rows * cols <= ONE_GROUP_SIGMA) {
    return spectralSigmaOneGroup(backend, a, u, dims);
  }
  let vOwn: Info; // [cols]: v in the weight's order (A u when training, not yet normalised)
  if (training) {
    vOwn = run(
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
  } else {
    const d = indexDivision(cols);
    vOwn = run(
      backend,
      `sn_vown_${kh === 0}_${d.key}`,
      { v },
      [cols],
      cols,
      dims,
      `result[index] = v[${torchOfOwn(kh, d, "index")}];`,
    );
  }
  // s = A^T v, and after it 1 / |A u| (training: v = A u / |A u|; every thread sums the squares
  // as it walks v, so no pass of its own), or 1.
  const sv = run(
    backend,
    `sn_atv_${training}`,
    { a, vown: vOwn },
    [rows + 1],
    rows,
    dims,
    `
        var acc = 0.0;
        var sq = 0.0;
        for (var i = 0; i < uniforms.cols; i++) {
          let vi = vown[i];
          acc += a[i * uniforms.rows + index] * vi;
          sq += vi * vi;
        }
        let inv = ${training ? `1.0 / max(sqrt(sq), ${SN_EPS})` : "1.0"};
        result[index] = acc * inv;
        if (index == 0) { result[uniforms.rows] = inv; }`,
  );
  const at = spectralPacking(rows, cols);
  const d = indexDivision(cols);
  const packed = run(
    backend,
    `sn_pack_${training}_${kh === 0}_${d.key}`,
    // (u is read only when it is kept: a binding no code reads is left out of the layout)
    training ? { sv, vown: vOwn } : { sv, u, vown: vOwn },
    [at.size],
    at.size,
    { ...dims, atU: at.u, atV: at.v },
    `
        let inv = sv[uniforms.rows];
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
          result[index] = vown[${ownOfTorch(kh, d, "(index - uniforms.atV)")}] * inv;
        } else if (k >= 0 && k < uniforms.rows) {
          result[index] = ${training ? "sv[k] * invS" : "u[k]"};
        } else {
          result[index] = 0.0;
        }`,
  );
  backend.disposeData(vOwn.dataId);
  backend.disposeData(sv.dataId);
  return packed;
}

function spectralSigmaGradKernel({ inputs, backend, attrs }: Args): Info {
  const { dy, packed } = inputs as Record<string, Info>;
  const { rows, kh, kw, cin } = attrs as unknown as SpectralSigmaAttrs & { rows: number };
  const at = spectralPacking(rows, 0);
  const cols = packed.shape[0] - at.v;
  const d = indexDivision(cols * rows);
  return run(
    backend,
    `sn_grad_${kh === 0}_${d.key}`,
    { dy, packed },
    [cols, rows],
    cols * rows,
    { rows, cols, kh, kw, cin, atU: at.u, atV: at.v },
    `
        let r = ${d.mod("index", "uniforms.rows")};
        let i = ${d.div("index", "uniforms.rows")};
        let vi = packed[uniforms.atV + ${torchOfOwn(kh, d, "i")}];
        let ur = packed[uniforms.atU + r];
        result[index] = dy[0] * vi * ur;`,
  );
}

// ---- reflection padding and upsampling ----------------------------------------------------

// The NHWC coordinates (s, i, j, q) of output element `index` in an [N, h, w, C] tensor, by
// the division `d` (for its size).
const nhwcOf = (d: IndexDivision, h: string, w: string) => `
        let q = ${d.mod("index", "uniforms.c")};
        let j = ${d.mod(d.div("index", "uniforms.c"), w)};
        let i = ${d.mod(d.div("index", `uniforms.c * ${w}`), h)};
        let s = ${d.div("index", `uniforms.c * ${w} * ${h}`)};`;

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
  const d = indexDivision(n * hp * wp * c);
  return run(
    backend,
    `reflect_pad_${d.key}`,
    { x },
    [n, hp, wp, c],
    n * hp * wp * c,
    { h, w, c, hp, wp, padH, padW },
    `
        ${nhwcOf(d, "uniforms.hp", "uniforms.wp")}
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
  const d = indexDivision(n * h * w * c);
  return run(
    backend,
    `reflect_pad_grad_${d.key}`,
    { dy },
    [n, h, w, c],
    n * h * w * c,
    { h, w, c, hp, wp, padH, padW },
    `
        ${nhwcOf(d, "uniforms.h", "uniforms.w")}
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
  const d = indexDivision(n * 4 * h * w * c);
  return run(
    backend,
    `upsample2x_${d.key}`,
    { x },
    [n, 2 * h, 2 * w, c],
    n * 4 * h * w * c,
    { h, w, c },
    `
        ${nhwcOf(d, "(2 * uniforms.h)", "(2 * uniforms.w)")}
        result[index] = x[((s * uniforms.h + i / 2) * uniforms.w + j / 2) * uniforms.c + q];`,
  );
}

function upsampleGradKernel({ inputs, backend }: Args): Info {
  const { dy } = inputs as { dy: Info };
  const [n, h2, w2, c] = dy.shape;
  const [h, w] = [h2 / 2, w2 / 2];
  const d = indexDivision(n * h * w * c);
  return run(
    backend,
    `upsample2x_grad_${d.key}`,
    { dy },
    [n, h, w, c],
    n * h * w * c,
    { h, w, c },
    `
        ${nhwcOf(d, "uniforms.h", "uniforms.w")}
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

// ---- the least-squares loss term ------------------------------------------------------------

// (The target travels as `goal`: `target` is reserved in WGSL, and a shader that does not
// compile leaves its output unwritten without a word.)
function meanSquaredErrorKernel({ inputs, backend, attrs }: Args): Info {
  const { x } = inputs as { x: Info };
  const { target } = attrs as unknown as { target: number };
  const n = size(x.shape);
  const sum = runGroups(
    backend,
    "mse",
    { x },
    [1],
    1,
    { n, goal: target },
    `
        var part = 0.0;
        for (var i = tid; i < uniforms.n; i += ${GROUP}) {
          let d = x[i] - uniforms.goal;
          part += d * d;
        }
        let total = groupSum(part);
        if (tid == 0) { result[0] = total / f32(uniforms.n); }`,
    { floats: ["goal"] },
  );
  const reshape = tf.getKernel("Reshape", "webgpu")!.kernelFunc;
  const out = reshape({ inputs: { x: sum }, backend, attrs: { shape: [] } }) as Info;
  backend.disposeData(sum.dataId);
  return out;
}

function meanSquaredErrorGradKernel({ inputs, backend, attrs }: Args): Info {
  const { dy, x } = inputs as { dy: Info; x: Info };
  const { target } = attrs as unknown as { target: number };
  const n = size(x.shape);
  return run(
    backend,
    "mse_grad",
    { dy, x },
    x.shape,
    n,
    { n, goal: target },
    "result[index] = dy[0] * 2.0 * (x[index] - uniforms.goal) / f32(uniforms.n);",
    { floats: ["goal"] },
  );
}

// ---- stacked passes divided by their sigmas ---------------------------------------------------

// The sigma of the pass of element `at`, from scalar inputs s0..s(P-1) (a pass is `m` elements;
// `d` divides indices of the tensor's size).
function sigmaOfPass(passes: number, at = "index", d = indexDivision(Infinity)): string {
  const others = sigmaInputs(passes).slice(1)
    .map((k, i) => `if (passAt == ${i + 1}) { sigma = ${k}[0]; }`);
  return `
        let passAt = ${d.div(at, "uniforms.m")};
        var sigma = s0[0];
        ${others.join(" ")}`;
}

// `y` (a stack of passes) divided pass by pass by the sigmas.
function divideByPass(backend: tf.KernelBackend, y: Info, sigmas: Record<string, Info>): Info {
  const passes = Object.keys(sigmas).length;
  const d = indexDivision(size(y.shape));
  return run(
    backend,
    `divide_per_pass_${passes}_${d.key}`,
    { y, ...sigmas },
    y.shape,
    size(y.shape),
    { m: size(y.shape) / passes },
    `${sigmaOfPass(passes, "index", d)}
        result[index] = y[index] / sigma;`,
  );
}

function dividePerPassKernel({ inputs, backend }: Args): Info {
  const { y, ...sigmas } = inputs as Record<string, Info>;
  return divideByPass(backend, y, sigmas);
}

// Elements of one pass a workgroup of the gradient takes (its threads 8 each).
const PASS_SPAN = GROUP * 8;

function dividePerPassGradKernel({ inputs, backend }: Args): Info[] {
  const { dy, y, ...sigmas } = inputs as Record<string, Info>;
  const passes = Object.keys(sigmas).length;
  const total = size(y.shape), m = total / passes;
  if (total <= ONE_GROUP_SUMS) {
    // One workgroup: dx, then each sigma's gradient at an aligned row after it (views both).
    const at = Math.ceil(total / ROW_ALIGN) * ROW_ALIGN;
    const width = at + passes * ROW_ALIGN;
    const packed = runGroups(
      backend,
      `divide_per_pass_grad_one_group_${passes}`,
      { dy, y, ...sigmas },
      [width],
      1,
      { m, at },
      `
        for (var k = 0; k < ${passes}; k++) {
          ${sigmaOfPass(passes, "k * uniforms.m")}
          var part = 0.0;
          for (var i = k * uniforms.m + tid; i < (k + 1) * uniforms.m; i += ${GROUP}) {
            let g = dy[i];
            result[i] = g / sigma;
            part += g * y[i];
          }
          let sum = groupSum(part);
          if (tid == 0) { result[uniforms.at + k * ${ROW_ALIGN}] = -sum / (sigma * sigma); }
        }`,
    );
    const [dx] = unpackRows(backend, packed, total, y.shape, 1, false, 0, [1, width]);
    const rows = [at / ROW_ALIGN + passes, ROW_ALIGN];
    return [dx, ...unpackRows(backend, packed, 1, [], passes, true, at / ROW_ALIGN, rows)];
  }
  const spans = Math.ceil(m / PASS_SPAN); // workgroups per pass
  const at = Math.ceil(total / ROW_ALIGN) * ROW_ALIGN;
  // One pass over the GPU writes dx = dy / sigma and, after it, each workgroup's sum of dy * y
  // (a workgroup stays within one pass); dx is then a view of its first part.
  const packed = runGroups(
    backend,
    `divide_per_pass_grad_${passes}`,
    { dy, y, ...sigmas },
    [at + passes * spans],
    passes * spans,
    { m, spans, at },
    `
        let k = group / uniforms.spans;
        let start = k * uniforms.m + (group - k * uniforms.spans) * ${PASS_SPAN};
        let end = min(start + ${PASS_SPAN}, (k + 1) * uniforms.m);
        ${sigmaOfPass(passes, "k * uniforms.m")}
        var part = 0.0;
        for (var i = start + tid; i < end; i += ${GROUP}) {
          let g = dy[i];
          result[i] = g / sigma;
          part += g * y[i];
        }
        let sum = groupSum(part);
        if (tid == 0) { result[uniforms.at + group] = sum; }`,
  );
  // d sigma = -sum(dy * y) / sigma^2 per pass, from its workgroups' sums, at aligned rows (views).
  const ds = runGroups(
    backend,
    `divide_per_pass_sums_${passes}`,
    { packed, ...sigmas },
    [passes, ROW_ALIGN],
    passes,
    { m: 1, spans, at },
    `
        var part = 0.0;
        for (var j = tid; j < uniforms.spans; j += ${GROUP}) {
          part += packed[uniforms.at + group * uniforms.spans + j];
        }
        let sum = groupSum(part);
        ${sigmaOfPass(passes, "group")}
        if (tid == 0) { result[group * ${ROW_ALIGN}] = -sum / (sigma * sigma); }`,
  );
  const [dx] = unpackRows(backend, packed, total, y.shape, 1, true, 0, [1, at + passes * spans]);
  return [dx, ...unpackRows(backend, ds, 1, [], passes)];
}

// ---- small matrix products ----------------------------------------------------------------

// At most this many multiply-adds, a product runs here (a thread per output element, summing its
// row and column); larger ones take the stock tiled kernel. The light model's CAM and MLP layers
// and their gradients are products of a few rows by a few hundred columns, which the stock
// kernel's tiles (one workgroup per tile, loops over K) ran at about 0.37 ms each on lavapipe.
const SMALL_MATMUL = 1 << 20;

/**
 * `BatchMatMul` for small float32 products whose batch dimensions are equal (or absent), as one
 * program of ours (never fused into a chain: see `run`'s `unfused`); undefined for the rest (the
 * stock kernel takes them).
 */
function smallMatMul({ inputs, backend, attrs }: Args): Info | undefined {
  const { a, b } = inputs as Record<string, Info>;
  const { transposeA, transposeB } = attrs as unknown as {
    transposeA: boolean;
    transposeB: boolean;
  };
  if (a.dtype !== "float32" || b.dtype !== "float32" || a.shape.length !== b.shape.length) {
    return undefined;
  }
  const batchShape = a.shape.slice(0, -2);
  if (batchShape.some((d, i) => d !== b.shape[i])) return undefined;
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const [m, k] = transposeA ? [ac, ar] : [ar, ac];
  const [k2, n] = transposeB ? [bc, br] : [br, bc];
  const batch = size(batchShape);
  if (k !== k2 || batch * m * n * k > SMALL_MATMUL || batch * m * n === 0) return undefined;
  const q = indexDivision(batch * m * n);
  // Element (m, k) of A and (k, n) of B in their batch's matrix, as stored.
  const aAt = transposeA ? "kk * uniforms.m + row" : "row * uniforms.k + kk";
  const bAt = transposeB ? "col * uniforms.k + kk" : "kk * uniforms.n + col";
  return run(
    backend,
    `matmul_${transposeA}_${transposeB}_${q.key}`,
    { a, b },
    [...batchShape, m, n],
    batch * m * n,
    { m, n, k },
    `
        let col = ${q.mod("index", "uniforms.n")};
        let row = ${q.mod(q.div("index", "uniforms.n"), "uniforms.m")};
        let bi = ${q.div("index", "uniforms.m * uniforms.n")};
        let atA = bi * uniforms.m * uniforms.k;
        let atB = bi * uniforms.k * uniforms.n;
        var acc = 0.0;
        for (var kk = 0; kk < uniforms.k; kk++) {
          acc = fma(a[atA + ${aAt}], b[atB + ${bAt}], acc);
        }
        result[index] = acc;`,
    { unfused: true },
  );
}

// ---- reductions over one run of axes ---------------------------------------------------------

/** The reductions taken here, by TensorFlow.js kernel name: how each folds a value in. */
const REDUCE_KINDS: Record<string, "sum" | "mean" | "max"> = {
  Sum: "sum",
  Mean: "mean",
  Max: "max",
};

/**
 * `Sum`, `Mean` or `Max` of float32 `x` over axes that form one run short of the last axis alone
 * (a layer's spatial pooling: axes 1 and 2 of NHWC; a per-channel gradient sum: axes 0 to 2), as
 * one program of ours: a thread per output element walks its reduced elements, where the stock
 * kernel first transposes the reduced axes last (a dispatch and a copy of its own). Undefined for
 * the rest (the stock kernel takes them).
 */
function runReduce(name: string, { inputs, backend, attrs }: Args): Info | undefined {
  const { x } = inputs as Record<string, Info>;
  const { axis, reductionIndices, keepDims } = attrs as unknown as {
    axis?: number | number[];
    reductionIndices?: number | number[];
    keepDims: boolean;
  };
  const rank = x.shape.length;
  if (x.dtype !== "float32" || rank === 0 || size(x.shape) === 0) return undefined;
  const axes = [...tf.util.parseAxisParam(axis ?? reductionIndices!, x.shape)].sort((a, b) =>
    a - b
  );
  const first = axes[0], last = axes[axes.length - 1];
  // One run of axes, and not the last axis alone: those the stock kernel reduces in place.
  if (axes.length === 0 || last - first + 1 !== axes.length || first === rank - 1) return undefined;
  const outer = size(x.shape.slice(0, first));
  const count = size(x.shape.slice(first, last + 1));
  const inner = size(x.shape.slice(last + 1));
  const kind = REDUCE_KINDS[name];
  const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
    .filter((_, i) => keepDims || !axes.includes(i));
  if (count === 1) { // axes of size 1 (a broadcast's gradient): the input, reshaped, no dispatch
    const reshape = tf.getKernel("Reshape", "webgpu")!.kernelFunc;
    return reshape({ inputs: { x }, backend, attrs: { shape: outShape } }) as Info;
  }
  const q = indexDivision(outer * inner);
  // Max: a NaN wins, as in the stock kernel (acc + v is NaN then; a NaN constant does not
  // compile); the first element starts the fold.
  const fold = kind === "max"
    ? "acc = select(max(acc, v), acc + v, ugatitIsNan(v) || ugatitIsNan(acc));"
    : "acc += v;";
  return run(
    backend,
    `reduce_run_${kind}_${q.key}`,
    { x },
    outShape,
    outer * inner,
    { count, inner },
    `
        let o = ${q.div("index", "uniforms.inner")};
        let at = o * uniforms.count * uniforms.inner + ${q.mod("index", "uniforms.inner")};
        var acc = x[at];
        for (var r = 1; r < uniforms.count; r++) {
          let v = x[at + r * uniforms.inner];
          ${fold}
        }
        result[index] = ${kind === "mean" ? "acc / f32(uniforms.count)" : "acc"};`,
    kind === "max"
      ? {
        prelude: `
      fn ugatitIsNan(v : f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }`,
      }
      : {},
  );
}

// ---- constant padding ------------------------------------------------------------------------

/**
 * `PadV2` (a constant around float32 `x`: the gradient of a slice of the stacked passes) as a
 * program of ours with a thread per output element, so that a recorded step computes it inside
 * the chain that reads it (the sum of the passes' gradients); undefined for the rest (the stock
 * kernel takes them).
 */
function padConstant({ inputs, backend, attrs }: Args): Info | undefined {
  const { x } = inputs as Record<string, Info>;
  const { paddings, constantValue } = attrs as unknown as {
    paddings: [number, number][];
    constantValue: number;
  };
  const rank = x.shape.length;
  if (x.dtype !== "float32" || rank === 0 || !Number.isFinite(constantValue)) return undefined;
  const outShape = x.shape.map((d, k) => d + paddings[k][0] + paddings[k][1]);
  const n = size(outShape);
  if (n === 0 || size(x.shape) === 0) return undefined;
  const q = indexDivision(n);
  const dims = x.shape.keys().toArray();
  const uniforms: Record<string, number> = { value: constantValue };
  for (const k of dims) {
    uniforms[`o${k}`] = size(outShape.slice(k + 1));
    uniforms[`s${k}`] = size(x.shape.slice(k + 1));
    uniforms[`b${k}`] = paddings[k][0];
    uniforms[`e${k}`] = x.shape[k];
  }
  // Each axis in turn: the output coordinate less the padding before it, inside the input or not.
  const axes = dims.map((k) => `
        let q${k} = ${q.div("rest", `uniforms.o${k}`)};
        rest = rest - q${k} * uniforms.o${k};
        let c${k} = q${k} - uniforms.b${k};
        inside = inside && c${k} >= 0 && c${k} < uniforms.e${k};
        at += c${k} * uniforms.s${k};`);
  return run(
    backend,
    `pad_constant_${rank}_${q.key}`,
    { x },
    outShape,
    n,
    uniforms,
    `
        var rest = index;
        var at = 0;
        var inside = true;
        ${axes.join("")}
        result[index] = select(uniforms.value, x[select(0, at, inside)], inside);`,
    { floats: ["value"] },
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
  DIVIDE_PER_PASS,
  DIVIDE_PER_PASS_GRAD,
  MEAN_SQUARED_ERROR,
  MEAN_SQUARED_ERROR_GRAD,
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
    [DIVIDE_PER_PASS, dividePerPassKernel],
    [DIVIDE_PER_PASS_GRAD, dividePerPassGradKernel],
    [MEAN_SQUARED_ERROR, meanSquaredErrorKernel],
    [MEAN_SQUARED_ERROR_GRAD, meanSquaredErrorGradKernel],
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
  standInFront("BatchMatMul", smallMatMul, kernelsOn);
  standInFront("PadV2", padConstant, kernelsOn);
  for (const name of Object.keys(REDUCE_KINDS)) {
    standInFront(name, (args) => runReduce(name, args), kernelsOn);
  }
  registerWebGpuConvKernels(kernelsOn);
  return kernelsOn;
}
