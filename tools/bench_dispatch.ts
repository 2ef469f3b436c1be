/**
 * `deno task bench:dispatch`: what one dispatch costs the adapter itself, apart from its work,
 * and what merging dispatches into one (`backends/webgpu/merge.ts`) costs or saves there. These
 * two figures decide how a replayed step (`replay.ts`) should be cut into dispatches:
 *
 *     deno task bench:dispatch [--n 64,4096,65536] [--count 2000] [--parts 8]
 *
 * Each case encodes `--count` dispatches into one compute pass, submits once and waits; the time
 * per dispatch is the best of 3 such rounds (wall time: on a software adapter the work runs on
 * the host's cores; on a GPU this is submit-to-done, the host's encoding included).
 * - `same`: one pipeline and one bind group, each dispatch updating `--n` floats in place.
 * - `chain`: 16 pipelines in turn, each dispatch reading the buffer the one before wrote (the
 *   barriers and pipeline changes of a real step).
 * - `parts alone` / `parts merged`: `--parts` programs on their own buffers, as that many
 *   dispatches, or as one dispatch whose workgroups choose their program by ranges of their
 *   index (as `merge.ts` builds a shader of parts, there with 256 threads a workgroup), per
 *   program.
 *
 * Prints one line per case and one JSON line with all of them. On lavapipe the pool of worker
 * threads that runs a dispatch costs tens of microseconds each (`LP_NUM_THREADS=0` runs them on
 * the submitting thread instead; compare the two).
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import { describeAdapter, requestGpuAdapter, webgpuUnavailable } from "../backends/webgpu/start.ts";

const args = parseArgs(Deno.args, { string: ["n", "count", "parts"] });
const sizes = String(args.n ?? "64,4096,65536").split(",").map(Number);
const count = Number(args.count ?? 2000);
const parts = Number(args.parts ?? 8);
if ([...sizes, count, parts].some((v) => !Number.isInteger(v) || v < 1) || parts > 8) {
  console.error("--n, --count take positive integers; --parts 1 to 8 (one storage buffer each)");
  Deno.exit(2);
}

const why = await webgpuUnavailable();
if (why) {
  console.error(`bench:dispatch: ${why}`);
  Deno.exit(1);
}
const adapter = (await requestGpuAdapter())!;
const device = await adapter.requestDevice() as GPUDevice;
const adapterName = describeAdapter(adapter);
const WG = 64;
// The merged case runs every part's workgroups along x, within WebGPU's 65,535.
const largest = Math.floor(65535 / parts) * WG;
if (sizes.some((n) => n > largest)) {
  console.error(`--n: at most ${largest} floats with --parts ${parts} (workgroups along x)`);
  Deno.exit(2);
}

/** A pipeline from one WGSL module with entry point `main`. */
const compile = (code: string) =>
  device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });

/** The elementwise update of part `k`: distinct constants, so no two shaders are the same. */
const update = (k: number, to: string, from: string) => `${to}[i] = ${from}[i] * 0.5 + ${k}.25;`;

/** Best of 3 rounds of `encode` into one pass, in microseconds per dispatch (`per`). */
async function time(encode: (pass: GPUComputePassEncoder) => void, per: number): Promise<number> {
  let best = Infinity;
  for (let round = 0; round < 4; round++) { // the first round compiles and warms: not counted
    const t0 = performance.now();
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encode(pass);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    if (round > 0) best = Math.min(best, performance.now() - t0);
  }
  return 1000 * best / per;
}

