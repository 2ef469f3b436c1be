/**
 * The generator's residual blocks: the encoder's (instance norm) and the decoder's (AdaLIN,
 * taking gamma and beta from the CAM branch). Both keep the width and add the identity skip.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { type Key, splitKey } from "./init.ts";
import { conv2d, type ConvParams } from "./conv.ts";
import {
  adaLin,
  type DecoderNorm,
  groupCount,
  groupNorm,
  instanceNorm,
  layerInstanceMix,
} from "./norm.ts";

/** Parameters of an encoder residual block: two bias-free 3x3 convs. */
export interface ResnetBlockParams {
  /** First conv. */
  readonly conv1: ConvParams;
  /** Second conv. */
  readonly conv2: ConvParams;
}

/**
 * A decoder norm's own parameters: AdaLIN's `rho` `[C]` (init 0.9); for the plain `in`, `ln` and
 * `gn` ablations a per-channel `gamma` (init 1) and `beta` (init 0); none for `adain`.
 */
export interface DecoderNormParams {
  /** AdaLIN's IN/LN mixing weight. */
  readonly rho?: tf.Tensor1D;
  /** Scale (plain norms). */
  readonly gamma?: tf.Tensor1D;
  /** Shift (plain norms). */
  readonly beta?: tf.Tensor1D;
}

/** Parameters of a decoder residual block: two convs and each norm's own parameters. */
export interface AdaLinResnetBlockParams extends ResnetBlockParams {
  /** First norm. */
  readonly norm1: DecoderNormParams;
  /** Second norm. */
  readonly norm2: DecoderNormParams;
}

/**
 * The encoder residual block: `x + IN(conv(relu(IN(conv(x)))))`, reflection padding 1.
 * @param dim channels
 * @returns `init(key)` and `apply(params, x)` with x `[N, H, W, dim]`
 */
export function resnetBlock(dim: number): {
  init(key: Key): ResnetBlockParams;
  apply(params: ResnetBlockParams, x: tf.Tensor4D): tf.Tensor4D;
} {
  const conv = conv2d({ inCh: dim, outCh: dim, kernel: 3, pad: 1 });
  return {
    init(key) {
      const [k1, k2] = splitKey(key, 2);
      return { conv1: conv.init(k1), conv2: conv.init(k2) };
    },
    apply(params, x) {
      return tidy(() => {
        const h = tf.relu(instanceNorm(conv.apply(params.conv1, x)));
        return tf.add(x, instanceNorm(conv.apply(params.conv2, h)));
      });
    },
  };
}

/**
 * The decoder residual block: `x + N(conv(relu(N(conv(x)))))` where N is AdaLIN (the model; one
 * gamma/beta pair for both) or one of the ablation's norms.
 * @param dim channels
 * @param norm the decoder norm (default `adalin`)
 * @returns `init(key)` and `apply(params, x, gamma, beta)` with x `[N, H, W, dim]`,
 *   gamma and beta `[N, dim]` (ignored by the plain norms)
 */
export function adaLinResnetBlock(dim: number, norm: DecoderNorm = "adalin"): {
  init(key: Key): AdaLinResnetBlockParams;
  apply(
    params: AdaLinResnetBlockParams,
    x: tf.Tensor4D,
    gamma?: tf.Tensor2D,
    beta?: tf.Tensor2D,
  ): tf.Tensor4D;
} {
  const conv = conv2d({ inCh: dim, outCh: dim, kernel: 3, pad: 1 });
  const initNorm = (): DecoderNormParams =>
    norm === "adalin"
      ? { rho: tf.fill([dim], 0.9) as tf.Tensor1D }
      : norm === "adain"
      ? {}
      : { gamma: tf.ones([dim]) as tf.Tensor1D, beta: tf.zeros([dim]) as tf.Tensor1D };
  const normalize = (
    p: DecoderNormParams,
    x: tf.Tensor4D,
    gamma?: tf.Tensor2D,
    beta?: tf.Tensor2D,
  ) => {
    if (norm === "adalin") return adaLin(x, p.rho!, gamma!, beta!);
    if (norm === "adain") return adaLin(x, tf.ones([dim]) as tf.Tensor1D, gamma!, beta!);
    const n = norm === "in"
      ? layerInstanceMix(x, tf.ones([dim]) as tf.Tensor1D)
      : norm === "ln"
      ? layerInstanceMix(x, tf.zeros([dim]) as tf.Tensor1D)
      : groupNorm(x, groupCount(dim));
    return tf.add(tf.mul(n, p.gamma!), p.beta!) as tf.Tensor4D;
  };
  return {
    init(key) {
      const [k1, k2] = splitKey(key, 2);
      return { conv1: conv.init(k1), norm1: initNorm(), conv2: conv.init(k2), norm2: initNorm() };
    },
    apply(params, x, gamma, beta) {
      return tidy(() => {
        const h = conv.apply(params.conv1, x);
        const a = tf.relu(normalize(params.norm1, h, gamma, beta));
        const y = normalize(params.norm2, conv.apply(params.conv2, a), gamma, beta);
        return tf.add(x, y);
      });
    },
  };
}
