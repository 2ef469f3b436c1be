/**
 * The U-GAT-IT discriminator (global and local, per domain): spectrally normalised 4x4 convs
 * with LeakyReLU 0.2, CAM attention, and a final 4x4 conv to patch logits. Spectral-norm vectors
 * are explicit state: `apply(params, state, x, training) -> [output, state]`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { type Key, splitKey } from "./init.ts";
import { type Conv, conv2d, type ConvParams } from "./conv.ts";
import { camAttention, type CamParams, type CamState } from "./cam_attention.ts";
import {
  convWeightMatrix,
  initSpectralNormState,
  spectralNormalize,
  type SpectralNormState,
  spectralSigmas,
} from "./spectral_norm.ts";
import { dividePerPass } from "../ops/divide_per_pass.ts";

/** Fixed configuration of a discriminator. */
export interface DiscriminatorConfig {
  /** Base width (`--ch`, default 64). */
  readonly ch?: number;
  /** Depth: the reference's global D has 7, its local D 5 (`--n_dis` + 1 and - 1). */
  readonly nLayers: number;
  /** Image channels (default 3). */
  readonly imgCh?: number;
  /** CAM attention (`--dis_cam`, default true; false is the paper's ablation). */
  readonly cam?: boolean;
}

/** The discriminator's parameter record (SN weights are the raw `weight_orig`). */
export interface DiscriminatorParams {
  /** The 4x4 convs with bias: `nLayers - 2` of stride 2, then one of stride 1. */
  readonly convs: readonly ConvParams[];
  /** CAM attention at width `Cd = ch * 2^(nLayers - 2)` (absent without CAM). */
  readonly cam?: CamParams;
  /** Final 4x4 conv `Cd -> 1`, no bias. */
  readonly out: ConvParams;
}

/** Spectral-norm vectors of every normalised weight. */
export interface DiscriminatorState {
  /** One per conv of `convs`. */
  readonly convs: readonly SpectralNormState[];
  /** The CAM logit maps (absent without CAM). */
  readonly cam?: CamState;
  /** The final conv. */
  readonly out: SpectralNormState;
}

/** What the discriminator returns. */
export interface DiscriminatorOutput {
  /** Patch logits `[N, h, w, 1]`. */
  readonly logit: tf.Tensor4D;
  /** CAM logits `[N, 2]` (absent without CAM). */
  readonly camLogit?: tf.Tensor2D;
  /** Attention heatmap `[N, h', w', 1]` (without CAM, the channel sum of the features). */
  readonly heatmap: tf.Tensor4D;
}

/** A discriminator. */
export interface Discriminator {
  /** The configuration, defaults filled in. */
  readonly config: Required<DiscriminatorConfig>;
  /** Draws parameters and spectral-norm state. */
  init(key: Key): { params: DiscriminatorParams; state: DiscriminatorState };
  /**
   * Scores a batch.
   * @param params the weights
   * @param state spectral-norm vectors
   * @param x `[N, S, S, imgCh]`
   * @param training run one power iteration per normalised weight (and return the new state)
   * @param passes `x` stacks this many equal batches, each computed as in a call of its own
   *   (spectral norm advances once per pass, in order; each pass divides by its own sigma), in
   *   one pass of larger kernels (default 1)
   * @returns the output and the new state
   */
  apply(
    params: DiscriminatorParams,
    state: DiscriminatorState,
    x: tf.Tensor4D,
    training: boolean,
    passes?: number,
  ): [DiscriminatorOutput, DiscriminatorState];
}

/**
 * The smallest image side a discriminator of `nLayers` accepts (every conv needs an input of at
 * least its 4x4 kernel after padding).
 * @param nLayers depth
 * @returns the minimum S
 */
export function minImageSize(nLayers: number): number {
  // The final conv needs 2 rows (reflection pad 1), so the stride-1 conv before it needs 3, and
  // each of the nLayers - 2 stride-2 convs doubles that.
  return 3 * 2 ** (nLayers - 2);
}

/**
 * Makes a discriminator.
 * @param config width and depth
 * @returns the discriminator
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { discriminator } from "./discriminator.ts";
 * const d = discriminator({ ch: 8, nLayers: 3 });
 * const { params, state } = d.init(0);
 * const [out] = d.apply(params, state, tf.zeros([1, 32, 32, 3]) as tf.Tensor4D, false);
 * ```
 */
