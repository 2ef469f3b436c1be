/**
 * The norms' and Adam's per-element passes on arrays in JavaScript memory (native-cpu's), in
 * JavaScript and staged through WebAssembly SIMD (`backends/wasm/simd.ts`), same run: one norm forward
 * and backward at a 256-pixel, 64-channel activation (the paper's size and width), and one Adam
 * update of as many parameters:
 *
 *     deno run tools/bench_norms.ts [--side 256] [--ch 64] [--runs 5]
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import { adamUpdate } from "../backends/cpu/js_kernels.ts";
import { linNormBackward, linNormForward } from "../backends/cpu/norm_kernels.ts";
import { type SimdPasses, stagedPasses } from "../backends/wasm/simd.ts";

const args = parseArgs(Deno.args, { string: ["side", "ch", "runs"] });
const side = Number(args.side ?? 256);
const c = Number(args.ch ?? 64);
const runs = Number(args.runs ?? 5);
const [n, hw] = [1, side * side];
const x = Float32Array.from({ length: n * hw * c }, (_, i) => Math.sin(i));
const dy = Float32Array.from({ length: n * hw * c }, (_, i) => Math.cos(i));
const rho = new Float32Array(c).fill(0.5);
const gamma = new Float32Array(n * c).fill(1);
const beta = new Float32Array(n * c);
const stats = new Float32Array(n * (2 * c + 2));
const attrs = { unbiased: true, mixLn: true };

function pass(simd: SimdPasses | undefined) {
  const y = new Float32Array(x.length);
  linNormForward(x, rho, gamma, beta, y, stats, [n, hw, c], attrs, simd);
  const out = {
    dx: new Float32Array(x.length),
    drho: new Float32Array(c),
    dgamma: new Float32Array(n * c),
    dbeta: new Float32Array(n * c),
  };
  linNormBackward(dy, x, stats, rho, gamma, out, [n, hw, c], attrs, simd);
}

// One Adam update as the kernel runs it: the SIMD passes where given, JavaScript for the rest.
const adamIn = { g: dy, p: x, m: dy.map((v) => 0.1 * v), v: dy.map((v) => v * v) };
const adamAttrs = {
  weightDecay: 1e-4,
  b1: 0.5,
  b2: 0.999,
  eps: 1e-8,
  c1: 0.75,
  c2: 0.002,
  lr: 1e-4,
};
function adam(simd: SimdPasses | undefined) {
  const [update, mOut, vOut] = [0, 1, 2].map(() => new Float32Array(x.length));
  const arrays = { ...adamIn, update, mOut, vOut };
  const a = adamAttrs;
  const done = simd?.adam(arrays, { ...a, step: -a.lr / a.c1, root: 1 / Math.sqrt(a.c2) }) ?? 0;
  const { g, p, m, v } = adamIn;
  const rest = [g, p, m, v, update, mOut, vOut].map((t) => t.subarray(done));
  adamUpdate(rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], a);
}

const staged = stagedPasses();
if (!staged) throw new Error("this runtime has no WebAssembly SIMD");
for (const [what, run] of [["norm forward + backward", pass], ["Adam update", adam]] as const) {
  const ms: Record<string, number[]> = { javascript: [], staged: [] };
  for (let r = 0; r < runs + 2; r++) {
    // alternating, so that both share the machine's slow spells; the first two rounds warm up
    for (const [name, simd] of [["javascript", undefined], ["staged", staged]] as const) {
      const t = performance.now();
      run(simd);
      if (r >= 2) ms[name].push(performance.now() - t);
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  console.log(`${what}, ${side}x${side}x${c} floats, median of ${runs}:`);
  for (const [name, v] of Object.entries(ms)) {
    console.log(`  ${name.padEnd(10)} ${median(v).toFixed(1)} ms`);
  }
  console.log(`  staged / javascript: ${(median(ms.staged) / median(ms.javascript)).toFixed(2)}x`);
}
