import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertRejects } from "@std/assert";
import { graphModelFeatures, randomConvFeatures } from "../eval/features.ts";
import { selectBackend } from "../backends/mod.ts";
import { assertClose } from "./helpers.ts";

await selectBackend("cpu");

// A graph model of ours in the converter's format: the mean colour of the image.
async function writeMeanColourModel(dir: string): Promise<string> {
  const model = {
    format: "graph-model",
    generatedBy: "ugatit tests",
    convertedBy: "hand",
    modelTopology: {
      node: [
        {
          name: "x",
          op: "Placeholder",
          attr: {
            dtype: { type: "DT_FLOAT" },
            shape: {
              shape: { dim: [{ size: "-1" }, { size: "-1" }, { size: "-1" }, { size: "3" }] },
            },
          },
        },
        {
          name: "axes",
          op: "Const",
          attr: {
            dtype: { type: "DT_INT32" },
            value: { tensor: { dtype: "DT_INT32", tensorShape: { dim: [{ size: "2" }] } } },
          },
        },
        {
          name: "features",
          op: "Mean",
          input: ["x", "axes"],
          attr: { T: { type: "DT_FLOAT" }, Tidx: { type: "DT_INT32" }, keep_dims: { b: false } },
        },
      ],
      library: {},
      versions: {},
    },
    weightsManifest: [{
      paths: ["weights.bin"],
      weights: [{ name: "axes", shape: [2], dtype: "int32" }],
    }],
  };
  await Deno.writeTextFile(`${dir}/model.json`, JSON.stringify(model));
  await Deno.writeFile(`${dir}/weights.bin`, new Uint8Array(new Int32Array([1, 2]).buffer));
  return `${dir}/model.json`;
}

Deno.test("graphModelFeatures() loads a converter-format graph model from disk and pools its output", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const extractor = await graphModelFeatures(await writeMeanColourModel(dir), 16);
    assertEquals(extractor.dim, 3);
    const images = tf.randomUniform([2, 16, 16, 3], -1, 1, "float32", 1) as tf.Tensor4D;
    const features = extractor.extract(images);
    assertEquals(features.shape, [2, 3]);
    await assertClose(features, tf.mean(images, [1, 2]), 1e-5, "mean colour");
    await assertRejects(
      () => graphModelFeatures(`${dir}/missing.json`),
      Error,
      "not a readable model.json",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the built-in extractor is deterministic and leaves no tensors behind", () => {
  const images = tf.randomUniform([3, 32, 32, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  const [a, b] = [randomConvFeatures(), randomConvFeatures()];
  const before = tf.memory().numTensors;
  const fa = a.extract(images);
  assertEquals(fa.shape, [3, 64]);
  assertEquals(fa.dataSync(), b.extract(images).dataSync());
  assertEquals(tf.memory().numTensors, before + 2);
});
