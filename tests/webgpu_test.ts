/**
 * The WebGPU path: golden fixtures and a convolution gradient on `navigator.gpu`. On a machine
 * without an adapter (no GPU, no Vulkan driver) it says that it skipped; CI installs Debian's
 * mesa-vulkan-drivers (lavapipe) so that it runs there.
 */
import * as tf from "@tensorflow/tfjs";
import {
  discriminator,
  discriminatorNames,
  type DiscriminatorParams,
  type DiscriminatorState,
  fromHost,
  fromReference,
  generator,
  generatorNames,
  type GeneratorParams,
  requestGpuAdapter,
  selectBackend,
  underPrefix,
} from "../mod.ts";
import { assertClose, nchwToNhwc, readFixture } from "./helpers.ts";

const available = (await requestGpuAdapter()) !== undefined;
const toNchw = (t: tf.Tensor4D) => tf.transpose(t, [0, 3, 1, 2]);

Deno.test("webgpu backend matches the PyTorch reference and the cpu gradients", async (t) => {
  if (!available) {
    console.log("  SKIPPED: no WebGPU adapter here (install mesa-vulkan-drivers for lavapipe)");
    return;
  }
  await selectBackend("webgpu");
  const { tensors, config } = await readFixture("light_s32_ch8");
  const x = nchwToNhwc(tensors.input);

  await t.step("generator", async () => {
    const gConfig = { ch: config.ch, nRes: config.n_res, imgSize: config.img_size, light: true };
    const { params } = fromReference(generatorNames(gConfig), underPrefix(tensors, "genA2B"));
    const out = generator(gConfig).apply(fromHost<GeneratorParams>(params), x);
    await assertClose(toNchw(out.image), tensors["genA2B.out.image"], 1e-4, "image");
    await assertClose(out.camLogit!, tensors["genA2B.out.cam_logit"], 1e-4, "cam_logit");
    await assertClose(toNchw(out.heatmap), tensors["genA2B.out.heatmap"], 1e-4, "heatmap");
  });

  await t.step("global discriminator", async () => {
    const dConfig = { ch: config.ch, nLayers: config.n_layers_global };
    const split = fromReference(discriminatorNames(dConfig), underPrefix(tensors, "disGA"));
    const [out] = discriminator(dConfig).apply(
      fromHost<DiscriminatorParams>(split.params),
      fromHost<DiscriminatorState>(split.state),
      x,
      false,
    );
    await assertClose(toNchw(out.logit), tensors["disGA.out.logit"], 1e-4, "logit");
    await assertClose(out.camLogit!, tensors["disGA.out.cam_logit"], 1e-4, "cam_logit");
  });

  await t.step("convolution gradients", async () => {
    const grads = async (backend: "cpu" | "webgpu") => {
      await selectBackend(backend);
      const a = tf.randomNormal([2, 12, 12, 3], 0, 1, "float32", 1) as tf.Tensor4D;
      const f = tf.randomNormal([4, 4, 3, 5], 0, 1, "float32", 2) as tf.Tensor4D;
      const g = tf.grads((a, f) =>
        tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 2, "valid")))
      )([a, f]);
      return Promise.all(g.map((t) => t.data()));
    };
    const [cpu, gpu] = [await grads("cpu"), await grads("webgpu")];
    await assertClose(gpu[0] as Float32Array, cpu[0] as Float32Array, 1e-4, "input gradient");
    await assertClose(gpu[1] as Float32Array, cpu[1] as Float32Array, 1e-4, "filter gradient");
  });
});
