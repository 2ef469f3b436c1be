/**
 * Spectral normalisation as `torch.nn.utils.spectral_norm` computes it, as a stateful layer:
 * the power-iteration vectors `u` and `v` live in an explicit state next to the parameters, and
 * `apply` returns the new state next to its output (equinox's `(out, state) = apply(...)`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { tidy } from "../tree/tree.ts";
import { powerIterationSigma } from "../ops/spectral_sigma.ts";
import { type Key, splitKey, unitNormal } from "./init.ts";

/** Power-iteration vectors: `u` `[rows]`, `v` `[cols]` of the weight's matrix view. */
export interface SpectralNormState {
  /** Left singular vector estimate, length = output features. */
  readonly u: tf.Tensor1D;
  /** Right singular vector estimate, length = in * kh * kw. */
  readonly v: tf.Tensor1D;
}

/**
 * Stops gradients: the identity forward, a zero gradient backward (tfjs has no such op).
 * @param x any tensor
 * @returns a copy of `x` through which no gradient flows
 */
export const stopGradient: <T extends tf.Tensor>(x: T) => T = tf.customGrad(
  (x) => ({ value: (x as tf.Tensor).clone(), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) }),
) as <T extends tf.Tensor>(x: T) => T;

/**
 * How a weight is seen as torch's matrix `W` (`[rows, cols]`) without moving it: `columns(w)` is
 * `W^T` with its rows in the weight's own order, and `layout(w)` says how `v` is reordered between
 * that order and torch's (a conv's `kh, kw, cin`; zeros for a linear weight, whose orders agree).
 */
export interface MatrixView {
  /** `W^T`, rows in the weight's order: a reshape, no copy. */
  columns(w: tf.Tensor): tf.Tensor2D;
  /** A conv weight's kernel size and input channels, else zeros. */
  layout(w: tf.Tensor): { kh: number; kw: number; cin: number };
}

/** A weight's torch matrix, with the copy-free view that spectral norm uses. */
export type WeightMatrix = ((w: tf.Tensor) => tf.Tensor2D) & { readonly view?: MatrixView };

/**
 * The matrix view of a conv weight, as torch takes it: HWIO `[kh, kw, in, out]` to
 * `[out, in * kh * kw]` in OIHW order, so that `u` and `v` match the reference's. Spectral norm
 * uses its `view`: the HWIO weight reshaped to `[kh * kw * in, out]`, with only `v` reordered.
 * @param w conv weight, HWIO
 * @returns `[out, in * kh * kw]`
 */
export const convWeightMatrix: WeightMatrix = Object.assign((w: tf.Tensor) => {
  const [kh, kw, cin, cout] = w.shape;
  return tf.reshape(tf.transpose(w, [3, 2, 0, 1]), [cout, cin * kh * kw]) as tf.Tensor2D;
}, {
  view: {
    columns: (w: tf.Tensor) => tf.reshape(w, [-1, w.shape[3]!]) as tf.Tensor2D,
    layout: (w: tf.Tensor) => ({ kh: w.shape[0], kw: w.shape[1]!, cin: w.shape[2]! }),
  },
});

/**
 * The matrix view of a linear weight: `[in, out]` to `[out, in]`; the weight itself is `W^T`.
 * @param w linear weight `[in, out]`
 * @returns `[out, in]`
 */
export const linearWeightMatrix: WeightMatrix = Object.assign(
  (w: tf.Tensor) => tf.transpose(w as tf.Tensor2D),
  {
    view: {
      columns: (w: tf.Tensor) => w as tf.Tensor2D,
      layout: () => ({ kh: 0, kw: 0, cin: 0 }),
    },
  },
);

/**
 * Draws the initial state for a weight whose matrix view is `[rows, cols]`: unit vectors from
 * N(0, 1), as torch does.
 * @param key the random key
 * @param rows output features
 * @param cols in * kh * kw
 * @returns `{ u: [rows], v: [cols] }`
 */
export function initSpectralNormState(key: Key, rows: number, cols: number): SpectralNormState {
  const [ku, kv] = splitKey(key, 2);
  return { u: unitNormal(ku, rows), v: unitNormal(kv, cols) };
}

/**
 * Normalises a weight by its largest singular value. In training mode it first runs one power
 * iteration `v = normalize(W^T u)`, `u = normalize(W v)` outside the gradient; in evaluation it
 * uses the stored vectors. Then `sigma = u . (W v)`, differentiated through `W` only.
 * @param w the raw weight (`weight_orig`), any layout
 * @param toMatrix its matrix view `[rows, cols]`
 * @param state `u` `[rows]`, `v` `[cols]`
 * @param training whether to update `u` and `v`
 * @returns `[w / sigma, new state]` (the same vectors, copied, in evaluation)
 */
export function spectralNormalize<T extends tf.Tensor>(
  w: T,
  toMatrix: WeightMatrix,
  state: SpectralNormState,
  training: boolean,
): [T, SpectralNormState] {
  return tidy(() => {
    const [sigma, next] = spectralSigma(w, toMatrix, state, training);
    return [tf.div(w, sigma) as T, next];
  });
}

/**
 * The largest singular value alone, as {@linkcode spectralNormalize} computes it (a layer can
 * then divide its output instead of its weight, e.g. by a different sigma per stacked batch).
 * @param w the raw weight (`weight_orig`), any layout
 * @param toMatrix its matrix view `[rows, cols]`
 * @param state `u` `[rows]`, `v` `[cols]`
 * @param training whether to update `u` and `v`
 * @returns `[sigma, new state]`
 */
export function spectralSigma(
  w: tf.Tensor,
  toMatrix: WeightMatrix,
  state: SpectralNormState,
  training: boolean,
): [tf.Scalar, SpectralNormState] {
  return tidy(() => {
    // A = W^T; with a view it is the weight itself reshaped, and v is reordered instead.
    const view: MatrixView = toMatrix.view ?? {
      columns: (t) => tf.transpose(toMatrix(t)),
      layout: () => ({ kh: 0, kw: 0, cin: 0 }),
    };
    const attrs = { training, ...view.layout(w) };
    const [sigma, u, v] = powerIterationSigma(view.columns(w), state.u, state.v, attrs);
    return [sigma, { u, v }] as [tf.Scalar, SpectralNormState];
  });
}

/**
 * Spectral norm for `passes` stacked batches, each seen by its own call of the layer: the state
 * advances once per pass, in order, and each pass gets its own sigma.
 * @param w the raw weight
 * @param toMatrix its matrix view
 * @param state the state before the first pass
 * @param training whether to run the power iterations
 * @param passes how many
 * @returns the sigmas (one per pass) and the state after the last (call it in a tidy scope: the
 *   states between passes are left to it)
 */
export function spectralSigmas(
  w: tf.Tensor,
  toMatrix: WeightMatrix,
  state: SpectralNormState,
  training: boolean,
  passes: number,
): [tf.Scalar[], SpectralNormState] {
  const sigmas: tf.Scalar[] = [];
  let s = state;
  for (let k = 0; k < passes; k++) {
    const [sigma, next] = spectralSigma(w, toMatrix, s, training);
    sigmas.push(sigma);
    s = next;
  }
  return [sigmas, s];
}
