/**
 * `deno task bench:conv`: our WGSL convolutions (`backends/webgpu/conv.ts`) against
 * TensorFlow.js's stock WebGPU kernels, same process, on the main geometries of the light model
 * (the generator's 7x7 stem, stride-2 downsampling, residual, upsampling and 7x7 output
 * convolutions; the discriminator's 4x4 stride-2 and final 4x4 stride-1 convolutions), each pass
 * (forward, input gradient, filter gradient) timed for both, alternating, after a warm-up:
 *
 *     deno task bench:conv [--img_size 64,128,256] [--ch 4] [--batch 1]
 *       [--passes fwd,dgrad,wgrad] [--only stem,res] [--reps 2] [--float16]
 *
 * Times are GPU time from timestamp queries where the adapter has `timestamp-query` (the sum of
 * the pass's dispatches), else wall time around `await data()` of a batch of calls. Prints
 * GFLOP/s of both and their ratio as a table, then one JSON line per geometry and pass, and a
 * summary (geometric mean of the ratios per pass). `--float16` times ours a third time, with
 * float16 tiles (`setConvFloat16`; the device needs `shader-f16`), beside the other two.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "@std/cli";
import { selectBackend, webgpuStarted } from "../backends/mod.ts";
import { registerWebGpuConvKernels, setConvFloat16 } from "../backends/webgpu/conv.ts";

const args = parseArgs(Deno.args, {
  string: ["img_size", "ch", "batch", "passes", "only", "reps"],
  boolean: ["float16"],
});
const sizes = String(args.img_size ?? "64,128,256").split(",").map(Number);
const ch = Number(args.ch ?? 4);
const batch = Number(args.batch ?? 1);
const reps = Number(args.reps ?? 2);
const PASSES = ["fwd", "dgrad", "wgrad"] as const;
type Pass = typeof PASSES[number];
const passes = String(args.passes ?? PASSES.join(",")).split(",") as Pass[];
const only = args.only ? String(args.only).split(",") : undefined;
for (const p of passes) {
  if (!PASSES.includes(p)) {
    console.error(`--passes: unknown pass "${p}"; choose from ${PASSES.join(", ")}`);
    Deno.exit(2);
  }
}
if (
  [...sizes, ch, batch, reps].some((v) => !Number.isInteger(v) || v < 1) || sizes.some((s) => s % 8)
) {
  console.error("--img_size (multiples of 8), --ch, --batch and --reps take positive integers");
  Deno.exit(2);
}

/** One convolution of the model: its input as the layer sees it (padded), filter and stride. */
interface Geometry {
  readonly name: string;
  readonly x: [number, number, number, number];
  readonly w: [number, number, number, number];
  readonly stride: number;
}

/** The light model's main convolutions at side `s`, width `c` (reflection padding included). */
function geometries(s: number, c: number): Geometry[] {
  const g = (name: string, side: number, k: number, cin: number, cout: number, stride = 1) => ({
    name,
    x: [batch, side, side, cin] as [number, number, number, number],
    w: [k, k, cin, cout] as [number, number, number, number],
    stride,
  });
  const d = s / 8; // the local discriminator's side after three stride-2 convolutions
  return [
    g("G stem 7x7", s + 6, 7, 3, c),
    g("G down1 3x3/2", s + 2, 3, c, 2 * c, 2),
    g("G down2 3x3/2", s / 2 + 2, 3, 2 * c, 4 * c, 2),
    g("G res 3x3", s / 4 + 2, 3, 4 * c, 4 * c),
    g("G up1 3x3", s / 2 + 2, 3, 4 * c, 2 * c),
    g("G up2 3x3", s + 2, 3, 2 * c, c),
    g("G out 7x7", s + 6, 7, c, 3),
    g("D conv1 4x4/2", s + 2, 4, 3, c, 2),
    g("D conv2 4x4/2", s / 2 + 2, 4, c, 2 * c, 2),
    g("D conv3 4x4/2", s / 4 + 2, 4, 2 * c, 4 * c, 2),
    g("D last 4x4", d + 2, 4, 4 * c, 8 * c),
    g("D out 4x4", d + 1, 4, 8 * c, 1),
  ].filter((x) => !only || only.some((o) => x.name.toLowerCase().includes(o.toLowerCase())));
}

await selectBackend("webgpu");
const gpu = webgpuStarted();
const timestamps = gpu?.timestamps ?? false;
if (args.float16 && !gpu?.shaderF16) {
  console.error(`--float16: the WebGPU device (${gpu?.adapter}) has no shader-f16`);
  Deno.exit(2);
}
// Who is timed: TensorFlow.js's kernels, ours, and with --float16 ours with float16 tiles.
const WHO = args.float16 ? ["tfjs", "ours", "ours16"] as const : ["tfjs", "ours"] as const;
type Who = typeof WHO[number];
function use(who: Who): void {
  registerWebGpuConvKernels(who !== "tfjs");
  setConvFloat16(who === "ours16");
}
console.log(
  `adapter: ${gpu?.adapter}; timing: ${
    timestamps ? "GPU timestamps" : "wall time around await data()"
  }; batch ${batch}, ch ${ch}, ${reps} timed rounds after one warm-up`,
);

