/**
 * Class Activation Map attention, shared by the generator (plain, ReLU) and the discriminator
 * (spectrally normalised logits, LeakyReLU 0.2). Two bias-free linear maps C -> 1 classify the
 * globally average- and max-pooled features ("which domain?"); their weight vectors re-weight
 * the feature map channel-wise, a 1x1 conv fuses the two halves, and the channel sum of the
 * result is the attention heatmap.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { type Key, splitKey } from "./init.ts";
import { conv2d, type ConvParams, linear } from "./conv.ts";
import {
  initSpectralNormState,
  linearWeightMatrix,
  spectralNormalize,
  type SpectralNormState,
  spectralSigmas,
} from "./spectral_norm.ts";
import { dividePerPass } from "../ops/divide_per_pass.ts";

/**
 * The per-channel maximum over H and W, `[N, H, W, C] -> [N, C]`, with a gradient made of ops
 * the wasm backend runs fast: tfjs's own compares against the broadcast maximum, and wasm's
 * broadcasting compare (like its tile) is a slow general loop. Here the mask is `1 - step(max -
 * x)`, one where x is the maximum; ties share the gradient, as in tfjs.
 */
export const globalMaxPool: (x: tf.Tensor4D) => tf.Tensor2D = tf.customGrad((x, save) => {
  const m = tf.max(x as tf.Tensor4D, [1, 2]);
  (save as tf.GradSaveFunc)([x as tf.Tensor, m]);
  return {
    value: m,
    gradFunc: (dy: tf.Tensor, [xs, ms]: tf.Tensor[]) => {
      const [n, , , c] = xs.shape;
      const below = tf.step(tf.sub(tf.reshape(ms, [n, 1, 1, c]), xs));
      return tf.mul(tf.sub(1, below), tf.reshape(dy, [n, 1, 1, c]));
    },
  };
}) as (x: tf.Tensor4D) => tf.Tensor2D;

/** Fixed configuration of a CAM attention block. */
export interface CamConfig {
  /** Feature channels C. */
  readonly channels: number;
  /** Spectral norm on the two logit maps (the discriminator's variant). */
  readonly spectral: boolean;
  /** Activation after the 1x1 conv: ReLU (generator) or LeakyReLU 0.2 (discriminator). */
  readonly activation: "relu" | "leakyRelu";
}

/** Parameters: logit maps `[C, 1]` and the 1x1 conv `2C -> C` with bias. */
export interface CamParams {
  /** Average-pool logit map. */
  readonly gapFc: { readonly w: tf.Tensor2D };
  /** Max-pool logit map. */
  readonly gmpFc: { readonly w: tf.Tensor2D };
  /** Fuses the two re-weighted maps. */
  readonly conv1x1: ConvParams;
}

/** Spectral-norm vectors of the two logit maps (discriminator only). */
export interface CamState {
  /** For `gapFc`. */
  readonly gapFc: SpectralNormState;
  /** For `gmpFc`. */
  readonly gmpFc: SpectralNormState;
}

/** What CAM attention returns. */
export interface CamOutput {
  /** Attended features `[N, H, W, C]`. */
  readonly features: tf.Tensor4D;
  /** `[gap_logit, gmp_logit]`, `[N, 2]`. */
  readonly camLogit: tf.Tensor2D;
  /** Channel sum of the attended features, `[N, H, W, 1]`. */
  readonly heatmap: tf.Tensor4D;
}

/** A CAM attention block. */
export interface CamAttention {
  /** The configuration. */
  readonly config: CamConfig;
  /** Draws parameters (and, when spectral, the power-iteration state). */
  init(key: Key): { params: CamParams; state?: CamState };
  /**
   * Attends to `x`: scales its channels by the two logit maps' weights and mixes them back.
   * @param params the weights
   * @param state spectral-norm vectors (spectral variant), else undefined
   * @param x `[N, H, W, C]`
   * @param training whether spectral norm runs its power iteration
   * @param passes `x` stacks this many equal batches, each as if in a call of its own: spectral
   *   norm advances once per pass, in order, and each pass gets its own sigma (default 1)
   * @returns the output and the new state
   */
  apply(
    params: CamParams,
    state: CamState | undefined,
    x: tf.Tensor4D,
    training: boolean,
    passes?: number,
  ): [CamOutput, CamState | undefined];
}