const storage = (n: number) => device.createBuffer({ size: 4 * n, usage: GPUBufferUsage.STORAGE });
const results: Record<string, number>[] = [];
console.log(`bench:dispatch on ${adapterName}: microseconds per dispatch, best of 3 rounds`);
for (const n of sizes) {
  const groups = Math.ceil(n / WG);
  const row: Record<string, number> = { n };
  const head = `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) g : vec3u)`;

  // One pipeline, one bind group.
  const same = compile(`@group(0) @binding(0) var<storage, read_write> a : array<f32>;
    ${head} { let i = g.x; if (i < arrayLength(&a)) { ${update(0, "a", "a")} } }`);
  const one = storage(n);
  const oneGroup = device.createBindGroup({
    layout: same.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: one } }],
  });
  row.same = await time((pass) => {
    for (let i = 0; i < count; i++) {
      pass.setPipeline(same);
      pass.setBindGroup(0, oneGroup);
      pass.dispatchWorkgroups(groups);
    }
  }, count);

  // 16 pipelines, each dispatch reading what the one before wrote.
  const ring = Array.from({ length: 8 }, () => storage(n));
  const chain = Array.from({ length: 16 }, (_, k) => {
    const pipeline = compile(`@group(0) @binding(0) var<storage, read_write> a : array<f32>;
      @group(0) @binding(1) var<storage, read> b : array<f32>;
      ${head} { let i = g.x; if (i < arrayLength(&a)) { ${update(k, "a", "b")} } }`);
    const bindGroups = ring.map((from, j) =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: ring[(j + 1) % ring.length] } },
          { binding: 1, resource: { buffer: from } },
        ],
      })
    );
    return { pipeline, bindGroups };
  });
  row.chain = await time((pass) => {
    for (let i = 0; i < count; i++) {
      const c = chain[i % chain.length];
      pass.setPipeline(c.pipeline);
      pass.setBindGroup(0, c.bindGroups[i % ring.length]);
      pass.dispatchWorkgroups(groups);
    }
  }, count);

  // `parts` programs alone, then as the parts of one shader.
  const partBuffers = Array.from({ length: parts }, () => storage(n));
  const alone = Array.from({ length: parts }, (_, k) => {
    const pipeline = compile(`@group(0) @binding(0) var<storage, read_write> a : array<f32>;
      ${head} { let i = g.x; if (i < arrayLength(&a)) { ${update(k, "a", "a")} } }`);
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: partBuffers[k] } }],
    });
    return { pipeline, group };
  });
  const rounds = Math.max(1, Math.floor(count / parts));
  row.parts_alone = await time((pass) => {
    for (let r = 0; r < rounds; r++) {
      for (const a of alone) {
        pass.setPipeline(a.pipeline);
        pass.setBindGroup(0, a.group);
        pass.dispatchWorkgroups(groups);
      }
    }
  }, rounds * parts);
  const bindings = partBuffers.map((_, k) =>
    `@group(0) @binding(${k}) var<storage, read_write> p${k} : array<f32>;`
  ).join("\n");
  const branches = partBuffers.map((_, k) =>
    `${k > 0 ? "else " : ""}if (part == ${k}u) { ${update(k, `p${k}`, `p${k}`)} }`
  ).join("\n");
  const merged = compile(`${bindings}
    @compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) w : vec3u,
        @builtin(local_invocation_id) l : vec3u) {
      let part = w.x / ${groups}u;
      let i = (w.x % ${groups}u) * ${WG}u + l.x;
      if (i >= ${n}u) { return; }
      ${branches}
    }`);
  const mergedGroup = device.createBindGroup({
    layout: merged.getBindGroupLayout(0),
    entries: partBuffers.map((buffer, k) => ({ binding: k, resource: { buffer } })),
  });
  row.parts_merged = await time((pass) => {
    for (let r = 0; r < rounds; r++) {
      pass.setPipeline(merged);
      pass.setBindGroup(0, mergedGroup);
      pass.dispatchWorkgroups(groups * parts);
    }
  }, rounds * parts);
  for (const b of [one, ...ring, ...partBuffers]) b.destroy();

  console.log(
    `n=${String(n).padStart(6)}  same ${row.same.toFixed(1).padStart(7)}  chain ${
      row.chain.toFixed(1).padStart(7)
    }  parts alone ${row.parts_alone.toFixed(1).padStart(7)}  parts merged ${
      row.parts_merged.toFixed(1).padStart(7)
    }  (per program)`,
  );
  results.push(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v.toFixed(2))])));
}
console.log(JSON.stringify({
  adapter: adapterName,
  lp_num_threads: Deno.env.get("LP_NUM_THREADS") ?? null,
  count,
  parts,
  us_per_dispatch: results,
}));