/** Runs one pass's kernel once (returns its output). */
function kernelOf(pass: Pass, g: Geometry, x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor) {
  const common = {
    strides: g.stride,
    pad: "valid",
    dataFormat: "NHWC",
    dimRoundingMode: undefined,
  };
  const run = (name: string, inputs: tf.NamedTensorMap, attrs: Record<string, unknown>) =>
    tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  switch (pass) {
    case "fwd":
      return () => run("Conv2D", { x, filter: w }, { ...common, dilations: 1 });
    case "dgrad":
      return () => run("Conv2DBackpropInput", { dy, filter: w }, { ...common, inputShape: g.x });
    case "wgrad":
      return () => run("Conv2DBackpropFilter", { x, dy }, { ...common, filterShape: g.w });
  }
}

/** Milliseconds of one call: GPU time, or wall time per call of a batch of `calls`. */
async function time(f: () => tf.Tensor, calls: number): Promise<number> {
  if (timestamps) {
    const t = await tf.time(() => f().dispose());
    return t.kernelMs as number;
  }
  const start = performance.now();
  const outs = Array.from({ length: calls }, f);
  await outs[outs.length - 1].data();
  const ms = (performance.now() - start) / calls;
  tf.dispose(outs);
  return ms;
}

interface Row {
  size: number;
  geometry: string;
  pass: Pass;
  tfjs_ms: number;
  ours_ms: number;
  tfjs_gflops: number;
  ours_gflops: number;
  ratio: number;
  /** With --float16: ours with float16 tiles, and their speed over ours in float32. */
  ours16_ms?: number;
  float16_speedup?: number;
}
const rows: Row[] = [];
const fmt = (v: number, d = 2) => v.toFixed(d).padStart(8);
console.log(
  `${"size".padStart(4)} ${"geometry".padEnd(15)} ${"pass".padEnd(5)} ` +
    `${"tfjs ms".padStart(8)} ${"ours ms".padStart(8)} ${"tfjs GF/s".padStart(9)} ` +
    `${"ours GF/s".padStart(9)} ${"ours/tfjs".padStart(9)}` +
    (args.float16 ? ` ${"f16 ms".padStart(8)} ${"f16/f32".padStart(8)}` : ""),
);
for (const size of sizes) {
  for (const g of geometries(size, ch)) {
    const x = tf.randomNormal(g.x, 0, 1, "float32", 1);
    const w = tf.randomNormal(g.w, 0, 0.1, "float32", 2);
    const [, h, wd] = g.x;
    const [oh, ow] = [h, wd].map((v) => Math.floor((v - g.w[0]) / g.stride) + 1);
    const dy = tf.randomNormal([batch, oh, ow, g.w[3]], 0, 1, "float32", 3);
    const flops = 2 * batch * oh * ow * g.w[0] * g.w[1] * g.w[2] * g.w[3];
    for (const pass of passes) {
      const f = kernelOf(pass, g, x, w, dy);
      // Wall-time batches of about 50 ms, from the warm-up's time.
      const best: Record<Who, number> = { tfjs: Infinity, ours: Infinity, ours16: Infinity };
      const calls: Record<Who, number> = { tfjs: 1, ours: 1, ours16: 1 };
      for (const who of WHO) {
        use(who);
        const start = performance.now();
        const out = f();
        await out.data();
        out.dispose();
        calls[who] = Math.max(1, Math.min(20, Math.round(50 / (performance.now() - start))));
      }
      for (let r = 0; r < reps; r++) {
        for (const who of WHO) {
          use(who);
          best[who] = Math.min(best[who], await time(f, calls[who]));
        }
      }
      const row: Row = {
        size,
        geometry: g.name,
        pass,
        tfjs_ms: Number(best.tfjs.toFixed(3)),
        ours_ms: Number(best.ours.toFixed(3)),
        tfjs_gflops: Number((flops / best.tfjs / 1e6).toFixed(2)),
        ours_gflops: Number((flops / best.ours / 1e6).toFixed(2)),
        ratio: Number((best.tfjs / best.ours).toFixed(2)),
        ...(args.float16
          ? {
            ours16_ms: Number(best.ours16.toFixed(3)),
            float16_speedup: Number((best.ours / best.ours16).toFixed(2)),
          }
          : {}),
      };
      rows.push(row);
      console.log(
        `${String(size).padStart(4)} ${g.name.padEnd(15)} ${pass.padEnd(5)} ${fmt(row.tfjs_ms)} ` +
          `${fmt(row.ours_ms)} ${fmt(row.tfjs_gflops, 2).padStart(9)} ` +
          `${fmt(row.ours_gflops, 2).padStart(9)} ${fmt(row.ratio, 2).padStart(8)}x` +
          (args.float16
            ? ` ${fmt(row.ours16_ms!)} ${fmt(row.float16_speedup!, 2).padStart(7)}x`
            : ""),
      );
    }
    tf.dispose([x, w, dy]);
  }
}
use("ours");
for (const row of rows) console.log(JSON.stringify({ bench: "conv", batch, ch, ...row }));
const geomean = (xs: number[]) => Math.exp(xs.reduce((s, v) => s + Math.log(v), 0) / xs.length);
const summary = Object.fromEntries(
  passes.map((p) => {
    const ratios = rows.filter((r) => r.pass === p).map((r) => r.ratio);
    const speedups = rows.filter((r) => r.pass === p).map((r) => r.float16_speedup ?? 1);
    return [p, {
      geomean_ratio: Number(geomean(ratios).toFixed(2)),
      at_least_3x: `${ratios.filter((r) => r >= 3).length}/${ratios.length}`,
      ...(args.float16 ? { float16_geomean_speedup: Number(geomean(speedups).toFixed(2)) } : {}),
    }];
  }),
);
console.log(JSON.stringify({ bench: "conv", summary, timing: timestamps ? "gpu" : "wall" }));
