/**
 * The WebGPU path: golden fixtures, a convolution gradient and a whole training iteration on
 * `navigator.gpu`, against the PyTorch reference and the cpu backend. On a machine without an
 * adapter (no GPU, no Vulkan driver) it says that it skipped; CI installs Debian's
 * mesa-vulkan-drivers (lavapipe) so that it runs there.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertLess } from "@std/assert";
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
  leaves,
  selectBackend,
  underPrefix,
  webgpuUnavailable,
} from "../mod.ts";
import { DEFAULT_WEIGHTS } from "../losses/objectives.ts";
import { disposeState, trainer, type TrainState } from "../train/step.ts";
import {
  describeAdapter,
  explainNoAdapter,
  isSoftwareAdapter,
  namesSoftwareAdapter,
  requestGpuAdapter,
  requiredLimitsOf,
} from "../backends/webgpu/start.ts";
import { trainWithReport } from "../cli/train.ts";
import { readSafetensors } from "../weights/safetensors.ts";
import { assertClose, makeDataset, nchwToNhwc, readFixture, tinyFlags } from "./helpers.ts";

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
        [s.gen, s.dis, s.sn, s.optG, s.optD].flatMap((t) => leaves(t)).map(async (x) =>
          (await x.data()) as Float32Array
        ),
      );
    const out = {
      before: await read(state),
      after: await read(next),
      params: leaves(state.gen).length + leaves(state.dis).length,
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

Deno.test("training on webgpu: loss terms read a step late, logged in order, NaN stops keep the checkpoint", async () => {
  if (!available) {
    console.log(`  SKIPPED: ${unavailable}`);
    return;
  }
  const root = await makeDataset({ train: 3, test: 1, size: 28 });
  const results = await Deno.makeTempDir();
  const name = root.split("/").pop();
  const quiet = { out: () => {}, warn: () => {} };
  try {
    const flags = { backend: "webgpu", iteration: "4", print_freq: "100", save_freq: "100" };
    const run = await trainWithReport(tinyFlags(root, results, flags), quiet);
    assertEquals([run.status, run.step], ["done", 4]);
    const log = (await Deno.readTextFile(`${results}/${name}/log.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l));
    assertEquals(log.map((r) => r.iteration), [1, 2, 3, 4]);
    assert(log.every((r) => Number.isFinite(r.cycle_A)));
    const ck = await readSafetensors(`${results}/${name}/model/latest.safetensors`);
    assertEquals(ck.metadata.step, "4");

    const warnings: string[] = [];
    const bad = tinyFlags(root, results, { ...flags, iteration: "8", adv_weight: "1e39" }, [
      "--resume",
    ]);
    const r = await trainWithReport(bad, { out: () => {}, warn: (l) => warnings.push(l) });
    assertEquals([r.status, r.step], ["diverged", 4]);
    const line = warnings.find((w) => w.startsWith("stopped at iteration 5"))!;
    assert(/loss term \w+ is (NaN|Infinity|-Infinity)/.test(line), line);
    assertEquals(
      (await readSafetensors(`${results}/${name}/model/latest.safetensors`)).metadata.step,
      "4",
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("webgpu diagnostics say in one line what is missing, and auto leaves software adapters alone", async () => {
  assertEquals(
    explainNoAdapter(false, undefined),
    "no WebGPU adapter: the Vulkan loader libvulkan.so.1 is missing " +
      "(Debian/Ubuntu: apt-get install libvulkan1)",
  );
  assert(
    explainNoAdapter(true, "/x/nvidia_icd.json").includes("VK_DRIVER_FILES=/x/nvidia_icd.json"),
  );
  assert(explainNoAdapter(undefined, undefined).includes("set VK_DRIVER_FILES"));
  // Deno may report limits as BigInt; requestDevice takes numbers.
  assertEquals(
    requiredLimitsOf({ maxBufferSize: 2n ** 32n, maxComputeWorkgroupSizeX: 1024, other: 1 }),
    { maxBufferSize: 2 ** 32, maxComputeWorkgroupSizeX: 1024 },
  );
  const nvidia = {
    info: { vendor: "4318", device: "8989", description: "NVIDIA H200", architecture: "" },
    requestDevice: () => Promise.resolve({}),
  };
  const lavapipe = {
    info: { vendor: "65541", device: "0", description: "llvmpipe (LLVM 15.0.6, 256 bits)" },
    requestDevice: () => Promise.resolve({}),
  };
  assertEquals(describeAdapter(nvidia), "NVIDIA H200 (vendor 0x10de, device 0x231d)");
  assertEquals([isSoftwareAdapter(nvidia), isSoftwareAdapter(lavapipe)], [false, true]);
  assertEquals(isSoftwareAdapter({ ...nvidia, isFallbackAdapter: true }), true);
  // What TensorFlow.js keeps of a page's adapter (vendor, architecture): Chromium's SwiftShader is
  // software (a page's replayed step then merges nothing, as on lavapipe), a GPU is not.
  assertEquals(
    [namesSoftwareAdapter("google swiftshader"), namesSoftwareAdapter("nvidia hopper")],
    [true, false],
  );

  if (!available) {
    console.log(`  SKIPPED (the live part): ${unavailable}`);
    return;
  }
  const adapter = await requestGpuAdapter();
  if (!isSoftwareAdapter(adapter!)) {
    console.log(`  SKIPPED (the software-adapter part): ${describeAdapter(adapter!)} is a GPU`);
    return;
  }
  const why = await webgpuUnavailable({ allowSoftware: false });
  assert(why?.endsWith("a software renderer, not a GPU"), why);
  const lines: string[] = [];
  assert((await selectBackend("auto", { log: (l) => lines.push(l) })).name !== "webgpu", lines[0]);
});
