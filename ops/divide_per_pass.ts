/**
 * A stack of `P` equal batches divided batch by batch, batch k by the scalar `sigmas[k]`: a layer
 * with a spectrally normalised weight applied to stacked passes with the raw weight, each pass
 * then scaled by its own sigma (kernel `UgatitDividePerPass`, gradient
 * `UgatitDividePerPassGrad`). Composed, the forward pass stacks the sigmas and divides by
 * broadcasting (two kernels) and its gradient takes about eight; the kernels take one forward and
 * two back (the input's gradient, and every sigma's sum of `dy * y` in one reducing pass).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { dividePerPass } from "./divide_per_pass.ts";
 * const y = dividePerPass(tf.ones([2, 3]), [tf.scalar(2), tf.scalar(4)]); // rows 0.5 and 0.25
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { kernelHere } from "./kernel.ts";
import type { OpContract } from "./op_contract.ts";

/** The kernel's name: inputs `{y, s0, ..., s(P-1)}` (`y` float32, batch first; scalars). */
export const DIVIDE_PER_PASS = "UgatitDividePerPass";
/** The gradient's: inputs `{dy, y, s0, ...}`; outputs `dy`'s gradient, then each sigma's. */
export const DIVIDE_PER_PASS_GRAD = "UgatitDividePerPassGrad";

/** The names of the sigmas' inputs, `s0` to `s(P-1)`. */
export const sigmaInputs = (passes: number): string[] =>
  Array.from({ length: passes }, (_, k) => `s${k}`);

// The composed fallback: a broadcasting division over a [P, N / P, ...] view.
function composed<T extends tf.Tensor>(y: T, sigmas: tf.Scalar[]): T {
  const [n, ...rest] = y.shape;
  const p = sigmas.length;
  const s = tf.reshape(tf.stack(sigmas), [p, 1, ...rest.map(() => 1)]);
  return tf.reshape(tf.div(tf.reshape(y, [p, n / p, ...rest]), s), y.shape) as T;
}

// One customGrad per pass count: the op taped as one node, its gradient one kernel.
function kernelOp(passes: number) {
  const names = sigmaInputs(passes);
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [y, ...sigmas] = args as tf.Tensor[];
    const inputs = Object.fromEntries([["y", y], ...names.map((k, i) => [k, sigmas[i]])]);
    save([y, ...sigmas]);
    return {
      value: tf.engine().runKernel(DIVIDE_PER_PASS, inputs) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, [ys, ...ss]: tf.Tensor[]) =>
        tf.engine().runKernel(
          DIVIDE_PER_PASS_GRAD,
          Object.fromEntries([["dy", dy], ["y", ys], ...names.map((k, i) => [k, ss[i]])]),
        ) as tf.Tensor[],
    };
  });
}
const kernelOps = new Map<number, ReturnType<typeof kernelOp>>();

/**
 * Divides a stack of `sigmas.length` equal batches, batch k by `sigmas[k]`: our kernel where the
 * backend has it and there are several passes, else tfjs ops (one pass: a plain division).
 * @param y the layer's output on the stacked batches (any rank, batch first, float32)
 * @param sigmas one scalar per pass
 * @returns `y` divided pass by pass
 */
export function dividePerPass<T extends tf.Tensor>(y: T, sigmas: tf.Scalar[]): T {
  return tidy(() => {
    if (sigmas.length === 1) return tf.div(y, sigmas[0]) as T;
    if (!kernelHere(DIVIDE_PER_PASS)) return composed(y, sigmas);
    const p = sigmas.length;
    if (!kernelOps.has(p)) kernelOps.set(p, kernelOp(p));
    return kernelOps.get(p)!(y, ...sigmas) as T;
  });
}

/** The contract: values and gradients (of `y` and every sigma) for 2 and 3 passes. */
export const dividePerPassContract: OpContract = {
  kernels: [DIVIDE_PER_PASS, DIVIDE_PER_PASS_GRAD],
  backends: ["webgpu"],
  // (The last is past 32,768 elements, where webgpu's gradient leaves one workgroup.)
  cases: ([[[4, 3, 5, 2], 2], [[6, 7], 3], [[2, 300, 9], 2], [[2, 130, 130], 2]] as const).map((
    [shape, p],
    i,
  ) => ({
    name: `[${shape}] ${p} passes`,
    // The values and the input's gradient are the same divisions. A sigma's gradient sums up to
    // 16,900 products in another order than tfjs's sum; with positive terms nothing cancels, so
    // each order is within its depth of additions (under 100 here) times float32's eps, 6e-8.
    tolerance: 1e-5,
    run: () =>
      tf.tidy(() => {
        const y = tf.randomUniform([...shape], 0.5, 1.5, "float32", 71 + i);
        const sigmas = Array.from({ length: p }, (_, k) => tf.scalar(0.5 + k * 1.7));
        const w = tf.randomUniform([...shape], 0.5, 1.5, "float32", 81 + i);
        const f = (...v: tf.Tensor[]) =>
          tf.sum(tf.mul(dividePerPass(v[0], v.slice(1) as tf.Scalar[]), w)) as tf.Scalar;
        const { value, grads } = tf.valueAndGrads(f)([y, ...sigmas]);
        return {
          value,
          out: dividePerPass(y, sigmas),
          dy: grads[0],
          ...Object.fromEntries(grads.slice(1).map((g, k) => [`ds${k}`, g])),
        };
      }),
  })),
};
