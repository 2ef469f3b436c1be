/**
 * A run's settings by the reference's flag names, as checkpoints record them (their `flags`
 * metadata) and as each floor reads them: the model's shape, the training recipe, the run's
 * place. The command line that fills them in lives in `cli/` (each command decodes its own flag
 * group into these records); here is what they mean for the model and its training.
 *
 * @example
 * ```ts
 * import { configFromSettings } from "./settings.ts";
 * const config = configFromSettings({
 *   light: true, ch: 32, n_res: 4, n_dis: 4, img_size: 64, img_ch: 3, decoder_norm: "adalin",
 *   gen_cam: true, dis_cam: true, lr: 1e-4, weight_decay: 1e-4, iteration: 10000,
 *   decay_flag: true, adv_weight: 1, cycle_weight: 1, identity_weight: 0.5, cam_weight: 1000,
 *   ema: 0.999,
 * });
 * console.log(config.global.nLayers, config.local.nLayers); // 5 3
 * ```
 *
 * @module
 */
import type { BackendName } from "../backends/backend.ts";
import type { DecoderNorm } from "../layers/norm.ts";
import type { TrainConfig } from "./step.ts";

/** The settings that fix the model's shape (a resumed run must keep them). */
export interface ModelSettings {
  /** Light model: the MLP reads pooled features. */
  readonly light: boolean;
  /** Base channel width. */
  readonly ch: number;
  /** Residual blocks. */
  readonly n_res: number;
  /** Discriminator depth: global `n_dis + 1`, local `n_dis - 1` layers. */
  readonly n_dis: number;
  /** Image size S. */
  readonly img_size: number;
  /** Image channels. */
  readonly img_ch: number;
  /** The decoder's normalisation (`adalin`, or an ablation's `in`, `ln`, `adain`, `gn`). */
  readonly decoder_norm: string;
  /** CAM attention in the generators. */
  readonly gen_cam: boolean;
  /** CAM attention in the discriminators. */
  readonly dis_cam: boolean;
}

/** The names of {@linkcode ModelSettings}, in the order checks name them. */
export const MODEL_SETTINGS: readonly (keyof ModelSettings)[] = [
  "light",
  "ch",
  "n_res",
  "n_dis",
  "img_size",
  "img_ch",
  "decoder_norm",
  "gen_cam",
  "dis_cam",
];

/** The model and its training recipe. */
export interface TrainingSettings extends ModelSettings {
  /** Learning rate. */
  readonly lr: number;
  /** Coupled L2 weight decay. */
  readonly weight_decay: number;
  /** Training iterations. */
  readonly iteration: number;
  /** Decay the learning rate over the second half. */
  readonly decay_flag: boolean;
  /** Weight of the adversarial loss. */
  readonly adv_weight: number;
  /** Weight of the cycle loss. */
  readonly cycle_weight: number;
  /** Weight of the identity loss. */
  readonly identity_weight: number;
  /** Weight of the CAM loss. */
  readonly cam_weight: number;
  /** Decay of the generators' moving average (0: none). */
  readonly ema: number;
}

/** The training recipe alone: what {@linkcode TrainingSettings} holds beyond the model and length. */
export type Recipe = Omit<TrainingSettings, keyof ModelSettings | "iteration">;

/**
 * The recipe of the shipped `emoji-google2twitter` model (models/emoji-google2twitter/MODEL_CARD.md):
 * the reference's learning rate, weight decay, decay schedule and adversarial and CAM weights, with
 * cycle 1 and identity 0.5 (the reference's 10 and 10 kept translations close to their sources),
 * and a moving average of the generators (0.999). `deno task train` runs it by default, and
 * fine-tuning (the page's panel, `train --model`) goes on with it.
 */
export const SHIPPED_RECIPE: Recipe = {
  lr: 1e-4,
  weight_decay: 1e-4,
  decay_flag: true,
  adv_weight: 1,
  cycle_weight: 1,
  identity_weight: 0.5,
  cam_weight: 1000,
  ema: 0.999,
};

/** What a training run reads: its model and recipe, its data, its place and its pace. */
export interface RunSettings extends TrainingSettings {
  /** A dataset folder or `emoji:<from>2<to>`. */
  readonly dataset: string;
  /** The folder for run folders. */
  readonly result_dir: string;
  /** The backend to select. */
  readonly backend: BackendName;
  /** Seed of the initialisation and the data order. */
  readonly seed: number;
  /** Continue from the run's newest valid checkpoint. */
  readonly resume: boolean;
  /** Start over in a run folder that holds a run (its checkpoints, log and pictures removed). */
  readonly overwrite: boolean;
  /** Images per batch. */
  readonly batch_size: number;
  /** Iterations between sample pictures. */
  readonly print_freq: number;
  /** Iterations between kept checkpoints. */
  readonly save_freq: number;
  /**
   * A generator file to start from instead of fresh weights (`--model`: a shipped model or an
   * exported file; `train/finetune.ts`): its generators, its discriminators where it has them.
   * Its model settings must be the run's (`modelSettingsOf`). Empty or absent: a fresh start.
   */
  readonly model?: string;
}

/**
 * The model and optimiser configuration the settings describe.
 * @param s the settings (e.g. the train command's flags, or a checkpoint's recorded ones)
 * @returns the training configuration
 */
export function configFromSettings(s: TrainingSettings): TrainConfig {
  return {
    generator: {
      ch: s.ch,
      nRes: s.n_res,
      imgSize: s.img_size,
      light: s.light,
      imgCh: s.img_ch,
      decoderNorm: s.decoder_norm as DecoderNorm,
      cam: s.gen_cam,
    },
    global: { ch: s.ch, nLayers: s.n_dis + 1, imgCh: s.img_ch, cam: s.dis_cam },
    local: { ch: s.ch, nLayers: s.n_dis - 1, imgCh: s.img_ch, cam: s.dis_cam },
    weights: {
      adv: s.adv_weight,
      cycle: s.cycle_weight,
      identity: s.identity_weight,
      cam: s.cam_weight,
    },
    lr: s.lr,
    weightDecay: s.weight_decay,
    iterations: s.iteration,
    decay: s.decay_flag,
    ema: s.ema,
  };
}
