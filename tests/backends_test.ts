import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertRejects } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { leadingReductionCount } from "../backends/cpu/js_kernels.ts";
import { loadBlas } from "../backends/native/blas.ts";
import { type Dnnl, loadDnnl } from "../backends/native/dnnl.ts";
import {
  binaryDims,
  type ConvRoute,
  convRouteCounts,
  loadNativeLibraries,
  type NativeLibraries,
  setConvRoute,
  setNativeKernels,
} from "../backends/native/native_kernels.ts";
import {
  convBackpropFilter,
  convBackpropInput,
  convForward,
  loopGemm,
} from "../backends/native/gemm_conv.ts";
import { assertClose } from "./helpers.ts";

type Case = [number, number, number, number, number, number, number, "valid" | "same" | number];

// Random shapes, strides and paddings (seeded): n, h, w, in, out, kernel, stride, pad.
function cases(): Case[] {
  let s = 12345;
  const rnd = (lo: number, hi: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return lo + (s % (hi - lo + 1));
  };
  // Fixed cases first: the model's kinds, then stride-1 valid ones with 16+ channels on either
  // side, which the native kernels run tap by tap (wide rows, a 3-channel output, batches).
  const out: Case[] = [
    [1, 9, 9, 3, 4, 3, 1, "valid"],
    [2, 16, 16, 8, 4, 4, 2, "valid"],
    [1, 22, 22, 3, 4, 7, 1, "valid"],
    [1, 10, 9, 16, 20, 3, 1, "valid"],
    [2, 8, 11, 17, 16, 2, 1, "valid"],
    [1, 13, 13, 20, 3, 5, 1, "valid"],
    [2, 9, 9, 4, 16, 3, 1, "valid"],
    [1, 7, 12, 18, 18, 1, 1, "valid"],
  ];
  for (let i = 0; i < 9; i++) {
    const k = rnd(1, 5);
    const pads = ["valid", "same", 0, 1, 2] as const;
    out.push([
      rnd(1, 3),
      rnd(k + 2, 14),
      rnd(k + 2, 14),
      rnd(1, 6),
      rnd(1, 6),
      k,
      rnd(1, 3),
      pads[rnd(0, 4)],
    ]);
  }
  return out;
}

type Conv = { y: Float32Array; dx: Float32Array; dw: Float32Array };

// Forward output and both gradients of sum(conv(x, f)^2) for every case; `libs` and `route`
// replace the native kernels' defaults.
async function convResults(
  backend: "cpu" | "wasm" | "native" | "native-cpu",
  libs?: NativeLibraries,
  route: ConvRoute = "fastest",
) {
  await selectBackend(backend);
  if (libs) setNativeKernels(libs);
  setConvRoute(route);
  const results: Conv[] = [];
  for (const [i, [n, h, w, ci, co, k, stride, pad]] of cases().entries()) {
    const x = tf.randomNormal([n, h, w, ci], 0, 1, "float32", i + 1) as tf.Tensor4D;
    const f = tf.randomNormal([k, k, ci, co], 0, 1, "float32", 100 + i) as tf.Tensor4D;
    const y = tf.conv2d(x, f, stride, pad);
    const loss = (x: tf.Tensor4D, f: tf.Tensor4D) =>
      tf.sum(tf.square(tf.conv2d(x, f, stride, pad)));
    const [dx, dw] = tf.grads((a, b) => loss(a as tf.Tensor4D, b as tf.Tensor4D))([x, f]);
    const read = async (t: tf.Tensor) => (await t.data()) as Float32Array;
    results.push({ y: await read(y), dx: await read(dx), dw: await read(dw) });
    tf.dispose([x, f, y, dx, dw]);
  }
  setConvRoute("fastest");
  return results;
}

async function assertConvsMatch(ours: Conv[], cpu: Conv[]) {
  for (const [i, c] of cases().entries()) {
    const what = `case ${JSON.stringify(c)}`;
    await assertClose(ours[i].y, cpu[i].y, 1e-5, `forward of ${what}`);
    await assertClose(ours[i].dw, cpu[i].dw, 1e-5, `filter gradient of ${what}`);
    await assertClose(ours[i].dx, cpu[i].dx, 1e-5, `input gradient of ${what}`);
  }
}

