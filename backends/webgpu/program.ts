/**
 * Programs of ours for TensorFlow.js's `webgpu` backend, as every kernel of ours in WGSL writes
 * them (`kernels.ts`, and `conv.ts` for what is not a convolution's vec4 program): a thread per
 * work item ({@linkcode run}, described on the program so that a recorded step may fuse or merge
 * it), or a workgroup per group for reductions ({@linkcode runGroups}); the flat-index
 * arithmetic they share ({@linkcode indexDivision}); and the registration of a kernel of ours in
 * front of TensorFlow.js's stock one, which takes what ours does not ({@linkcode standInFront}).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { OWN_WGSL, type OwnWgsl } from "./trace.ts";

export type Info = tf.TensorInfo;
export type Args = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};
type Uniform = { type: "int32" | "float32"; data: number[] };
/** The part of tfjs-backend-webgpu's `WebGPUBackend` these programs use. */
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: Info[], dtype: tf.DataType, uniforms?: Uniform[]): Info;
}

const WORKGROUP = 128;

/**
 * Runs a program of `workgroup` threads per workgroup over `groups` workgroups: the inputs read as
 * flat arrays by their names, the output `result`, the `uniforms` (i32, or f32 where named in
 * `floats`), and `code` the WGSL of `fn main(index : i32)` and what it calls.
 */
