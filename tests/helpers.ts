/**
 * Shared test helpers: comparisons with relative error, tensor-leak checks, fixtures.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertLess } from "@std/assert";
import { decodeSafetensors, type HostTensor } from "../weights/mod.ts";
import { selectBackend, webgpuUnavailable } from "../backends/mod.ts";
import { findChromium } from "../tools/chromium.ts";

export { findTorchPython } from "../tools/pytorch/find_python.ts";
import { type Flags, parseFlags } from "../cli/flags.ts";
import { TRAIN_FLAGS } from "../cli/train.ts";
import { EVAL_FLAGS } from "../cli/eval.ts";
import { EXPORT_FLAGS } from "../cli/export.ts";
import { ABLATE_FLAGS } from "../cli/ablate.ts";
import type { Generator } from "../layers/generator.ts";
import type { Discriminator } from "../layers/discriminator.ts";
import { dispose, flatten, leaves, unflatten } from "../tree/tree.ts";
import {
  type Trace,
  traceCall,
  type TracedDispatch,
  webgpuInternals,
} from "../backends/webgpu/trace.ts";
import { overLeaves } from "../backends/compile.ts";
import { flagsOrExit } from "../cli/command.ts";
import { MODEL_FLAGS, SEED_FLAG, TRAINING_FLAGS } from "../cli/flags.ts";
import { configFromSettings } from "../train/settings.ts";
import { type StepInputs, trainer } from "../train/step.ts";

/**
 * Largest absolute difference divided by the largest magnitude of `expected`.
 * @param actual values under test
 * @param expected reference values
 * @returns the relative error
 */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert(
    actual.length === expected.length,
    `lengths differ: ${actual.length} vs ${expected.length}`,
  );
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / Math.max(scale, 1e-30);
}

/**
 * Asserts that two tensors (or arrays) agree within a relative error.
 * @param actual values under test
 * @param expected reference values
 * @param tolerance largest relative error allowed
 * @param what a name for the message
 */
export async function assertClose(
  actual: tf.Tensor | ArrayLike<number>,
  expected: tf.Tensor | HostTensor | ArrayLike<number>,
  tolerance: number,
  what = "values",
): Promise<number> {
  const a = actual instanceof tf.Tensor ? await actual.data() : actual;
  const e = expected instanceof tf.Tensor
    ? await expected.data()
    : "dtype" in expected
    ? (expected as HostTensor).data
    : expected;
  const err = relativeError(a as ArrayLike<number>, e as ArrayLike<number>);
  assertLess(err, tolerance, `${what}: relative error ${err.toExponential(2)} >= ${tolerance}`);
  return err;
}

/**
 * Runs `fn` and asserts that it leaves the number of live tensors as it found it, once its
 * results are disposed.
 * @param fn returns the tensors it made (disposed by this helper)
 */
export function assertNoLeak(fn: () => tf.TensorContainer): void {
  const before = tf.memory().numTensors;
  tf.dispose(fn());
  const after = tf.memory().numTensors;
  assert(after === before, `tensor count went from ${before} to ${after}`);
}

/**
 * A test that runs on the `webgpu` backend (selected first), or says plainly that it skipped where
 * there is no WebGPU adapter (CI has lavapipe).
 * @param name the test's name
 * @param fn its body
 */
export function webgpuTest(name: string, fn: () => Promise<void>): void {
  Deno.test(name, async () => {
    const unavailable = await webgpuUnavailable();
    if (unavailable) {
      console.log(`  SKIPPED: ${unavailable}`);
      return;
    }
    await selectBackend("webgpu");
    await fn();
  });
}

/**
 * A test that drives headless Chromium (Debian's `chromium`), or says plainly that it skipped
 * where none is installed.
 * @param name the test's name
 * @param fn its body, given the browser's executable
 */
export function chromiumTest(name: string, fn: (exe: string) => Promise<void>): void {
  Deno.test(name, async () => {
    const exe = await findChromium();
    if (!exe) {
      console.log("  SKIPPED: no chromium here (apt-get install chromium)");
      return;
    }
    await fn(exe);
  });
}

/**
 * Reads a golden fixture: its tensors and configuration.
 * @param name fixture name, e.g. `light_s32_ch8`
 * @returns the tensors and the JSON configuration
 */
export async function readFixture(name: string): Promise<{
  tensors: Record<string, HostTensor>;
  config: {
    ch: number;
    n_res: number;
    img_size: number;
    light: boolean;
    n_layers_global: number;
    n_layers_local: number;
  };
}> {
  const dir = new URL("./fixtures/", import.meta.url);
  const bytes = await Deno.readFile(new URL(`${name}.safetensors`, dir));
  const config = JSON.parse(await Deno.readTextFile(new URL(`${name}.json`, dir)));
  return { tensors: decodeSafetensors(bytes, name).tensors, config };
}

