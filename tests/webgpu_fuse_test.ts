/**
 * Elementwise fusion of a recorded call (`backends/webgpu/fuse.ts`): which dispatches fold on
 * hand-made traces (one reader only, same element count, not from constants alone, within the
 * binding limit), the broadcast index it generates, and on a WebGPU adapter (CI: lavapipe; skipped
 * with a notice where there is none) every kernel it knows and programs of ours that gather or
 * normalise, replayed fused, against the eager call, and every fused and merged shader of a
 * training step (chains into Adam's pass among them, `merge.ts`'s) through the WGSL compiler.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals } from "@std/assert";
import { compileWebGpuCall, type TensorFn } from "../backends/webgpu/compiled_call.ts";
import { broadcastIndex, FUSED_KERNEL, fuseElementwise } from "../backends/webgpu/fuse.ts";
import type { Trace, TracedDispatch, TracedValue } from "../backends/webgpu/trace.ts";
import { layerInstanceNorm } from "../ops/lin_norm.ts";
import { reflectionPad } from "../ops/reflect_pad.ts";
import { upsampleNearest2x } from "../ops/upsample_2x.ts";
import { mergeIndependent, storageBindingsOf } from "../backends/webgpu/merge.ts";
import { webgpuInternals } from "../backends/webgpu/trace.ts";
import { handMadeDispatch, STAND_IN_PIPELINE, traceTrainingStep, webgpuTest } from "./helpers.ts";

const N = 8; // elements of every value below but the scalar

// A hand-made trace over values of N elements (value 9: a scalar upload); ops as
// [kernel, output, inputs], each marked elementwise unless named "Conv".
function trace(
  sources: TracedValue["source"]["kind"][],
  ops: [string, number, number[]][],
  io: Pick<Trace, "stateIn" | "inputs" | "stateOut" | "outputs">,
): Trace {
  const shapeOf = (v: number) => (v === 9 ? [] : [2, N / 2]);
  return {
    values: sources.map((kind, index) => ({
      bytes: 4 * (index === 9 ? 1 : N),
      shape: shapeOf(index),
      dtype: "float32",
      source: kind === "upload"
        ? { kind, data: new Uint8Array(4 * (index === 9 ? 1 : N)) }
        : kind === "dispatch"
        ? { kind }
        : { kind, index },
    })) as TracedValue[],
    dispatches: ops.map(([kernel, output, inputs]): TracedDispatch => ({
      ...handMadeDispatch(kernel, output, inputs),
      ...(kernel === "Conv" ? {} : {
        elementwise: {
          op: kernel,
          attrs: kernel === "LeakyRelu" ? { alpha: 0.2 } : {},
          inputShapes: inputs.map(shapeOf),
          outputShape: shapeOf(output),
        },
      }),
    })),
    ...io,
  };
}

Deno.test("fuseElementwise() folds a value into its only reader, and nothing else", () => {
  const shaders: string[] = [];
  const options = {
    maxInputs: 7,
    maxWorkgroups: 65535,
    compile: (code: string) => (shaders.push(code), STAND_IN_PIPELINE),
  };
  // 0, 1: state; 2..8: dispatch values; 9: a scalar upload.
  const kinds = ["state", "state", ...new Array(7).fill("dispatch"), "upload"] as const;
  const t = trace([...kinds], [
    ["Multiply", 2, [0, 9]], // 0 * c: read once, by the Add: folds
    ["Conv", 3, [1]], // not elementwise: stays
    ["Add", 4, [2, 3]], // read twice (the Relu and the result): stays, hosts the Multiply
    ["Relu", 5, [4]], // read once by the LeakyRelu: folds
    ["LeakyRelu", 6, [5]], // a result: stays, hosts the Relu
    ["Neg", 7, [9]], // from a constant alone: runs once, not folded
    ["Sub", 8, [6, 7]], // reads 6, which is also a result: 6 stays
  ], { stateIn: [0, 1], inputs: [], stateOut: [4, 1], outputs: [6, 8] });
  const { trace: fused, folded, fused: made } = fuseElementwise(t, options);
  assertEquals(folded, 2);
  assertEquals(made, 2);
  assertEquals(fused.dispatches.map((d) => d.kernel), [
    "Conv",
    FUSED_KERNEL,
    FUSED_KERNEL,
    "Neg",
    "Sub",
  ]);
  assertEquals(fused.dispatches[1].outputs, [4]);
  assertEquals(fused.dispatches[1].inputs, [0, 9, 3]);
  assertEquals(fused.dispatches[2].outputs, [6]);
  assertEquals(fused.dispatches[2].inputs, [4]);
  assertEquals(shaders.length, 2);
  // Each fused dispatch describes itself as a program over its bindings x0, x1, ...
  const [add, leaky] = [1, 2].map((k) => fused.dispatches[k].program!.body);
  assert(/x0\[i\] \* x1\[0u\]/.test(add), add);
  assert(/let t0 = select\(x0\[i\], 0.0, x0\[i\] < 0.0\);/.test(leaky), leaky);
  assert(/select\(t0, bitcast<f32>\(\d+u\) \* t0, t0 < 0.0\)/.test(leaky), leaky);

  // At most maxInputs distinct inputs: with 2, the Add cannot take the Multiply's two.
  const narrow = fuseElementwise(t, { ...options, maxInputs: 2 });
  assertEquals(narrow.folded, 1);
  assertEquals(narrow.trace.dispatches.filter((d) => d.kernel === "Multiply").length, 1);
});

Deno.test("broadcastIndex() reads an input broadcast to the output's shape", () => {
  // Evaluates the generated WGSL index for every output element (u32 arithmetic).
  const indices = (shape: number[], out: number[]) => {
    const code = broadcastIndex(shape, out).replace(/(\d+)u/g, "$1");
    const f = new Function("i", `return ${code.replace(/\(i \/ (\d+)\)/g, "Math.floor(i / $1)")};`);
    const n = out.reduce((a, b) => a * b, 1);
    return Array.from({ length: n }, (_, i) => f(i) as number);
  };
  assertEquals(broadcastIndex([2, 3], [2, 3]), "i");
  assertEquals(indices([], [2, 2]), [0, 0, 0, 0]);
  assertEquals(indices([3], [2, 3]), [0, 1, 2, 0, 1, 2]);
  assertEquals(indices([1, 1, 3], [2, 2, 3]), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
  assertEquals(indices([2, 1], [2, 3]), [0, 0, 0, 1, 1, 1]);
  assertEquals(indices([2, 1, 2], [2, 3, 2]), [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]);
});

// Every kernel the fusion knows, in chains that fold, over values with both signs, zeros and a
// NaN; the gradients of ReLU and leaky ReLU reach `UgatitActivationGrad`.
const everyKernel: TensorFn = (state, inputs) =>
  tf.tidy(() => {
    const [w] = state;
    const [x, row, col] = inputs; // [2, 4, 3], [3], [2, 1, 3]
    const a = tf.add(tf.mul(x, w), row);
    const b = tf.sub(tf.div(a, tf.add(tf.abs(col), 1)), tf.neg(tf.square(x)));
    const c = tf.addN([tf.exp(tf.mul(b, 0.01)), tf.log1p(tf.abs(b)), tf.tanh(b)]);
    const d = tf.add(tf.clipByValue(c, -1.5, 2.5), tf.step(b, 0.3));
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.leakyRelu(tf.relu(v), 0.2), d)))(a);
    return { state: [tf.sub(w, tf.mul(g, 0.1))], outputs: [tf.add(d, tf.relu(g))] };
  });

// Programs of ours that gather (reflection padding's and upsampling's gradients) or normalise
// (AdaLIN's last pass), each read once by an elementwise kernel: computed inside its chain.
const gathers: TensorFn = (state, inputs) =>
  tf.tidy(() => {
    const [w] = state as [tf.Tensor4D];
    const [x, gamma] = inputs as [tf.Tensor4D, tf.Tensor2D];
    const loss = (v: tf.Tensor) => {
      const norm = layerInstanceNorm(v as tf.Tensor4D, {
        rho: tf.fill([3], 0.3),
        gamma,
        beta: gamma,
      }, {
        unbiased: true,
        mixLn: true,
      });
      const up = upsampleNearest2x(tf.relu(norm));
      return tf.sum(tf.mul(tf.relu(reflectionPad(up, 2)), 0.5)) as tf.Scalar;
    };
    const g = tf.grad(loss)(tf.add(x, w));
    return { state: [tf.sub(w, tf.mul(g, 0.1))], outputs: [g] };
  });

webgpuTest("fused replays equal the eager call, kernel by kernel", async () => {
  const inputsOf = (call: number) => {
    const x = tf.randomNormal([2, 4, 3], 0, 2, "float32", call).bufferSync();
    x.set(NaN, 1, 2, 0);
    x.set(0, 0, 0, 0);
    return [
      x.toTensor(),
      tf.tensor1d([0.5, -1, 2]),
      tf.randomNormal([2, 1, 3], 0, 1, "float32", 9),
    ];
  };
  await fusedMatchesEager(everyKernel, inputsOf, [2, 4, 3], 10);
});

webgpuTest(
  "programs of ours that gather or normalise fold into the chain that reads them",
  async () => {
    const inputsOf = (call: number) => [
      tf.randomNormal([2, 6, 5, 3], 0, 1, "float32", call),
      tf.randomNormal([2, 3], 1, 0.5, "float32", 20 + call),
    ];
    await fusedMatchesEager(gathers, inputsOf, [2, 6, 5, 3], 3);
  },
);

// Runs `fn` four times fused, unfused and eagerly from one state: fused and unfused replays equal
// the eager calls; the fused plan has at least `fewer` dispatches fewer.
async function fusedMatchesEager(
  fn: TensorFn,
  inputsOf: (call: number) => tf.Tensor[],
  stateShape: number[],
  fewer: number,
): Promise<void> {
  const read = (ts: tf.Tensor[]) => Promise.all(ts.map((t) => t.data()));
  const run = async (fuse: boolean) => {
    const compiled = compileWebGpuCall(fn, { log: (l) => assert(false, l), fuse });
    let state = [tf.randomNormal(stateShape, 1, 1, "float32", 7)];
    let eager = [tf.clone(state[0])];
    for (let call = 0; call < 4; call++) {
      const inputs = inputsOf(call);
      const e = fn(eager, inputs);
      const r = compiled.call(state, inputs);
      // The same float32 operations in one kernel: equal (a NaN to a NaN).
      assertEquals(await read(r.outputs), await read(e.outputs), `outputs of call ${call}`);
      assertEquals(await read(r.state), await read(e.state), `state after call ${call}`);
      tf.dispose([...inputs, ...eager, ...state, ...e.outputs, ...r.outputs]);
      [state, eager] = [r.state, e.state];
    }
    assertEquals(compiled.mode, "replaying");
    const dispatches = compiled.replay!.dispatches;
    compiled.dispose();
    tf.dispose([...state, ...eager]);
    return dispatches;
  };
  const [fused, unfused] = [await run(true), await run(false)];
  assert(fused <= unfused - fewer, `${fused} dispatches fused, ${unfused} not`);
}

webgpuTest("every fused and merged shader of a training step compiles", async () => {
  // A shader that does not compile leaves its output unwritten without a word: ask the compiler.
  const backend = webgpuInternals()!;
  const step = traceTrainingStep(["--light", "--img_size", "32", "--ch", "4", "--n_res", "2"]);
  const codes = new Set<string>();
  const compile = (code: string) => (codes.add(code), STAND_IN_PIPELINE);
  const maxBindings = storageBindingsOf(backend.device);
  const fused = fuseElementwise(step.trace, {
    maxInputs: maxBindings - 1,
    maxWorkgroups: 65535,
    compile,
  });
  assert(fused.folded > 100, `${fused.folded} dispatches folded`);
  assert(
    [...codes].some((c) => /fn t\d+_at_p0\(index : i32\)/.test(c)),
    "a program of ours computed inside a chain",
  );
  assert(
    [...codes].some((c) => /fn c\d+_value_p0\(i : u32\)/.test(c)),
    "a chain computed inside a program of ours",
  );
  const { merged } = mergeIndependent(fused.trace, { maxBindings, maxWorkgroups: 65535, compile });
  assert(merged > 100, `${merged} dispatches merged`);
  for (const code of codes) {
    const info = await backend.device.createShaderModule({ code }).getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error").map((m) => m.message);
    assertEquals(errors, [], code);
  }
  step.dispose();
});
