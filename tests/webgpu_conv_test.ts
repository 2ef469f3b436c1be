/**
 * Our WGSL convolutions (`backends/webgpu/conv.ts`) against the cpu backend: forward, input and
 * filter gradients (through `tf.grads` of a convolution), on shapes that reach every path
 * (reduction channels padded to 4 and cropped back, output channels not a multiple of 4, stride
 * phases without taps, pixel blocks cut by the image's edge, blocks of widths other than a power
 * of 2 with idle slots, split-K), under both tile profiles (the software one's passes direct,
 * with no tiles, up to 32 channels on one side: runs of pixels cut by the grid's edge, stride-2
 * phases, row slices),
 * with counts of our programs' dispatches to show that ours ran. Runs on any WebGPU adapter (CI:
 * lavapipe); says that it skipped where there is none.
 *
 * Tolerance, per element: a float32 dot product of K terms, summed in any order with or without
 * FMA, is within gamma_K * sum_k |a_k b_k| of the exact sum, gamma_K = K u / (1 - K u), u = 2^-24
 * (Higham, Accuracy and Stability of Numerical Algorithms, 3.1); the cpu backend sums in float64
 * and rounds once (u |reference|). So each element must satisfy
 * |ours - cpu| <= gamma_K * (the same convolution of |x| and |w|) + u |cpu|, with K the terms of
 * that output: KH KW Cin (forward), KH KW Cout (input gradient), N OH OW (filter gradient).
 *
 * With float16 tiles (`setConvFloat16`), each operand is first rounded to float16, off by at most
 * 2^-11 of itself in float16's normal range: a product by (1 + 2^-11)^2 - 1, so the bound becomes
 * ((1 + 2^-11)^2 (1 + gamma_K) - 1) * (the convolution of |x| and |w|) + u |cpu|. Those cases draw
 * every operand at least 2^-12 from zero (the normal range starts at 2^-14), and each pass must
 * also differ from the float32 tiles' result: the tiles were rounded.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { selectBackend, webgpuStarted, webgpuUnavailable } from "../backends/mod.ts";
import {
  registerWebGpuConvKernels,
  setConvFloat16,
  setConvProfile,
  WEBGPU_CONV_KERNELS,
} from "../backends/webgpu/conv.ts";

const unavailable = await webgpuUnavailable();
const U = 2 ** -24;

type Pad = "valid" | "same" | number;
interface Case {
  readonly x: [number, number, number, number];
  readonly k: [number, number];
  readonly cout: number;
  readonly stride: number;
  readonly pad: Pad;
}

// Every path: channel counts that need padding (3, 5, 7), one to four output channels and wide N
// (one or several threads along N), stride 2 with odd sizes (phases of unequal rows), a 1x1
// stride-2 gradient (phases with no taps), 'same' and numeric padding, batches of 1 and 2, and
// reductions long enough for several split-K slices.
const CASES: Case[] = [
  { x: [2, 11, 9, 8], k: [3, 3], cout: 16, stride: 1, pad: "valid" },
  { x: [1, 13, 12, 3], k: [7, 7], cout: 5, stride: 1, pad: "same" },
  { x: [2, 11, 13, 6], k: [4, 4], cout: 4, stride: 2, pad: 1 },
  { x: [2, 17, 15, 16], k: [3, 3], cout: 32, stride: 2, pad: "valid" },
  { x: [1, 9, 7, 5], k: [1, 1], cout: 3, stride: 2, pad: "same" },
  { x: [2, 12, 12, 32], k: [4, 4], cout: 1, stride: 1, pad: 1 },
  { x: [2, 26, 26, 16], k: [3, 3], cout: 16, stride: 1, pad: "valid" },
  { x: [1, 14, 14, 4], k: [7, 7], cout: 3, stride: 1, pad: 0 },
  { x: [2, 10, 10, 64], k: [1, 1], cout: 64, stride: 1, pad: "valid" },
  { x: [1, 9, 10, 7], k: [3, 3], cout: 9, stride: 2, pad: "same" },
  // A padded 16 x 16 layer's input gradient (18 x 18): blocks 12 or 6 wide, slots left idle.
  { x: [1, 18, 18, 16], k: [3, 3], cout: 16, stride: 1, pad: "valid" },
];

// A seeded generator for the random cases (mulberry32).
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomCases(n: number, seed: number): Case[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  return Array.from({ length: n }, () => {
    const k = pick([1, 3, 4, 7] as const);
    const stride = pick([1, 2]);
    const side = () => k + 1 + Math.floor(r() * 12);
    return {
      x: [pick([1, 2]), side(), side(), 1 + Math.floor(r() * 20)],
      k: [k, k],
      cout: 1 + Math.floor(r() * 20),
      stride,
      pad: pick(["valid", "same", Math.floor(r() * k)] as Pad[]),
    };
  });
}

type Outputs = { y: Float32Array; dx: Float32Array; dw: Float32Array };

// Seeds start at 1: tfjs draws a random seed for 0.
const rand = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed + 1);

/**
 * y, dx and dw of sum(conv(x, w) * r); with `abs`, of |x|, |w|, |r| (the error scale); with
 * `apart`, every operand moved 2^-12 away from zero (float16's normal range).
 */