/**
 * NCHW host tensor to an NHWC tensor.
 * @param t host tensor `[N, C, H, W]`
 * @returns `[N, H, W, C]`
 */
export function nchwToNhwc(t: HostTensor): tf.Tensor4D {
  return tf.tidy(() =>
    tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]), [
      0,
      2,
      3,
      1,
    ])
  );
}

/**
 * Makes a tiny dataset in the reference's layout: coloured PNGs (A reddish, B bluish) with a
 * square whose place varies, so that crops and flips change them.
 * @param options images per training and test folder, and their side
 * @returns the dataset's root folder (a temporary folder)
 */
export async function makeDataset(
  { train, test, size }: { train: number; test: number; size: number },
): Promise<string> {
  const { default: sharp } = await import("sharp");
  const root = await Deno.makeTempDir({ prefix: "ugatit-data-" });
  for (
    const [part, n] of [["trainA", train], ["trainB", train], ["testA", test], [
      "testB",
      test,
    ]] as const
  ) {
    await Deno.mkdir(`${root}/${part}`);
    for (let i = 0; i < n; i++) {
      const px = new Uint8Array(size * size * 3);
      const a = part.endsWith("A");
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const inSquare = x >= i % size && x < (i % size) + size / 3 && y >= size / 4 &&
            y < size / 2;
          const o = (y * size + x) * 3;
          px.set(inSquare ? [255, 255, 255] : a ? [200, 40 + 8 * i, 40] : [40, 40 + 8 * i, 200], o);
        }
      }
      await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toFile(
        `${root}/${part}/${i}.png`,
      );
    }
  }
  return root;
}

/** `deno run` with the permissions the training tasks grant (`deno.json`), for running a command. */
export const RUN_AS_TASK: readonly string[] = [
  "run",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-ffi",
  "--allow-sys",
];

/** Every command's flags together (train, translate, eval, export, ablate): what {@linkcode tinyFlags} decodes. */
export const TEST_FLAGS = { ...TRAIN_FLAGS, ...EVAL_FLAGS, ...EXPORT_FLAGS, ...ABLATE_FLAGS };

/**
 * Flags for a tiny training run (24 px, ch 2, one residual block, 3 iterations on cpu) on a
 * dataset made by {@linkcode makeDataset}, valid for every command (train, translate, eval,
 * export); `overrides` replace values, `extra` is appended.
 * @param root the dataset folder
 * @param results the result folder
 * @param overrides flag values by name
 * @param extra further arguments (e.g. `--resume`)
 * @returns the parsed flags
 */
export function tinyFlags(
  root: string,
  results: string,
  overrides: Record<string, string> = {},
  extra: string[] = [],
): Flags<typeof TEST_FLAGS> {
  const values: Record<string, string> = {
    dataset: root,
    result_dir: results,
    backend: "cpu",
    img_size: "24",
    ch: "2",
    n_res: "1",
    n_dis: "4",
    iteration: "3",
    print_freq: "2",
    save_freq: "100",
    seed: "5",
    ...overrides,
  };
  return parseFlags(TEST_FLAGS, [
    ...(values.light === undefined ? ["--light"] : []), // light unless an override says
    ...Object.entries(values).flatMap(([k, v]) => [`--${k}`, v]),
    ...extra,
  ]);
}

/**
 * The gradients of a small loss (the discriminator's logits squared, both CAM logits, the
 * generator's heatmap) through a generator and a discriminator judging its output, for fresh
 * parameters of both.
 * @param g the generator
 * @param d the discriminator
 * @param x the generator's input
 * @returns each parameter's name (`g.` or `d.` first) and gradient, in one order
 */
export function modelGradients(
  g: Generator,
  d: Discriminator,
  x: tf.Tensor4D,
): { names: string[]; grads: tf.Tensor[] } {
  const gp = flatten(g.init(0));
  const init = d.init(1);
  const dp = flatten(init.params);
  const names = [...Object.keys(gp).map((k) => `g.${k}`), ...Object.keys(dp).map((k) => `d.${k}`)];
  const nG = Object.keys(gp).length;
  const grads = tf.grads((...ts: tf.Tensor[]) => {
    const gParams = unflatten(Object.fromEntries(Object.keys(gp).map((k, i) => [k, ts[i]])));
    const dParams = unflatten(Object.fromEntries(Object.keys(dp).map((k, i) => [k, ts[nG + i]])));
    // deno-lint-ignore no-explicit-any
    const o = g.apply(gParams as any, x);
    // deno-lint-ignore no-explicit-any
    const [s] = d.apply(dParams as any, init.state, o.image, true);
    return tf.addN([
      tf.mean(tf.square(s.logit)),
      tf.mean(s.camLogit!),
      tf.mean(o.camLogit!),
      tf.mean(o.heatmap),
    ]);
  })([...Object.values(gp), ...Object.values(dp)]);
  dispose([gp, dp, init.state]);
  return { names, grads };
}

