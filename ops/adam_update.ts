/**
 * The reference optimiser's whole per-tensor update as one op of ours: coupled weight decay,
 * Adam's moments, bias correction and the learning rate (`optim/`'s `referenceAdam` chain) in one
 * pass, kernel `UgatitAdamUpdate`, where the composed ops take about fifteen. The composed
 * fallback is the chain's arithmetic in the chain's order.
 *
 * The step count and the learning rate come in as tensors, not attributes: what changes from one
 * iteration to the next is data, so that a compiled step (recorded once, replayed) stays right.
 * The bias corrections `1 - b^t` are computed from them as `-expm1(t log b)`, which keeps float32's
 * precision where `b^t` is close to 1 (`1 - 0.999` loses four digits in float32).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { adamUpdate } from "./adam_update.ts";
 * const [g, p, m, v] = [tf.ones([3]), tf.ones([3]), tf.zeros([3]), tf.zeros([3])];
 * const attrs = { weightDecay: 0, b1: 0.5, b2: 0.999, eps: 1e-8 };
 * const [update, m1, v1] = adamUpdate(g, p, m, v, tf.scalar(1), tf.scalar(0.1), attrs);
 * // update -0.1 everywhere
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere, readsAtOnce } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/**
 * The Adam kernel's name: inputs `{g, p, m, v, t, lr}` (`t`: the 1-based step count of this
 * update, `lr`: its learning rate, float32 scalars), outputs `[update, m, v]`, or with `apply`
 * `[p + update, m, v]`.
 */
export const ADAM_UPDATE = "UgatitAdamUpdate";
/** The Adam kernel's attributes. */
export interface AdamUpdateAttrs {
  /** Coupled L2 weight decay (added to the gradient). */
  readonly weightDecay: number;
  /** First-moment decay. */
  readonly b1: number;
  /** Second-moment decay. */
  readonly b2: number;
  /** Added to the root of the second moment. */
  readonly eps: number;
  /** Give the updated parameter `p + update` instead of the update (the step applied). */
  readonly apply?: boolean;
}

/**
 * Adam's bias correction `1 - b^t` on the host, in double precision (as torch.optim.Adam).
 * @param b a moment's decay
 * @param t the 1-based step count
 * @returns the correction
 */
export function biasCorrection(b: number, t: number): number {
  return 1 - b ** t;
}

/**
 * Adam's bias correction `1 - b^t` of a step count tensor: on the host where the count can be read
 * at once (the CPU backends, as {@linkcode biasCorrection}), else on the device in float32 as
 * `-expm1(t ln b)`.
 * @param b a moment's decay
 * @param t the step count (float32 scalar)
 * @returns `1 - b^t` (float32 scalar; the caller owns it)
 */
export function biasCorrectionOf(b: number, t: tf.Scalar): tf.Scalar {
  if (readsAtOnce()) return tf.scalar(biasCorrection(b, t.dataSync()[0]));
  return tidy(() => tf.neg(tf.expm1(tf.mul(t, Math.log(b)))));
}

/**
 * One Adam step composed from tfjs ops: `g' = g + wd p`, `m = b1 m + (1 - b1) g'`,
 * `v = b2 v + (1 - b2) g'^2`, `update = -lr (m / c1) / (sqrt(v / c2) + eps)` with `c = 1 - b^t`.
 * @param g the gradient
 * @param p the parameter
 * @param m the first moment
 * @param v the second moment
 * @param t the 1-based step count of this update (float32 scalar)
 * @param lr the learning rate of this update (float32 scalar)
 * @param attrs decay, betas, eps
 * @returns `[update, m, v]`, each of `g`'s shape
 */
export function adamUpdateComposed(
  g: tf.Tensor,
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  t: tf.Scalar,
  lr: tf.Scalar,
  { weightDecay, b1, b2, eps, apply = false }: AdamUpdateAttrs,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tidy(() => {
    const gd = tf.add(g, tf.mul(p, weightDecay));
    const mu = tf.add(tf.mul(m, b1), tf.mul(gd, 1 - b1));
    const nu = tf.add(tf.mul(v, b2), tf.mul(tf.square(gd), 1 - b2));
    const [c1, c2] = [biasCorrectionOf(b1, t), biasCorrectionOf(b2, t)];
    const scaled = tf.div(tf.div(mu, c1), tf.add(tf.sqrt(tf.div(nu, c2)), eps));
    const update = tf.mul(scaled, tf.neg(lr));
    return [apply ? tf.add(p, update) : update, mu, nu];
  });
}

/**
 * One Adam step: our kernel where the backend has it, else {@linkcode adamUpdateComposed}.
 * @param g the gradient
 * @param p the parameter
 * @param m the first moment
 * @param v the second moment
 * @param t the 1-based step count of this update (float32 scalar)
 * @param lr the learning rate of this update (float32 scalar)
 * @param attrs decay, betas, eps; `apply` for the updated parameter in place of the update
 * @returns `[update, m, v]` (or `[p + update, m, v]`), each of `g`'s shape (the caller owns them)
 */
export function adamUpdate(
  g: tf.Tensor,
  p: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  t: tf.Scalar,
  lr: tf.Scalar,
  attrs: AdamUpdateAttrs,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  if (!kernelHere(ADAM_UPDATE)) return adamUpdateComposed(g, p, m, v, t, lr, attrs);
  return tf.engine().runKernel(
    ADAM_UPDATE,
    { g, p, m, v, t, lr },
    attrs as unknown as tf.NamedAttrMap,
  ) as [tf.Tensor, tf.Tensor, tf.Tensor];
}

/** The contract: three steps from seeded parameters and gradients. */
export const adamUpdateContract: OpContract = {
  kernels: [ADAM_UPDATE],
  cases: ([[3, 5], [7], [2, 3, 4, 5]] as const).map((shape, i) => ({
    name: `[${shape}], three steps`,
    tolerance: 1e-4,
    run: () =>
      tf.tidy(() => {
        let p = tf.randomNormal([...shape], 0, 1, "float32", 81 + i);
        let [m, v] = [tf.zerosLike(p), tf.zerosLike(p)];
        for (let t = 1; t <= 3; t++) {
          const g = tf.randomNormal([...shape], 0, 1, "float32", 91 + 10 * i + t);
          const attrs = { weightDecay: 1e-4, b1: 0.5, b2: 0.999, eps: 1e-8, apply: t % 2 === 1 };
          const [u, m1, v1] = adamUpdate(g, p, m, v, tf.scalar(t), tf.scalar(1e-2), attrs);
          [p, m, v] = [attrs.apply ? u : tf.add(p, u), m1, v1];
        }
        return { p, m, v };
      }),
  })),
};
