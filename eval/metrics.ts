/**
 * Image-translation metrics, as the paper and NICE-GAN compute them: KID (unbiased MMD with the
 * cubic polynomial kernel, mean and standard deviation over random subsets) and FID (Fréchet
 * distance between Gaussian fits) on features, and the paired metrics L1, PSNR and SSIM for
 * datasets with aligned test pairs. Pure functions; images are NHWC in [0, 1]. Each reads its
 * result back asynchronously (`await data()`), so they run on every backend, WebGPU under Deno
 * included, where synchronous reads fail.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { psnr, ssim } from "./metrics.ts";
 * const a = tf.randomUniform([1, 16, 16, 3], 0, 1, "float32", 1) as tf.Tensor4D;
 * console.log(await ssim(a, a), await psnr(a, tf.mul(a, 0.9) as tf.Tensor4D));
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { Rng } from "../data/random.ts";

// Reads a scalar tensor back and disposes it.
async function scalar(t: tf.Tensor): Promise<number> {
  try {
    return (await t.data())[0];
  } finally {
    t.dispose();
  }
}

/**
 * Mean absolute difference.
 * @param x `[N, H, W, C]` in [0, 1]
 * @param y the same shape
 * @returns `mean|x - y|`
 */
export function l1Distance(x: tf.Tensor4D, y: tf.Tensor4D): Promise<number> {
  return scalar(tidy(() => tf.mean(tf.abs(tf.sub(x, y)))));
}

/**
 * Peak signal-to-noise ratio in dB, over the whole batch: `10 log10(1 / mse)`.
 * @param x `[N, H, W, C]` in [0, 1]
 * @param y the same shape
 * @returns PSNR (Infinity for identical images)
 */
export async function psnr(x: tf.Tensor4D, y: tf.Tensor4D): Promise<number> {
  const mse = await scalar(tidy(() => tf.mean(tf.square(tf.sub(x, y)))));
  return 10 * Math.log10(1 / mse);
}

function gaussianWindow(size: number, sigma: number, channels: number): tf.Tensor4D {
  const g = Array.from(
    { length: size },
    (_, i) => Math.exp(-((i - (size - 1) / 2) ** 2) / (2 * sigma ** 2)),
  );
  const total = g.reduce((a, b) => a + b, 0);
  const w = new Float32Array(size * size * channels);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      for (let c = 0; c < channels; c++) {
        w[(i * size + j) * channels + c] = (g[i] * g[j]) / total ** 2;
      }
    }
  }
  return tf.tensor4d(w, [size, size, channels, 1]);
}

/**
 * Structural similarity (Wang et al. 2004): an 11x11 Gaussian window (sigma 1.5), C1 = 0.01^2,
 * C2 = 0.03^2 for data range 1, computed per channel over the valid window positions and
 * averaged over positions, channels and images.
 * @param x `[N, H, W, C]` in [0, 1], H and W at least 11
 * @param y the same shape
 * @returns mean SSIM (1 for identical images)
 */
export async function ssim(x: tf.Tensor4D, y: tf.Tensor4D): Promise<number> {
  const [, h, w, c] = x.shape;
  if (h < 11 || w < 11) throw new Error(`ssim: images must be at least 11x11, got ${h}x${w}`);
  return await scalar(tidy(() => {
    const win = gaussianWindow(11, 1.5, c);
    const blur = (t: tf.Tensor4D) => tf.depthwiseConv2d(t, win, 1, "valid");
    const [mx, my] = [blur(x), blur(y)];
    const sxx = tf.sub(blur(tf.mul(x, x) as tf.Tensor4D), tf.mul(mx, mx));
    const syy = tf.sub(blur(tf.mul(y, y) as tf.Tensor4D), tf.mul(my, my));
    const sxy = tf.sub(blur(tf.mul(x, y) as tf.Tensor4D), tf.mul(mx, my));
    const [c1, c2] = [0.01 ** 2, 0.03 ** 2];
    const num = tf.mul(tf.add(tf.mul(tf.mul(mx, my), 2), c1), tf.add(tf.mul(sxy, 2), c2));
    const den = tf.mul(
      tf.add(tf.add(tf.square(mx), tf.square(my)), c1),
      tf.add(tf.add(sxx, syy), c2),
    );
    return tf.mean(tf.div(num, den));
  }));
}

/** A metric's mean and standard deviation over subsets. */
export interface MeanStd {
  /** Mean over subsets. */
  readonly mean: number;
  /** Standard deviation over subsets (0 with one subset). */
  readonly std: number;
}

/**
 * Kernel Inception Distance: the unbiased estimate of the squared MMD between two feature sets
 * with the kernel `k(a, b) = (a . b / d + 1)^3`, averaged over random subsets.
 * @param x features `[n, d]` (e.g. of translated images)
 * @param y features `[m, d]` (e.g. of real target images)
 * @param options subsets (default 100), subset size (default min(n, m, 1000)), seed
 * @returns mean and standard deviation over the subsets
 */
