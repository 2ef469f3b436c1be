/**
 * One U-GAT-IT training iteration as a pure function of the training state: a discriminator
 * step on detached fakes, then a generator step with fresh forward passes, then rho clipping,
 * exactly in the reference's order (so spectral norm's power iterations happen in the same
 * order too). Nothing here reads tensors back or touches files; the runner does.
 *
 * The iteration is a function of tensors alone ({@linkcode Trainer.update}): every number that
 * changes from one iteration to the next (the optimisers' step counts, hence bias corrections and
 * learning rates, and the moving average's warm-up) is a tensor, so that {@linkcode Trainer.compile}
 * can record it once on a GPU and replay it (`backends/compile.ts`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { compile, type Compiled, type CompileOptions } from "../backends/compile.ts";
import { readsAtOnce } from "../ops/kernel.ts";
import { lerp } from "../ops/lerp.ts";
import {
  discriminator,
  type DiscriminatorConfig,
  type DiscriminatorOutput,
  type DiscriminatorParams,
  type DiscriminatorState,
} from "../layers/discriminator.ts";
import {
  generator,
  type GeneratorConfig,
  type GeneratorOutput,
  type GeneratorParams,
} from "../layers/generator.ts";
import { dispose, leaves, map, tidy, valueAndGrads, zipMap } from "../tree/tree.ts";
import { evaluate } from "../losses/dsl.ts";
import {
  discriminatorObjective,
  generatorObjective,
  type LossWeights,
} from "../losses/objectives.ts";
import { referenceAdam, type ReferenceAdamState } from "../optim/adam.ts";
import { clipRho } from "../optim/projections.ts";
import { applyTransformation, type GradientTransformation } from "../optim/transform.ts";

/** What a model and its training are made of. */
export interface TrainConfig {
  /** Both generators. */
  readonly generator: GeneratorConfig;
  /** Both global discriminators. */
  readonly global: DiscriminatorConfig;
  /** Both local discriminators. */
  readonly local: DiscriminatorConfig;
  /** Loss weights. */
  readonly weights: LossWeights;
  /** Learning rate. */
  readonly lr: number;
  /** Coupled L2 weight decay. */
  readonly weightDecay: number;
  /** Total iterations (for the schedule). */
  readonly iterations: number;
  /** Decay the learning rate over the second half. */
  readonly decay: boolean;
  /**
   * Decay of a moving average of the generators' weights (0 or absent: none, as the reference);
   * see {@linkcode emaDecay}.
   */
  readonly ema?: number;
}

/**
 * The moving average's decay at an iteration: `min(ema, (1 + step) / (10 + step))`, so that the
 * average follows the fast-changing weights of the first iterations closely and settles to
 * `ema` later (the warm-up of TensorFlow's `ExponentialMovingAverage` with `num_updates`).
 * @param ema the decay asked for
 * @param step iterations done before this update
 * @returns the decay of this update
 */
export function emaDecay(ema: number, step: number): number {
  return Math.min(ema, (1 + step) / (10 + step));
}

/**
 * The weight of the new parameters in the moving average, `1 - emaDecay(ema, step)`, of a step
 * tensor: on the host where it can be read at once (double precision), else on the device.
 * @param ema the decay asked for
 * @param step iterations done before this update (float32 scalar)
 * @returns the weight (float32 scalar; the caller owns it)
 */
export function emaWeight(ema: number, step: tf.Scalar): tf.Scalar {
  if (readsAtOnce()) return tf.scalar(1 - emaDecay(ema, step.dataSync()[0]));
  return tidy(() => tf.sub(1, tf.minimum(ema, tf.div(tf.add(step, 1), tf.add(step, 10)))));
}

/**
 * Splits a network's output on two stacked batches (every field batch-first) into the first `n`
 * samples and the rest.
 * @param out the output of one pass over two batches
 * @param n the first batch's size
 * @returns the two batches' outputs
 */
export function splitBatch<T extends object>(out: T, n: number): [T, T] {
  const halves: [Record<string, tf.Tensor>, Record<string, tf.Tensor>] = [{}, {}];
  for (const [k, t] of Object.entries(out) as [string, tf.Tensor | undefined][]) {
    if (t === undefined) continue;
    halves[0][k] = tf.slice(t, 0, n);
    halves[1][k] = tf.slice(t, n, t.shape[0] - n);
  }
  return halves as unknown as [T, T];
}