export function discriminator(config: DiscriminatorConfig): Discriminator {
  const c: Required<DiscriminatorConfig> = { ch: 64, imgCh: 3, cam: true, ...config };
  const { ch, nLayers, imgCh } = c;
  if (!Number.isInteger(nLayers) || nLayers < 3) {
    throw new Error(`discriminator: n_layers must be an integer >= 3, got ${nLayers}`);
  }
  const convs: Conv[] = [];
  let width = ch;
  convs.push(conv2d({ inCh: imgCh, outCh: ch, kernel: 4, stride: 2, pad: 1, bias: true }));
  for (let i = 1; i < nLayers - 2; i++, width *= 2) {
    convs.push(conv2d({ inCh: width, outCh: width * 2, kernel: 4, stride: 2, pad: 1, bias: true }));
  }
  convs.push(conv2d({ inCh: width, outCh: width * 2, kernel: 4, stride: 1, pad: 1, bias: true }));
  width *= 2;
  const cam = camAttention({ channels: width, spectral: true, activation: "leakyRelu" });
  const out = conv2d({ inCh: width, outCh: 1, kernel: 4, pad: 1 });
  const snState = (key: Key, conv: { config: { inCh: number; outCh: number; kernel: number } }) =>
    initSpectralNormState(key, conv.config.outCh, conv.config.inCh * conv.config.kernel ** 2);

  return {
    config: c,
    init(key) {
      const [kConvs, kCam, kOut, kState] = splitKey(key, 4);
      const convKeys = splitKey(kConvs, convs.length);
      const stateKeys = splitKey(kState, convs.length + 1);
      const camInit = c.cam ? cam.init(kCam) : undefined;
      return {
        params: {
          convs: convs.map((l, i) => l.init(convKeys[i])),
          ...(camInit ? { cam: camInit.params } : {}),
          out: out.init(kOut),
        },
        state: {
          convs: convs.map((l, i) => snState(stateKeys[i], l)),
          ...(camInit ? { cam: camInit.state! } : {}),
          out: snState(stateKeys[convs.length], out),
        },
      };
    },
    apply(params, state, x, training, passes = 1) {
      const minSize = minImageSize(nLayers);
      if (x.shape[1] < minSize || x.shape[2] < minSize) {
        throw new Error(
          `discriminator: a ${nLayers}-layer discriminator needs images of at least ${minSize}px, ` +
            `got ${x.shape[1]}x${x.shape[2]} (lower --n_dis or raise --img_size)`,
        );
      }
      return tidy(() => {
        let h = x;
        // One pass: the normalised weight, as the reference. Stacked passes: the raw weight,
        // each pass's output divided by its own sigma (the same, as convolution is linear).
        const normalized = (
          w: tf.Tensor4D,
          s: SpectralNormState,
          apply: (w: tf.Tensor4D) => tf.Tensor4D,
        ) => {
          if (passes === 1) {
            const [wn, next] = spectralNormalize(w, convWeightMatrix, s, training);
            return [apply(wn), next] as const;
          }
          const [sigmas, next] = spectralSigmas(w, convWeightMatrix, s, training, passes);
          return [dividePerPass(apply(w), sigmas), next] as const;
        };
        const convStates = convs.map((layer, i) => {
          const p = params.convs[i];
          const [y, s] = normalized(p.w, state.convs[i], (w) => layer.apply({ w }, h));
          h = tf.leakyRelu(tf.add(y, p.b!), 0.2);
          return s;
        });
        let features = h;
        let camLogit: tf.Tensor2D | undefined;
        let heatmap: tf.Tensor4D;
        let camState: CamState | undefined;
        if (c.cam) {
          const [attended, next] = cam.apply(params.cam!, state.cam, h, training, passes);
          [features, camLogit, heatmap, camState] = [
            attended.features,
            attended.camLogit,
            attended.heatmap,
            next,
          ];
        } else heatmap = tf.sum(h, 3, true);
        const [logit, outState] = normalized(
          params.out.w,
          state.out,
          (w) => out.apply({ w }, features),
        );
        const output: DiscriminatorOutput = camLogit
          ? { logit, camLogit, heatmap }
          : { logit, heatmap };
        const next: DiscriminatorState = camState
          ? { convs: convStates, cam: camState, out: outState }
          : { convs: convStates, out: outState };
        return [output, next] as [DiscriminatorOutput, DiscriminatorState];
      });
    },
  };
}
