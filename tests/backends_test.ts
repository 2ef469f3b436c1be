import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertRejects } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { assertClose } from "./helpers.ts";

type Case = [number, number, number, number, number, number, number, "valid" | "same" | number];

// Random shapes, strides and paddings (seeded): n, h, w, in, out, kernel, stride, pad.
function cases(): Case[] {
  let s = 12345;
  const rnd = (lo: number, hi: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return lo + (s % (hi - lo + 1));
  };
  const out: Case[] = [[1, 9, 9, 3, 4, 3, 1, "valid"], [2, 16, 16, 8, 4, 4, 2, "valid"], [
    1,
    22,
    22,
    3,
    4,
    7,
    1,
    "valid",
  ]];
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

async function convGradients(backend: "cpu" | "wasm") {
  await selectBackend(backend);
  const results: { dx: Float32Array; dw: Float32Array }[] = [];
  for (const [i, [n, h, w, ci, co, k, stride, pad]] of cases().entries()) {
    const x = tf.randomNormal([n, h, w, ci], 0, 1, "float32", i + 1) as tf.Tensor4D;
    const f = tf.randomNormal([k, k, ci, co], 0, 1, "float32", 100 + i) as tf.Tensor4D;
    const loss = (x: tf.Tensor4D, f: tf.Tensor4D) =>
      tf.sum(tf.square(tf.conv2d(x, f, stride, pad)));
    const [dx, dw] = tf.grads((a, b) => loss(a as tf.Tensor4D, b as tf.Tensor4D))([x, f]);
    results.push({ dx: (await dx.data()) as Float32Array, dw: (await dw.data()) as Float32Array });
    tf.dispose([x, f, dx, dw]);
  }
  return results;
}

Deno.test("wasm's Conv2DBackpropFilter (ours) matches the cpu backend on random shapes, strides and paddings", async () => {
  const cpu = await convGradients("cpu");
  const wasm = await convGradients("wasm");
  const before = tf.memory().numTensors;
  for (const [i, c] of cases().entries()) {
    await assertClose(wasm[i].dw, cpu[i].dw, 1e-5, `filter gradient of case ${JSON.stringify(c)}`);
    await assertClose(wasm[i].dx, cpu[i].dx, 1e-5, `input gradient of case ${JSON.stringify(c)}`);
  }
  assertEquals(tf.memory().numTensors, before);
});

Deno.test("our wasm kernels free every buffer they make", async () => {
  await selectBackend("wasm");
  const x = tf.randomNormal([2, 16, 16, 4], 0, 1, "float32", 1) as tf.Tensor4D;
  const f = tf.randomNormal([3, 3, 4, 8], 0, 1, "float32", 2) as tf.Tensor4D;
  const backend = tf.engine().backend as unknown as { numDataIds(): number };
  const before = backend.numDataIds();
  for (const [stride, pad] of [[1, "same"], [2, "same"], [2, "valid"], [3, 1]] as const) {
    tf.dispose(
      tf.grads((a, b) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad)))([
        x,
        f,
      ]),
    );
  }
  assertEquals(backend.numDataIds(), before);
  tf.dispose([x, f]);
});

Deno.test("selectBackend() names the active backend and refuses unknown names with the flag", async () => {
  assertEquals(await selectBackend("cpu"), "cpu");
  assertEquals(tf.getBackend(), "cpu");
  assertEquals(await selectBackend("wasm"), "wasm");
  // deno-lint-ignore no-explicit-any
  await assertRejects(() => selectBackend("tpu" as any), Error, '--backend: unknown backend "tpu"');
});
