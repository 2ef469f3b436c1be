/**
 * What a replayed training step holds on the GPU, for a size this machine cannot run: one
 * iteration is recorded without running anything (`traceCall` with `execute: false`: the same
 * dispatches and tensors, no arithmetic) and planned, and the plan's buffers are listed by role
 * beside its dispatches, counted by kernel. The plan is what a replay would allocate on any device.
 *
 *     deno task plan:memory --light --img_size 256 --ch 64 --n_dis 6
 *
 * Needs a WebGPU adapter (lavapipe will do): TensorFlow.js still allocates the eager step's
 * buffers while recording (host memory on lavapipe, about the eager path's peak).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../backends/select_backend.ts";
import { planOnDevice } from "../backends/webgpu/compiled_call.ts";
import { traceCall, webgpuInternals } from "../backends/webgpu/trace.ts";
import { flagsOrExit } from "../cli/command.ts";
import { MODEL_FLAGS, SEED_FLAG, TRAINING_FLAGS } from "../cli/flags.ts";
import { configFromSettings } from "../train/settings.ts";
import { type StepInputs, trainer } from "../train/step.ts";
import { leaves } from "../tree/tree.ts";
import { overLeaves } from "../backends/compile.ts";

const flags = flagsOrExit({ ...MODEL_FLAGS, ...TRAINING_FLAGS, ...SEED_FLAG }, Deno.args, {
  light: true,
  img_size: 64,
  ch: 32,
  n_dis: 4,
});
await selectBackend("webgpu");
const backend = webgpuInternals()!;
const model = trainer(configFromSettings(flags));
const { step: _, ...state } = model.init(flags.seed);
const S = flags.img_size;
const shape = [flags.batch_size, S, S, 3];
const batch = { realA: tf.zeros(shape), realB: tf.zeros(shape), step: tf.scalar(0) };
const traced = traceCall(
  backend,
  overLeaves(model.update, state, batch as StepInputs),
  leaves(state),
  leaves(batch),
  { execute: false },
);
if (!traced.trace) throw new Error(`cannot plan: ${traced.unsupported}`);
const alignment = Number(backend.device.limits.minStorageBufferOffsetAlignment ?? 256);
const { planned, dropped, fused, merged } = planOnDevice(traced.trace, backend.device, {
  merge: true,
});
if (!fused || !merged || !planned.plan) throw new Error(`cannot plan: ${planned.unsupported}`);
const { plan } = planned;
const countBy = (names: string[]) => {
  const n: Record<string, number> = {};
  for (const k of names) n[k] = (n[k] ?? 0) + 1;
  return n;
};
const mb = (b: number) => Number((b / 2 ** 20).toFixed(1));
const total = Object.values(plan.bytes).reduce((a, b) => a + b, 0);
const row = {
  config: { light: flags.light, img_size: S, ch: flags.ch, n_res: flags.n_res, n_dis: flags.n_dis },
  dispatches: plan.step.length,
  setup_dispatches: plan.setup.length,
  unread_dropped: dropped,
  fused: { folded: fused.folded, dispatches: fused.fused },
  merged: merged.merged,
  merged_parts_by_kernel: countBy(merged.trace.dispatches.flatMap((d) => d.parts ?? [])),
  copies: plan.copies.length,
  plan_mb: mb(total),
  by_role_mb: Object.fromEntries(Object.entries(plan.bytes).map(([k, v]) => [k, mb(v)])),
  offset_alignment: alignment,
  dispatches_by_kernel: Object.fromEntries(
    Object.entries(countBy(plan.step.map((d) => d.kernel))).sort((x, y) => y[1] - x[1]),
  ),
};
console.log(
  `replay plan, ${flags.light ? "light" : "full"} S=${S} ch=${flags.ch}: ${row.dispatches} ` +
    `dispatches per step, ${row.plan_mb} MB (${
      Object.entries(row.by_role_mb).map(([k, v]) => `${k} ${v}`).join(", ")
    })`,
);
console.log(JSON.stringify(row));