function convCase(c: Case, seed: number, abs = false, apart = false) {
  return tf.tidy(() => {
    const away = (t: tf.Tensor) => (apart ? tf.add(t, tf.mul(tf.sign(t), 2 ** -12)) : t);
    const f = (t: tf.Tensor) => (abs ? tf.abs(away(t)) : away(t));
    const x = f(rand(c.x, seed)) as tf.Tensor4D;
    const w = f(rand([...c.k, c.x[3], c.cout], seed + 1)) as tf.Tensor4D;
    const y = tf.conv2d(x, w, c.stride, c.pad);
    const r = f(rand(y.shape, seed + 2));
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), r))
    )([x, w]);
    return { y, dx, dw };
  });
}

async function read(out: Record<string, tf.Tensor>): Promise<Outputs> {
  const arrays: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) arrays[k] = (await t.data()) as Float32Array;
  tf.dispose(Object.values(out));
  return arrays as Outputs;
}

// Dispatches of our programs by kind (fwd, dgrad, wgrad, sum; fwd_f16 and so on with float16
// tiles), counted at the backend, and their shader keys (which end with the tiles).
const dispatched = new Map<string, number>();
const shaderKeys = new Set<string>();
function countDispatches(): void {
  const b = tf.backend() as unknown as {
    runWebGPUProgram: (p: { shaderKey: string }, ...rest: unknown[]) => unknown;
    counting?: boolean;
  };
  if (b.counting) return;
  b.counting = true;
  const run = b.runWebGPUProgram.bind(b);
  b.runWebGPUProgram = (p, ...rest) => {
    const m = /^ugatit_conv_([a-z]+)/.exec(p.shaderKey);
    const kind = m && (p.shaderKey.includes("_f16") ? `${m[1]}_f16` : m[1]);
    if (m) shaderKeys.add(p.shaderKey);
    if (kind) dispatched.set(kind, (dispatched.get(kind) ?? 0) + 1);
    return run(p, ...rest);
  };
}

interface GpuDevice {
  pushErrorScope(filter: string): void;
  popErrorScope(): Promise<{ message: string } | null>;
}
const device = () => (tf.backend() as unknown as { device: GpuDevice }).device;

/** Runs `f` on webgpu and reads its outputs, failing on any WebGPU validation error. */
async function onGpu(f: () => Record<string, tf.Tensor>): Promise<Outputs> {
  await selectBackend("webgpu");
  countDispatches();
  device().pushErrorScope("validation");
  const out = await read(f());
  const error = await device().popErrorScope();
  assert(error === null, `WebGPU validation error: ${error?.message}`);
  return out;
}

