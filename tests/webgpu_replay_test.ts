/**
 * The recorded-and-replayed WebGPU call (`backends/webgpu/`): the planner on hand-made traces
 * (constants made once, buffers shared by liveness, state written in place or copied, slices as
 * views), and on a WebGPU adapter (CI: lavapipe; skipped with a notice where there is none) a small
 * training function replayed against the same function run eagerly, call after call.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { contiguousSliceOffset, planTrace, withoutUnreadWork } from "../backends/webgpu/plan.ts";
import type { Trace, TracedDispatch, TracedValue } from "../backends/webgpu/trace.ts";
import { compileWebGpuCall, type TensorFn } from "../backends/webgpu/compiled_call.ts";
import { handMadeDispatch, webgpuTest } from "./helpers.ts";

Deno.test("contiguousSliceOffset() finds the ranges a slice can be a view of", () => {
  assertEquals(contiguousSliceOffset([1, 0, 0, 0], [1, 4, 4, 8], [2, 4, 4, 8]), 128);
  assertEquals(contiguousSliceOffset([0, 0], [2, 3], [4, 3]), 0);
  assertEquals(contiguousSliceOffset([1, 1, 0], [1, 2, 4], [2, 3, 4]), 16);
  assertEquals(contiguousSliceOffset([0, 1], [1, 1], [1, 2]), 1);
  assertEquals(contiguousSliceOffset([0, 0], [2, 2], [2, 4]), undefined); // rows of a matrix
  assertEquals(contiguousSliceOffset([0, 0, 1], [1, 2, 2], [1, 2, 3]), undefined);
});

// A hand-made trace: values by source, dispatches as [kernel, output, inputs].
function trace(
  sources: TracedValue["source"]["kind"][],
  ops: [string, number, number[], TracedDispatch["slice"]?][],
  io: Pick<Trace, "stateIn" | "inputs" | "stateOut" | "outputs">,
  bytes = 1024,
): Trace {
  return {
    values: sources.map((kind, index) => ({
      bytes,
      shape: [bytes / 4],
      dtype: "float32",
      source: kind === "upload"
        ? { kind, data: new Uint8Array(bytes) }
        : kind === "external"
        ? { kind, buffer: {} as GPUBuffer }
        : kind === "dispatch"
        ? { kind }
        : { kind, index },
    })) as TracedValue[],
    dispatches: ops.map(([kernel, output, inputs, slice]) => ({
      ...handMadeDispatch(kernel, output, inputs),
      ...(slice ? { slice } : {}),
    })),
    ...io,
  };
}

Deno.test("planTrace() makes constants once and shares work buffers by liveness", () => {
  // 0 state w, 1 input x, 2 host constant, 3 = f(2) constant, 4 = x*w, 5 = 4+3, 6 = w-5 (new w),
  // 7 = sum(5) output.
  const t = trace(
    ["state", "input", "upload", "dispatch", "dispatch", "dispatch", "dispatch", "dispatch"],
    [["Fill", 3, [2]], ["Mul", 4, [1, 0]], ["Add", 5, [4, 3]], ["Sub", 6, [0, 5]], [
      "Sum",
      7,
      [5],
    ]],
    { stateIn: [0], inputs: [1], stateOut: [6], outputs: [7] },
  );
  const { plan } = planTrace(t);
  assert(plan);
  assertEquals(plan.setup.map((d) => d.kernel), ["Fill"]);
  assertEquals(plan.step.map((d) => d.kernel), ["Mul", "Add", "Sub", "Sum"]);
  assertEquals(plan.uploads.length, 1);
  // Value 4 dies at the Add, so value 6 (written by the Sub, after) takes its buffer; the new w
  // cannot go into w's own buffer (the Sub reads w), so it is copied in at the end.
  const [mul, add, sub, sum] = plan.step;
  assertEquals(sub.bindings[0].buffer, mul.bindings[0].buffer);
  assert(add.bindings[0].buffer !== mul.bindings[0].buffer);
  assertEquals(plan.copies, [{ from: sub.bindings[0], to: plan.state[0] }]);
  assertEquals(sum.bindings[0], plan.outputs[0]);
  assertEquals(plan.buffers.filter((b) => b.role === "work").length, 3);
});

Deno.test("withoutUnreadWork() leaves out the dispatches whose values nothing reads", () => {
  // 0 input x, 1 = relu(x), 2 = sum(1), read only by 3 = 2 * 2, read by nobody (both go), 4 =
  // 1 + 1 (the output), 5 written twice (both writers stay), 6 = neg(x), read by nobody.
  const t = trace(
    ["input", "dispatch", "dispatch", "dispatch", "dispatch", "dispatch", "dispatch"],
    [
      ["Relu", 1, [0]],
      ["Sum", 2, [1]],
      ["Mul", 3, [2]],
      ["Add", 4, [1]],
      ["Fill", 5, []],
      ["Neg", 6, [0]],
      ["Fill", 5, [0]],
    ],
    { stateIn: [], inputs: [0], stateOut: [], outputs: [4] },
  );
  const { trace: kept, dropped } = withoutUnreadWork(t);
  assertEquals(dropped, 3);
  assertEquals(kept.dispatches.map((d) => d.kernel), ["Relu", "Add", "Fill", "Fill"]);
  assertEquals(planTrace(kept).plan!.step.map((d) => d.kernel), ["Relu", "Add", "Fill", "Fill"]);
  // Nothing unread: the same trace.
  const all = withoutUnreadWork({ ...t, outputs: [3, 4, 5, 6] });
  assertEquals(all.dropped, 0);
});

Deno.test("planTrace() writes a new state value in place when the old one has no reader left", () => {
  // 0 state m, 1 input g, 2 = 0.5*m, 3 = 2 + g (new m; m was last read by the dispatch before).
  const t = trace(
    ["state", "input", "dispatch", "dispatch"],
    [["Mul", 2, [0]], ["Add", 3, [2, 1]]],
    { stateIn: [0], inputs: [1], stateOut: [3], outputs: [] },
  );
  const { plan } = planTrace(t);
  assert(plan);
  assertEquals(plan.copies, []);
  assertEquals(plan.step[1].bindings[0], plan.state[0]);
});

Deno.test("planTrace() binds a contiguous, aligned slice as a view of its source", () => {
  // 0 input x [2, 64], 1 = x[1] (offset 256 bytes), 2 = x[:, :2] (not contiguous), 3 = 1 + 2.
  const t = trace(
    ["input", "dispatch", "dispatch", "dispatch"],
    [
      ["Slice", 1, [0], { start: [1, 0], size: [1, 64], shape: [2, 64] }],
      ["Slice", 2, [0], { start: [0, 0], size: [2, 2], shape: [2, 64] }],
      ["Add", 3, [1, 2]],
    ],
    { stateIn: [], inputs: [0], stateOut: [], outputs: [3] },
    512,
  );
  const { plan } = planTrace(t, { offsetAlignment: 256 });
  assert(plan);
  assertEquals(plan.step.map((d) => d.kernel), ["Slice", "Add"]);
  assertEquals(plan.step[1].bindings[1], {
    buffer: plan.inputs[0].buffer,
    offset: 256,
    bytes: 512,
  });
  const unaligned = planTrace(t, { offsetAlignment: 512 }).plan!;
  assertEquals(unaligned.step.map((d) => d.kernel), ["Slice", "Slice", "Add"]);
});

// A small training step: a convolution's mean squared output, its gradient, a momentum step
// whose learning rate comes in as a tensor (a number that changes from call to call), and the
// loss and a slice of the batch as outputs.
const momentumStep: TensorFn = (state, inputs) =>
  tf.tidy(() => {
    const [w, m] = state as [tf.Tensor4D, tf.Tensor4D];
    const [x, hyper] = inputs as [tf.Tensor4D, tf.Tensor1D];
    const { value, grads } = tf.valueAndGrads((ws: tf.Tensor) =>
      tf.mean(tf.square(tf.relu(tf.conv2d(x, ws as tf.Tensor4D, 1, "valid")))) as tf.Scalar
    )([w]);
    const lr = tf.reshape(tf.slice(hyper, 0, 1), []);
    const m2 = tf.add(tf.mul(m, 0.9), tf.mul(grads[0], 0.1));
    const [first] = tf.split(x, 2);
    return { state: [tf.sub(w, tf.mul(m2, lr)), m2], outputs: [value, tf.sum(first)] };
  });

const initial = () => [tf.randomNormal([3, 3, 4, 8], 0, 1, "float32", 1), tf.zeros([3, 3, 4, 8])];
const inputsOf = (call: number, batch = 2) => [
  tf.randomNormal([batch, 12, 12, 4], 0, 1, "float32", 10 + call),
  tf.tensor1d([0.01 * (1 + call), 0]),
];

async function read(ts: tf.Tensor[]): Promise<Float32Array[]> {
  return await Promise.all(ts.map((t) => t.data() as Promise<Float32Array>));
}

webgpuTest("a replayed call equals the eager one, call after call", async () => {
  let eager = initial();
  let replayed = initial();
  const compiled = compileWebGpuCall(momentumStep, { log: (l) => assert(false, l) });
  const modes: string[] = [];
  let tensorsAfter = -1;
  for (let call = 0; call < 6; call++) {
    const inputs = inputsOf(call);
    const e = momentumStep(eager, inputs);
    tf.dispose(eager);
    eager = e.state;
    const r = compiled.call(replayed, inputs);
    modes.push(compiled.mode);
    tf.dispose(replayed);
    replayed = r.state;
    const [eo, ro] = [await read(e.outputs), await read(r.outputs)];
    const [es, rs] = [await read(eager), await read(replayed)];
    // The same kernels on the same data: bit for bit.
    assertEquals(ro, eo, `outputs of call ${call}`);
    assertEquals(rs, es, `state after call ${call}`);
    tf.dispose([...inputs, ...e.outputs, ...r.outputs]);
    if (call === 3) tensorsAfter = tf.memory().numTensors;
  }
  assertEquals(modes, [
    "recording",
    "replaying",
    "replaying",
    "replaying",
    "replaying",
    "replaying",
  ]);
  assertEquals(tf.memory().numTensors, tensorsAfter, "replayed calls leave no tensors behind");
  const replay = compiled.replay!;
  // The split's first half is a view, the zeros and the constant 0.9 are made once.
  assert(replay.dispatches < 40, `${replay.dispatches} dispatches`);
  assert(replay.bytes.total > 0);
  compiled.dispose();
  tf.dispose([...eager, ...replayed]);
});

webgpuTest("a call whose work changes between calls runs eagerly, saying why", async () => {
  let count = 0;
  // The step count enters as a host number: each call's uniforms differ.
  const counting: TensorFn = (state) =>
    tf.tidy(() => ({ state: [tf.mul(state[0], ++count)], outputs: [] }));
  const lines: string[] = [];
  const compiled = compileWebGpuCall(counting, { log: (l) => lines.push(l) });
  let s = [tf.ones([64])];
  for (let i = 0; i < 4; i++) {
    const next = compiled.call(s, []).state;
    tf.dispose(s);
    s = next;
  }
  assertEquals(compiled.mode, "eager");
  assertEquals(lines.length, 1, lines.join("\n"));
  assert(/changes between calls/.test(lines[0]), lines[0]);
  assertEquals((await s[0].data())[0], 1 * 2 * 3 * 4);
  tf.dispose(s);
});

webgpuTest(
  "a replayed call given other shapes runs that call eagerly, saying so once",
  async () => {
    const lines: string[] = [];
    const compiled = compileWebGpuCall(momentumStep, { log: (l) => lines.push(l) });
    let state = initial();
    for (let call = 0; call < 4; call++) {
      const inputs = inputsOf(call, call >= 2 ? 4 : 2); // calls 2 and 3: a batch of 4
      const { state: next, outputs } = compiled.call(state, inputs);
      if (call >= 2) {
        const e = momentumStep(state, inputs);
        assertEquals(await read(e.outputs), await read(outputs));
        tf.dispose([...e.state, ...e.outputs]);
      }
      tf.dispose([...state, ...inputs, ...outputs]);
      state = next;
    }
    assertEquals(compiled.mode, "replaying");
    assertEquals(lines.length, 1, lines.join("\n"));
    assert(/other tensor shapes/.test(lines[0]), lines[0]);
    compiled.dispose();
    tf.dispose(state);
  },
);