/**
 * A square of a PNG's pixels, as RGB bytes (e.g. one cell of a figure).
 * @param file the PNG
 * @param left its left edge
 * @param top its top edge
 * @param side its side
 * @returns `side * side * 3` bytes, row by row
 */
export async function pngSquare(
  file: string,
  left: number,
  top: number,
  side: number,
): Promise<Uint8Array> {
  const { default: sharp } = await import("sharp");
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const at = ((top + y) * info.width + left + x) * info.channels;
      out.set(data.subarray(at, at + 3), (y * side + x) * 3);
    }
  }
  return out;
}

/**
 * The bytes a picture's RGB values in [0, 1] become in a PNG, zoomed by whole pixels.
 * @param rgb `size * size * 3` values
 * @param size its side
 * @param zoom the zoom
 * @returns `(size * zoom)^2 * 3` bytes
 */
export function zoomedBytes(rgb: Float32Array, size: number, zoom: number): Uint8Array {
  const side = size * zoom;
  const out = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const s = (Math.floor(y / zoom) * size + Math.floor(x / zoom)) * 3;
      for (let k = 0; k < 3; k++) {
        out[(y * side + x) * 3 + k] = Math.round(Math.min(1, Math.max(0, rgb[s + k])) * 255);
      }
    }
  }
  return out;
}

/**
 * A dispatch of a hand-made trace (`backends/webgpu/`'s planning and fusion tests): one workgroup,
 * 16 zero bytes of uniforms, a stand-in pipeline.
 * @param kernel its kernel's name (and shader key)
 * @param output the value it writes
 * @param inputs the values it reads
 * @returns the dispatch
 */
export function handMadeDispatch(kernel: string, output: number, inputs: number[]): TracedDispatch {
  return {
    kernel,
    shader: kernel,
    pipeline: STAND_IN_PIPELINE,
    workgroups: [1, 1, 1],
    outputs: [output],
    inputs,
    uniforms: new Uint8Array(16),
  };
}

/** The pipeline of {@linkcode handMadeDispatch}es (never run). */
export const STAND_IN_PIPELINE = {} as GPUComputePipeline;

/**
 * The inputs of call `call` of a training step over its leaves (`overLeaves` of `update`): two
 * image batches of `shape`, seeded by the call, and the step count.
 * @param shape `[batch, size, size, 3]`
 * @param call the call's number
 * @returns realA, realB and step (the caller disposes them)
 */
export function stepCallInputs(shape: number[], call: number): tf.Tensor[] {
  return [
    tf.randomUniform(shape, -1, 1, "float32", call),
    tf.randomUniform(shape, -1, 1, "float32", 10 + call),
    tf.scalar(call),
  ];
}

/**
 * One training iteration recorded without running it (`traceCall` with `execute: false`), on the
 * WebGPU backend, light, batch 1, `--n_dis 4` unless `args` say otherwise.
 * @param args model and training flags (`--img_size` among them)
 * @returns the trace and what frees its tensors
 */
export function traceTrainingStep(args: string[]): { trace: Trace; dispose: () => void } {
  const flags = flagsOrExit({ ...MODEL_FLAGS, ...TRAINING_FLAGS, ...SEED_FLAG }, args, {
    n_dis: 4,
  });
  const model = trainer(configFromSettings(flags));
  const { step: _, ...state } = model.init(1);
  const shape = [1, flags.img_size, flags.img_size, 3];
  const batch = { realA: tf.zeros(shape), realB: tf.zeros(shape), step: tf.scalar(0) };
  const traced = traceCall(
    webgpuInternals()!,
    overLeaves(model.update, state, batch as StepInputs),
    leaves(state),
    leaves(batch),
    { execute: false },
  );
  if (!traced.trace) throw new Error(`cannot trace the step: ${traced.unsupported}`);
  const tensors = [
    ...leaves(state),
    ...leaves(batch),
    ...traced.result.state,
    ...traced.result.outputs,
  ];
  return { trace: traced.trace, dispose: () => tf.dispose(tensors) };
}
