import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertGreater, assertStrictEquals } from "@std/assert";
import { selectBackend } from "../backends/mod.ts";
import { loadNativeLibraries } from "../backends/native/native_kernels.ts";
import { poisonRecycledArrays, recycledArrays } from "../backends/memory.ts";
import { generator } from "../layers/generator.ts";
import { discriminator } from "../layers/discriminator.ts";
import { assertClose, modelGradients } from "./helpers.ts";

// native-cpu keeps freed tensors' large arrays for the next outputs of their length.
const native = loadNativeLibraries();
const ignore = typeof native === "string";
if (ignore) console.log(`SKIPPED: recycled arrays on native-cpu (${native})`);

// The array behind a tensor, taken without reading it out (reading excludes it from reuse).
const arrayOf = (t: tf.Tensor) =>
  (tf.engine().backend as unknown as { data: { get(id: tf.DataId): { values: Float32Array } } })
    .data.get(t.dataId).values;
const reused = () => recycledArrays(tf.engine().backend);

Deno.test({
  name: "native-cpu reuses a freed tensor's array, never one read out or viewed elsewhere",
  ignore,
  fn: async () => {
    await selectBackend("native-cpu");
    const shape = [2, 64, 64, 8]; // 65,536 elements: large enough to be kept
    const x = tf.randomNormal(shape, 0, 1, "float32", 1);
    const y = tf.randomNormal(shape, 0, 1, "float32", 2);
    const [xs, ys] = [x.dataSync().slice(), y.dataSync().slice()];

    // Freed, then reused by the next output of its length, which is right.
    const a = tf.add(x, y);
    const array = arrayOf(a);
    a.dispose();
    const before = reused();
    const b = tf.mul(x, y);
    assertStrictEquals(arrayOf(b), array);
    assertEquals(reused(), before + 1);
    const product = await b.data();
    assert(product.every((v, i) => v === Math.fround(xs[i] * ys[i])), "x * y in a reused array");

    // Read out (dataSync), then freed: the reader keeps it; it is not handed out again.
    const c = tf.sub(x, y);
    const read = c.dataSync() as Float32Array;
    const copy = read.slice();
    c.dispose();
    const d = tf.add(x, y);
    assert(arrayOf(d) !== read);
    assertEquals(read, copy);

    // Viewed: the stock Unpack returns views of its input's array (contiguous slices). Freeing
    // the input must leave the views' values alone.
    const e = tf.add(x, y);
    const parts = tf.unstack(e);
    assertStrictEquals(arrayOf(parts[0]).buffer, arrayOf(e).buffer); // the case under test
    const partValues = arrayOf(parts[1]).slice();
    e.dispose();
    const f = tf.mul(x, x);
    assert(arrayOf(f).buffer !== arrayOf(parts[1]).buffer);
    assertEquals(arrayOf(parts[1]), partValues);
    tf.dispose([x, y, b, d, f, ...parts]);
  },
});

// A generator-and-discriminator gradient, as values.
async function gradients(): Promise<Float32Array[]> {
  const g = generator({ ch: 8, nRes: 1, imgSize: 64, light: true });
  const d = discriminator({ ch: 8, nLayers: 4 });
  const x = tf.randomUniform([2, 64, 64, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  const { grads } = modelGradients(g, d, x);
  const out = await Promise.all(grads.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([x, ...grads]);
  return out;
}

Deno.test({
  name: "on native-cpu a model's gradients from recycled arrays (NaN-filled when kept) equal cpu's",
  ignore,
  fn: async () => {
    await selectBackend("cpu");
    const reference = await gradients();
    await selectBackend("native-cpu");
    poisonRecycledArrays(true);
    try {
      await gradients(); // fills the pool with this model's sizes
      const before = reused();
      const ours = await gradients();
      assertGreater(reused() - before, 100);
      // A kernel that left any element of a recycled output unwritten, or added into it, gives NaN.
      for (let i = 0; i < ours.length; i++) {
        await assertClose(ours[i], reference[i], 1e-4, `gradient ${i}`);
      }
    } finally {
      poisonRecycledArrays(false);
    }
  },
});
