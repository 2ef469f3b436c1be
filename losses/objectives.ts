/**
 * The four objectives of U-GAT-IT, declared once with the loss DSL over one domain's view and
 * mirrored to both: adversarial (LSGAN on the patch and CAM logits of the global and local
 * discriminators), cycle (L1), identity (L1) and CAM (sigmoid cross-entropy).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { GeneratorOutput } from "../layers/generator.ts";
import type { DiscriminatorOutput } from "../layers/discriminator.ts";
import { meanSquaredError } from "../ops/mean_squared_error.ts";
import { type Loss, mirror, type Mirrored, named, type Objective, sum, weighted } from "./dsl.ts";

/** `mean((x - target)^2)`, the LSGAN loss (one op of ours where the backend has its kernel). */
export const mse = (x: tf.Tensor, target: number): tf.Scalar => meanSquaredError(x, target);
/** `mean|x - y|`. */
export const l1 = (x: tf.Tensor, y: tf.Tensor): tf.Scalar => tf.mean(tf.abs(tf.sub(x, y)));
/**
 * Mean sigmoid cross-entropy of logits against a constant label (PyTorch's BCEWithLogitsLoss),
 * in the stable form `max(x, 0) - x * label + log(1 + exp(-|x|))`.
 */
export const bce = (logits: tf.Tensor, label: number): tf.Scalar =>
  tf.mean(
    tf.add(
      tf.sub(tf.relu(logits), tf.mul(logits, label)),
      tf.log1p(tf.exp(tf.neg(tf.abs(logits)))),
    ),
  );

/** The outputs of a domain's global and local discriminators on one batch. */
export interface Judgement {
  /** The global discriminator's output. */
  readonly global: DiscriminatorOutput;
  /** The local discriminator's output. */
  readonly local: DiscriminatorOutput;
}

/**
 * What the generator step computes, seen from one domain X (its mirror sees Y): the generator
 * into X is `G_YX`.
 */
export interface GeneratorView {
  /** Real images of X. */
  readonly real: tf.Tensor4D;
  /** `G_YX(y)`: translations into X. */
  readonly translated: GeneratorOutput;
  /** `G_YX(x)`: X through the generator into X, which should leave it alone. */
  readonly identity: GeneratorOutput;
  /** `G_YX(G_XY(x))`: the round trip back to X. */
  readonly cycle: GeneratorOutput;
  /** X's discriminators on the translations into X. */
  readonly judgedFake: Judgement;
}

/** What the discriminator step computes, seen from one domain X. */
export interface DiscriminatorView {
  /** X's discriminators on real images of X. */
  readonly judgedReal: Judgement;
  /** X's discriminators on (detached) translations into X. */
  readonly judgedFake: Judgement;
}

/** The weights of the objectives (the reference's `--*_weight` flags). */
export interface LossWeights {
  /** Adversarial (default 1). */
  readonly adv: number;
  /** Cycle (default 10). */
  readonly cycle: number;
  /** Identity (default 10). */
  readonly identity: number;
  /** CAM (default 1000). */
  readonly cam: number;
}

/** The reference's default weights. */
export const DEFAULT_WEIGHTS: LossWeights = { adv: 1, cycle: 10, identity: 10, cam: 1000 };

// The up-to-four logits of a judgement: patch and CAM, global and local (CAM ones are absent
// when the discriminators are built without CAM).
function logits(j: Judgement): tf.Tensor[] {
  return [j.global.logit, j.global.camLogit, j.local.logit, j.local.camLogit].filter((t) =>
    t !== undefined
  );
}

const total = (xs: tf.Scalar[]): tf.Scalar => xs.reduce((a, b) => tf.add(a, b));

/** Generator adversarial loss: every logit of X's discriminators on fakes, against "real". */
export const generatorAdversarialLoss: Loss<GeneratorView> = (v): tf.Scalar =>
  total(logits(v.judgedFake).map((x) => mse(x, 1)));
/** Cycle-consistency loss: `l1(G_YX(G_XY(x)), x)`. */
export const cycleLoss: Loss<GeneratorView> = (v): tf.Scalar => l1(v.cycle.image, v.real);
/** Identity loss: `l1(G_YX(x), x)`. */
export const identityLoss: Loss<GeneratorView> = (v): tf.Scalar => l1(v.identity.image, v.real);
/**
 * CAM loss: `G_YX`'s own CAM classifier must say "from the other domain" (1) for the inputs it
 * translates and "from my output domain" (0) for those it should leave alone.
 */
export const camLoss: Loss<GeneratorView> = (v): tf.Scalar =>
  tf.add(bce(v.translated.camLogit!, 1), bce(v.identity.camLogit!, 0));
/** Discriminator loss: real as 1 and fake as 0 on every logit of X's discriminators. */
export const discriminatorAdversarialLoss: Loss<DiscriminatorView> = (v): tf.Scalar =>
  tf.add(
    total(logits(v.judgedReal).map((x) => mse(x, 1))),
    total(logits(v.judgedFake).map((x) => mse(x, 0))),
  );

/**
 * The generator step's objective over both directions:
 * `adv*adv + cycle*cycle + identity*identity + cam*cam`, terms named `adv_A`, `cycle_B`, ...
 * @param w the weights
 * @param options `camLoss: false` drops the CAM term (for a generator built without CAM)
 * @returns the objective
 */
export function generatorObjective(
  w: LossWeights = DEFAULT_WEIGHTS,
  { camLoss: withCam = true } = {},
): Objective<Mirrored<GeneratorView>> {
  return mirror(sum(
    weighted(w.adv, named("adv", generatorAdversarialLoss)),
    weighted(w.cycle, named("cycle", cycleLoss)),
    weighted(w.identity, named("identity", identityLoss)),
    weighted(withCam ? w.cam : 0, named("cam", camLoss)),
  ));
}

/**
 * The discriminator step's objective: `adv * (loss_A + loss_B)`, terms `d_adv_A`, `d_adv_B`.
 * @param w the weights
 * @returns the objective
 */
export function discriminatorObjective(
  w: LossWeights = DEFAULT_WEIGHTS,
): Objective<Mirrored<DiscriminatorView>> {
  return mirror(weighted(w.adv, named("d_adv", discriminatorAdversarialLoss)));
}