function runProgram(
  backend: tf.KernelBackend,
  key: string,
  inputs: Record<string, Info>,
  outputShape: number[],
  [groups, workgroup]: [number, number],
  uniforms: Record<string, number>,
  floats: readonly string[],
  code: string,
  own?: OwnWgsl,
): Info {
  const names = Object.keys(inputs);
  const program = {
    ...(own ? { [OWN_WGSL]: own } : {}),
    variableNames: names,
    outputShape,
    shaderKey: `ugatit_${key}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [groups, 1, 1] as [number, number, number],
    workgroupSize: [workgroup, 1, 1] as [number, number, number],
    uniforms: Object.keys(uniforms)
      .map((u) => `${u} : ${floats.includes(u) ? "f32" : "i32"},`)
      .join(" "),
    getUserCode: () => code,
  };
  const data = Object.entries(uniforms).map(([u, v]): Uniform => ({
    type: floats.includes(u) ? "float32" : "int32",
    data: [v],
  }));
  return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(
    program,
    names.map((n) => inputs[n]),
    "float32",
    data,
  );
}

/**
 * Runs one WGSL program with a thread per work item. `body` sees `index` (the work item, already
 * checked against `uniforms.threads`), the inputs as arrays by their names, `result`, the
 * `uniforms` (i32, or f32 where named in `floats`) and the functions in `prelude`. With
 * `unfused`, a recorded step never computes it inside a fused chain (it may still merge it): for
 * a loop of multiply-adds, which inside a chain rounded otherwise on lavapipe, where a resumed run
 * must equal an uninterrupted one bit for bit (merged, its bounds inlined as constants, it kept
 * its bits).
 */
export function run(
  backend: tf.KernelBackend,
  key: string,
  inputs: Record<string, Info>,
  outputShape: number[],
  threads: number,
  uniforms: Record<string, number>,
  body: string,
  { floats = [], prelude = "", unfused = false }: {
    floats?: readonly string[];
    prelude?: string;
    unfused?: boolean;
  } = {},
): Info {
  const groups = Math.max(1, Math.ceil(threads / WORKGROUP));
  // The program as WGSL a recorded step may regenerate with an elementwise chain folded in, fold
  // into the chain that reads it where it has one thread per output element ending in its one
  // write (`fuse.ts`), or merge with others (`merge.ts`); its uniforms become constants there,
  // so one that reads tfjs's own (NAN, INFINITY) keeps it as it is. (A program of workgroups,
  // `runGroups`, is not described: it stays as it is.)
  const writes = body.match(/\bresult\[/g)?.length ?? 0;
  const last = body.trimEnd().split("\n").at(-1)!.trim();
  const own = /uniforms\.(NAN|INFINITY)/.test(body) ? undefined : {
    inputs: Object.keys(inputs),
    uniforms: { threads, ...uniforms },
    floats,
    prelude,
    body,
    perElement: !unfused && threads === size(outputShape) && writes === 1 &&
      /^result\[index\] = [^;]*;$/.test(last),
  };
  return runProgram(
    backend,
    key,
    inputs,
    outputShape,
    [groups, WORKGROUP],
    { threads, ...uniforms },
    floats,
    `
      ${prelude}
      fn main(index : i32) {
        if (index >= uniforms.threads) { return; }
        ${body}
      }`,
    own,
  );
}

/** Threads of a workgroup that reduces (`runGroups`). */
export const GROUP = 256;

/**
 * Runs one WGSL program with a workgroup of {@linkcode GROUP} threads per group, for reductions
 * within a group: `body` sees `group` (the workgroup), `tid` (the thread in it), the inputs,
 * `result`, the `uniforms` and `groupSum(v)`, the sum of `v` over the group's threads (every
 * thread must call it, in the same order: it synchronises them), and what `prelude` declares.
 */
export function runGroups(
  backend: tf.KernelBackend,
  key: string,
  inputs: Record<string, Info>,
  outputShape: number[],
  groups: number,
  uniforms: Record<string, number>,
  body: string,
  { floats = [], prelude = "" }: { floats?: readonly string[]; prelude?: string } = {},
): Info {
  return runProgram(
    backend,
    key,
    inputs,
    outputShape,
    [groups, GROUP],
    uniforms,
    floats,
    `
      ${prelude}
      var<workgroup> ugatitPartial : array<f32, ${GROUP}>;
      fn groupSum(v : f32) -> f32 {
        let t = localId.x;
        ugatitPartial[t] = v;
        workgroupBarrier();
        for (var half = ${GROUP / 2}u; half > 0u; half = half >> 1u) {
          if (t < half) { ugatitPartial[t] += ugatitPartial[t + half]; }
          workgroupBarrier();
        }
        let total = ugatitPartial[0];
        workgroupBarrier(); // every thread has read it before the next sum writes
        return total;
      }
      fn main(index : i32) {
        let group = i32(workgroupId.x);
        let tid = i32(localId.x);
        ${body}
      }`,
  );
}

export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

// Flat indices are decoded with float division where it is exact (numerators below 2^22): an
// LLVM-based software adapter (lavapipe) runs an integer division by a runtime value one lane at
// a time, where it vectorises a float one (as conv.ts's divf). Larger tensors divide integers.
const FLOAT_QUOTIENT_BELOW = 1 << 22;

/** WGSL for floor(a / b) and a mod b, for 0 <= a < numerators, b >= 1; `key` names the variant. */
export interface IndexDivision {
  readonly div: (a: string, b: string) => string;
  readonly mod: (a: string, b: string) => string;
  readonly key: string;
}

/**
 * The index division for numerators below `numerators`. The float form: the true quotient of
 * a + 0.5 lies at least 0.5 / b from an integer, and one f32 division's rounding error is below
 * 2^22 / b * 2^-24 = 0.25 / b, so truncation gives floor(a / b).
 */
export function indexDivision(numerators: number): IndexDivision {
  if (numerators > FLOAT_QUOTIENT_BELOW) {
    return { div: (a, b) => `((${a}) / (${b}))`, mod: (a, b) => `((${a}) % (${b}))`, key: "i" };
  }
  const div = (a: string, b: string) => `i32((f32(${a}) + 0.5) / f32(${b}))`;
  return { div, mod: (a, b) => `((${a}) - ${div(a, b)} * (${b}))`, key: "f" };
}

// The stock kernels ours stand in front of (taking what ours do not), captured once.
const stockKernels = new Map<string, tf.KernelConfig>();
const ourFuncs = new Set<tf.KernelFunc>();

/**
 * Registers `ours` for stock kernel `name` on webgpu, falling back to the stock kernel where it
 * returns undefined; or, with `on` false, puts the stock kernel back.
 */
export function standInFront(
  name: string,
  ours: (args: Args) => Info | undefined,
  on: boolean,
): void {
  const current = tf.getKernel(name, "webgpu");
  if (current && !ourFuncs.has(current.kernelFunc)) stockKernels.set(name, current);
  const stock = stockKernels.get(name);
  if (!stock) throw new Error(`webgpu backend: kernel ${name} is missing`);
  if (current) tf.unregisterKernel(name, "webgpu");
  if (!on) {
    tf.registerKernel(stock);
    return;
  }
  const kernelFunc =
    ((args: Args) =>
      ours(args) ?? stock.kernelFunc(args as Parameters<tf.KernelFunc>[0])) as tf.KernelFunc;
  ourFuncs.add(kernelFunc);
  tf.registerKernel({ ...stock, kernelFunc });
}
