/**
 * `deno task bench:loads`: what the adapter pays for a convolution's reads, against its
 * arithmetic. It times the inner loop of our direct convolution (`conv.ts`'s `directCode`: a
 * thread a run of `--run` output pixels of one row and 4 output channels, the input's values
 * sliding through a window along the filter's row) for a 3 x 3 filter over a `--size`² image of
 * `--ch` channels to `--ch`, with its operands read from different places:
 *
 *     deno task bench:loads [--size 24] [--ch 16] [--run 12] [--count 200] [--rounds 3]
 *
 * - `storage`: the input and the filter from storage buffers, as ours read them.
 * - `uniform_filter`: the filter from a uniform buffer (where it fits one binding).
 * - `textures`: both from `rgba32float` textures, a texel a channel quad.
 * - `no_reads`: the operands made from the loop counters: the arithmetic, loops and stores alone.
 * - `empty`: the same workgroups doing nothing (the dispatch's own cost).
 *
 * Each case encodes `--count` dispatches into one pass, submits once and waits (wall time); the
 * cases take turns over `--rounds` rounds and each keeps its best. The three that read real data
 * must agree bit for bit (the same products in the same order), or the tool fails.
 *
 * On lavapipe (Mesa 22.3) a storage buffer read is a loop over the SIMD lanes with a bounds check
 * and a branch for each lane and component, whether or not the lanes read the same address; this
 * tool says how much of a convolution that is, and how much is left with none.
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import { describeAdapter, requestGpuAdapter, webgpuUnavailable } from "../backends/webgpu/start.ts";

const args = parseArgs(Deno.args, { string: ["size", "ch", "run", "count", "rounds"] });
const size = Number(args.size ?? 24);
const ch = Number(args.ch ?? 16);
const run = Number(args.run ?? 12);
const count = Number(args.count ?? 200);
const rounds = Number(args.rounds ?? 3);
if (
  [size, ch, run, count, rounds].some((v) => !Number.isInteger(v) || v < 1) || ch % 4 !== 0 ||
  size % run !== 0
) {
  console.error(
    "--size, --ch, --run, --count, --rounds take positive integers; --ch a multiple of 4; " +
      "--run a divisor of --size",
  );
  Deno.exit(2);
}

const why = await webgpuUnavailable();
if (why) {
  console.error(`bench:loads: ${why}`);
  Deno.exit(1);
}
const adapter = (await requestGpuAdapter())!;
const device = await adapter.requestDevice() as GPUDevice;
const THREADS = 16; // as the direct convolution's workgroups
const TEXELS_PER_ROW = 256;

type Source = "storage" | "uniform" | "texture" | "none";
const quads = (ch * ch * 9) / 4; // the filter's vec4s
const fitsUniform = 16 * quads <= Number(device.limits.maxUniformBufferBindingSize);

/** WGSL of the direct 3 x 3 correlation with its input and filter read from `x` and `w`. */
function shader(x: Source, w: Source, work = true): string {
  const rows = [...Array(run).keys()];
  const texel = (t: string, at: string) =>
    `textureLoad(${t}, vec2<i32>((${at}) % ${TEXELS_PER_ROW}, (${at}) / ${TEXELS_PER_ROW}), 0)`;
  const readX = (at: string) =>
    x === "texture" ? texel("xt", at) : x === "none" ? `vec4<f32>(f32(${at}))` : `xs[${at}]`;
  const readW = (at: string) =>
    w === "texture" ? texel("wt", at) : w === "none" ? `vec4<f32>(f32(${at}))` : `ws[${at}]`;
  const decl = [
    x === "texture"
      ? "@group(0) @binding(0) var xt : texture_2d<f32>;"
      : x === "storage"
      ? "@group(0) @binding(0) var<storage, read> xs : array<vec4<f32>>;"
      : "",
    w === "texture"
      ? "@group(0) @binding(1) var wt : texture_2d<f32>;"
      : w === "uniform"
      ? `@group(0) @binding(1) var<uniform> ws : array<vec4<f32>, ${quads}>;`
      : w === "storage"
      ? "@group(0) @binding(1) var<storage, read> ws : array<vec4<f32>>;"
      : "",
    "@group(0) @binding(2) var<storage, read_write> result : array<vec4<f32>>;",
  ].join("\n");
  const column = (i: string) => `clamp(ox0 - 1 + ${i}, 0, ${size - 1})`;
  const body = `
  let runsX = ${size / run};
  let thread = i32(wg.x) * ${THREADS} + i32(li);
  let live = thread < ${size} * runsX;
  let t = min(thread, ${size} * runsX - 1);
  let oy = t / runsX;
  let ox0 = (t - oy * runsX) * ${run};
  let n0 = i32(wg.y) * 4;
  ${rows.map((i) => `var a${i} = vec4<f32>(0.0);`).join(" ")}
  ${rows.map((i) => `var v${i} : vec4<f32>;`).join(" ")}
  for (var c0 = 0; c0 < ${ch}; c0 += 4) {
    for (var ty = 0; ty < 3; ty++) {
      let rowAt = clamp(oy - 1 + ty, 0, ${size - 1}) * ${size * ch} + c0;
      ${
    rows.slice(0, -1).map((i) => `v${i} = ${readX(`(rowAt + ${column(`${i}`)} * ${ch}) / 4`)};`)
      .join("\n      ")
  }
      for (var tx = 0; tx < 3; tx++) {
        v${run - 1} = ${readX(`(rowAt + ${column(`${run - 1} + tx`)} * ${ch}) / 4`)};
        ${
    [0, 1, 2, 3].map((k) =>
      `let b${k} = ${readW(`(((ty * 3 + tx) * ${ch} + c0 + ${k}) * ${ch} + n0) / 4`)};`
    ).join("\n        ")
  }
        ${
    rows.map((i) =>
      `a${i} = fma(vec4<f32>(v${i}.w), b3, fma(vec4<f32>(v${i}.z), b2, ` +
      `fma(vec4<f32>(v${i}.y), b1, fma(vec4<f32>(v${i}.x), b0, a${i}))));`
    ).join("\n        ")
  }
        ${rows.slice(0, -1).map((i) => `v${i} = v${i + 1};`).join(" ")}
      }
    }
  }
  ${
    rows.map((i) => `if (live) { result[((oy * ${size} + ox0 + ${i}) * ${ch} + n0) / 4] = a${i}; }`)
      .join("\n  ")
  }`;
  return `${decl}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) li : u32) {
  ${work ? body : "if (li == 999u) { result[0] = vec4<f32>(0.0); }"}
}`;
}