Deno.test("wasm's convolution kernels (ours) match the cpu backend on random shapes, strides and paddings", async () => {
  const cpu = await convResults("cpu");
  const before = tf.memory().numTensors;
  await assertConvsMatch(await convResults("wasm"), cpu);
  assertEquals(tf.memory().numTensors, before);
});

const native = loadNativeLibraries();
const noNative = typeof native === "string" ? native : "";
if (noNative) console.log(`SKIPPED: native-kernel tests (${noNative})`);
const blas = loadBlas();
const dnnl = loadDnnl();
if (typeof blas === "string") console.log(`SKIPPED: convolutions on a BLAS (${blas})`);
if (typeof dnnl === "string") console.log(`SKIPPED: convolutions on oneDNN (${dnnl})`);

// Each way the native kernels can run a convolution, each checked against the cpu backend.
// oneDNN's passes are counted: the cases must reach it, not fall back to the lowering.
let [dnnlAsked, dnnlRan] = [0, 0];
const counted = typeof dnnl === "string" ? dnnl : {
  ...dnnl,
  conv: (...args: Parameters<Dnnl["conv"]>) => {
    dnnlAsked++;
    return dnnl.conv(...args) && ++dnnlRan > 0;
  },
};
const onDnnl = typeof counted === "string"
  ? counted
  : { description: "", gemm: counted.sgemm, dnnl: counted };
const onBlas = typeof blas === "string" ? blas : { description: "", gemm: blas.sgemm };
const convWays: [string, "native" | "native-cpu", NativeLibraries | string, ConvRoute][] = [
  ["oneDNN's convolutions", "native", onDnnl, "onednn"],
  ["GEMM lowering on oneDNN's sgemm", "native", onDnnl, "gemm"],
  ["GEMM lowering on the BLAS", "native", onBlas, "gemm"],
  ["the faster of both per geometry", "native-cpu", native, "fastest"],
];
for (const [way, backend, lib, route] of convWays) {
  Deno.test({
    name: `${backend} convolution kernels (${way}) match the cpu backend on random shapes, ` +
      "strides and paddings",
    ignore: typeof lib === "string",
    fn: async () => {
      const cpu = await convResults("cpu");
      [dnnlAsked, dnnlRan] = [0, 0];
      await assertConvsMatch(await convResults(backend, lib as NativeLibraries, route), cpu);
      if (route === "onednn") {
        // It declines tiny tensors and geometries it has only reference kernels for; the rest
        // must have run there.
        console.log(`oneDNN ran ${dnnlRan} of the ${dnnlAsked} passes asked of it`);
        assert(dnnlRan >= 0.75 * dnnlAsked && dnnlAsked >= 3 * cases().length);
      }
      if (route === "fastest") {
        // Every geometry's choice is on record, for the benchmark's profile.
        for (const [pass, c] of Object.entries(convRouteCounts())) {
          assert(c.onednn + c.gemm > 0, `no ${pass} geometry recorded`);
        }
      }
    },
  });
}

// Matrix multiplies: shapes, transposes and broadcast batches (a, b, transposeA, transposeB).
const MATMULS: [number[], number[], boolean, boolean][] = [
  [[5, 7], [7, 3], false, false],
  [[7, 5], [7, 3], true, false],
  [[5, 7], [3, 7], false, true],
  [[7, 5], [3, 7], true, true],
  [[1, 64], [64, 1], false, false],
  [[3, 4, 6], [3, 6, 2], false, false],
  [[1, 6, 4], [3, 6, 2], true, false],
  [[2, 3, 4, 6], [1, 2, 6], false, true],
];

