/**
 * Independent dispatches merged into one, after fusion (`fuse.ts`) and before planning
 * (`plan.ts`): programs of ours (`kernels.ts`, and the chains `fuse.ts` made) that no other of
 * them waits for run as parts of one dispatch, each on a range of its workgroups. A training
 * step has many such: the two generators' layers, the four discriminators' spectral norms, every
 * tensor's Adam update.
 *
 * Programs of workgroups (the reductions, with barriers) are not described, so not merged: on a
 * CPU's Vulkan (lavapipe) a barrier makes the whole merged shader slow to compile (the first
 * replays of a small step took about 120 s more with them merged, 13 s more without).
 *
 * The trace is scheduled by levels first: a dispatch's level is one more than the latest of the
 * dispatches it waits for (the writers of what it reads; for a value written more than once, also
 * the earlier writers and readers of what it writes), a slice's that of what it slices (a plan
 * makes most slices views). Dispatches run level by level, in the order they were recorded within
 * a level; at each level, the programs of ours are packed into merged dispatches, first fit, as
 * many as the device's storage buffers per shader stage let one bind. A program merged is the
 * same WGSL as alone, its uniforms inlined as constants: merged and alone compute the same bits.
 *
 * Running by levels moves work earlier than it was recorded, so values live longer: the plan's
 * bytes grow by a few per cent (`deno task plan:memory` prints them).
 *
 * @module
 */
import { constantsOf } from "./plan.ts";
import type { OwnWgsl, Trace, TracedDispatch } from "./trace.ts";

/** Options of {@linkcode mergeIndependent}. */
export interface MergeOptions {
  /** The most storage buffers one dispatch may bind (outputs and inputs). */
  readonly maxBindings: number;
  /** The device's `maxComputeWorkgroupsPerDimension`. */
  readonly maxWorkgroups: number;
  /** Compiles a WGSL module (entry point `main`; layout from the shader). */
  readonly compile: (code: string) => GPUComputePipeline;
}

/** A merged trace and what merging did. */
export interface MergedTrace {
  /** The trace, scheduled by levels, with its merged dispatches. */
  readonly trace: Trace;
  /** Dispatches that became parts of another (the trace has this many fewer). */
  readonly merged: number;
}

/** The kernel a merged dispatch is named by in profiles and dispatch counts. */
export const MERGED_KERNEL = "UgatitMerged";

/** Threads per workgroup of a shader made of parts. */
export const PART_WORKGROUP = 256;

/** One program of a shader made of parts, and its bindings. */
export interface ShaderPart {
  /** The program. */
  readonly program: OwnWgsl;
  /** The binding its `result` is. */
  readonly output: number;
  /** The binding of each of its inputs, in its input order. */
  readonly inputs: readonly number[];
}

/** A shader made of parts, and how to dispatch it. */
export interface PartsShader {
  /** WGSL: bindings 0..outputs-1 written, then the inputs, then `params` (workgroups, NaN). */
  readonly code: string;
  /** Workgroup counts. */
  readonly workgroups: [number, number, number];
  /** The uniform block: the workgroups in all, and NaN. */
  readonly params: Uint8Array<ArrayBuffer>;
}

/** A float32 literal with exactly the value `x`. */
export function f32Literal(x: number): string {
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0];
  return `bitcast<f32>(${bits}u)`;
}

/** WGSL code with a program's `uniforms.<name>` reads replaced by their values. */
export function inlineUniforms(code: string, program: OwnWgsl): string {
  return code.replace(/\buniforms\.([A-Za-z_]\w*)/g, (_, name: string) => {
    const v = program.uniforms[name];
    if (v === undefined) throw new Error(`merge: the program reads uniform ${name}, not given`);
    return program.floats.includes(name) ? f32Literal(v) : `i32(${Math.trunc(v)})`;
  });
}

