import * as tf from "@tensorflow/tfjs";
import { assertEquals } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { foldReflection, reflectionPad } from "../ops/reflect_pad.ts";
import { upsampleNearest2x, upsampleNearest2xComposed } from "../ops/upsample_2x.ts";
import { assertClose } from "./helpers.ts";

// The gradient of sum(w * reflectionPad(x)) is w folded back onto the pixels it was copied
// from. Which pixel each padded one copies is read off tfjs's own (correct) forward mirrorPad
// of an index tensor, so the expectation shares no code with ours.
async function expectedFold(shape: [number, number, number, number], pad: number, w: Float32Array) {
  const size = shape.reduce((p, q) => p * q, 1);
  const idx = tf.tidy(() =>
    tf.mirrorPad(
      tf.tensor(Array.from({ length: size }, (_, i) => i), shape) as tf.Tensor4D,
      [[0, 0], [pad, pad], [pad, pad], [0, 0]],
      "reflect",
    )
  );
  const from = await idx.data();
  idx.dispose();
  const dx = new Float32Array(size);
  from.forEach((src, k) => (dx[src] += w[k]));
  return dx;
}

const CASES: [[number, number, number, number], number][] = [[[1, 5, 6, 2], 1], [[2, 7, 5, 3], 3], [
  [1, 4, 4, 1],
  2,
]];

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`reflectionPad() on ${backend}: the values of tfjs's mirrorPad and the true gradient`, async () => {
    await selectBackend(backend);
    for (const [i, [shape, pad]] of CASES.entries()) {
      const x = tf.randomNormal(shape, 0, 1, "float32", i + 1) as tf.Tensor4D;
      const padded = [shape[0], shape[1] + 2 * pad, shape[2] + 2 * pad, shape[3]];
      const w = tf.randomNormal(padded, 0, 1, "float32", i + 10);
      const before = tf.memory().numTensors;
      const y = reflectionPad(x, pad);
      const mirror = tf.mirrorPad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], "reflect");
      await assertClose(y, mirror, 1e-7, `values of ${shape} pad ${pad}`);
      const [dx] = tf.grads((a) => tf.sum(tf.mul(reflectionPad(a as tf.Tensor4D, pad), w)))([x]);
      const expected = await expectedFold(shape, pad, (await w.data()) as Float32Array);
      await assertClose(dx, expected, 1e-6, `gradient of ${shape} pad ${pad}`);
      // The composed form (for backends without our kernels) gives the same.
      const composed = tf.tidy(() =>
        foldReflection(foldReflection(w as tf.Tensor4D, pad, 1, shape[1]), pad, 2, shape[2])
      );
      await assertClose(composed, expected, 1e-6, `composed gradient of ${shape} pad ${pad}`);
      tf.dispose([y, mirror, dx, composed]);
      assertEquals(tf.memory().numTensors, before);
      tf.dispose([x, w]);
    }
  });
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`upsampleNearest2x() on ${backend} (our kernels) equals the composed form, gradient included`, async () => {
    await selectBackend(backend);
    const x = tf.randomNormal([2, 3, 5, 4], 0, 1, "float32", 1) as tf.Tensor4D;
    const w = tf.randomNormal([2, 6, 10, 4], 0, 1, "float32", 2);
    const before = tf.memory().numTensors;
    for (
      const [name, f] of [["ours", upsampleNearest2x], [
        "composed",
        upsampleNearest2xComposed,
      ]] as const
    ) {
      const y = f(x);
      const expected = tf.tidy(() => tf.image.resizeNearestNeighbor(x, [6, 10]));
      await assertClose(y, expected, 1e-7, `${name} values`);
      // Each input pixel's gradient is the sum of w over its 2x2 block.
      const [dx] = tf.grads((a) => tf.sum(tf.mul(f(a as tf.Tensor4D), w)))([x]);
      const blocks = tf.tidy(() =>
        tf.sum(
          tf.reshape(tf.transpose(tf.reshape(w, [2, 3, 2, 5, 2, 4]), [0, 1, 3, 5, 2, 4]), [
            2,
            3,
            5,
            4,
            4,
          ]),
          4,
        )
      );
      await assertClose(dx, blocks, 1e-6, `${name} gradient`);
      tf.dispose([y, expected, dx, blocks]);
    }
    assertEquals(tf.memory().numTensors, before);
    tf.dispose([x, w]);
  });
}
