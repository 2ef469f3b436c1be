/**
 * Optimisation as small pure transformations in the optax manner: each is `init(params) ->
 * state` and `update(grads, state, params) -> [updates, state]`, composed with `chain`. Adam
 * with the reference's coupled weight decay (added to the gradient before the moments, as
 * torch.optim.Adam does) is `chain(addDecayedWeights(wd), scaleByAdam(...),
 * scaleByLearningRate(schedule))`. Parameters are flat records `{ dottedPath: tensor }`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { flow } from "fp-ts/function";
import { tidy } from "../layers/tree.ts";
import { ADAM_UPDATE } from "../backends/js_kernels.ts";

let fusedAdamAllowed = true;

/**
 * Turns the one-kernel Adam update off (the composed chain everywhere) or back on; it is used only
 * where the active backend has it (wasm, cpu, native-cpu). For tests and comparisons.
 * @param on whether to use it
 */
export function setFusedAdam(on: boolean): void {
  fusedAdamAllowed = on;
}

function fusedAdamHere(): boolean {
  return fusedAdamAllowed && tf.getKernel(ADAM_UPDATE, tf.getBackend()) !== undefined;
}

/** Flat parameters (or gradients, or updates) by dotted path. */
export type Flat = Readonly<Record<string, tf.Tensor>>;

/** A gradient transformation. */
export interface GradientTransformation<S> {
  /** The initial state for these parameters. */
  init(params: Flat): S;
  /** Transforms gradients into updates; returns the new state. Neither input is disposed. */
  update(grads: Flat, state: S, params: Flat): [Flat, S];
}

/** A learning-rate schedule: 1-based step -> rate. */
export type Schedule = (step: number) => number;

/**
 * The reference's schedule: constant, then (with `decay`) linear to 0 over the second half; at
 * step `s > T/2` the rate is `lr * (1 - (s - T/2) / (T/2))` with `T/2 = floor(iterations / 2)`.
 * @param lr the base rate
 * @param iterations T
 * @param decay `--decay_flag`
 * @returns the schedule
 */
export function referenceSchedule(lr: number, iterations: number, decay: boolean): Schedule {
  const half = Math.floor(iterations / 2);
  return (
    step,
  ) => (decay && half > 0 && step > half ? lr * Math.max(0, 1 - (step - half) / half) : lr);
}

/** Applies `fn` to every tensor of a flat record, keeping the keys. */
export const mapFlat = (a: Flat, fn: (t: tf.Tensor, k: string) => tf.Tensor): Flat =>
  Object.fromEntries(Object.entries(a).map(([k, t]) => [k, fn(t, k)]));

/**
 * Adds `decay * param` to each gradient (coupled L2 weight decay).
 * @param decay the coefficient
 * @returns the transformation (stateless)
 */
export function addDecayedWeights(decay: number): GradientTransformation<Record<never, never>> {
  return {
    init: () => ({}),
    update: (
      grads,
      state,
      params,
    ) => [tidy(() => mapFlat(grads, (g, k) => tf.add(g, tf.mul(params[k], decay)))), state],
  };
}

/** Adam's state: the step count and the two moment estimates. */
export interface AdamState {
  /** Updates applied so far. */
  readonly count: number;
  /** First moments. */
  readonly mu: Flat;
  /** Second moments. */
  readonly nu: Flat;
}

/**
 * Adam's rescaling: `mhat / (sqrt(vhat) + eps)` with bias-corrected moments.
 * @param options betas and eps (defaults: the reference's 0.5, 0.999, 1e-8)
 * @returns the transformation
 */
export function scaleByAdam(
  { b1 = 0.5, b2 = 0.999, eps = 1e-8 }: { b1?: number; b2?: number; eps?: number } = {},
): GradientTransformation<AdamState> {
  return {
    init: (params) => ({
      count: 0,
      mu: mapFlat(params, (p) => tf.zerosLike(p)),
      nu: mapFlat(params, (p) => tf.zerosLike(p)),
    }),
    update(grads, state) {
      const count = state.count + 1;
      const c1 = 1 - b1 ** count;
      const c2 = 1 - b2 ** count;
      return tidy(() => {
        const mu = mapFlat(grads, (g, k) => tf.add(tf.mul(state.mu[k], b1), tf.mul(g, 1 - b1)));
        const nu = mapFlat(
          grads,
          (g, k) => tf.add(tf.mul(state.nu[k], b2), tf.mul(tf.square(g), 1 - b2)),
        );
        const updates = mapFlat(
          mu,
          (m, k) => tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(nu[k], c2)), eps)),
        );
        return [updates, { count, mu, nu }] as [Flat, AdamState];
      });
    },
  };
}