/** The networks, by the reference's names. */
export const NETWORKS = ["genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB"] as const;
/** The discriminators, by the reference's names: global (`G`) and local (`L`) of each domain. */
export const DISCRIMINATORS = ["disGA", "disGB", "disLA", "disLB"] as const;
type DisName = typeof DISCRIMINATORS[number];

/** Both generators' parameters (or their moving average), by the reference's names. */
export interface Generators {
  /** A to B. */
  readonly genA2B: GeneratorParams;
  /** B to A. */
  readonly genB2A: GeneratorParams;
}

/** One record per discriminator, by the reference's names. */
export type Discriminators<T> = { readonly [K in DisName]: T };

// A record per discriminator, made in the reference's order.
const byDiscriminator = <T>(make: (name: DisName, i: number) => T) =>
  Object.fromEntries(DISCRIMINATORS.map((name, i) => [name, make(name, i)])) as Discriminators<T>;

/**
 * Everything a training run carries from one iteration to the next (all tensors), as trees whose
 * dotted paths are the checkpoint's names (`gen.genA2B.stem.w`, `sn.disGA.convs.0.u`, ...).
 */
export interface TrainState {
  /** Iterations done. */
  readonly step: number;
  /** Generator parameters. */
  readonly gen: Generators;
  /** Discriminator parameters. */
  readonly dis: Discriminators<DiscriminatorParams>;
  /** Spectral-norm vectors of the discriminators. */
  readonly sn: Discriminators<DiscriminatorState>;
  /**
   * The generators' moving average, when `TrainConfig.ema` asks for one: what sample pictures,
   * translation, export and evaluation use by default.
   */
  readonly ema?: Generators;
  /** Generator optimiser state (its moments are trees like `gen`). */
  readonly optG: ReferenceAdamState;
  /** Discriminator optimiser state (its moments are trees like `dis`). */
  readonly optD: ReferenceAdamState;
}

/** The named loss terms of an iteration (scalars; the caller owns them). */
export type Terms = Record<string, tf.Scalar>;

/** The tensors of a training state: all of it but the host's count of iterations. */
export type StepState = Omit<TrainState, "step">;

/** What an iteration reads besides the state. */
export interface StepInputs {
  /** A batch of domain A. */
  readonly realA: tf.Tensor4D;
  /** A batch of domain B. */
  readonly realB: tf.Tensor4D;
  /** Iterations done before this one, as a float32 scalar (the moving average's warm-up). */
  readonly step: tf.Scalar;
}

/** A compiled training iteration ({@linkcode Trainer.compile}). */
export interface CompiledStep {
  /**
   * One iteration on a batch of each domain, as {@linkcode Trainer.step} does it; the old state is
   * donated (a call may overwrite it: use only the state returned, dispose the old one as usual).
   * @returns the new state and the loss terms
   */
  step(
    state: TrainState,
    realA: tf.Tensor4D,
    realB: tf.Tensor4D,
  ): { state: TrainState; terms: Terms };
  /** The compiled function: its mode, its figures, its profile. */
  readonly compiled: Compiled<StepState, StepInputs, Terms>;
}

/** A trainer: initial state, one iteration, and translations for pictures. */
export interface Trainer {
  /** The configuration. */
  readonly config: TrainConfig;
  /** Initial parameters from a seed, fresh optimiser states. */
  init(seed: number): TrainState;
  /**
   * One iteration on a batch of each domain: a pure function of the state and the batch.
   * @returns the new state (the old one is not disposed) and the loss terms
   */
  step(
    state: TrainState,
    realA: tf.Tensor4D,
    realB: tf.Tensor4D,
  ): { state: TrainState; terms: Terms };
  /**
   * The iteration as a function of tensors alone, which {@linkcode Trainer.step} calls.
   * @param state the state's tensors
   * @param inputs the batches and the iteration number
   * @returns the new state's tensors (the old ones are not disposed) and the loss terms
   */
  update(state: StepState, inputs: StepInputs): { state: StepState; outputs: Terms };
  /**
   * The iteration compiled for the active backend (recorded once and replayed on webgpu): the same
   * results as {@linkcode Trainer.step}.
   * @param options notices; whether to replay
   * @returns the compiled iteration
   */
  compile(options?: CompileOptions): CompiledStep;
  /**
   * A->B and B->A with their identity and cycle passes, without gradients, for pictures (by the
   * moving average of the generators where the state has one).
   */
  translate(state: TrainState, realA: tf.Tensor4D, realB: tf.Tensor4D): Translations;
}