async function matmuls(backend: "cpu" | "native" | "native-cpu") {
  await selectBackend(backend);
  const out: { c: Float32Array; da: Float32Array; db: Float32Array }[] = [];
  for (const [i, [sa, sb, ta, tb]] of MATMULS.entries()) {
    const a = tf.randomNormal(sa, 0, 1, "float32", 7 + i);
    const b = tf.randomNormal(sb, 0, 1, "float32", 70 + i);
    const c = tf.matMul(a, b, ta, tb);
    // tfjs's own gradient does not broadcast batches: those cases check the product only.
    const broadcast = sa.length !== sb.length || sa.slice(0, -2).some((d, j) => d !== sb[j]);
    const [da, db] = broadcast
      ? [tf.zeros([1]), tf.zeros([1])]
      : tf.grads((p, q) => tf.sum(tf.square(tf.matMul(p, q, ta, tb))))([a, b]);
    const read = async (t: tf.Tensor) => (await t.data()) as Float32Array;
    out.push({ c: await read(c), da: await read(da), db: await read(db) });
    tf.dispose([a, b, c, da, db]);
  }
  return out;
}

for (const backend of ["native", "native-cpu"] as const) {
  Deno.test({
    name:
      `${backend} matrix multiply (native GEMM) matches the cpu backend, transposes and batches included`,
    ignore: !!noNative,
    fn: async () => {
      const cpu = await matmuls("cpu");
      const native = await matmuls(backend);
      for (const [i, m] of MATMULS.entries()) {
        const what = JSON.stringify(m);
        await assertClose(native[i].c, cpu[i].c, 1e-5, `product ${what}`);
        await assertClose(native[i].da, cpu[i].da, 1e-5, `gradient of a ${what}`);
        await assertClose(native[i].db, cpu[i].db, 1e-5, `gradient of b ${what}`);
      }
    },
  });
}

Deno.test("the convolution lowering is right with a plain-loop matrix multiply (no BLAS needed)", async () => {
  const cpu = await convResults("cpu");
  for (const [i, [n, h, w, ci, co, k, stride, pad]] of cases().entries()) {
    const g = tf.backend_util.computeConv2DInfo([n, h, w, ci], [k, k, ci, co], stride, 1, pad);
    const x = (await tf.randomNormal([n, h, w, ci], 0, 1, "float32", i + 1).data()) as Float32Array;
    const f =
      (await tf.randomNormal([k, k, ci, co], 0, 1, "float32", 100 + i).data()) as Float32Array;
    const y = new Float32Array(cpu[i].y.length);
    convForward(loopGemm, x, f, y, g);
    await assertClose(y, cpu[i].y, 1e-5, `forward of case ${i}`);
    const dy = y.map((v) => 2 * v); // d sum(y^2) / dy
    const dx = new Float32Array(x.length);
    convBackpropInput(loopGemm, dy, f, dx, g);
    await assertClose(dx, cpu[i].dx, 1e-5, `input gradient of case ${i}`);
    const dw = new Float32Array(f.length);
    convBackpropFilter(loopGemm, x, dy, dw, g);
    await assertClose(dw, cpu[i].dw, 1e-5, `filter gradient of case ${i}`);
  }
});

for (const backend of ["wasm", "native"] as const) {
  Deno.test({
    name: `our ${backend} kernels free every buffer they make`,
    ignore: backend === "native" && !!noNative,
    fn: async () => {
      await selectBackend(backend);
      const x = tf.randomNormal([2, 16, 16, 4], 0, 1, "float32", 1) as tf.Tensor4D;
      const f = tf.randomNormal([3, 3, 4, 8], 0, 1, "float32", 2) as tf.Tensor4D;
      const m = tf.randomNormal([2, 4, 4], 0, 1, "float32", 3);
      const engine = tf.engine().backend as unknown as { numDataIds(): number };
      const before = engine.numDataIds();
      for (const [stride, pad] of [[1, "same"], [2, "same"], [2, "valid"], [3, 1]] as const) {
        tf.dispose(
          tf.grads((a, b) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad)))([
            x,
            f,
          ]),
        );
      }
      tf.dispose(tf.grads((a) => tf.sum(tf.matMul(a, tf.cast(a, "float32"), false, true)))([m]));
      assertEquals(engine.numDataIds(), before);
      tf.dispose([x, f, m]);
    },
  });
}

