/**
 * Every WGSL shader a replayed WebGPU training step makes on a GPU, through Chrome's compiler
 * (Tint, in headless Chromium): TensorFlow.js's kernels and ours, the convolutions' GPU tiles
 * (`setConvProfile("gpu")`), and the step's fused and merged shaders. The other tests compile them
 * with Deno's WebGPU (naga), which checks less: it let a barrier through in a loop whose bound came
 * from the workgroup id, which Tint refuses, so a page on a machine with a GPU would have had
 * shaders that do not compile. The shaders are made on this machine's adapter (lavapipe in CI)
 * and only compiled in Chromium, never run there. Skipped, saying so, without Chromium or without
 * a WebGPU adapter here.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { overLeaves } from "../backends/compile.ts";
import { selectBackend } from "../backends/mod.ts";
import { compileWebGpuCall } from "../backends/webgpu/compiled_call.ts";
import { setConvProfile } from "../backends/webgpu/conv.ts";
import { webgpuUnavailable, withF16Directive } from "../backends/webgpu/start.ts";
import { webgpuInternals } from "../backends/webgpu/trace.ts";
import { flagsOrExit } from "../cli/command.ts";
import { MODEL_FLAGS, SEED_FLAG, TRAINING_FLAGS } from "../cli/flags.ts";
import { serveFolder } from "../tools/build_web.ts";
import { withChromium } from "../tools/chromium.ts";
import { configFromSettings } from "../train/settings.ts";
import { type StepInputs, trainer } from "../train/step.ts";
import { leaves } from "../tree/tree.ts";
import { chromiumTest, stepCallInputs } from "./helpers.ts";

/** A shader Chromium refused: its first error, with the lines around it. */
interface Refused {
  readonly line: number;
  readonly message: string;
  readonly excerpt: string;
}

// The shaders a GPU's replayed step compiles: the model at a small size with every kind of layer
// (both discriminators: stride-2 and 4 x 4 / 1 convolutions), recorded, then replayed
// merged, as on a GPU.
async function gpuStepShaders(): Promise<string[]> {
  const device = webgpuInternals()!.device as unknown as {
    createShaderModule(d: { code: string }): unknown;
  };
  const sources = new Set<string>();
  const create = device.createShaderModule;
  device.createShaderModule = (d) => {
    sources.add(withF16Directive(d.code)); // as the device compiles it
    return create.call(device, d);
  };
  setConvProfile("gpu");
  try {
    const args = ["--light", "--img_size", "32", "--ch", "4", "--n_res", "1", "--n_dis", "4"];
    const flags = flagsOrExit({ ...MODEL_FLAGS, ...TRAINING_FLAGS, ...SEED_FLAG }, args, {});
    const model = trainer(configFromSettings(flags));
    const { step: _, ...init } = model.init(5);
    const shape = [1, 32, 32, 3];
    const batch = { realA: tf.zeros(shape), realB: tf.zeros(shape), step: tf.scalar(0) };
    const fn = overLeaves(model.update, init, batch as StepInputs);
    const compiled = compileWebGpuCall(fn, { log: (l) => assert(false, l), merge: true });
    let state = leaves(init);
    for (let call = 0; call < 4; call++) {
      const inputs = stepCallInputs(shape, call);
      const r = compiled.call(state, inputs);
      await Promise.all(r.outputs.map((t) => t.data()));
      tf.dispose([...inputs, ...r.outputs]);
      state = r.state;
    }
    assertEquals(compiled.mode, "replaying");
    compiled.dispose();
    tf.dispose([...state, ...leaves(batch)]);
  } finally {
    setConvProfile(undefined);
    device.createShaderModule = create;
  }
  return [...sources];
}

// In the page: each shader compiled (not run); the first error of each one refused, and how many
// need `shader-f16` where this browser's adapter has none.
const COMPILE_ALL = `(async () => {
  const sources = await (await fetch("shaders.json")).json();
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) return { error: "no WebGPU adapter in the page" };
  const f16 = adapter.features.has("shader-f16");
  const device = await adapter.requestDevice({ requiredFeatures: f16 ? ["shader-f16"] : [] });
  const refused = [];
  let checked = 0, needF16 = 0;
  for (const code of sources) {
    if (!f16 && code.startsWith("enable f16;")) { needF16++; continue; }
    const info = await device.createShaderModule({ code }).getCompilationInfo();
    checked++;
    const error = info.messages.find((m) => m.type === "error");
    if (!error) continue;
    const lines = code.split("\\n");
    const excerpt = lines.slice(Math.max(0, error.lineNum - 4), error.lineNum).join("\\n");
    refused.push({ line: error.lineNum, message: error.message, excerpt });
  }
  return { checked, needF16, refused };
})()`;

chromiumTest("every shader of a GPU's replayed step compiles in Chrome", async (exe) => {
  const why = await webgpuUnavailable();
  if (why) {
    console.log(`  SKIPPED: ${why}`);
    return;
  }
  await selectBackend("webgpu");
  const shaders = await gpuStepShaders();
  assert(shaders.length > 100, `${shaders.length} shaders made`);
  assert(shaders.some((c) => c.includes("var<workgroup> Bs")), "no tiled convolution made");
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/index.html`, "<!doctype html><title>shaders</title>");
  await Deno.writeTextFile(`${dir}/shaders.json`, JSON.stringify(shaders));
  const { server, url } = serveFolder(dir, 0);
  try {
    const result = await withChromium(exe, async (page) => {
      await page.goto(url);
      return await page.evaluate<
        { error?: string; checked: number; needF16: number; refused: Refused[] }
      >(COMPILE_ALL);
    }, { webgpu: true });
    if (result.error) {
      console.log(`  SKIPPED: ${result.error}`);
      return;
    }
    if (result.needF16) {
      console.log(`  ${result.needF16} shaders need shader-f16, which this browser lacks`);
    }
    assertEquals(
      result.refused.map((r) => `line ${r.line}: ${r.message}\n${r.excerpt}`),
      [],
      `${result.refused.length} of ${result.checked} shaders refused`,
    );
    assertEquals(result.checked + result.needF16, shaders.length);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
