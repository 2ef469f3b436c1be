/**
 * One U-GAT-IT training iteration as a pure function of the training state: a discriminator
 * step on detached fakes, then a generator step with fresh forward passes, then rho clipping,
 * exactly in the reference's order (so spectral norm's power iterations happen in the same
 * order too). Nothing here reads tensors back or touches files; the runner does.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  discriminator,
  type DiscriminatorConfig,
  type DiscriminatorOutput,
} from "../layers/discriminator.ts";
import { generator, type GeneratorConfig, type GeneratorOutput } from "../layers/generator.ts";
import { flatten, tidy, type Tree, underPrefix, unflatten } from "../layers/tree.ts";
import { evaluate } from "../losses/dsl.ts";
import {
  discriminatorObjective,
  generatorObjective,
  type LossWeights,
} from "../losses/objectives.ts";
import {
  applyUpdates,
  clipRho,
  type Flat,
  type GradientTransformation,
  mapFlat,
  referenceAdam,
} from "./optim.ts";

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
const DISCRIMINATORS = ["disGA", "disGB", "disLA", "disLB"] as const;
type DisName = typeof DISCRIMINATORS[number];

/** Everything a training run carries from one iteration to the next (all tensors). */
export interface TrainState {
  /** Iterations done. */
  readonly step: number;
  /** Generator parameters, flat, keys `genA2B.<path>` and `genB2A.<path>`. */
  readonly gen: Flat;
  /** Discriminator parameters, flat, keys `disGA.<path>`, ... */
  readonly dis: Flat;
  /** Spectral-norm vectors, flat, keys `disGA.<path>.u`, ... */
  readonly sn: Flat;
  /**
   * The generators' moving average (keys as `gen`), when `TrainConfig.ema` asks for one: what
   * sample pictures, translation, export and evaluation use by default.
   */
  readonly ema?: Flat;
  /** Generator optimiser state. */
  readonly optG: unknown[];
  /** Discriminator optimiser state. */
  readonly optD: unknown[];
}

/** The named loss terms of an iteration (scalars; the caller owns them). */
export type Terms = Record<string, tf.Scalar>;

/** A trainer: initial state, one iteration, and translations for pictures. */
export interface Trainer {
  /** The configuration. */
  readonly config: TrainConfig;
  /** Initial parameters from a seed, fresh optimiser states. */
  init(seed: number): TrainState;
  /**
   * One iteration on a batch of each domain.
   * @returns the new state (the old one is not disposed) and the loss terms
   */
  step(
    state: TrainState,
    realA: tf.Tensor4D,
    realB: tf.Tensor4D,
  ): { state: TrainState; terms: Terms };
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
 * The nested record under `prefix.` of a flat record (e.g. one network's parameters).
 * @param flat parameters by dotted path
 * @param prefix e.g. `genA2B`
 * @returns the nested record
 */
export function subtree<T = Tree>(flat: Flat, prefix: string): T {
  return unflatten(underPrefix(flat, prefix)) as T;
}

const prefixed = (prefix: string, tree: object): Flat =>
  Object.fromEntries(Object.entries(flatten(tree)).map(([k, v]) => [`${prefix}.${k}`, v]));

/**
 * Makes a trainer.
 * @param config models, weights and optimiser settings
 * @returns the trainer
 */
export function trainer(config: TrainConfig): Trainer {
  const G = generator(config.generator);
  const D = { G: discriminator(config.global), L: discriminator(config.local) };
  const dOf = (name: DisName) => (name.startsWith("disG") ? D.G : D.L);
  const opt = (): GradientTransformation<unknown[]> =>
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

  // Runs the discriminator `name` in training mode; threads its spectral-norm state through `sn`.
  const judge = (
    name: DisName,
    dis: Flat,
    sn: Record<string, Tree>,
    x: tf.Tensor4D,
    passes = 1,
  ): DiscriminatorOutput => {
    // deno-lint-ignore no-explicit-any
    const [out, next] = dOf(name).apply(subtree(dis, name), sn[name] as any, x, true, passes);
    sn[name] = next as unknown as Tree;
    return out;
  };
  const snTrees = (sn: Flat) =>
    Object.fromEntries(DISCRIMINATORS.map((n) => [n, subtree(sn, n)])) as Record<string, Tree>;
  const snFlat = (trees: Record<string, Tree>) =>
    Object.assign({}, ...DISCRIMINATORS.map((n) => prefixed(n, trees[n] as object))) as Flat;

  // Differentiates `loss` with respect to `params` (side outputs must be tf.keep()-ed inside).
  function valueAndGrads(
    params: Flat,
    loss: (p: Flat) => tf.Scalar,
  ): { value: tf.Scalar; grads: Flat } {
    const keys = Object.keys(params);
    const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) =>
      loss(Object.fromEntries(keys.map((k, i) => [k, ts[i]])))
    )(keys.map((k) => params[k]));
    return { value, grads: Object.fromEntries(keys.map((k, i) => [k, grads[i]])) };
  }