/**
 * Multiplies updates by `-schedule(step)` (descent), with its own step count.
 * @param schedule the learning rate per 1-based step
 * @returns the transformation
 */
export function scaleByLearningRate(
  schedule: Schedule,
): GradientTransformation<{ readonly count: number }> {
  return {
    init: () => ({ count: 0 }),
    update(grads, state) {
      const count = state.count + 1;
      const lr = schedule(count);
      return [tidy(() => mapFlat(grads, (g) => tf.mul(g, -lr))), { count }];
    },
  };
}

/**
 * Composes transformations left to right; the state is the list of their states. Each
 * transformation is a step from (updates, states so far) to the next; the chain is their `flow`.
 * @param ts the transformations
 * @returns their composition
 */
// deno-lint-ignore no-explicit-any
export function chain(...ts: GradientTransformation<any>[]): GradientTransformation<unknown[]> {
  type Acc = { readonly updates: Flat; readonly states: readonly unknown[] };
  return {
    init: (params) => ts.map((t) => t.init(params)),
    update(grads, state, params) {
      // deno-lint-ignore no-explicit-any
      const step = (t: GradientTransformation<any>, i: number) => (acc: Acc): Acc => {
        const [updates, s] = t.update(acc.updates, state[i], params);
        if (acc.updates !== grads) tf.dispose(Object.values(acc.updates)); // an earlier step's
        return { updates, states: [...acc.states, s] };
      };
      const all = ts.map(step).reduce((f, g) => flow(f, g), (acc: Acc) => acc);
      const { updates, states } = all({ updates: grads, states: [] });
      return [updates, [...states]];
    },
  };
}

/**
 * The reference's optimiser: Adam (0.5, 0.999, 1e-8) with coupled weight decay and its schedule.
 * It is the chain of the three transformations above; where the backend has our Adam kernel
 * (wasm, cpu, native-cpu) the chain runs as one kernel per tensor, with the same state layout.
 * @param options lr, weight decay, iterations, decay flag
 * @returns the transformation
 */
export function referenceAdam(
  { lr, weightDecay, iterations, decay }: {
    lr: number;
    weightDecay: number;
    iterations: number;
    decay: boolean;
  },
): GradientTransformation<unknown[]> {
  const [b1, b2, eps] = [0.5, 0.999, 1e-8];
  const schedule = referenceSchedule(lr, iterations, decay);
  const composed = chain(
    addDecayedWeights(weightDecay),
    scaleByAdam({ b1, b2, eps }),
    scaleByLearningRate(schedule),
  );
  return {
    init: composed.init,
    update(grads, state, params) {
      if (!fusedAdamHere()) return composed.update(grads, state, params);
      // The same chain as one kernel per tensor, with the chain's state layout.
      const [decayState, adam, lrState] = state as [
        Record<never, never>,
        AdamState,
        { count: number },
      ];
      const count = adam.count + 1;
      const attrs = {
        weightDecay,
        b1,
        b2,
        eps,
        c1: 1 - b1 ** count,
        c2: 1 - b2 ** count,
        lr: schedule(lrState.count + 1),
      } as unknown as tf.NamedAttrMap;
      const updates: Record<string, tf.Tensor> = {};
      const mu: Record<string, tf.Tensor> = {};
      const nu: Record<string, tf.Tensor> = {};
      for (const [k, g] of Object.entries(grads)) {
        const inputs = { g, p: params[k], m: adam.mu[k], v: adam.nu[k] };
        [updates[k], mu[k], nu[k]] = tf.engine().runKernel(
          ADAM_UPDATE,
          inputs,
          attrs,
        ) as tf.Tensor[];
      }
      return [updates, [decayState, { count, mu, nu }, { count: lrState.count + 1 }]];
    },
  };
}

export function applyUpdates(params: Flat, updates: Flat): Flat {
  return tidy(() => mapFlat(params, (p, k) => tf.add(p, updates[k])));
}

/**
 * The reference's rho clipping: every AdaLIN and ILN `rho` (paths ending in `.rho`) clipped to
 * [0, 1]; other parameters are copied.
 * @param params the generator's parameters
 * @returns the projected parameters
 */
export function clipRho(params: Flat): Flat {
  return tidy(() =>
    mapFlat(params, (p, k) => (k.endsWith(".rho") ? tf.clipByValue(p, 0, 1) : p.clone()))
  );
}