/**
 * Makes a CAM attention block.
 * @param config channels, spectral norm, activation
 * @returns the block
 */
export function camAttention(config: CamConfig): CamAttention {
  const c = config.channels;
  const fc = linear({ inFeatures: c, outFeatures: 1 });
  const conv = conv2d({ inCh: 2 * c, outCh: c, kernel: 1, bias: true });
  return {
    config,
    init(key) {
      const [kGap, kGmp, kConv, kState] = splitKey(key, 4);
      const params = {
        gapFc: { w: fc.init(kGap).w },
        gmpFc: { w: fc.init(kGmp).w },
        conv1x1: conv.init(kConv),
      };
      if (!config.spectral) return { params };
      const [ks1, ks2] = splitKey(kState, 2);
      return {
        params,
        state: { gapFc: initSpectralNormState(ks1, 1, c), gmpFc: initSpectralNormState(ks2, 1, c) },
      };
    },
    apply(params, state, x, training, passes = 1) {
      return tidy(() => {
        const gap = tf.mean(x, [1, 2]) as tf.Tensor2D;
        const gmp = globalMaxPool(x);
        let gapLogit: tf.Tensor2D;
        let gmpLogit: tf.Tensor2D;
        let next: CamState | undefined;
        if (config.spectral && !state) {
          throw new Error("camAttention: the spectral variant needs its state");
        }
        if (config.spectral && passes > 1) {
          // Stacked passes: the raw weights, each pass's logits divided by its own sigma.
          const sn = (w: tf.Tensor2D, s: SpectralNormState) =>
            spectralSigmas(w, linearWeightMatrix, s, training, passes);
          const [gs, gapState] = sn(params.gapFc.w, state!.gapFc);
          const [ms, gmpState] = sn(params.gmpFc.w, state!.gmpFc);
          gapLogit = dividePerPass(tf.matMul(gap, params.gapFc.w), gs);
          gmpLogit = dividePerPass(tf.matMul(gmp, params.gmpFc.w), ms);
          next = { gapFc: gapState, gmpFc: gmpState };
        } else {
          let gapW: tf.Tensor2D = params.gapFc.w;
          let gmpW: tf.Tensor2D = params.gmpFc.w;
          if (config.spectral) {
            const [g, gs] = spectralNormalize(gapW, linearWeightMatrix, state!.gapFc, training);
            const [m, ms] = spectralNormalize(gmpW, linearWeightMatrix, state!.gmpFc, training);
            [gapW, gmpW, next] = [g, m, { gapFc: gs, gmpFc: ms }];
          }
          gapLogit = tf.matMul(gap, gapW);
          gmpLogit = tf.matMul(gmp, gmpW);
        }
        // The re-weighting uses the raw weights: the reference takes `parameters()[0]`, which
        // under spectral norm is `weight_orig`, not the normalised weight. The reference's
        // conv1x1(concat(x * w_gap, x * w_gmp)) is computed as one conv of x with the 1x1
        // filter's two halves scaled by w_gap and w_gmp: the same sum, without the 2C-channel
        // tensor (half the multiplies, and no concat to split in the backward pass).
        const [w1, w2] = tf.split(params.conv1x1.w, 2, 2);
        const scaledW = tf.add(
          tf.mul(w1, tf.reshape(params.gapFc.w, [1, 1, c, 1])),
          tf.mul(w2, tf.reshape(params.gmpFc.w, [1, 1, c, 1])),
        ) as tf.Tensor4D;
        const fused = tf.add(tf.conv2d(x, scaledW, 1, "valid"), params.conv1x1.b!) as tf.Tensor4D;
        const features = config.activation === "relu" ? tf.relu(fused) : tf.leakyRelu(fused, 0.2);
        const out: CamOutput = {
          features,
          camLogit: tf.concat([gapLogit, gmpLogit], 1) as tf.Tensor2D,
          heatmap: tf.sum(features, 3, true),
        };
        return [out, next] as [CamOutput, CamState | undefined];
      });
    },
  };
}