const input = new Float32Array(size * size * ch).map((_, i) => Math.sin(i) * 0.5);
const filter = new Float32Array(9 * ch * ch).map((_, i) => Math.cos(i) * 0.25);
const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
const buffer = (data: Float32Array<ArrayBuffer>) => {
  const b = device.createBuffer({ size: data.byteLength, usage });
  device.queue.writeBuffer(b, 0, data);
  return b;
};
const texture = (data: Float32Array<ArrayBuffer>) => {
  const height = Math.ceil(data.length / 4 / TEXELS_PER_ROW);
  const t = device.createTexture({
    size: [TEXELS_PER_ROW, height],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
  });
  const padded = new Float32Array(TEXELS_PER_ROW * height * 4);
  padded.set(data);
  device.queue.writeTexture({ texture: t }, padded, { bytesPerRow: 16 * TEXELS_PER_ROW }, [
    TEXELS_PER_ROW,
    height,
  ]);
  return t;
};
const [xBuffer, wBuffer] = [buffer(input), buffer(filter)];
const [xTexture, wTexture] = [texture(input), texture(filter)];
const output = device.createBuffer({
  size: 4 * size * size * ch,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
});
const readBack = device.createBuffer({
  size: output.size,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});

interface Case {
  readonly name: string;
  readonly pipeline: GPUComputePipeline;
  readonly group: GPUBindGroup;
  readonly reads: boolean;
}
const cases: Case[] = [];
const add = (name: string, x: Source, w: Source, work = true) => {
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: {
      module: device.createShaderModule({ code: shader(x, w, work) }),
      entryPoint: "main",
    },
  });
  const entries: GPUBindGroupEntry[] = [{ binding: 2, resource: { buffer: output } }];
  if (x !== "none") {
    entries.push({
      binding: 0,
      resource: x === "texture" ? xTexture.createView() : { buffer: xBuffer },
    });
  }
  if (w !== "none") {
    entries.push({
      binding: 1,
      resource: w === "texture" ? wTexture.createView() : { buffer: wBuffer },
    });
  }
  const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  cases.push({ name, pipeline, group, reads: work && x !== "none" });
};
device.pushErrorScope("validation");
add("storage", "storage", "storage");
if (fitsUniform) add("uniform_filter", "storage", "uniform");
else console.log(`uniform_filter: the filter's ${16 * quads} bytes pass one uniform binding`);
add("textures", "texture", "texture");
add("no_reads", "none", "none");
add("empty", "none", "none", false);
const invalid = await device.popErrorScope();
if (invalid) {
  console.error(`bench:loads: ${invalid.message}`);
  Deno.exit(1);
}

