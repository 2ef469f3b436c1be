/**
 * Layer-instance normalisation as one op of ours, the core of AdaLIN, ILN and instance norm:
 * `y = (rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta` per sample, with IN over H and W per
 * channel and LN over H, W and C, eps 1e-5, the variance unbiased or biased (`unbiased`);
 * `mixLn: false` is plain IN (rho unused). Kernels `UgatitLayerInstanceNorm` / `...Grad` (two
 * passes forward and two backward, where composed from tfjs ops one AdaLIN is about 30 kernels
 * forward and 60 backward) where the backend registers them; the composed ops elsewhere.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { layerInstanceNorm } from "./lin_norm.ts";
 * const x = tf.randomNormal([2, 8, 8, 4]) as tf.Tensor4D;
 * const y = layerInstanceNorm(x, { rho: tf.fill([4], 0.5) as tf.Tensor1D }, {
 *   unbiased: true,
 *   mixLn: true,
 * });
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The forward kernel's name: inputs `{x, rho, gamma, beta}`, outputs `[y, stats]`. */
export const LIN_NORM = "UgatitLayerInstanceNorm";
/** The backward kernel's name: inputs `{dy, x, stats, rho, gamma}`, outputs `[dx, drho, dgamma, dbeta]`. */
export const LIN_NORM_GRAD = "UgatitLayerInstanceNormGrad";
/** The attributes of both kernels. */
export interface LinNormAttrs {
  /** Divide the squared deviations by count - 1. */
  readonly unbiased: boolean;
  /** Mix in LN by rho (false: plain IN). */
  readonly mixLn: boolean;
}

/** The op's per-channel and per-sample parameters; absent ones are 1 (rho, gamma) and 0 (beta). */
export interface LinNormParams {
  /** `[C]`, the IN/LN mix (with `mixLn`). */
  readonly rho?: tf.Tensor1D;
  /** `[N, C]` per sample, or `[C]` per channel. */
  readonly gamma?: tf.Tensor;
  /** `[N, C]` per sample, or `[C]` per channel. */
  readonly beta?: tf.Tensor;
}

const EPS = 1e-5;

/**
 * Normalises over `axes` with tfjs's moments: `(x - mean) / sqrt(var + 1e-5)`.
 * @param x `[N, H, W, C]`
 * @param axes `[1, 2]` (IN) or `[1, 2, 3]` (LN)
 * @param unbiased divide the squared deviations by count - 1
 * @returns `[N, H, W, C]`
 */
export function normalizeOver(x: tf.Tensor4D, axes: number[], unbiased: boolean): tf.Tensor4D {
  const n = axes.reduce((p, a) => p * x.shape[a], 1);
  const { mean, variance } = tf.moments(x, axes, true);
  const v = unbiased ? tf.mul(variance, n / (n - 1)) : variance;
  return tf.div(tf.sub(x, mean), tf.sqrt(tf.add(v, EPS)));
}

// The composed fallback.
function composed(
  x: tf.Tensor4D,
  { rho, gamma, beta }: LinNormParams,
  { unbiased, mixLn }: LinNormAttrs,
): tf.Tensor4D {
  let mixed = normalizeOver(x, [1, 2], unbiased);
  if (mixLn) {
    const lnorm = normalizeOver(x, [1, 2, 3], unbiased);
    mixed = tf.add(tf.mul(rho!, mixed), tf.mul(tf.sub(1, rho!), lnorm));
  }
  if (!gamma || !beta) return mixed;
  if (gamma.rank === 1) return tf.add(tf.mul(mixed, gamma), beta);
  const [n, , , c] = x.shape;
  return tf.add(tf.mul(mixed, tf.reshape(gamma, [n, 1, 1, c])), tf.reshape(beta, [n, 1, 1, c]));
}

// One customGrad per attribute set: the op taped as one node, its gradient one kernel.
function kernelOp(attrs: LinNormAttrs) {
  const named = attrs as unknown as tf.NamedAttrMap;
  return tf.customGrad((x, rho, gamma, beta, save) => {
    const inputs = { x, rho, gamma, beta } as unknown as tf.NamedTensorMap;
    const [y, stats] = tf.engine().runKernel(LIN_NORM, inputs, named) as tf.Tensor[];
    (save as tf.GradSaveFunc)([x as tf.Tensor, stats, rho as tf.Tensor, gamma as tf.Tensor]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, st, r, g] = saved;
        const grads = { dy, x: xs, stats: st, rho: r, gamma: g } as unknown as tf.NamedTensorMap;
        return tf.engine().runKernel(LIN_NORM_GRAD, grads, named) as tf.Tensor[];
      },
    };
  });
}
const kernelOps = new Map<string, ReturnType<typeof kernelOp>>();

