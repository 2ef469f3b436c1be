/**
 * Projections applied to parameters after an update (optax's `projections`): U-GAT-IT's rho
 * clipping.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { clipRho } from "./projections.ts";
 * const p = clipRho({ up: [{ norm: { rho: tf.tensor1d([-0.5, 0.5, 1.5]) } }] });
 * console.log(p.up[0].norm.rho.dataSync()); // [0, 0.5, 1]
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { map, tidy, type TreeLike } from "../tree/tree.ts";

/**
 * The reference's rho clipping: every AdaLIN and ILN `rho` (paths ending in `.rho`) clipped to
 * [0, 1]; other parameters are copied.
 * @param params parameters (a generator's, or a record of generators)
 * @returns the projected parameters (the caller owns them)
 */
export function clipRho<P extends TreeLike>(params: P): P {
  return tidy(() =>
    map(params, (p, path) => (path.endsWith(".rho") ? tf.clipByValue(p, 0, 1) : p.clone()))
  );
}
