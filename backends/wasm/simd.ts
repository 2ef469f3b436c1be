/**
 * WebAssembly SIMD versions of the per-element passes of our norm and Adam kernels
 * (`simd.wat`), run on the wasm backend's own memory: 2 to 8 times the speed of the same loops in
 * JavaScript. Each pass says whether it ran (false: the arrays are not in its memory, or the
 * channel count is not a multiple of 4), and the caller then runs its JavaScript loop.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
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
   * One Adam step (see `adamUpdate` in `../cpu/js_kernels.ts`) over the first elements, a multiple of 4.
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

/** Floats in each of the staged passes' three buffers (256 KiB: they stay in the L2 cache). */
export const STAGE_FLOATS = 1 << 16;

let staged: SimdPasses | null | undefined;

/**
 * The passes for arrays in JavaScript memory (the native-cpu backend's), through a WebAssembly
 * memory of their own: each pass copies a block of whole pixels in, runs in SIMD there and copies
 * the result out, block after block. The copies cost far less than the SIMD saves over the
 * JavaScript loops (`deno run tools/bench_norms.ts` times both; BENCHMARKS.md has the figures).
 * Adam stages its seven arrays in smaller blocks of the same memory: its square root and division
 * per element cost the JavaScript loop more than the copies cost here.
 * @returns the passes, or undefined where this runtime has no WebAssembly SIMD
 */
export function stagedPasses(): SimdPasses | undefined {
  if (staged === undefined) {
    const bytes = SCRATCH_BYTES + 3 * 4 * STAGE_FLOATS;
    const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) });
    const direct = simdPasses(memory, 0); // the scratch area first, then the buffers
    const buf = [0, 1, 2].map((i) =>
      new Float32Array(memory.buffer, SCRATCH_BYTES + 4 * i * STAGE_FLOATS, STAGE_FLOATS)
    );
    // Blocks of whole pixels: [first pixel, pixel count] pairs over hw pixels of c channels.
    const blocks = function* (hw: number, c: number) {
      const per = Math.floor(STAGE_FLOATS / c);
      for (let p = 0; p < hw; p += per) yield [p, Math.min(per, hw - p)];
    };
    const stage = (src: Float32Array, into: Float32Array, from: number, count: number) =>
      into.set(src.subarray(from, from + count));
    // Adam's four inputs and three outputs share the three buffers' space, in seven blocks.
    const adamBlock = Math.floor((3 * STAGE_FLOATS) / 7 / 4) * 4;
    const adamBuf = Array.from(
      { length: 7 },
      (_, i) => new Float32Array(memory.buffer, SCRATCH_BYTES + 4 * i * adamBlock, adamBlock),
    );
    staged = direct
      ? {
        channelSums(a, b, off, hw, c, sa, sab) {
          if (c % 4 !== 0 || c > STAGE_FLOATS) return false;
          const [ta, tb] = [new Float64Array(c), new Float64Array(c)];
          sa.fill(0, 0, c);
          sab.fill(0, 0, c);
          for (const [p, k] of blocks(hw, c)) {
            stage(a, buf[0], off + p * c, k * c);
            if (b !== a) stage(b, buf[1], off + p * c, k * c);
            // (Each block asks what the first did: a pass that declines does so on the first.)
            if (!direct.channelSums(buf[0], b === a ? buf[0] : buf[1], 0, k, c, ta, tb)) {
              return false;
            }
            for (let ch = 0; ch < c; ch++) {
              sa[ch] += ta[ch];
              sab[ch] += tb[ch];
            }
          }
          return true;
        },
        affine(x, y, off, hw, c, sc, t) {
          if (c % 4 !== 0 || c > STAGE_FLOATS) return false;
          for (const [p, k] of blocks(hw, c)) {
            stage(x, buf[0], off + p * c, k * c);
            if (!direct.affine(buf[0], buf[1], 0, k, c, sc, t)) return false;
            y.set(buf[1].subarray(0, k * c), off + p * c);
          }
          return true;
        },
        affine2(a, b, out, off, hw, c, p2, q, r) {
          if (c % 4 !== 0 || c > STAGE_FLOATS) return false;
          for (const [p, k] of blocks(hw, c)) {
            stage(a, buf[0], off + p * c, k * c);
            stage(b, buf[1], off + p * c, k * c);
            if (!direct.affine2(buf[0], buf[1], buf[2], 0, k, c, p2, q, r)) return false;
            out.set(buf[2].subarray(0, k * c), off + p * c);
          }
          return true;
        },
        adam(arrays, k) {
          const { g, p, m, v, update, mOut, vOut } = arrays;
          const n = g.length - g.length % 4;
          const [ins, outs] = [[g, p, m, v], [update, mOut, vOut]];
          for (let off = 0; off < n; off += adamBlock) {
            const count = Math.min(adamBlock, n - off);
            ins.forEach((x, i) => stage(x, adamBuf[i], off, count));
            const b = adamBuf.map((x) => x.subarray(0, count));
            const views = {
              g: b[0],
              p: b[1],
              m: b[2],
              v: b[3],
              update: b[4],
              mOut: b[5],
              vOut: b[6],
            };
            if (direct.adam(views, k) !== count) return off; // declined: the rest is the caller's
            outs.forEach((x, i) => x.set(b[4 + i], off));
          }
          return n;
        },
      }
      : null;
  }
  return staged ?? undefined;
}

const byBackend = new WeakMap<object, SimdPasses | null>();

/**
 * The passes for a backend's tensors: on the wasm backend (its memory, a scratch area taken from
 * its allocator once), on native-cpu staged ({@linkcode stagedPasses}), else none. Call before a
 * kernel allocates or takes views: the first call allocates, which may grow the memory.
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
      : backend === tf.findBackend("native-cpu") // not cpu: it stays the plain reference
      ? stagedPasses() ?? null
      : null;
    byBackend.set(backend, passes);
  }
  return passes ?? undefined;
}