// The kernel with gamma and beta as [N, C] (ones and zeros where absent).
function withKernel(
  x: tf.Tensor4D,
  { rho, gamma, beta }: LinNormParams,
  attrs: LinNormAttrs,
): tf.Tensor4D {
  const key = `${attrs.unbiased} ${attrs.mixLn}`;
  if (!kernelOps.has(key)) kernelOps.set(key, kernelOp(attrs));
  const [n, , , c] = x.shape;
  const nc = (t: tf.Tensor | undefined, fill: number) =>
    t === undefined ? tf.fill([n, c], fill) : t.rank === 1 ? tf.broadcastTo(t, [n, c]) : t;
  return kernelOps.get(key)!(x, rho ?? tf.ones([c]), nc(gamma, 1), nc(beta, 0)) as tf.Tensor4D;
}

/**
 * The op: `(rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta`, or with `mixLn: false`
 * `IN(x) * gamma + beta`.
 * @param x `[N, H, W, C]`
 * @param params rho `[C]`; gamma and beta `[N, C]` or `[C]` (both or neither)
 * @param attrs unbiased variance, LN mixed in
 * @returns `[N, H, W, C]`
 */
export function layerInstanceNorm(
  x: tf.Tensor4D,
  params: LinNormParams,
  attrs: LinNormAttrs,
): tf.Tensor4D {
  return tidy(() =>
    kernelHere(LIN_NORM) ? withKernel(x, params, attrs) : composed(x, params, attrs)
  );
}

// Values and gradients (against fixed random weights on the output), from seeded inputs.
function normCase(
  shape: [number, number, number, number],
  seed: number,
  attrs: LinNormAttrs,
  { mean = 0, perChannel = false } = {},
) {
  return () =>
    tf.tidy(() => {
      const [n, , , c] = shape;
      const rand = (s: number[], k: number, m = 0, sd = 1) =>
        tf.randomNormal(s, m, sd, "float32", seed + k);
      // A large mean checks that the sums lose nothing to cancellation in float32.
      const x = rand(shape, 1, mean, 2) as tf.Tensor4D;
      const rho = tf.randomUniform([c], 0, 1, "float32", seed + 2) as tf.Tensor1D;
      const side = perChannel ? [c] : [n, c];
      const gamma = rand(side, 3, 1, 0.5);
      const beta = rand(side, 4);
      const w = rand(shape, 5);
      const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, r: tf.Tensor = rho) =>
        tf.sum(tf.mul(
          layerInstanceNorm(a as tf.Tensor4D, { rho: r as tf.Tensor1D, gamma: g, beta: b }, attrs),
          w,
        )) as tf.Scalar;
      // Plain IN does not read rho: no gradient to take with respect to it.
      const { value, grads } = tf.valueAndGrads(f)([x, gamma, beta, ...(attrs.mixLn ? [rho] : [])]);
      const [dx, dgamma, dbeta, drho] = grads;
      const y = layerInstanceNorm(x, { rho, gamma, beta }, attrs);
      return { y, value, dx, dgamma, dbeta, ...(drho ? { drho } : {}) };
    });
}

const MIX = { unbiased: true, mixLn: true };
const IN = { unbiased: false, mixLn: false };

/** The contract: AdaLIN (gamma, beta per sample), ILN (per channel) and IN, values and gradients. */
export const linNormContract: OpContract = {
  kernels: [LIN_NORM, LIN_NORM_GRAD],
  cases: [
    ...([[2, 5, 7, 12], [1, 9, 11, 3], [2, 16, 9, 8]] as const).flatMap((s, i) => [
      { name: `adaLin [${s}]`, run: normCase([...s], 10 * i + 1, MIX) },
      { name: `iln [${s}]`, run: normCase([...s], 10 * i + 21, MIX, { perChannel: true }) },
      { name: `instance norm [${s}]`, run: normCase([...s], 10 * i + 41, IN, { mean: 50 }) },
    ]),
  ].map((c) => ({ ...c, tolerance: 1e-4 })).concat({
    // Far from zero the composed float32 sums lose digits to cancellation (the kernels' do not).
    name: "adaLin [2, 12, 12, 16], mean 100",
    run: normCase([2, 12, 12, 16], 7, MIX, { mean: 100 }),
    tolerance: 1e-3,
  }),
};
