/**
 * The WebGPU path: golden fixtures, a convolution gradient and a whole training iteration on
 * `navigator.gpu`, against the PyTorch reference and the cpu backend. On a machine without an
 * adapter (no GPU, no Vulkan driver) it says that it skipped; CI installs Debian's
 * mesa-vulkan-drivers (lavapipe) so that it runs there.
 */
import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertLess } from "@std/assert";
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
  selectBackend,
  underPrefix,
  webgpuUnavailable,
} from "../mod.ts";
import { DEFAULT_WEIGHTS } from "../losses/objectives.ts";
import { collectTensors, disposeState, trainer, type TrainState } from "../train/step.ts";
import { assertClose, nchwToNhwc, readFixture } from "./helpers.ts";

const unavailable = await webgpuUnavailable();
const available = unavailable === undefined;
const toNchw = (t: tf.Tensor4D) => tf.transpose(t, [0, 3, 1, 2]);

Deno.test("webgpu backend matches the PyTorch reference and the cpu gradients", async (t) => {
  if (!available) {
    console.log(`  SKIPPED: ${unavailable}`);
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

Deno.test("one training iteration on webgpu equals the cpu backend's", async () => {
  if (!available) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  const t = trainer({
    generator: { ch: 8, nRes: 2, imgSize: 32, light: true },
    global: { ch: 8, nLayers: 5 },
    local: { ch: 8, nLayers: 3 },
    weights: DEFAULT_WEIGHTS,
    lr: 1e-4,
    weightDecay: 1e-4,
    iterations: 10,
    decay: true,
  });
  // Both steps (discriminators, then generators), spectral norm, Adam and rho clipping, from the
  // same initial state (init is backend-independent) and images; every tensor of the state read.
  const iterate = async (backend: "cpu" | "webgpu") => {
    await selectBackend(backend);
    const state = t.init(3);
    const a = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 1) as tf.Tensor4D;
    const b = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 2) as tf.Tensor4D;
    const { state: next, terms } = t.step(state, a, b);
    const read = (s: TrainState) =>
      Promise.all(
        [s.gen, s.dis, s.sn, s.optG, s.optD].flatMap(collectTensors).map(async (x) =>
          (await x.data()) as Float32Array
        ),
      );
    const out = {
      before: await read(state),
      after: await read(next),
      params: Object.keys(state.gen).length + Object.keys(state.dis).length,
    };
    tf.dispose([a, b, ...Object.values(terms)]);
    disposeState(state);
    disposeState(next);
    return out;
  };
  const cpu = await iterate("cpu");
  const gpu = await iterate("webgpu");
  assertEquals(gpu.after.length, cpu.after.length);
  for (let i = 0; i < cpu.after.length; i++) {
    await assertClose(gpu.after[i], cpu.after[i], 1e-3, `state tensor ${i}`);
    // The change itself of the spectral-norm vectors and Adam's moments (the first moment is the
    // gradient, scaled), not only the value it was added to. A parameter's first Adam step is
    // about lr * sign(gradient): too sensitive to gradients near zero to compare this way.
    if (i < cpu.params || cpu.before[i].length !== cpu.after[i].length) continue;
    // Measured against the change's own size, or a thousandth of the value where the change is
    // nothing (a spectral-norm vector of one element stays at 1, give or take a rounding).
    const [c, g] = [cpu, gpu].map((s) => s.after[i].map((v, j) => v - s.before[i][j]));
    let [diff, scale] = [0, 0];
    for (let j = 0; j < c.length; j++) {
      diff = Math.max(diff, Math.abs(g[j] - c[j]));
      scale = Math.max(scale, Math.abs(c[j]), 1e-3 * Math.abs(cpu.after[i][j]));
    }
    assertLess(diff / scale, 1e-3, `change of state tensor ${i}: relative error ${diff / scale}`);
  }
});
