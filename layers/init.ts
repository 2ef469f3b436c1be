/**
 * Explicit, seeded randomness for initialisation: a key is a 32-bit integer, split into
 * independent child keys as in jax's stax, and every random tensor is drawn from one key, so
 * `init(seed)` gives the same parameters on every backend.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** A random key: an unsigned 32-bit integer. */
export type Key = number;

// A 32-bit integer hash (the "lowbias32" finaliser): well-mixed children for nearby inputs.
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

// tfjs treats a seed of 0 as "no seed" (random): every draw offsets the key by one.
const seedOf = (key: Key): number => (key >>> 0) + 1;

/**
 * Splits a key into `n` independent child keys.
 * @param key the parent key
 * @param n how many children
 * @returns `n` keys
 */
export function splitKey(key: Key, n: number): Key[] {
  return Array.from({ length: n }, (_, i) => mix(mix(key >>> 0) + 0x9e3779b9 * (i + 1)));
}

/**
 * Draws `U(-bound, +bound)` of the given shape from one key.
 * @param key the random key
 * @param shape tensor shape
 * @param bound half-width of the interval
 * @returns a float32 tensor
 */
export function uniform(key: Key, shape: number[], bound: number): tf.Tensor {
  return tf.randomUniform(shape, -bound, bound, "float32", seedOf(key));
}

/**
 * PyTorch's default initialisation of conv and linear weights and biases:
 * `U(-1/sqrt(fan_in), +1/sqrt(fan_in))` with `fan_in = in * kh * kw`.
 * @param key the random key
 * @param shape tensor shape
 * @param fanIn the layer's fan-in
 * @returns a float32 tensor
 */
export function torchDefault(key: Key, shape: number[], fanIn: number): tf.Tensor {
  return uniform(key, shape, 1 / Math.sqrt(fanIn));
}

/**
 * Draws a unit-length vector from N(0, 1), as torch's spectral norm initialises `u` and `v`.
 * @param key the random key
 * @param n length
 * @returns a float32 tensor of shape [n]
 */
export function unitNormal(key: Key, n: number): tf.Tensor1D {
  return tf.tidy(() => {
    const x = tf.randomNormal([n], 0, 1, "float32", seedOf(key));
    return tf.div(x, tf.maximum(tf.norm(x), 1e-12));
  });
}