/**
 * Asserts every element within its float32 bound, or with `half` its float16 tiles' bound (see
 * the module doc).
 */
function assertWithinBound(
  what: string,
  got: Float32Array,
  want: Float32Array,
  scale: Float32Array,
  terms: number,
  half = false,
): void {
  assertEquals(got.length, want.length, `${what}: length`);
  const gamma = (terms * U) / (1 - terms * U);
  const relative = half ? (1 + 2 ** -11) ** 2 * (1 + gamma) - 1 : gamma;
  for (let i = 0; i < got.length; i++) {
    const bound = relative * scale[i] + U * Math.abs(want[i]) + 1e-30;
    const ratio = Math.abs(got[i] - want[i]) / bound;
    assert(
      ratio <= 1,
      `${what}: element ${i} is ${got[i]}, the cpu's ${want[i]}: ${
        Math.abs(got[i] - want[i]).toExponential(2)
      } apart, bound ${bound.toExponential(2)}`,
    );
  }
}

/**
 * Checks one case's three passes on webgpu against the cpu backend; with `half`, with float16
 * tiles against their bound, on operands apart from zero, each pass differing from float32 tiles'.
 */
async function checkCase(c: Case, seed: number, half = false): Promise<void> {
  await selectBackend("cpu");
  const want = await read(convCase(c, seed, false, half));
  const scale = await read(convCase(c, seed, true, half));
  setConvFloat16(half);
  let got: Outputs;
  try {
    got = await onGpu(() => convCase(c, seed, false, half));
  } finally {
    setConvFloat16(false);
  }
  const float32 = half ? await onGpu(() => convCase(c, seed, false, half)) : got;
  const cin = c.x[3];
  const [kh, kw] = c.k;
  const name = `${JSON.stringify(c)}`;
  const outPixels = want.y.length / c.cout;
  const passes: [string, keyof Outputs, number][] = [
    ["y", "y", kh * kw * cin],
    ["dx", "dx", kh * kw * c.cout],
    ["dw", "dw", outPixels],
  ];
  for (const [what, k, terms] of passes) {
    assertWithinBound(`${name} ${what}`, got[k], want[k], scale[k], terms, half);
    if (half) {
      assert(got[k].some((v, i) => v !== float32[k][i]), `${name} ${what}: as float32 tiles give`);
    }
  }
}

Deno.test("webgpu convolutions of ours equal the cpu backend within float32's bound", async (t) => {
  if (unavailable) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  await selectBackend("webgpu");
  for (const name of WEBGPU_CONV_KERNELS) assert(tf.getKernel(name, "webgpu"), name);
  // Each tile configuration compiles its own shaders (about a second each on lavapipe): the
  // random cases run under the profile lavapipe uses, the fixed ones under both.
  const runs = [
    { profile: "software", cases: [...CASES, ...randomCases(6, 7)] },
    { profile: "gpu", cases: CASES },
  ] as const;
  for (const { profile, cases } of runs) {
    await t.step(`${profile} tiles: ${cases.length} cases`, async () => {
      setConvProfile(profile);
      dispatched.clear();
      shaderKeys.clear();
      try {
        for (const [i, c] of cases.entries()) await checkCase(c, 10 * i);
      } finally {
        setConvProfile(undefined);
      }
      // Every pass ran on ours (a fallback to the stock kernels would give the same values), the
      // split-K cases added their slices, and odd channel counts were padded.
      for (const kind of ["fwd", "dgrad", "wgrad", "sum", "resize"]) {
        assert((dispatched.get(kind) ?? 0) > 0, `no ${kind} dispatch of ours under ${profile}`);
      }
      const keys = [...shaderKeys];
      if (profile === "software") {
        // Every filter gradient ran direct; forward passes and input gradients direct up to 32
        // channels on one side, tiled past that (the 64-channel case).
        for (const kind of ["fwd", "dgrad", "wgrad"]) {
          const ofKind = keys.filter((k) => k.startsWith(`ugatit_conv_${kind}_`));
          assert(ofKind.some((k) => k.includes("_direct_")), `no direct ${kind} under software`);
          const tiled = ofKind.some((k) => !k.includes("_direct_"));
          assert(tiled === (kind !== "wgrad"), `${kind} tiled: ${tiled}, under software`);
        }
      } else {
        // A block narrower than a power of 2 ran (fewestBlocks; the key ends with th and tw).
        const widths = keys.map((k) => Number(k.split("_").at(-1)));
        assert(widths.some((w) => w === 6 || w === 12), `no block 6 or 12 wide under ${profile}`);
      }
    });
  }
});