  function update(
    transform: GradientTransformation<unknown[]>,
    params: Flat,
    optState: unknown[],
    grads: Flat,
  ): [Flat, unknown[]] {
    const [updates, next] = transform.update(grads, optState, params);
    const applied = applyUpdates(params, updates);
    tf.dispose(Object.values(updates));
    return [applied, next];
  }

  return {
    config,
    init(seed) {
      const gen = { ...prefixed("genA2B", G.init(seed)), ...prefixed("genB2A", G.init(seed + 1)) };
      const dis: Record<string, tf.Tensor> = {};
      const sn: Record<string, tf.Tensor> = {};
      DISCRIMINATORS.forEach((name, i) => {
        const { params, state } = dOf(name).init(seed + 2 + i);
        Object.assign(dis, prefixed(name, params));
        Object.assign(sn, prefixed(name, state));
      });
      const ema = config.ema ? mapFlat(gen, (p) => p.clone()) : undefined;
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

    step(state, realA, realB) {
      const genA2B = subtree(state.gen, "genA2B");
      const genB2A = subtree(state.gen, "genB2A");
      // Discriminator step, on fakes made without gradients (the reference keeps their graph).
      const [fakeA2B, fakeB2A] = tidy(() => [
        // deno-lint-ignore no-explicit-any
        G.apply(genA2B as any, realA).image,
        // deno-lint-ignore no-explicit-any
        G.apply(genB2A as any, realB).image,
      ]);
      let sn = snTrees(state.sn);
      let dTerms: Terms = {};
      let snAfterD: Flat = {};
      const d = valueAndGrads(state.dis, (dis) => {
        const s = { ...sn };
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
        Object.values(dTerms).forEach((t) => tf.keep(t));
        snAfterD = snFlat(s);
        Object.values(snAfterD).forEach((t) => tf.keep(t));
        return ev.total;
      });
      tf.dispose([fakeA2B, fakeB2A, d.value]);
      const [dis, optDState] = update(optD, state.dis, state.optD, d.grads);
      tf.dispose(Object.values(d.grads));

      // Generator step: fresh passes; the discriminators (just updated) are constants here.
      sn = snTrees(snAfterD);
      let gTerms: Terms = {};
      let snAfterG: Flat = {};
      const g = valueAndGrads(state.gen, (gen) => {
        const ab = subtree(gen, "genA2B");
        const ba = subtree(gen, "genB2A");
        // deno-lint-ignore no-explicit-any
        const run = (p: Tree, x: tf.Tensor4D) => G.apply(p as any, x);
        // Each generator's two passes on real images run as one pass on both batches (every
        // layer works per sample, so the outputs are the same): fewer, larger kernels.
        const [A2B, B2B] = splitBatch(run(ab, tf.concat([realA, realB])), realA.shape[0]);
        const [B2A, A2A] = splitBatch(run(ba, tf.concat([realB, realA])), realB.shape[0]);
        const A2B2A = run(ba, A2B.image);
        const B2A2B = run(ab, B2A.image);
        const s = { ...sn };
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
        Object.values(gTerms).forEach((t) => tf.keep(t));
        snAfterG = snFlat(s);
        Object.values(snAfterG).forEach((t) => tf.keep(t));
        return ev.total;
      });
      tf.dispose(g.value);
      tf.dispose(Object.values(snAfterD));
      const [genUpdated, optGState] = update(optG, state.gen, state.optG, g.grads);
      tf.dispose(Object.values(g.grads));
      const gen = clipRho(genUpdated);
      tf.dispose(Object.values(genUpdated));
      // ema + (1 - d) (gen - ema): a convex combination, so rho stays within [0, 1].
      const decay = emaDecay(config.ema ?? 0, state.step);
      const ema = state.ema &&
        tidy(() => mapFlat(state.ema!, (e, k) => tf.add(e, tf.mul(tf.sub(gen[k], e), 1 - decay))));
      return {
        state: {
          step: state.step + 1,
          gen,
          dis,
          sn: snAfterG,
          ...(ema ? { ema } : {}),
          optG: optGState,
          optD: optDState,
        },
        terms: { ...dTerms, ...gTerms },
      };
    },

    translate(state, realA, realB) {
      const weights = state.ema ?? state.gen;
      return tidy(() => {
        // deno-lint-ignore no-explicit-any
        const [ab, ba] = [subtree(weights, "genA2B") as any, subtree(weights, "genB2A") as any];
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
  tf.dispose([
    ...Object.values(state.gen),
    ...Object.values(state.ema ?? {}),
    ...Object.values(state.dis),
    ...Object.values(state.sn),
    ...collectTensors(state.optG),
    ...collectTensors(state.optD),
  ]);
}

/**
 * Every tensor inside a value (objects and arrays walked).
 * @param value anything
 * @returns its tensors
 */
export function collectTensors(value: unknown): tf.Tensor[] {
  if (value instanceof tf.Tensor) return [value];
  if (value && typeof value === "object") return Object.values(value).flatMap(collectTensors);
  return [];
}
