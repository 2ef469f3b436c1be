/**
 * WebAssembly SIMD versions of the per-element passes of our norm and Adam kernels
 * (`simd.wat`), run on the wasm backend's own memory: 2 to 8 times the speed of the same loops in
 * JavaScript. Each pass says whether it ran (false: the arrays are not in its memory, or the
 * channel count is not a multiple of 4), and the caller then runs its JavaScript loop.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { SIMD_WASM_BASE64 } from "./simd_wasm.ts";

/** The passes, on Float32Array views of the memory they were made for (`off` in elements). */
export interface SimdPasses {
  /** Per channel over `hw` pixels of `c` from `off`: `sa = sum a`, `sab = sum a b`, in doubles. */
  channelSums(
    a: Float32Array,
    b: Float32Array,
    off: number,
    hw: number,
    c: number,
    sa: Float64Array,
    sab: Float64Array,
  ): boolean;
  /** `y = x s[ch] + t[ch]` over `hw` pixels of `c` from `off`. */
  affine(
    x: Float32Array,
    y: Float32Array,
    off: number,
    hw: number,
    c: number,
    s: Float64Array,
    t: Float64Array,
  ): boolean;
  /** `out = a p[ch] + b q[ch] + r[ch]` over `hw` pixels of `c` from `off`. */
  affine2(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    off: number,
    hw: number,
    c: number,
    p: Float64Array,
    q: Float64Array,
    r: Float64Array,
  ): boolean;
  /**
   * One Adam step (see `adamUpdate` in `js_kernels.ts`) over the first elements, a multiple of 4.
   * @returns how many elements it did (the rest are the caller's)
   */
  adam(
    arrays: {
      g: Float32Array;
      p: Float32Array;
      m: Float32Array;
      v: Float32Array;
      update: Float32Array;
      mOut: Float32Array;
      vOut: Float32Array;
    },
    k: { weightDecay: number; b1: number; b2: number; eps: number; step: number; root: number },
  ): number;
}

interface Exports {
  channel_sums(a: number, b: number, hw: number, c: number, sa: number, sab: number): void;
  affine(x: number, y: number, hw: number, c: number, s: number, t: number): void;
  affine2(
    a: number,
    b: number,
    out: number,
    hw: number,
    c: number,
    p: number,
    q: number,
    r: number,
  ): void;
  adam(...args: number[]): void;
}

let compiled: WebAssembly.Module | null | undefined;

// The module, compiled once; null where this runtime has no WebAssembly SIMD.
function module(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(
        Uint8Array.from(atob(SIMD_WASM_BASE64), (ch) => ch.charCodeAt(0)),
      );
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** Bytes of the scratch area the passes keep their per-channel vectors in. */
export const SCRATCH_BYTES = 1 << 16;

/**
 * The passes on one WebAssembly memory.
 * @param memory the memory the tensors are in
 * @param scratch where in it {@linkcode SCRATCH_BYTES} bytes are the passes' own (16-aligned)
 * @returns the passes, or undefined where this runtime has no WebAssembly SIMD
 */
export function simdPasses(memory: WebAssembly.Memory, scratch: number): SimdPasses | undefined {
  const mod = module();
  if (!mod) return undefined;
  const k = new WebAssembly.Instance(mod, { env: { memory } }).exports as unknown as Exports;
  // Byte addresses of views into the memory; undefined when one is not in it.
  const at = (off: number, ...xs: Float32Array[]) =>
    xs.every((x) => x.buffer === memory.buffer) ? xs.map((x) => x.byteOffset + 4 * off) : undefined;
  const fits = (c: number, vectors: number) => c % 4 === 0 && c * 8 * vectors <= SCRATCH_BYTES;
  // Per-channel vectors into the scratch area as floats, one after another.
  const put = (c: number, ...vs: Float64Array[]) => {
    const f = new Float32Array(memory.buffer, scratch, c * vs.length);
    vs.forEach((v, i) => f.set(v.subarray(0, c), i * c));
    return vs.map((_, i) => scratch + 4 * c * i);
  };
  return {
    channelSums(a, b, off, hw, c, sa, sab) {
      const p = at(off, a, b);
      if (!p || !fits(c, 2)) return false;
      k.channel_sums(p[0], p[1], hw, c, scratch, scratch + 8 * c);
      const d = new Float64Array(memory.buffer, scratch, 2 * c);
      sa.set(d.subarray(0, c));
      sab.set(d.subarray(c));
      return true;
    },
    affine(x, y, off, hw, c, s, t) {
      const p = at(off, x, y);
      if (!p || !fits(c, 1)) return false;
      const [ps, pt] = put(c, s, t);
      k.affine(p[0], p[1], hw, c, ps, pt);
      return true;
    },
    affine2(a, b, out, off, hw, c, p, q, r) {
      const ptr = at(off, a, b, out);
      if (!ptr || !fits(c, 2)) return false;
      const [pp, pq, pr] = put(c, p, q, r);
      k.affine2(ptr[0], ptr[1], ptr[2], hw, c, pp, pq, pr);
      return true;
    },
    adam({ g, p, m, v, update, mOut, vOut }, { weightDecay, b1, b2, eps, step, root }) {
      const ptr = at(0, g, p, m, v, update, mOut, vOut);
      if (!ptr) return 0;
      const n = g.length - g.length % 4;
      k.adam(...ptr, 4 * n, weightDecay, b1, 1 - b1, b2, 1 - b2, eps, step, root);
      return n;
    },
  };
}

const byBackend = new WeakMap<object, SimdPasses | null>();

/**
 * The passes for a backend's tensors: on the wasm backend (its memory, a scratch area taken from
 * its allocator once), else none. Call before a kernel allocates or takes views: the first call
 * allocates, which may grow the memory.
 * @param backend the backend a kernel was given
 * @returns the passes, or undefined
 */
export function simdFor(backend: tf.KernelBackend): SimdPasses | undefined {
  let passes = byBackend.get(backend);
  if (passes === undefined) {
    const wasm = (backend as unknown as {
      wasm?: { asm?: { memory?: WebAssembly.Memory }; _malloc?(bytes: number): number };
    }).wasm;
    const memory = wasm?.asm?.memory;
    passes = memory instanceof WebAssembly.Memory && wasm?._malloc
      ? simdPasses(memory, wasm._malloc(SCRATCH_BYTES + 16) + 15 & ~15) ?? null
      : null;
    byBackend.set(backend, passes);
  }
  return passes ?? undefined;
}