Deno.test("webgpu convolutions with float16 tiles are within float16's bound", async () => {
  if (unavailable) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  await selectBackend("webgpu");
  if (!webgpuStarted()?.shaderF16) {
    console.log("  SKIPPED: this WebGPU device has no shader-f16");
    return;
  }
  // A padded channel count, 'same' padding, stride 2 with odd sizes, and split-K.
  const cases = [CASES[1], CASES[3], CASES[6], CASES[9]];
  dispatched.clear();
  for (const [i, c] of cases.entries()) await checkCase(c, 10 * i, true);
  for (const pass of ["fwd", "dgrad", "wgrad"]) {
    assert((dispatched.get(`${pass}_f16`) ?? 0) > 0, `no ${pass} dispatch with float16 tiles`);
  }
});

Deno.test("webgpu convolutions hand dilation to the stock kernel, and can be turned off", async () => {
  if (unavailable) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  const dilated = () =>
    tf.tidy(() => {
      const x = rand([1, 9, 9, 4], 1) as tf.Tensor4D;
      const w = rand([3, 3, 4, 4], 2) as tf.Tensor4D;
      return { y: tf.conv2d(x, w, 1, "valid", "NHWC", 2), dx: x, dw: w };
    });
  await selectBackend("cpu");
  const want = await read(dilated());
  dispatched.clear();
  const got = await onGpu(dilated);
  assertEquals(dispatched.size, 0, "a dilated convolution ran on ours");
  for (let i = 0; i < want.y.length; i++) {
    assert(Math.abs(got.y[i] - want.y[i]) <= 1e-4 * (1 + Math.abs(want.y[i])), `dilated y[${i}]`);
  }
  const c = CASES[0];
  try {
    registerWebGpuConvKernels(false);
    dispatched.clear();
    await onGpu(() => convCase(c, 3));
    assertEquals(dispatched.size, 0, "ours ran while turned off");
  } finally {
    registerWebGpuConvKernels(true);
  }
  dispatched.clear();
  await onGpu(() => convCase(c, 3));
  assert((dispatched.get("fwd") ?? 0) > 0, "ours did not come back");
});

Deno.test("webgpu convolutions leave no tensor or buffer behind (split-K's partial sums)", async () => {
  if (unavailable) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  await selectBackend("webgpu");
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const x = rand([2, 26, 26, 16], 1) as tf.Tensor4D;
  const dy = rand([2, 24, 24, 16], 2) as tf.Tensor4D;
  const grad = () =>
    tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, {
      strides: 1,
      pad: "valid",
      dataFormat: "NHWC",
      filterShape: [3, 3, 16, 16],
    }) as tf.Tensor;
  tf.dispose(grad()); // pipelines compiled, pools filled
  const [tensors, ids] = [tf.memory().numTensors, backend.numDataIds()];
  dispatched.clear();
  const dw = grad();
  await dw.data();
  dw.dispose();
  assert((dispatched.get("sum") ?? 0) > 0, "the case did not split K");
  assertEquals(tf.memory().numTensors, tensors);
  assertEquals(backend.numDataIds(), ids);
  tf.dispose([x, dy]);
});
