/**
 * Layer-instance normalisation (the op `ops/lin_norm.ts` defines) as one kernel forward and one
 * backward, for the backends whose tensors live in CPU memory (wasm, cpu, native-cpu). Composed
 * from TensorFlow.js ops, one AdaLIN is about 30 kernels forward and 60 backward, each a pass over
 * the tensor (reductions over H and W also transpose it first); these are two passes forward and
 * two backward.
 *
 * `y = (rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta` per sample, with IN over H and W per
 * channel and LN over H, W and C; the variance is unbiased or biased (`unbiased` attribute);
 * `mixLn: false` is plain IN (rho unused). Shapes: x `[N, H, W, C]`, rho `[C]`, gamma and beta
 * `[N, C]`. Per sample and channel the forward is affine in x, and the backward affine in
 * `(dy, x)`, so each is one accumulation pass and one output pass. On the wasm backend those
 * passes run in WebAssembly SIMD (`../wasm/simd.ts`) where the channel count is a multiple of 4.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { LIN_NORM, LIN_NORM_GRAD, type LinNormAttrs } from "../../ops/lin_norm.ts";
import { memoryOf } from "../memory.ts";
import { simdFor, type SimdPasses } from "../wasm/simd.ts";

const EPS = 1e-5;

/**
 * Per channel, over the `hw` pixels of one sample (NHWC, from `off`): `sa = sum a`, `sab = sum a b`.
 * Four channels at a time with the sums in registers, twice as fast as one pass of per-channel
 * array updates.
 */
function channelSums(
  a: Float32Array,
  b: Float32Array,
  off: number,
  hw: number,
  c: number,
  sa: Float64Array,
  sab: Float64Array,
): void {
  const end = off + hw * c;
  let ch = 0;
  for (; ch + 4 <= c; ch += 4) {
    let [a0, a1, a2, a3, p0, p1, p2, p3] = [0, 0, 0, 0, 0, 0, 0, 0];
    for (let i = off + ch; i < end; i += c) {
      const [x0, x1, x2, x3] = [a[i], a[i + 1], a[i + 2], a[i + 3]];
      a0 += x0;
      a1 += x1;
      a2 += x2;
      a3 += x3;
      p0 += x0 * b[i];
      p1 += x1 * b[i + 1];
      p2 += x2 * b[i + 2];
      p3 += x3 * b[i + 3];
    }
    [sa[ch], sa[ch + 1], sa[ch + 2], sa[ch + 3]] = [a0, a1, a2, a3];
    [sab[ch], sab[ch + 1], sab[ch + 2], sab[ch + 3]] = [p0, p1, p2, p3];
  }
  for (; ch < c; ch++) {
    let [s0, p0] = [0, 0];
    for (let i = off + ch; i < end; i += c) {
      s0 += a[i];
      p0 += a[i] * b[i];
    }
    [sa[ch], sab[ch]] = [s0, p0];
  }
}

/**
 * The forward pass on arrays. `stats` gets, per sample, the channel means, the channel inverse
 * standard deviations, the sample mean and its inverse standard deviation (`2C + 2` values).
 */
export function linNormForward(
  x: Float32Array,
  rho: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  y: Float32Array,
  stats: Float32Array,
  [n, hw, c]: [number, number, number],
  { unbiased, mixLn }: LinNormAttrs,
  simd?: SimdPasses,
): void {
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  const a = new Float64Array(c);
  const b = new Float64Array(c);
  for (let s = 0; s < n; s++) {
    const off = s * hw * c;
    // One pass for both moments, in doubles (the float32 inputs are exact there; the cancellation
    // in sum(x^2) - hw mean^2 costs digits only when |mean| / std is beyond 1e4).
    if (!simd?.channelSums(x, x, off, hw, c, sum, sq)) channelSums(x, x, off, hw, c, sum, sq);
    let total = 0;
    for (let ch = 0; ch < c; ch++) total += sum[ch];
    const mu = total / (hw * c);
    for (let ch = 0; ch < c; ch++) {
      sum[ch] /= hw; // now the channel means
      sq[ch] = Math.max(0, sq[ch] - hw * sum[ch] * sum[ch]); // now the squared deviations
    }
    let lnSq = 0;
    for (let ch = 0; ch < c; ch++) lnSq += sq[ch] + hw * (sum[ch] - mu) ** 2;
    const rln = 1 / Math.sqrt(lnSq / (unbiased ? hw * c - 1 : hw * c) + EPS);
    const st = s * (2 * c + 2);
    for (let ch = 0; ch < c; ch++) {
      const rin = 1 / Math.sqrt(sq[ch] / (unbiased ? hw - 1 : hw) + EPS);
      const r = mixLn ? rho[ch] : 1;
      const g = gamma[s * c + ch];
      a[ch] = (r * rin + (1 - r) * rln) * g;
      b[ch] = -(r * rin * sum[ch] + (1 - r) * rln * mu) * g + beta[s * c + ch];
      stats[st + ch] = sum[ch];
      stats[st + c + ch] = rin;
    }
    stats[st + 2 * c] = mu;
    stats[st + 2 * c + 1] = rln;
    if (simd?.affine(x, y, off, hw, c, a, b)) continue;
    for (let p = 0, i = off; p < hw; p++) {
      for (let ch = 0; ch < c; ch++, i++) y[i] = x[i] * a[ch] + b[ch];
    }
  }
}

