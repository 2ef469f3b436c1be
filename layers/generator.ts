/**
 * The U-GAT-IT generator (one per direction): an encoder with instance norm and residual blocks,
 * CAM attention, an MLP that turns the attended features into one gamma/beta pair, a decoder of
 * AdaLIN residual blocks, and nearest-neighbour upsampling with ILN, ending in tanh.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { upsampleNearest2x } from "../ops/upsample_2x.ts";
import { tidy } from "../tree/tree.ts";
import { type Key, splitKey } from "./init.ts";
import { conv2d, type ConvParams, linear, type LinearParams } from "./conv.ts";
import { adaLinResnetBlock, type AdaLinResnetBlockParams, resnetBlock } from "./blocks.ts";
import type { ResnetBlockParams } from "./blocks.ts";
import { camAttention, type CamParams } from "./cam_attention.ts";
import {
  ADAPTIVE_NORMS,
  type DecoderNorm,
  iln,
  type IlnParams,
  initIln,
  instanceNorm,
} from "./norm.ts";

/** Fixed configuration of a generator. */
export interface GeneratorConfig {
  /** Base width (`--ch`, default 64). */
  readonly ch?: number;
  /** Residual blocks in encoder and decoder (`--n_res`, default 4). */
  readonly nRes?: number;
  /** Image size S (`--img_size`, default 256); only the full MLP depends on it. */
  readonly imgSize?: number;
  /** Light mode: the MLP reads the pooled features, not the whole map (`--light`). */
  readonly light?: boolean;
  /** Image channels (`--img_ch`, default 3). */
  readonly imgCh?: number;
  /** Decoder normalisation (`--decoder_norm`, default `adalin`; others are the paper's ablations). */
  readonly decoderNorm?: DecoderNorm;
  /** CAM attention in the generator (`--gen_cam`, default true; false is the ablation). */
  readonly cam?: boolean;
}

/** The generator's parameter record; its dotted paths are checkpoint names. */
export interface GeneratorParams {
  /** 7x7 conv imgCh -> ch. */
  readonly stem: ConvParams;
  /** Two stride-2 3x3 convs, ch -> 2ch -> 4ch. */
  readonly down: readonly ConvParams[];
  /** Encoder residual blocks. */
  readonly encoder: readonly ResnetBlockParams[];
  /** CAM attention (absent without CAM). */
  readonly cam?: CamParams;
  /** The MLP's two hidden linears (absent with a plain decoder norm). */
  readonly mlp?: { readonly fc1: LinearParams; readonly fc2: LinearParams };
  /** gamma head C -> C (with an adaptive decoder norm). */
  readonly gamma?: LinearParams;
  /** beta head C -> C (with an adaptive decoder norm). */
  readonly beta?: LinearParams;
  /** Decoder AdaLIN residual blocks. */
  readonly decoder: readonly AdaLinResnetBlockParams[];
  /** Two upsampling stages: 3x3 conv and ILN. */
  readonly up: readonly { readonly conv: ConvParams; readonly norm: IlnParams }[];
  /** 7x7 conv ch -> imgCh. */
  readonly out: ConvParams;
}

/** What the generator returns. */
export interface GeneratorOutput {
  /** The translated image in [-1, 1], `[N, S, S, imgCh]`. */
  readonly image: tf.Tensor4D;
  /** CAM logits `[N, 2]` (absent without CAM). */
  readonly camLogit?: tf.Tensor2D;
  /** Attention heatmap `[N, S/4, S/4, 1]` (without CAM, the channel sum of the features). */
  readonly heatmap: tf.Tensor4D;
}

/** A generator: `init(key) -> params`, `apply(params, x) -> output`. */
export interface Generator {
  /** The configuration, defaults filled in. */
  readonly config: Required<GeneratorConfig>;
  /** Draws parameters with the reference's initialisation. */
  init(key: Key): GeneratorParams;
  /**
   * Translates a batch.
   * @param params the weights
   * @param x `[N, S, S, imgCh]` in [-1, 1]
   * @returns image, CAM logits and heatmap
   */
  apply(params: GeneratorParams, x: tf.Tensor4D): GeneratorOutput;
}

/**
 * Makes a generator.
 * @param config widths, depth, size, light or full
 * @returns the generator
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { generator } from "./generator.ts";
 * const g = generator({ ch: 8, nRes: 2, imgSize: 32, light: true });
 * const params = g.init(0);
 * const { image } = g.apply(params, tf.zeros([1, 32, 32, 3]) as tf.Tensor4D); // [1, 32, 32, 3]
 * ```
 */
