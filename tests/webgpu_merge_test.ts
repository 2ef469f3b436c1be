/**
 * Independent programs merged into one dispatch (`backends/webgpu/merge.ts`): on hand-made traces,
 * the schedule by levels (a reader after its writer, a second write after the first one's
 * readers, constants left alone) and the packing within the binding limit; on a WebGPU adapter
 * (CI: lavapipe; skipped with a notice where there is none), a training step replayed merged equals
 * the same step replayed unmerged, bit for bit, in fewer dispatches. (Every merged shader of a
 * training step goes through the WGSL compiler in `webgpu_fuse_test.ts`.)
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { overLeaves } from "../backends/compile.ts";
import { compileWebGpuCall } from "../backends/webgpu/compiled_call.ts";
import { MERGED_KERNEL, mergeIndependent, storageBindingsOf } from "../backends/webgpu/merge.ts";
import type { OwnWgsl, Trace, TracedDispatch, TracedValue } from "../backends/webgpu/trace.ts";
import { flagsOrExit } from "../cli/command.ts";
import { MODEL_FLAGS, SEED_FLAG, TRAINING_FLAGS } from "../cli/flags.ts";
import { configFromSettings } from "../train/settings.ts";
import { type StepInputs, trainer } from "../train/step.ts";
import { leaves } from "../tree/tree.ts";
import { handMadeDispatch, STAND_IN_PIPELINE, stepCallInputs, webgpuTest } from "./helpers.ts";

// A program of ours over inputs named a, b, ...: the sum of its inputs at each of 4 elements.
const program = (inputs: number): OwnWgsl => {
  const names = [..."abcdefgh"].slice(0, inputs);
  return {
    inputs: names,
    uniforms: { threads: 4 },
    floats: [],
    prelude: "",
    body: `result[index] = ${names.map((n) => `${n}[index]`).join(" + ")};`,
    perElement: true,
  };
};

// A hand-made trace: values 0 and 1 state, 2 an upload, the rest written by dispatches given as
// [kernel, output, inputs], a program of ours unless named "Conv".
function trace(values: number, ops: [string, number, number[]][], outputs: number[]): Trace {
  return {
    values: Array.from({ length: values }, (_, v): TracedValue => ({
      bytes: 16,
      shape: [4],
      dtype: "float32",
      source: v < 2
        ? { kind: "state", index: v }
        : v === 2
        ? { kind: "upload", data: new Uint8Array(16) }
        : { kind: "dispatch" },
    })),
    dispatches: ops.map(([kernel, output, inputs]): TracedDispatch => ({
      ...handMadeDispatch(kernel, output, inputs),
      ...(kernel === "Conv" ? {} : { program: program(inputs.length) }),
    })),
    stateIn: [0, 1],
    inputs: [],
    stateOut: [0, 1],
    outputs,
  };
}

const options = { maxBindings: 8, maxWorkgroups: 65535, compile: () => STAND_IN_PIPELINE };
const summary = (t: Trace) => t.dispatches.map((d) => [d.kernel, d.outputs, d.inputs]);

Deno.test("mergeIndependent() runs by levels and merges the programs no other waits for", () => {
  const t = trace(10, [
    ["A", 3, [0]], // level 0
    ["Conv", 4, [3]], // level 1: not ours, stays alone
    ["B", 5, [1]], // level 0: merges with A
    ["C", 6, [3]], // level 1
    ["D", 7, [5]], // level 1: merges with C
    ["E", 8, [6, 7]], // level 2
    ["F", 9, [2]], // from a constant alone: made once by the plan, left as it is
  ], [4, 8, 9]);
  const { trace: merged, merged: count } = mergeIndependent(t, options);
  assertEquals(count, 2);
  assertEquals(summary(merged), [
    [MERGED_KERNEL, [3, 5], [0, 1]],
    ["F", [9], [2]],
    ["Conv", [4], [3]],
    [MERGED_KERNEL, [6, 7], [3, 5]],
    ["E", [8], [6, 7]],
  ]);
  assertEquals(merged.dispatches[0].parts, ["A", "B"]);
  assertEquals(merged.dispatches[3].parts, ["C", "D"]);
});

Deno.test("mergeIndependent() writes a value again only after the first write's readers", () => {
  // Value 4 is written twice (a program writing into a tensor): B reads the first write, C makes
  // the second, so C waits for B though it reads nothing B writes.
  const t = trace(7, [
    ["A", 4, [0]],
    ["B", 5, [4]],
    ["C", 4, [1]],
    ["D", 6, [1]],
  ], [4, 5, 6]);
  const { trace: merged } = mergeIndependent(t, options);
  assertEquals(summary(merged), [
    [MERGED_KERNEL, [4, 6], [0, 1]],
    ["B", [5], [4]],
    ["C", [4], [1]],
  ]);
});

Deno.test("mergeIndependent() binds at most the device's storage buffers per dispatch", () => {
  // Three programs of 2 bindings each, A and C sharing their input: 5 bindings in all.
  const t = trace(9, [["A", 3, [0]], ["B", 4, [1]], ["C", 5, [0]]], [3, 4, 5]);
  const merged = mergeIndependent(t, { ...options, maxBindings: 5 });
  assertEquals(summary(merged.trace), [[MERGED_KERNEL, [3, 4, 5], [0, 1]]]);
  // With 3 at most, B does not fit beside A; C still does (first fit).
  const narrow = mergeIndependent(t, { ...options, maxBindings: 3 });
  assertEquals(summary(narrow.trace), [
    [MERGED_KERNEL, [3, 5], [0]],
    ["B", [4], [1]],
  ]);
});

Deno.test("storageBindingsOf() leaves room in one bind group for a shader's uniform block", () => {
  const bindings = (limits: object) => storageBindingsOf({ limits });
  // lavapipe: 32 storage buffers per stage, 1,000 bindings per group.
  assertEquals(
    bindings({ maxStorageBuffersPerShaderStage: 32, maxBindingsPerBindGroup: 1000 }),
    32,
  );
  // A GPU's Vulkan driver: a million per stage, still 1,000 in one group (the uniform block is one).
  assertEquals(
    bindings({ maxStorageBuffersPerShaderStage: 1 << 20, maxBindingsPerBindGroup: 1000 }),
    999,
  );
  // Limits not reported: WebGPU's defaults.
  assertEquals(bindings({}), 8);
});

webgpuTest("a training step replayed merged equals it replayed unmerged", async () => {
  const args = ["--light", "--img_size", "24", "--ch", "2", "--n_res", "1", "--n_dis", "4"];
  const flags = flagsOrExit({ ...MODEL_FLAGS, ...TRAINING_FLAGS, ...SEED_FLAG }, args, {});
  const model = trainer(configFromSettings(flags));
  const read = (ts: tf.Tensor[]) => Promise.all(ts.map((t) => t.data()));
  const run = async (merge: boolean) => {
    const { step: _, ...init } = model.init(3);
    const shape = [1, 24, 24, 3];
    const batch = { realA: tf.zeros(shape), realB: tf.zeros(shape), step: tf.scalar(0) };
    const fn = overLeaves(model.update, init, batch as StepInputs);
    const compiled = compileWebGpuCall(fn, { log: (l) => assert(false, l), merge });
    let state = leaves(init);
    const results: Float32Array[] = [];
    for (let call = 0; call < 4; call++) {
      const inputs = stepCallInputs(shape, call);
      const r = compiled.call(state, inputs);
      results.push(...await read([...r.state, ...r.outputs]) as Float32Array[]);
      tf.dispose([...inputs, ...r.outputs]);
      state = r.state;
    }
    assertEquals(compiled.mode, "replaying");
    const dispatches = compiled.replay!.dispatches;
    compiled.dispose();
    tf.dispose([...state, ...leaves(batch)]);
    return { results, dispatches };
  };
  const [merged, unmerged] = [await run(true), await run(false)];
  // The same WGSL per program, merged or alone: equal (a NaN to a NaN).
  assertEquals(merged.results, unmerged.results);
  assert(
    merged.dispatches < 0.8 * unmerged.dispatches,
    `${merged.dispatches} dispatches merged, ${unmerged.dispatches} not`,
  );
});
