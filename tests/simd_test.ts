import { assert, assertEquals } from "@std/assert";
import * as tf from "@tensorflow/tfjs";
import {
  SCRATCH_BYTES,
  simdFor,
  simdPasses,
  STAGE_FLOATS,
  stagedPasses,
} from "../backends/wasm/simd.ts";
import { selectBackend } from "../backends/mod.ts";
import { memoryOf } from "../backends/memory.ts";
import { SIMD_WASM_BASE64 } from "../backends/wasm/simd_wasm.ts";
import { assembleSimd } from "../tools/build_simd.ts";
import { adamUpdate } from "../backends/cpu/js_kernels.ts";
import { assertClose } from "./helpers.ts";

Deno.test("the committed SIMD module is what simd.wat assembles to", async () => {
  const committed = Uint8Array.from(atob(SIMD_WASM_BASE64), (ch) => ch.charCodeAt(0));
  assertEquals(
    committed,
    await assembleSimd(),
    "run `deno task build:simd` after editing simd.wat",
  );
});

// A memory laid out as the wasm backend's: tensors anywhere, the scratch area after them.
function setup(floats: number) {
  const memory = new WebAssembly.Memory({
    initial: Math.ceil((4 * floats + SCRATCH_BYTES) / 65536) + 1,
  });
  const passes = simdPasses(memory, 4 * floats + 16 - (4 * floats) % 16);
  assert(passes, "this runtime has WebAssembly SIMD");
  let next = 0;
  let seed = 7;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 31 - 1;
  // Unaligned on purpose (one float past a 16-byte boundary): tensors need not be aligned.
  const tensor = (n: number) => {
    const t = new Float32Array(memory.buffer, 4 * (next + 1), n);
    for (let i = 0; i < n; i++) t[i] = 3 * random() + 0.5;
    next += n + 1;
    return t;
  };
  const vector = (c: number) => new Float64Array(c).map(() => random());
  return { passes, tensor, vector };
}

Deno.test("SIMD channel sums and affine passes equal plain loops; they decline what they cannot do", async () => {
  for (const [samples, hw, c] of [[2, 9, 4], [1, 16, 32], [3, 5, 12], [1, 1, 128]]) {
    const { passes, tensor, vector } = setup(4 * samples * hw * c);
    const [a, b, out] = [
      tensor(samples * hw * c),
      tensor(samples * hw * c),
      tensor(samples * hw * c),
    ];
    const [p, q, r] = [vector(c), vector(c), vector(c)];
    for (let s = 0; s < samples; s++) {
      const off = s * hw * c;
      const [sa, sab] = [new Float64Array(c), new Float64Array(c)];
      assert(passes.channelSums(a, b, off, hw, c, sa, sab));
      const [ea, eab] = [new Float64Array(c), new Float64Array(c)];
      for (let i = 0; i < hw * c; i++) {
        ea[i % c] += a[off + i];
        eab[i % c] += a[off + i] * b[off + i];
      }
      assertEquals([...sa], [...ea], "sums, in doubles in the same order");
      assertEquals([...sab], [...eab], "sums of products");
      assert(passes.affine(a, out, off, hw, c, p, q));
      const affine = a.subarray(off, off + hw * c).map((x, i) => x * p[i % c] + q[i % c]);
      await assertClose(out.subarray(off, off + hw * c), affine, 1e-6, "affine");
      assert(passes.affine2(a, b, out, off, hw, c, p, q, r));
      const affine2 = a.subarray(off, off + hw * c).map((x, i) =>
        x * p[i % c] + b[off + i] * q[i % c] + r[i % c]
      );
      await assertClose(out.subarray(off, off + hw * c), affine2, 1e-6, "affine2");
    }
  }
  const { passes, tensor, vector } = setup(1000);
  const [a, v] = [tensor(60), vector(6)];
  assert(!passes.affine(a, a, 0, 10, 6, v, v), "6 channels: not a multiple of 4");
  const outside = new Float32Array(40);
  assert(!passes.affine(outside, outside, 0, 10, 4, v, v), "an array in another memory");
  assert(!passes.channelSums(outside, outside, 0, 10, 4, v, v));
});

