/**
 * The generator's residual blocks: the encoder's (instance norm) and the decoder's (AdaLIN,
 * taking gamma and beta from the CAM branch). Both keep the width and add the identity skip.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "./tree.ts";
import { type Key, splitKey } from "./init.ts";
import { conv2d, type ConvParams } from "./conv.ts";
import { adaLin, instanceNorm } from "./norm.ts";

/** Parameters of an encoder residual block: two bias-free 3x3 convs. */
export interface ResnetBlockParams {
  /** First conv. */
  readonly conv1: ConvParams;
  /** Second conv. */
  readonly conv2: ConvParams;
}

/** Parameters of a decoder residual block: two convs and the `rho` of each AdaLIN. */
export interface AdaLinResnetBlockParams extends ResnetBlockParams {
  /** First AdaLIN's mixing weight `[C]` (init 0.9). */
  readonly norm1: { readonly rho: tf.Tensor1D };
  /** Second AdaLIN's mixing weight `[C]` (init 0.9). */
  readonly norm2: { readonly rho: tf.Tensor1D };
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
 * The decoder residual block: `x + AdaLIN(conv(relu(AdaLIN(conv(x)))))`, one gamma/beta pair for
 * both AdaLINs.
 * @param dim channels
 * @returns `init(key)` and `apply(params, x, gamma, beta)` with x `[N, H, W, dim]`,
 *   gamma and beta `[N, dim]`
 */
export function adaLinResnetBlock(dim: number): {
  init(key: Key): AdaLinResnetBlockParams;
  apply(
    params: AdaLinResnetBlockParams,
    x: tf.Tensor4D,
    gamma: tf.Tensor2D,
    beta: tf.Tensor2D,
  ): tf.Tensor4D;
} {
  const conv = conv2d({ inCh: dim, outCh: dim, kernel: 3, pad: 1 });
  return {
    init(key) {
      const [k1, k2] = splitKey(key, 2);
      return {
        conv1: conv.init(k1),
        norm1: { rho: tf.fill([dim], 0.9) as tf.Tensor1D },
        conv2: conv.init(k2),
        norm2: { rho: tf.fill([dim], 0.9) as tf.Tensor1D },
      };
    },
    apply(params, x, gamma, beta) {
      return tidy(() => {
        const h = conv.apply(params.conv1, x);
        const a = tf.relu(adaLin(h, params.norm1.rho, gamma, beta));
        const y = adaLin(conv.apply(params.conv2, a), params.norm2.rho, gamma, beta);
        return tf.add(x, y);
      });
    },
  };
}