/** Code with the arrays it indexes renamed, in one pass (a new name is never renamed again). */
export function renameArrays(code: string, names: ReadonlyMap<string, string>): string {
  return code.replace(/\b([A-Za-z_]\w*)\[/g, (read, name) => {
    const to = names.get(name);
    return to === undefined ? read : `${to}[`;
  });
}

/**
 * One shader running its parts side by side, each on its own range of workgroups (of
 * {@linkcode PART_WORKGROUP} threads, as many as cover its threads). A part's functions are
 * renamed for it, so that two parts may carry functions of one name with other constants.
 * @param parts the programs and their bindings
 * @param outputs how many bindings are written (the first)
 * @param inputs how many are read (after them)
 * @param maxWorkgroups workgroups per dimension (more span a second)
 * @returns the shader and its dispatch
 */
export function partsShader(
  parts: readonly ShaderPart[],
  outputs: number,
  inputs: number,
  maxWorkgroups: number,
): PartsShader {
  const lines = [
    ...Array.from(
      { length: outputs },
      (_, b) => `@group(0) @binding(${b}) var<storage, read_write> ugOut${b} : array<f32>;`,
    ),
    ...Array.from(
      { length: inputs },
      (_, j) =>
        `@group(0) @binding(${outputs + j}) var<storage, read> ugIn${outputs + j} : array<f32>;`,
    ),
    // NaN travels as a uniform: a NaN in a constant expression does not compile.
    "struct Params { n : u32, nan : f32, }",
    `@group(0) @binding(${outputs + inputs}) var<uniform> params : Params;`,
  ];
  const calls: string[] = [];
  let start = 0;
  parts.forEach(({ program, output, inputs: bound }, k) => {
    const names = new Map<string, string>([["result", `ugOut${output}`]]);
    program.inputs.forEach((name, j) => names.set(name, `ugIn${bound[j]}`));
    // The part's own functions get its number.
    const own = [...program.prelude.matchAll(/\bfn\s+([A-Za-z_]\w*)/g)].map((m) => m[1]);
    const renamed = (code: string) =>
      renameArrays(
        inlineUniforms(
          own.reduce(
            (c, f) => c.replace(new RegExp(`\\b${f}(?=\\s*\\()`, "g"), `${f}_p${k}`),
            code,
          ),
          program,
        ),
        names,
      );
    lines.push(renamed(program.prelude));
    const groups = Math.max(1, Math.ceil(program.uniforms.threads / PART_WORKGROUP));
    lines.push(
      `fn part${k}(index : i32) {`,
      `  if (index >= ${program.uniforms.threads}) { return; }`,
      // In a block of its own: the body may name its own locals as the part's do.
      "  {",
      renamed(program.body),
      "  }",
      "}",
    );
    calls.push(
      `  if (w < ${start + groups}u) { ` +
        `part${k}(i32((w - ${start}u) * ${PART_WORKGROUP}u + lid.x)); return; }`,
    );
    start += groups;
  });
  const x = Math.min(start, maxWorkgroups);
  lines.push(
    `@compute @workgroup_size(${PART_WORKGROUP})`,
    "fn main(@builtin(workgroup_id) wg : vec3<u32>, " +
      "@builtin(local_invocation_id) lid : vec3<u32>) {",
    `  let w = wg.x + wg.y * ${x}u;`,
    "  if (w >= params.n) { return; }",
    ...calls,
    "}",
    "",
  );
  return {
    code: lines.join("\n"),
    workgroups: [x, Math.ceil(start / x), 1],
    params: new Uint8Array(new Uint32Array([start, 0x7fc00000, 0, 0]).buffer),
  };
}

/**
 * A dispatch of one program of ours over its own bindings (output 0, inputs 1..).
 * @param d the dispatch it stands for (kernel, values)
 * @param shader its shader key
 * @param program its program, inputs in `d`'s order
 * @param compile the device's compiler
 * @param maxWorkgroups workgroups per dimension
 * @returns the dispatch
 */
export function programDispatch(
  d: Pick<TracedDispatch, "kernel" | "outputs" | "inputs">,
  shader: string,
  program: OwnWgsl,
  compile: (code: string) => GPUComputePipeline,
  maxWorkgroups: number,
): TracedDispatch {
  const made = partsShader(
    [{ program, output: 0, inputs: program.inputs.map((_, j) => 1 + j) }],
    1,
    program.inputs.length,
    maxWorkgroups,
  );
  return {
    kernel: d.kernel,
    shader,
    pipeline: compile(made.code),
    workgroups: made.workgroups,
    outputs: d.outputs,
    inputs: d.inputs,
    uniforms: made.params,
    program,
  };
}

/**
 * Schedules a trace by levels and merges the independent programs of ours at each level.
 * @param trace the (fused) trace
 * @param options the device's limits and compiler
 * @returns the merged trace (the same dispatches, reordered, when nothing merges)
 */
export function mergeIndependent(trace: Trace, options: MergeOptions): MergedTrace {
  const { values, dispatches } = trace;
  const writes = new Array<number>(values.length).fill(0);
  for (const d of dispatches) for (const v of d.outputs) writes[v]++;
  // What the plan makes once from constants stays as it is (it is not replayed).
  const { dispatches: setup } = constantsOf(trace);

  // Levels.
  const level: number[] = [];
  const writer = new Map<number, number>(); // value -> its latest writer
  const readers = new Map<number, number[]>(); // value -> readers since its latest write
  for (const [i, d] of dispatches.entries()) {
    if (d.slice && d.inputs.length === 1 && writes[d.outputs[0]] === 1) {
      // A slice: a view of what it slices, as soon as that is written.
      const w = writer.get(d.inputs[0]);
      level.push(w === undefined ? 0 : level[w]);
    } else {
      let l = 0;
      const after = (j: number | undefined) => {
        if (j !== undefined) l = Math.max(l, level[j] + 1);
      };
      for (const v of d.inputs) after(writer.get(v));
      for (const v of d.outputs) {
        after(writer.get(v));
        for (const r of readers.get(v) ?? []) after(r);
      }
      level.push(l);
    }
    for (const v of d.outputs) {
      writer.set(v, i);
      readers.set(v, []);
    }
    for (const v of d.inputs) {
      if (!readers.has(v)) readers.set(v, []);
      readers.get(v)!.push(i);
    }
  }
  const mergeable = dispatches.map((d, i) => {
    const p = d.program;
    return p !== undefined && !setup[i] && !d.slice && d.outputs.length === 1 &&
      Object.values(p.uniforms).every(Number.isFinite) &&
      p.inputs.length === d.inputs.length;
  });

  // Groups, first fit by bindings, level by level.
  const order = dispatches.map((_, i) => i).sort((a, b) => level[a] - level[b] || a - b);
  type Group = { members: number[]; bound: Set<number> };
  const groupOf = new Map<number, Group>();
  let open: Group[] = [];
  let current = -1;
  for (const i of order) {
    if (level[i] !== current) {
      open = [];
      current = level[i];
    }
    if (!mergeable[i]) continue;
    const d = dispatches[i];
    const uses = [...d.outputs, ...d.inputs];
    const fits = (g: Group) => new Set([...g.bound, ...uses]).size <= options.maxBindings;
    let g = open.find(fits);
    if (!g) open.push(g = { members: [], bound: new Set() });
    g.members.push(i);
    uses.forEach((v) => g.bound.add(v));
    groupOf.set(i, g);
  }

  const out: TracedDispatch[] = [];
  let merged = 0;
  for (const i of order) {
    const g = groupOf.get(i);
    if (!g || g.members.length === 1) {
      out.push(dispatches[i]);
      continue;
    }
    if (g.members[0] !== i) continue; // made with its group's first
    merged += g.members.length - 1;
    out.push(mergedDispatch(g.members.map((m) => dispatches[m]), options));
  }
  return { trace: { ...trace, dispatches: out }, merged };
}

function mergedDispatch(members: readonly TracedDispatch[], options: MergeOptions): TracedDispatch {
  const outputs = members.map((d) => d.outputs[0]);
  const inputs = [...new Set(members.flatMap((d) => d.inputs))];
  const parts = members.map((d, k): ShaderPart => ({
    program: d.program!,
    output: k,
    inputs: d.inputs.map((v) => outputs.length + inputs.indexOf(v)),
  }));
  const made = partsShader(parts, outputs.length, inputs.length, options.maxWorkgroups);
  return {
    kernel: MERGED_KERNEL,
    shader: "ugatit_merged",
    pipeline: options.compile(made.code),
    workgroups: made.workgroups,
    outputs,
    inputs,
    uniforms: made.params,
    parts: members.map((d) => d.kernel),
  };
}

/**
 * The storage buffers one shader of parts (`partsShader`) may bind on a device: its storage
 * buffers per shader stage, and room in one bind group for them and the shader's uniform block.
 * A GPU's Vulkan driver may offer a million storage buffers per stage (wgpu passes the driver's
 * figure on) where a bind group still holds 1,000 bindings (WebGPU's default, and wgpu's).
 * @param device the device (its `limits`)
 * @returns the most storage bindings
 */
export function storageBindingsOf(device: { readonly limits: object }): number {
  const limits = device.limits as Record<string, unknown>;
  const perStage = Number(limits.maxStorageBuffersPerShaderStage ?? 8);
  const perGroup = Number(limits.maxBindingsPerBindGroup ?? 1000);
  return Math.min(perStage, perGroup - 1);
}

/**
 * {@linkcode mergeIndependent} with a device's limits and compiler (`deviceCompiler`).
 * @param trace the (fused) trace
 * @param device the device the plan will run on
 * @returns the merged trace
 */
export function mergeOnDevice(trace: Trace, device: GPUDevice): MergedTrace {
  return mergeIndependent(trace, {
    maxBindings: storageBindingsOf(device),
    maxWorkgroups: Number(device.limits.maxComputeWorkgroupsPerDimension ?? 65535),
    compile: deviceCompiler(device),
  });
}

/**
 * A device's compiler of WGSL modules (entry point `main`, layout from the shader): one pipeline
 * per distinct shader, for the device's life.
 * @param device the device
 * @returns the compiler
 */
export function deviceCompiler(device: GPUDevice): (code: string) => GPUComputePipeline {
  let known = compiled.get(device);
  if (!known) compiled.set(device, known = new Map());
  const cache = known;
  return (code) => {
    let pipeline = cache.get(code);
    if (!pipeline) {
      pipeline = device.createComputePipeline({
        layout: "auto",
        compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
      });
      cache.set(code, pipeline);
    }
    return pipeline;
  };
}

const compiled = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();
