/**
 * IEEE half precision (float16) to and from float32, for weight files stored at half the size.
 * Rounding is to the nearest, ties to even, as hardware converts; values beyond the half range
 * become infinities and tiny ones subnormals or zero.
 *
 * @example
 * ```ts
 * import { fromHalf, toHalf } from "./half.ts";
 * console.log(fromHalf(toHalf(new Float32Array([1, 0.1, 65504])))); // [1, 0.0999755859375, 65504]
 * ```
 *
 * @module
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Float32 values as float16 bit patterns.
 * @param values the values
 * @returns their half-precision patterns
 */
export function toHalf(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) { // infinity or NaN
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00; // too large: infinity
      continue;
    }
    if (e <= 0) { // subnormal half, or zero
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      let m = mant >>> shift;
      const rest = mant & ((1 << shift) - 1);
      if (rest > half || (rest === half && (m & 1))) m++;
      out[i] = sign | m;
      continue;
    }
    let h = sign | (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent: right
    out[i] = h;
  }
  return out;
}

/**
 * Float16 bit patterns as float32 values (exactly: every half is a float32).
 * @param bits the half-precision patterns
 * @returns the values
 */
export function fromHalf(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    out[i] = exp === 0
      ? sign * mant * 2 ** -24
      : exp === 0x1f
      ? (mant ? NaN : sign * Infinity)
      : sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}