Deno.test("SIMD Adam equals the JavaScript update on the elements it does", async () => {
  const { passes, tensor } = setup(8 * 103);
  const n = 103;
  const [g, p, m] = [tensor(n), tensor(n), tensor(n)];
  const v = tensor(n);
  v.forEach((x, i) => v[i] = x * x); // in place: a second moment is not negative
  const [update, mOut, vOut] = [tensor(n), tensor(n), tensor(n)];
  const attrs = { weightDecay: 1e-4, b1: 0.5, b2: 0.999, eps: 1e-8, c1: 0.75, c2: 0.002, lr: 1e-4 };
  const done = passes.adam({ g, p, m, v, update, mOut, vOut }, {
    ...attrs,
    step: -attrs.lr / attrs.c1,
    root: 1 / Math.sqrt(attrs.c2),
  });
  assertEquals(done, 100);
  const expected = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
  adamUpdate(g, p, m, v, expected[0], expected[1], expected[2], attrs);
  await assertClose(update.subarray(0, done), expected[0].subarray(0, done), 1e-6, "update");
  await assertClose(mOut.subarray(0, done), expected[1].subarray(0, done), 1e-6, "first moment");
  await assertClose(vOut.subarray(0, done), expected[2].subarray(0, done), 1e-6, "second moment");
});

Deno.test("the staged passes' Adam (native-cpu's) equals the JavaScript update, block after block", async () => {
  const passes = stagedPasses();
  assert(passes, "this runtime has WebAssembly SIMD");
  const n = 3 * STAGE_FLOATS + 7; // several staging blocks and a tail of 3 left to the caller
  let seed = 3;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 31 - 1;
  const [g, p, m] = [0, 1, 2].map(() => Float32Array.from({ length: n }, random));
  const v = Float32Array.from({ length: n }, () => random() ** 2);
  const [update, mOut, vOut] = [0, 1, 2].map(() => new Float32Array(n));
  const attrs = { weightDecay: 1e-4, b1: 0.5, b2: 0.999, eps: 1e-8, c1: 0.75, c2: 0.002, lr: 1e-4 };
  const done = passes.adam({ g, p, m, v, update, mOut, vOut }, {
    ...attrs,
    step: -attrs.lr / attrs.c1,
    root: 1 / Math.sqrt(attrs.c2),
  });
  assertEquals(done, n - 3);
  const expected = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
  adamUpdate(g, p, m, v, expected[0], expected[1], expected[2], attrs);
  await assertClose(update.subarray(0, done), expected[0].subarray(0, done), 1e-6, "update");
  await assertClose(mOut.subarray(0, done), expected[1].subarray(0, done), 1e-6, "first moment");
  await assertClose(vOut.subarray(0, done), expected[2].subarray(0, done), 1e-6, "second moment");
  assertEquals([...update.subarray(done)], [0, 0, 0], "the tail is left to the caller");
});

Deno.test("the wasm backend's kernels get the SIMD passes, on its own memory", async () => {
  await selectBackend("wasm");
  const passes = simdFor(tf.backend());
  assert(passes, "no SIMD passes on the wasm backend");
  const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 1, 4]);
  const view = memoryOf(tf.backend()).view(x as unknown as tf.TensorInfo);
  const [sa, sab] = [new Float64Array(4), new Float64Array(4)];
  assert(passes.channelSums(view, view, 0, 2, 4, sa, sab));
  assertEquals([...sa, ...sab], [6, 8, 10, 12, 26, 40, 58, 80]);
  x.dispose();
  await selectBackend("cpu");
  assertEquals(simdFor(tf.backend()), undefined, "the cpu backend's tensors are JavaScript arrays");
});