export async function kid(
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  { subsets = 100, subsetSize, seed = 0 }: {
    subsets?: number;
    subsetSize?: number;
    seed?: number;
  } = {},
): Promise<MeanStd> {
  const [n, d] = x.shape;
  const m = y.shape[0];
  const size = Math.min(subsetSize ?? 1000, n, m);
  if (size < 2) throw new Error(`kid: needs at least 2 features per set, got ${n} and ${m}`);
  const rng = new Rng(seed);
  const pick = (count: number) => rng.shuffle([...Array(count).keys()]).slice(0, size);
  const estimates: tf.Scalar[] = [];
  for (let s = 0; s < subsets; s++) {
    const [ix, iy] = [pick(n), pick(m)];
    estimates.push(tidy(() => {
      const a = tf.gather(x, ix);
      const b = tf.gather(y, iy);
      const k = (p: tf.Tensor2D, q: tf.Tensor2D) =>
        tf.pow(tf.add(tf.div(tf.matMul(p, q, false, true), d), 1), 3);
      const [kxx, kyy, kxy] = [k(a, a), k(b, b), k(a, b)];
      const offDiagonal = (t: tf.Tensor) => tf.sub(tf.sum(t), tf.sum(tf.mul(t, tf.eye(size))));
      const mmd = tf.sub(
        tf.div(tf.add(offDiagonal(kxx), offDiagonal(kyy)), size * (size - 1)),
        tf.div(tf.mul(tf.sum(kxy), 2), size * size),
      );
      return mmd as tf.Scalar;
    }));
  }
  // One read for all subsets.
  const all = tf.stack(estimates);
  tf.dispose(estimates);
  const values = Array.from(await all.data());
  all.dispose();
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return { mean, std };
}

// Eigenvalues and eigenvectors of a symmetric matrix (cyclic Jacobi), in float64.
function symmetricEigen(
  a: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const [akp, akq] = [A[k * n + p], A[k * n + q]];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const [apk, aqk] = [A[p * n + k], A[q * n + k]];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const [vkp, vkq] = [V[k * n + p], V[k * n + q]];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => A[i * n + i]), vectors: V };
}

function meanAndCovariance(
  f: Float64Array,
  n: number,
  d: number,
): { mu: Float64Array; cov: Float64Array } {
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j] += f[i * d + j] / n;
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < d; a++) {
      const da = f[i * d + a] - mu[a];
      for (let b = a; b < d; b++) cov[a * d + b] += (da * (f[i * d + b] - mu[b])) / (n - 1);
    }
  }
  for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) cov[a * d + b] = cov[b * d + a];
  return { mu, cov };
}

/**
 * Fréchet Inception Distance between Gaussian fits of two feature sets:
 * `|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`, covariances with n - 1, the trace of the
 * square root from the eigenvalues of `S1^(1/2) S2 S1^(1/2)` (float64, Jacobi: meant for feature
 * widths up to a few hundred).
 * @param x features `[n, d]`
 * @param y features `[m, d]`
 * @returns the distance
 */
export async function fid(x: tf.Tensor2D, y: tf.Tensor2D): Promise<number> {
  const d = x.shape[1];
  if (x.shape[0] < 2 || y.shape[0] < 2) throw new Error("fid: needs at least 2 features per set");
  const a = meanAndCovariance(Float64Array.from(await x.data()), x.shape[0], d);
  const b = meanAndCovariance(Float64Array.from(await y.data()), y.shape[0], d);
  const e = symmetricEigen(a.cov, d);
  // S1^(1/2) = V diag(sqrt(l)) V^T
  const root = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) {
        s += e.vectors[i * d + k] * Math.sqrt(Math.max(e.values[k], 0)) * e.vectors[j * d + k];
      }
      root[i * d + j] = s;
    }
  }
  const mul = (p: Float64Array, q: Float64Array) => {
    const out = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let k = 0; k < d; k++) {
        const pik = p[i * d + k];
        for (let j = 0; j < d; j++) out[i * d + j] += pik * q[k * d + j];
      }
    }
    return out;
  };
  const m = mul(mul(root, b.cov), root);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < i; j++) m[i * d + j] = m[j * d + i] = (m[i * d + j] + m[j * d + i]) / 2;
  }
  const traceSqrt = symmetricEigen(m, d).values.reduce((s, l) => s + Math.sqrt(Math.max(l, 0)), 0);
  let dist = 0;
  for (let j = 0; j < d; j++) {
    dist += (a.mu[j] - b.mu[j]) ** 2 + a.cov[j * d + j] + b.cov[j * d + j];
  }
  return dist - 2 * traceSqrt;
}