Deno.test("selectBackend() names the active backend and refuses unknown names with the flag", async () => {
  assertEquals((await selectBackend("cpu")).name, "cpu");
  assertEquals(tf.getBackend(), "cpu");
  assertEquals((await selectBackend("wasm")).name, "wasm");
  if (!noNative) assertEquals((await selectBackend("native")).name, "native");
  assertEquals(tf.getBackend(), "wasm");
  // deno-lint-ignore no-explicit-any
  await assertRejects(() => selectBackend("tpu" as any), Error, '--backend: unknown backend "tpu"');
});

// Reductions over adjacent axes without the last one (ours on wasm and native-cpu; the first four
// cases), and a few the stock kernels take.
const REDUCTIONS: [number[], number[], boolean][] = [
  [[2, 5, 4, 3], [1, 2], false],
  [[2, 5, 4, 3], [0, 1, 2], true],
  [[3, 7], [0], false],
  [[2, 3, 4], [-2], true],
  [[2, 5, 4, 3], [1, 3], false],
  [[2, 5, 4, 3], [3], true],
  [[2, 5, 4, 3], [0, 1, 2, 3], false],
];
const OURS = 4;

async function reductions(backend: "cpu" | "wasm" | "native-cpu") {
  await selectBackend(backend);
  const out: Float32Array[] = [];
  for (const [i, [shape, axes, keep]] of REDUCTIONS.entries()) {
    const x = tf.randomNormal(shape, 0, 1, "float32", 30 + i);
    for (const op of [tf.sum, tf.mean, tf.max]) {
      const y = op(x, axes, keep);
      const [dx] = tf.grads((a) => tf.sum(tf.square(op(a, axes, keep))))([x]);
      out.push((await y.data()) as Float32Array, (await dx.data()) as Float32Array);
      tf.dispose([y, dx]);
    }
    x.dispose();
  }
  return out;
}

for (const backend of ["wasm", "native-cpu"] as const) {
  Deno.test({
    name: `${backend}'s sum, mean and max over leading axes (ours) match the cpu backend, ` +
      "gradients included",
    ignore: backend === "native-cpu" && !!noNative,
    fn: async () => {
      const cpu = await reductions("cpu");
      const before = leadingReductionCount();
      const ours = await reductions(backend);
      // Each op ran twice per case (value, gradient's forward pass) and ours took every one of
      // the first cases: Max once fell through to the stock kernel unnoticed (its attribute
      // has another name).
      assertEquals(leadingReductionCount() - before, OURS * 3 * 2);
      for (let i = 0; i < cpu.length; i++) {
        const [shape, axes, keep] = REDUCTIONS[Math.floor(i / 6)];
        const what = `${["sum", "mean", "max"][Math.floor(i / 2) % 3]} ${
          i % 2 ? "gradient" : "value"
        }`;
        await assertClose(
          ours[i],
          cpu[i],
          1e-6,
          `${what} of ${shape} over ${axes}, keepDims ${keep}`,
        );
      }
    },
  });
}