export function generator(config: GeneratorConfig = {}): Generator {
  const c: Required<GeneratorConfig> = {
    ch: 64,
    nRes: 4,
    imgSize: 256,
    light: false,
    imgCh: 3,
    decoderNorm: "adalin",
    cam: true,
    ...config,
  };
  const { ch, nRes, imgSize, light, imgCh, decoderNorm } = c;
  const adaptive = ADAPTIVE_NORMS.includes(decoderNorm);
  const width = ch * 4;
  if (!light && imgSize % 4 !== 0) {
    throw new Error(`generator: img_size ${imgSize} must be a multiple of 4 in full mode`);
  }
  const stem = conv2d({ inCh: imgCh, outCh: ch, kernel: 7, pad: 3 });
  const down = [1, 2].map((m) =>
    conv2d({ inCh: ch * m, outCh: ch * m * 2, kernel: 3, stride: 2, pad: 1 })
  );
  const encoder = resnetBlock(width);
  const cam = camAttention({ channels: width, spectral: false, activation: "relu" });
  const mlpIn = light ? width : width * (imgSize / 4) ** 2;
  const fc1 = linear({ inFeatures: mlpIn, outFeatures: width });
  const fc = linear({ inFeatures: width, outFeatures: width });
  const decoder = adaLinResnetBlock(width, decoderNorm);
  const up = [4, 2].map((m) => conv2d({ inCh: ch * m, outCh: (ch * m) / 2, kernel: 3, pad: 1 }));
  const out = conv2d({ inCh: ch, outCh: imgCh, kernel: 7, pad: 3 });

  return {
    config: c,
    init(key) {
      const k = splitKey(key, 10);
      return {
        stem: stem.init(k[0]),
        down: down.map((d, i) => d.init(splitKey(k[1], 2)[i])),
        encoder: splitKey(k[2], nRes).map((kk) => encoder.init(kk)),
        ...(c.cam ? { cam: cam.init(k[3]).params } : {}),
        ...(adaptive
          ? {
            mlp: { fc1: fc1.init(k[4]), fc2: fc.init(k[5]) },
            gamma: fc.init(k[6]),
            beta: fc.init(k[7]),
          }
          : {}),
        decoder: splitKey(k[8], nRes).map((kk) => decoder.init(kk)),
        up: up.map((u, i) => ({
          conv: u.init(splitKey(k[9], 3)[i]),
          norm: initIln(u.config.outCh),
        })),
        out: out.init(splitKey(k[9], 3)[2]),
      };
    },
    apply(params, x) {
      return tidy(() => {
        let h = tf.relu(instanceNorm(stem.apply(params.stem, x)));
        down.forEach((d, i) => (h = tf.relu(instanceNorm(d.apply(params.down[i], h)))));
        for (const p of params.encoder) h = encoder.apply(p, h);
        let camLogit: tf.Tensor2D | undefined;
        let heatmap: tf.Tensor4D;
        if (c.cam) {
          const [attended] = cam.apply(params.cam!, undefined, h, false);
          [h, camLogit, heatmap] = [attended.features, attended.camLogit, attended.heatmap];
        } else heatmap = tf.sum(h, 3, true);
        let gamma: tf.Tensor2D | undefined;
        let beta: tf.Tensor2D | undefined;
        if (adaptive) {
          const n = h.shape[0];
          // Full mode flattens in NCHW order, so that `FC.0.weight` keeps the reference's layout.
          const mlpInput = light
            ? (tf.mean(h, [1, 2]) as tf.Tensor2D)
            : tf.reshape(tf.transpose(h, [0, 3, 1, 2]), [n, -1]) as tf.Tensor2D;
          const mlp = params.mlp!;
          const hidden = tf.relu(fc.apply(mlp.fc2, tf.relu(fc1.apply(mlp.fc1, mlpInput))));
          gamma = fc.apply(params.gamma!, hidden);
          beta = fc.apply(params.beta!, hidden);
        }
        for (const p of params.decoder) h = decoder.apply(p, h, gamma, beta);
        up.forEach((u, i) => {
          const conv = u.apply(params.up[i].conv, upsampleNearest2x(h));
          h = tf.relu(iln(params.up[i].norm, conv));
        });
        const image = tf.tanh(out.apply(params.out, h));
        return camLogit ? { image, camLogit, heatmap } : { image, heatmap };
      });
    },
  };
}
