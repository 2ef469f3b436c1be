import * as tf from "@tensorflow/tfjs";
import { assertEquals } from "@std/assert";
import { trainDomainClassifier } from "../eval/domain_classifier.ts";
import { selectBackend } from "../backends/mod.ts";

Deno.test("the domain classifier learns two separable domains and leaves no tensors behind", async () => {
  await selectBackend("wasm");
  // A: reddish noise, B: bluish noise
  const make = (r: number, b: number, seed: number) =>
    tf.tidy(() => {
      const noise = tf.randomUniform([64, 16, 16, 3], -0.3, 0.3, "float32", seed);
      return tf.add(noise, tf.reshape(tf.tensor1d([r, 0, b]), [1, 1, 1, 3])) as tf.Tensor4D;
    });
  const [a, b] = [make(0.6, -0.6, 1), make(-0.6, 0.6, 2)];
  const before = tf.memory().numTensors;
  const judge = trainDomainClassifier(a, b, { steps: 60, seed: 3 });
  const [testA, testB] = [make(0.6, -0.6, 4), make(-0.6, 0.6, 5)];
  const pa = await judge.probabilityB(testA);
  const pb = await judge.probabilityB(testB);
  assertEquals(pa.every((p) => p < 0.5), true, `A judged as B: ${Array.from(pa).slice(0, 4)}`);
  assertEquals(pb.every((p) => p > 0.5), true, `B judged as A: ${Array.from(pb).slice(0, 4)}`);
  tf.dispose([testA, testB]);
  judge.dispose();
  assertEquals(tf.memory().numTensors, before);
  tf.dispose([a, b]);
});