// The elementwise, slicing and joining kernels of native-cpu against the cpu backend's own.
async function elementwise(backend: "cpu" | "native-cpu") {
  await selectBackend(backend);
  const r = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);
  const x = r([2, 3, 4, 5], 1);
  const outs = tf.tidy(() => {
    const res: tf.Tensor[] = [];
    for (const [i, other] of [[2, 3, 4, 5], [5], [2, 1, 1, 5], [3, 1, 1], [1], []].entries()) {
      const y = r(other, 10 + i);
      res.push(tf.add(x, y), tf.sub(y, x), tf.mul(x, y), tf.div(x, tf.add(tf.abs(y), 1)));
      res.push(tf.maximum(x, y), tf.minimum(y, x));
      for (const c of [tf.greater(x, y), tf.greaterEqual(x, y), tf.less(y, x), tf.equal(x, x)]) {
        res.push(tf.cast(c, "float32"));
      }
    }
    res.push(tf.relu(x), tf.leakyRelu(x, 0.2), tf.step(x, 0.1), tf.sqrt(tf.abs(x)), tf.square(x));
    res.push(tf.tanh(x), tf.neg(x), tf.abs(x), tf.exp(x), tf.sign(x));
    res.push(tf.where(tf.greater(x, 0), x, tf.mul(x, 3)));
    res.push(tf.slice(x, [1, 0, 2, 1], [1, 3, 2, -1]), tf.slice(x, [0, 1, 0, 0], [-1, 1, -1, -1]));
    res.push(...tf.split(x, [1, 3, 1], 3), ...tf.split(x, 3, 1));
    res.push(tf.concat([x, x, tf.slice(x, [0, 0, 0, 0], [2, 3, 4, 2])], 3), tf.concat([x, x], 1));
    res.push(tf.transpose(x, [0, 3, 1, 2]), tf.transpose(x, [2, 1, 3, 0]));
    res.push(
      tf.pad(x, [[0, 1], [2, 0], [1, 1], [0, 3]]),
      tf.pad(x, [[1, 0], [0, 0], [0, 0], [0, 0]], 2),
    );
    res.push(tf.pad(tf.reshape(x, [120]), [[3, 5]]));
    // and gradients through some of them
    res.push(
      ...tf.grads((a, b) => tf.sum(tf.mul(tf.div(tf.sub(a, b), tf.add(tf.abs(b), 1)), a)))([
        x,
        r([5], 40),
      ]),
    );
    return res;
  });
  const values = await Promise.all(outs.map((t) => t.data()));
  tf.dispose([x, ...outs]);
  return values as Float32Array[];
}

Deno.test({
  name: "native-cpu's elementwise, slicing and joining kernels match the cpu backend's",
  ignore: !!noNative,
  fn: async () => {
    const cpu = await elementwise("cpu");
    const ours = await elementwise("native-cpu");
    assertEquals(ours.length, cpu.length);
    for (let i = 0; i < cpu.length; i++) {
      await assertClose(ours[i], cpu[i], 1e-6, `result ${i}`);
    }
  },
});

// Large elementwise arithmetic runs on oneDNN's binary primitive (native, native-cpu): bit for bit
// the cpu backend's results, its calls counted so that the test sees it run.
let binaryRan = 0;
const countedBinary = typeof dnnl === "string" ? undefined : {
  description: "",
  gemm: dnnl.sgemm,
  dnnl: {
    ...dnnl,
    binary: (...args: Parameters<Dnnl["binary"]>) => dnnl.binary(...args) && ++binaryRan > 0,
  },
};