const workgroups = [Math.ceil((size * (size / run)) / THREADS), ch / 4] as const;
/** Runs `c` `count` times in one pass; the milliseconds per dispatch, and the output. */
async function time(c: Case): Promise<[number, Float32Array]> {
  const t0 = performance.now();
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(c.pipeline);
  pass.setBindGroup(0, c.group);
  for (let i = 0; i < count; i++) pass.dispatchWorkgroups(...workgroups);
  pass.end();
  encoder.copyBufferToBuffer(output, 0, readBack, 0, output.size);
  device.queue.submit([encoder.finish()]);
  await readBack.mapAsync(GPUMapMode.READ);
  const ms = (performance.now() - t0) / count;
  const out = new Float32Array(readBack.getMappedRange().slice(0));
  readBack.unmap();
  return [ms, out];
}

const best = new Map<string, number>();
const outputs = new Map<string, Float32Array>();
for (const c of cases) await time(c); // compiles and warms
for (let round = 0; round < rounds; round++) {
  for (const c of cases) {
    const [ms, out] = await time(c);
    best.set(c.name, Math.min(best.get(c.name) ?? Infinity, ms));
    if (c.reads) outputs.set(c.name, out);
  }
}
const reference = outputs.get("storage")!;
const same = [...outputs.values()].every((o) => o.every((v, i) => Object.is(v, reference[i])));
const flops = 2 * size * size * ch * ch * 9;
const floor = best.get("empty")!;
console.log(
  `bench:loads on ${describeAdapter(adapter)}: 3 x 3, ${size}² x ${ch} -> ${ch}, runs of ${run}; ` +
    `ms per dispatch, best of ${rounds}`,
);
for (const c of cases) {
  const ms = best.get(c.name)!;
  const gflops = c.name === "empty" ? "" : `  ${(flops / ms / 1e6).toFixed(2)} GFLOP/s`;
  console.log(`${c.name.padEnd(15)} ${ms.toFixed(3).padStart(8)}${gflops}`);
}
console.log(JSON.stringify({
  bench: "loads",
  adapter: describeAdapter(adapter),
  size,
  ch,
  run,
  count,
  rounds,
  ms_per_dispatch: Object.fromEntries([...best].map(([k, v]) => [k, Number(v.toFixed(4))])),
  // Each case's time over the storage case's, the dispatch's own cost taken from both.
  of_storage: Object.fromEntries(
    [...best].filter(([k]) => k !== "empty").map((
      [k, v],
    ) => [k, Number(((v - floor) / (best.get("storage")! - floor)).toFixed(3))]),
  ),
  same_results: same,
}));
if (!same) {
  console.error("bench:loads: the cases that read the data disagree");
  Deno.exit(1);
}
for (const t of [xTexture, wTexture]) t.destroy();
for (const b of [xBuffer, wBuffer, output, readBack]) b.destroy();