/** The passes a sample picture shows, per direction. */
export interface Translations {
  /** `A2B`: identity `G_BA(a)`, translation `G_AB(a)`, cycle `G_BA(G_AB(a))`. */
  readonly A2B: { identity: GeneratorOutput; translation: GeneratorOutput; cycle: GeneratorOutput };
  /** `B2A`: identity `G_AB(b)`, translation `G_BA(b)`, cycle `G_AB(G_BA(b))`. */
  readonly B2A: { identity: GeneratorOutput; translation: GeneratorOutput; cycle: GeneratorOutput };
}

/**
 * Makes a trainer.
 * @param config models, weights and optimiser settings
 * @returns the trainer
 */
export function trainer(config: TrainConfig): Trainer {
  const G = generator(config.generator);
  const D = { G: discriminator(config.global), L: discriminator(config.local) };
  const dOf = (name: DisName) => (name.startsWith("disG") ? D.G : D.L);
  const opt = (): GradientTransformation<ReferenceAdamState> =>
    referenceAdam({
      lr: config.lr,
      weightDecay: config.weightDecay,
      iterations: config.iterations,
      decay: config.decay,
    });
  const optG = opt();
  const optD = opt();
  const dObjective = discriminatorObjective(config.weights);
  const gObjective = generatorObjective(config.weights, {
    camLoss: config.generator.cam !== false,
  });
  type SnStates = { -readonly [K in DisName]: DiscriminatorState };

  // Runs the discriminator `name` in training mode; threads its spectral-norm state through `sn`.
  const judge = (
    name: DisName,
    dis: Discriminators<DiscriminatorParams>,
    sn: SnStates,
    x: tf.Tensor4D,
    passes = 1,
  ): DiscriminatorOutput => {
    const [out, next] = dOf(name).apply(dis[name], sn[name], x, true, passes);
    sn[name] = next;
    return out;
  };
  const keep = (tree: object) => leaves(tree).forEach((t) => tf.keep(t));

  // An iteration as the runner calls it, by a function of tensors (eager or compiled): the host's
  // iteration count goes in as a tensor and comes back advanced.
  const stepWith = (
    call: (state: StepState, inputs: StepInputs) => { state: StepState; outputs: Terms },
  ) =>
  (state: TrainState, realA: tf.Tensor4D, realB: tf.Tensor4D) => {
    const { step: done, ...tensors } = state;
    const step = tf.scalar(done);
    const { state: next, outputs } = call(tensors, { realA, realB, step });
    step.dispose();
    return { state: { step: done + 1, ...next }, terms: outputs };
  };

  // The iteration as a function of tensors (Trainer.update).
  function update(
    state: StepState,
    { realA, realB, step }: StepInputs,
  ): { state: StepState; outputs: Terms } {
    // Discriminator step, on fakes made without gradients (the reference keeps their graph).
    const [fakeA2B, fakeB2A] = tidy(() => [
      G.apply(state.gen.genA2B, realA).image,
      G.apply(state.gen.genB2A, realB).image,
    ]);
    let dTerms: Terms = {};
    let snAfterD = state.sn;
    const d = valueAndGrads((dis) => {
      const s: SnStates = { ...state.sn };
      // Each discriminator judges its real and fake batch in one pass of two (spectral norm
      // still advances real first, then fake, as in the reference's two calls).
      const both = (name: DisName, real: tf.Tensor4D, fake: tf.Tensor4D) =>
        splitBatch(judge(name, dis, s, tf.concat([real, fake]), 2), real.shape[0]);
      const [gaReal, gaFake] = both("disGA", realA, fakeB2A);
      const [laReal, laFake] = both("disLA", realA, fakeB2A);
      const [gbReal, gbFake] = both("disGB", realB, fakeA2B);
      const [lbReal, lbFake] = both("disLB", realB, fakeA2B);
      const real = { A: { global: gaReal, local: laReal }, B: { global: gbReal, local: lbReal } };
      const fake = { A: { global: gaFake, local: laFake }, B: { global: gbFake, local: lbFake } };
      const ev = evaluate(dObjective, {
        A: { judgedReal: real.A, judgedFake: fake.A },
        B: { judgedReal: real.B, judgedFake: fake.B },
      });
      dTerms = ev.terms as Terms;
      keep(dTerms);
      snAfterD = s;
      keep(snAfterD);
      return ev.total;
    }, state.dis);
    tf.dispose([fakeA2B, fakeB2A, d.value]);
    const [dis, optDState] = applyTransformation(optD, d.grads, state.optD, state.dis);
    dispose(d.grads);

    // Generator step: fresh passes; the discriminators (just updated) are constants here.
    let gTerms: Terms = {};
    let snAfterG = snAfterD;
    const g = valueAndGrads((gen) => {
      const [ab, ba] = [gen.genA2B, gen.genB2A];
      // Each generator's two passes on real images run as one pass on both batches (every
      // layer works per sample, so the outputs are the same): fewer, larger kernels.
      const [A2B, B2B] = splitBatch(G.apply(ab, tf.concat([realA, realB])), realA.shape[0]);
      const [B2A, A2A] = splitBatch(G.apply(ba, tf.concat([realB, realA])), realB.shape[0]);
      const A2B2A = G.apply(ba, A2B.image);
      const B2A2B = G.apply(ab, B2A.image);
      const s: SnStates = { ...snAfterD };
      const fakeA = {
        global: judge("disGA", dis, s, B2A.image),
        local: judge("disLA", dis, s, B2A.image),
      };
      const fakeB = {
        global: judge("disGB", dis, s, A2B.image),
        local: judge("disLB", dis, s, A2B.image),
      };
      const ev = evaluate(gObjective, {
        A: { real: realA, translated: B2A, identity: A2A, cycle: A2B2A, judgedFake: fakeA },
        B: { real: realB, translated: A2B, identity: B2B, cycle: B2A2B, judgedFake: fakeB },
      });
      gTerms = ev.terms as Terms;
      keep(gTerms);
      snAfterG = s;
      keep(snAfterG);
      return ev.total;
    }, state.gen);
    tf.dispose(g.value);
    dispose(snAfterD);
    const [genUpdated, optGState] = applyTransformation(optG, g.grads, state.optG, state.gen);
    dispose(g.grads);
    const gen = clipRho(genUpdated);
    dispose(genUpdated);
    // ema + (1 - d) (gen - ema): a convex combination, so rho stays within [0, 1].
    const ema = state.ema &&
      tidy(() => {
        const w = emaWeight(config.ema ?? 0, step);
        return zipMap([state.ema!, gen], ([e, p]) => lerp(e, p, w));
      });
    return {
      state: {
        gen,
        dis,
        sn: snAfterG,
        ...(ema ? { ema } : {}),
        optG: optGState,
        optD: optDState,
      },
      outputs: { ...dTerms, ...gTerms },
    };
  }

  return {
    config,
    init(seed) {
      const gen = { genA2B: G.init(seed), genB2A: G.init(seed + 1) };
      const nets = byDiscriminator((name, i) => dOf(name).init(seed + 2 + i));
      const dis = byDiscriminator((name) => nets[name].params);
      const sn = byDiscriminator((name) => nets[name].state);
      const ema = config.ema ? map(gen, (p) => p.clone()) : undefined;
      return {
        step: 0,
        gen,
        dis,
        sn,
        ...(ema ? { ema } : {}),
        optG: optG.init(gen),
        optD: optD.init(dis),
      };
    },

    step: stepWith(update),

    update,

    compile(options) {
      const compiled = compile(update, options);
      return { compiled, step: stepWith((state, inputs) => compiled.call(state, inputs)) };
    },

    translate(state, realA, realB) {
      const { genA2B: ab, genB2A: ba } = state.ema ?? state.gen;
      return tidy(() => {
        const A2B = G.apply(ab, realA);
        const B2A = G.apply(ba, realB);
        return {
          A2B: { identity: G.apply(ba, realA), translation: A2B, cycle: G.apply(ba, A2B.image) },
          B2A: { identity: G.apply(ab, realB), translation: B2A, cycle: G.apply(ab, B2A.image) },
        };
      });
    },
  };
}

/**
 * Disposes every tensor of a training state.
 * @param state the state
 */
export function disposeState(state: TrainState): void {
  dispose([state.gen, state.ema ?? {}, state.dis, state.sn, state.optG, state.optD]);
}