/** The backward pass on arrays: `dx` per element, `drho` summed over samples. */
export function linNormBackward(
  dy: Float32Array,
  x: Float32Array,
  stats: Float32Array,
  rho: Float32Array,
  gamma: Float32Array,
  out: { dx: Float32Array; drho: Float32Array; dgamma: Float32Array; dbeta: Float32Array },
  [n, hw, c]: [number, number, number],
  { unbiased, mixLn }: LinNormAttrs,
  simd?: SimdPasses,
): void {
  const gsum = new Float64Array(c);
  const gx = new Float64Array(c);
  const P = new Float64Array(c);
  const Q = new Float64Array(c);
  const R = new Float64Array(c);
  const drho = new Float64Array(c);
  const dIn = unbiased ? hw - 1 : hw;
  const dLn = unbiased ? hw * c - 1 : hw * c;
  for (let s = 0; s < n; s++) {
    const off = s * hw * c;
    if (!simd?.channelSums(dy, x, off, hw, c, gsum, gx)) channelSums(dy, x, off, hw, c, gsum, gx);
    const st = s * (2 * c + 2);
    const mu = stats[st + 2 * c];
    const rln = stats[st + 2 * c + 1];
    // LN's sums: of dLN/dxln over (h, w, c), and of its product with xln.
    let l1 = 0;
    let l2 = 0;
    for (let ch = 0; ch < c; ch++) {
      const gl = gamma[s * c + ch] * (1 - (mixLn ? rho[ch] : 1));
      l1 += gl * gsum[ch];
      l2 += gl * rln * (gx[ch] - mu * gsum[ch]);
    }
    for (let ch = 0; ch < c; ch++) {
      const mc = stats[st + ch];
      const rin = stats[st + c + ch];
      const r = mixLn ? rho[ch] : 1;
      const g = gamma[s * c + ch];
      const cin = gx[ch] - mc * gsum[ch]; // sum of dy * (x - mean_c)
      const cln = gx[ch] - mu * gsum[ch]; // sum of dy * (x - mean)
      out.dbeta[s * c + ch] = gsum[ch];
      out.dgamma[s * c + ch] = r * rin * cin + (1 - r) * rln * cln;
      drho[ch] += g * (rin * cin - rln * cln);
      const k = rin ** 3 * g * r * cin / dIn;
      const kl = rln ** 2 * l2 / dLn; // l2 carries one rln already
      P[ch] = rin * g * r + rln * g * (1 - r);
      Q[ch] = -k - kl;
      R[ch] = -rin * g * r * gsum[ch] / hw + k * mc - rln * l1 / (hw * c) + kl * mu;
    }
    if (simd?.affine2(dy, x, out.dx, off, hw, c, P, Q, R)) continue;
    for (let p = 0, i = off; p < hw; p++) {
      for (let ch = 0; ch < c; ch++, i++) out.dx[i] = dy[i] * P[ch] + x[i] * Q[ch] + R[ch];
    }
  }
  for (let ch = 0; ch < c; ch++) out.drho[ch] = mixLn ? drho[ch] : 0;
}

type Args = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

function forwardKernel({ inputs, backend, attrs }: Args): tf.TensorInfo[] {
  const { x, rho, gamma, beta } = inputs as Record<string, tf.TensorInfo>;
  const [n, h, w, c] = x.shape;
  const simd = simdFor(backend); // before allocating: its first call allocates
  const mem = memoryOf(backend);
  const y = mem.alloc(x.shape);
  const stats = mem.alloc([n, 2 * c + 2]);
  const v = mem.view; // views after every allocation (wasm memory may have grown)
  linNormForward(
    v(x),
    v(rho),
    v(gamma),
    v(beta),
    v(y),
    v(stats),
    [n, h * w, c],
    attrs as unknown as LinNormAttrs,
    simd,
  );
  return [y, stats];
}

function backwardKernel({ inputs, backend, attrs }: Args): tf.TensorInfo[] {
  const { dy, x, stats, rho, gamma } = inputs as Record<string, tf.TensorInfo>;
  const [n, h, w, c] = x.shape;
  const simd = simdFor(backend);
  const mem = memoryOf(backend);
  const outs = [mem.alloc(x.shape), mem.alloc([c]), mem.alloc([n, c]), mem.alloc([n, c])];
  const v = mem.view;
  const [dx, drho, dgamma, dbeta] = outs.map(v);
  linNormBackward(
    v(dy),
    v(x),
    v(stats),
    v(rho),
    v(gamma),
    { dx, drho, dgamma, dbeta },
    [n, h * w, c],
    attrs as unknown as LinNormAttrs,
    simd,
  );
  return outs;
}

/** The backends these kernels run on. */
export const LIN_NORM_BACKENDS = ["wasm", "cpu", "native-cpu"] as const;

/** Registers both kernels for the wasm, cpu and native-cpu backends (once each). */
export function registerNormKernels(): void {
  for (const backendName of LIN_NORM_BACKENDS) {
    if (tf.getKernel(LIN_NORM, backendName)) continue;
    tf.registerKernel({
      kernelName: LIN_NORM,
      backendName,
      kernelFunc: forwardKernel as unknown as tf.KernelFunc,
    });
    tf.registerKernel({
      kernelName: LIN_NORM_GRAD,
      backendName,
      kernelFunc: backwardKernel as unknown as tf.KernelFunc,
    });
  }
}
