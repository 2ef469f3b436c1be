/**
 * The normalisations of U-GAT-IT: instance norm (encoder), AdaLIN (decoder residual blocks, with
 * gamma and beta from the CAM branch) and ILN (upsampling blocks, with its own gamma and beta).
 * NHWC; eps = 1e-5; AdaLIN and ILN use the unbiased variance, as the reference does.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { layerInstanceNorm, normalizeOver } from "../ops/lin_norm.ts";

const EPS = 1e-5;
// AdaLIN's and ILN's mix (unbiased variance); instance norm alone (biased, as PyTorch's).
const MIX = { unbiased: true, mixLn: true };
const IN = { unbiased: false, mixLn: false };

/**
 * Instance norm without affine parameters: per sample and channel, over H and W, with the biased
 * variance (PyTorch's `InstanceNorm2d`).
 * @param x `[N, H, W, C]`
 * @returns `[N, H, W, C]`
 */
export function instanceNorm(x: tf.Tensor4D): tf.Tensor4D {
  return tidy(() => layerInstanceNorm(x, {}, IN));
}

/**
 * Layer-norm statistics applied: per sample, over H, W and C, with the unbiased variance.
 * @param x `[N, H, W, C]`
 * @returns `[N, H, W, C]`
 */
export function layerNorm(x: tf.Tensor4D): tf.Tensor4D {
  return tidy(() => normalizeOver(x, [1, 2, 3], true));
}

/**
 * `rho * IN(x) + (1 - rho) * LN(x)`, both with the unbiased variance.
 * @param x `[N, H, W, C]`
 * @param rho `[C]`, the per-channel mixing weight
 * @returns `[N, H, W, C]`
 */
export function layerInstanceMix(x: tf.Tensor4D, rho: tf.Tensor1D): tf.Tensor4D {
  return tidy(() => layerInstanceNorm(x, { rho }, MIX));
}

/**
 * Adaptive Layer-Instance Normalisation: the IN/LN mix scaled and shifted by per-sample
 * `gamma` and `beta` (from the generator's MLP). At `rho = 1` it is instance norm (unbiased),
 * at `rho = 0` layer norm.
 * @param x `[N, H, W, C]`
 * @param rho `[C]`
 * @param gamma `[N, C]`
 * @param beta `[N, C]`
 * @returns `[N, H, W, C]`
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { adaLin } from "./norm.ts";
 * const x = tf.randomNormal([1, 4, 4, 2]) as tf.Tensor4D;
 * const y = adaLin(x, tf.fill([2], 0.9), tf.ones([1, 2]), tf.zeros([1, 2]));
 * ```
 */
export function adaLin(
  x: tf.Tensor4D,
  rho: tf.Tensor1D,
  gamma: tf.Tensor2D,
  beta: tf.Tensor2D,
): tf.Tensor4D {
  return tidy(() => layerInstanceNorm(x, { rho, gamma, beta }, MIX));
}

/** Parameters of ILN: per-channel `rho` (init 0), `gamma` (init 1), `beta` (init 0), all `[C]`. */
export interface IlnParams {
  /** IN/LN mixing weight. */
  readonly rho: tf.Tensor1D;
  /** Scale. */
  readonly gamma: tf.Tensor1D;
  /** Shift. */
  readonly beta: tf.Tensor1D;
}

/**
 * Initial ILN parameters, as the reference sets them (rho 0, gamma 1, beta 0).
 * @param channels C
 * @returns the parameters
 */
export function initIln(channels: number): IlnParams {
  return { rho: tf.zeros([channels]), gamma: tf.ones([channels]), beta: tf.zeros([channels]) };
}

/**
 * Layer-Instance Normalisation with learned per-channel affine parameters.
 * @param params rho, gamma, beta, each `[C]`
 * @param x `[N, H, W, C]`
 * @returns `[N, H, W, C]`
 */
export function iln(params: IlnParams, x: tf.Tensor4D): tf.Tensor4D {
  return tidy(() => layerInstanceNorm(x, params, MIX));
}

/**
 * Group norm without affine parameters: per sample, over H, W and the channels of each of
 * `groups` groups, with the biased variance (PyTorch's `GroupNorm` before its affine).
 * @param x `[N, H, W, C]`, C divisible by `groups`
 * @param groups number of channel groups
 * @returns `[N, H, W, C]`
 */
export function groupNorm(x: tf.Tensor4D, groups: number): tf.Tensor4D {
  return tidy(() => {
    const [n, h, w, c] = x.shape;
    const g = tf.reshape(x, [n, h, w, groups, c / groups]);
    const { mean, variance } = tf.moments(g, [1, 2, 4], true);
    return tf.reshape(tf.div(tf.sub(g, mean), tf.sqrt(tf.add(variance, EPS))), [n, h, w, c]);
  });
}

/**
 * The decoder normalisations of the paper's ablation: `adalin` (the model), `adain` (instance
 * norm modulated by the MLP's gamma and beta), and plain `in`, `ln`, `gn` with learned
 * per-channel affine parameters (no MLP).
 */
export type DecoderNorm = "adalin" | "adain" | "in" | "ln" | "gn";
/** The decoder norms that take gamma and beta from the MLP. */
export const ADAPTIVE_NORMS: readonly DecoderNorm[] = ["adalin", "adain"];

/**
 * The channel groups group norm uses at width `c`: 32 when it divides `c`, else the largest
 * divisor of `c` below 32.
 * @param c channels
 * @returns groups
 */
export function groupCount(c: number): number {
  let g = Math.min(32, c);
  while (c % g) g--;
  return g;
}