async function largeArithmetic(backend: "cpu" | "native" | "native-cpu") {
  await selectBackend(backend);
  if (backend !== "cpu") setNativeKernels(countedBinary);
  const x = tf.randomNormal([2, 64, 64, 16], 0, 1, "float32", 1); // 131,072 elements
  const y = tf.randomUniform([2, 64, 64, 16], 0.5, 2, "float32", 2);
  const s = tf.scalar(1.7);
  // broadcast along some dimensions: a bias, a scale per sample and channel, one per pixel
  const bias = tf.randomNormal([16], 0, 1, "float32", 3);
  const scale = tf.randomUniform([2, 1, 1, 16], 0.5, 2, "float32", 4);
  const pixel = tf.randomUniform([2, 64, 64, 1], 0.5, 2, "float32", 5);
  const outs = [y, s, bias, scale, pixel].flatMap((b) =>
    [tf.add, tf.sub, tf.mul, tf.div].map((op) => op(x, b))
  );
  const values = await Promise.all(outs.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([x, y, s, bias, scale, pixel, ...outs]);
  return values;
}

Deno.test("binaryDims() merges the dimensions b is broadcast along alike", () => {
  assertEquals(binaryDims([2, 8, 8, 16], [16]), { dims: [128, 16], bDims: [1, 16] });
  assertEquals(binaryDims([2, 8, 8, 16], [2, 1, 1, 16]), { dims: [2, 64, 16], bDims: [2, 1, 16] });
  assertEquals(binaryDims([2, 8, 8, 16], [2, 8, 8, 16]), { dims: [2048], bDims: [2048] });
  assertEquals(binaryDims([2, 8, 1, 16], []), { dims: [256], bDims: [1] });
  assertEquals(binaryDims([1, 1], [1]), { dims: [1], bDims: [1] });
  assertEquals(binaryDims([2, 8, 8, 16], [1, 8, 1, 1]), {
    dims: [2, 8, 128],
    bDims: [1, 8, 1],
  });
  assertEquals(binaryDims([8, 1], [8, 4]), undefined); // b larger than a: the output is larger
  assertEquals(binaryDims([8], [2, 8]), undefined);
});

for (const backend of ["native", "native-cpu"] as const) {
  Deno.test({
    name:
      `${backend}'s large elementwise arithmetic on oneDNN equals the cpu backend's bit for bit`,
    ignore: !countedBinary,
    fn: async () => {
      const cpu = await largeArithmetic("cpu");
      const before = binaryRan;
      const ours = await largeArithmetic(backend);
      assertEquals(binaryRan - before, cpu.length, "every op on oneDNN");
      for (let i = 0; i < cpu.length; i++) assertEquals(ours[i], cpu[i], `op ${i}`);
    },
  });
}

// Activations, their gradients (fused on native-cpu), step, comparisons, select, maximum and
// minimum, on values that include NaN, both zeros and both infinities, with the kernels each
// backend ran.
async function activations(backend: "cpu" | "native-cpu") {
  await selectBackend(backend);
  const special = [NaN, 0, -0, Infinity, -Infinity, 1e-30, -1e-30, 2, -2];
  const values = (seed: number) =>
    Float32Array.from(
      { length: 3 * 4 * 5 * 6 },
      (_, i) =>
        i < special.length
          ? special[(i + seed) % special.length]
          : Math.sin(i * 12.9898 + seed) * 3,
    );
  const [x, y, dy] = [values(0), values(4), values(7)].map((v) => tf.tensor4d(v, [3, 4, 5, 6]));
  let outs: tf.Tensor[] = [];
  const { kernels } = await tf.profile(() => {
    outs = tf.tidy(() => [
      tf.relu(x),
      tf.leakyRelu(x, 0.2),
      tf.step(x, 0.1),
      tf.cast(tf.greater(x, y), "float32"),
      tf.cast(tf.less(x, y), "float32"),
      tf.where(tf.greater(x, 0), x, y),
      tf.maximum(x, y),
      tf.minimum(y, x),
      tf.grad((t) => tf.relu(t))(x, dy),
      tf.grad((t) => tf.leakyRelu(t, 0.2))(x, dy),
      tf.grad((t) => tf.leakyRelu(t, 0.2))(x, tf.mul(dy, 1e30)),
    ]);
    return outs;
  });
  const data = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose([x, y, dy, ...outs]);
  return { data, kernelNames: kernels.map((k) => k.name) };
}

Deno.test({
  name: "native-cpu's activations and their fused gradients equal the cpu backend's bit for bit",
  ignore: !!noNative,
  fn: async () => {
    const cpu = await activations("cpu");
    const ours = await activations("native-cpu");
    const bits = (v: Float32Array) =>
      [...new Uint32Array(v.buffer)].map((b, i) => v[i] !== v[i] ? "NaN" : b);
    for (let i = 0; i < cpu.data.length; i++) {
      assertEquals(bits(ours.data[i]), bits(cpu.data[i]), `result ${i}`);
    }
    // The three gradients ran as our one kernel each on native-cpu, composed on cpu.
    const fused = (names: string[]) => names.filter((k) => k === "UgatitActivationGrad").length;
    assertEquals(fused(ours.kernelNames), 3, ours.kernelNames.join());
    assertEquals(fused(cpu.kernelNames), 0, cpu.kernelNames.join());
  },
});
