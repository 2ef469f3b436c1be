/**
 * The executor of a plan (`plan.ts`) on WebGPU: its buffers, constants, pipelines and bind groups
 * are made once; each call writes the inputs, encodes every dispatch from those (a pipeline, a
 * bind group and workgroup counts each: a few microseconds of host time, where TensorFlow.js
 * spends hundreds building uniforms, bind groups and tape entries), copies the new state into
 * place and submits once. It uses the WebGPU API alone, so a browser page runs it too.
 *
 * The state lives in the plan's buffers between calls; {@linkcode Replay.state} hands it out as
 * TensorFlow.js tensors over those buffers (no copy), valid until the next call overwrites them.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { Plan, PlanBinding, PlanDispatch } from "./plan.ts";
import type { WebGpuBackendInternals } from "./trace.ts";

/** A tensor's shape and dtype. */
export interface TensorSpec {
  /** The shape. */
  readonly shape: readonly number[];
  /** The dtype. */
  readonly dtype: tf.DataType;
}

/** GPU time per kernel from one profiled call. */
export interface ReplayProfile {
  /** Milliseconds and dispatches per kernel name. */
  readonly byKernel: Record<string, { ms: number; calls: number }>;
  /** The sum over dispatches, milliseconds. */
  readonly kernelMs: number;
}

/** A plan made ready to run. */
export interface Replay {
  /** The number of dispatches per call. */
  readonly dispatches: number;
  /** Bytes of GPU memory the plan holds, by role, and in all. */
  readonly bytes: Readonly<
    Record<"state" | "input" | "constant" | "work" | "uniform" | "total", number>
  >;
  /**
   * Runs one call: `state` (tensors over the plan's state buffers after the first call; others are
   * copied in) and `inputs` in, the new state left in the plan's buffers.
   * @returns host milliseconds from the start to the submit
   */
  run(state: readonly tf.Tensor[], inputs: readonly tf.Tensor[]): number;
  /**
   * The current state as tensors over the plan's buffers (the caller may dispose them; that
   * frees nothing). Valid until the next call.
   */
  state(): tf.Tensor[];
  /**
   * The last call's outputs as tensors over the plan's output buffers (the caller may dispose
   * them; that frees nothing). Valid until the next call overwrites them: read or copy them first.
   */
  outputs(): tf.Tensor[];
  /**
   * Runs one call with a GPU timestamp around every dispatch (slower; for profiles).
   * @returns time per kernel
   */
  profile(state: readonly tf.Tensor[], inputs: readonly tf.Tensor[]): Promise<ReplayProfile>;
  /** Frees the plan's buffers (its state tensors become invalid). */
  dispose(): void;
}

const STORAGE_USAGE = () =>
  GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * Builds a plan's buffers, constants and bind groups, and runs its setup dispatches once.
 * @param backend the WebGPU backend (its device, and its queue of pending work)
 * @param plan the plan
 * @param specs shapes and dtypes of the state leaves and of the outputs
 * @returns the replay
 */
export function buildReplay(
  backend: WebGpuBackendInternals,
  plan: Plan,
  specs: { readonly state: readonly TensorSpec[]; readonly outputs: readonly TensorSpec[] },
): Replay {
  const device = backend.device;
  const buffers = plan.buffers.map((b) =>
    device.createBuffer({ size: b.bytes, usage: STORAGE_USAGE() })
  );
  // One buffer per output, so that the outputs survive the next call.
  const outputBuffers = plan.outputs.map((o) =>
    device.createBuffer({ size: Math.max(4, o.bytes), usage: STORAGE_USAGE() })
  );

  // Every dispatch's uniform block in one buffer, each at an offset the device accepts.
  const alignment = Number(device.limits.minUniformBufferOffsetAlignment ?? 256);
  const all = [...plan.setup, ...plan.step];
  const offsets: number[] = [];
  let uniformBytes = 0;
  for (const d of all) {
    offsets.push(uniformBytes);
    uniformBytes += Math.ceil(Math.max(d.uniforms.length, 16) / alignment) * alignment;
  }
  const uniformBuffer = device.createBuffer({
    size: Math.max(uniformBytes, 16),
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  const packed = new Uint8Array(Math.max(uniformBytes, 16));
  all.forEach((d, i) => packed.set(d.uniforms, offsets[i]));
  device.queue.writeBuffer(uniformBuffer, 0, packed);

  const layouts = new Map<GPUComputePipeline, GPUBindGroupLayout>();
  const bindGroup = (d: PlanDispatch, i: number) => {
    let layout = layouts.get(d.pipeline);
    if (!layout) layouts.set(d.pipeline, layout = d.pipeline.getBindGroupLayout(0));
    const entries: GPUBindGroupEntry[] = d.bindings.map((b, k) => ({
      binding: k,
      resource: { buffer: buffers[b.buffer], offset: b.offset, size: b.bytes },
    }));
    entries.push({
      binding: entries.length,
      resource: { buffer: uniformBuffer, offset: offsets[i], size: Math.max(d.uniforms.length, 4) },
    });
    return device.createBindGroup({ layout, entries });
  };
  const groups = all.map(bindGroup);
  const setupGroups = groups.slice(0, plan.setup.length);
  const stepGroups = groups.slice(plan.setup.length);

  // Constants: host data, tensors from before, and the dispatches over them alone.
  flushBackend(backend);
  for (const u of plan.uploads) device.queue.writeBuffer(buffers[u.to.buffer], u.to.offset, u.data);
  {
    const encoder = device.createCommandEncoder();
    for (const e of plan.externals) {
      encoder.copyBufferToBuffer(e.from, 0, buffers[e.to.buffer], e.to.offset, e.to.bytes);
    }
    if (plan.setup.length) {
      const pass = encoder.beginComputePass();
      plan.setup.forEach((d, i) => encodeDispatch(pass, d, setupGroups[i]));
      pass.end();
    }
    device.queue.submit([encoder.finish()]);
  }

  const copy = (encoder: GPUCommandEncoder, from: GPUBuffer, to: PlanBinding, bytes = to.bytes) =>
    encoder.copyBufferToBuffer(from, 0, buffers[to.buffer], to.offset, bytes);
  // The call's tensors into the plan's buffers: none for state tensors that are the plan's own,
  // host data written straight in (not through TensorFlow.js's upload, whose staging buffer is
  // destroyed at its next submit, and a destroy waits for the GPU to finish the replay), GPU
  // data copied.
  const bringIn = (
    encoder: GPUCommandEncoder,
    tensors: readonly tf.Tensor[],
    at: readonly PlanBinding[],
  ) => {
    tensors.forEach((t, i) => {
      const data = backend.tensorMap.get(t.dataId);
      const resource = data?.resource;
      if (resource === buffers[at[i].buffer] && at[i].offset === 0) return;
      if (resource instanceof GPUBuffer) {
        copy(encoder, resource, at[i], Math.min(at[i].bytes, t.size * 4));
      } else if (data?.values) {
        const host = t.dtype === "float32"
          ? Float32Array.from(data.values)
          : Int32Array.from(data.values, Number);
        device.queue.writeBuffer(buffers[at[i].buffer], at[i].offset, host);
      } else throw new Error(`replay: tensor ${i} has no data`);
    });
  };
  const prepare = (state: readonly tf.Tensor[], inputs: readonly tf.Tensor[]) => {
    if (state.length !== plan.state.length || inputs.length !== plan.inputs.length) {
      throw new Error(
        `replay: ${state.length} state and ${inputs.length} input tensors for a plan of ` +
          `${plan.state.length} and ${plan.inputs.length}`,
      );
    }
    flushBackend(backend); // TensorFlow.js's pending work (uploads, reads of the old state) first
    const encoder = device.createCommandEncoder();
    bringIn(encoder, state, plan.state);
    bringIn(encoder, inputs, plan.inputs);
    return encoder;
  };
  const finish = (encoder: GPUCommandEncoder) => {
    for (const c of plan.copies) {
      encoder.copyBufferToBuffer(
        buffers[c.from.buffer],
        c.from.offset,
        buffers[c.to.buffer],
        c.to.offset,
        c.to.bytes,
      );
    }
    plan.outputs.forEach((o, i) =>
      encoder.copyBufferToBuffer(buffers[o.buffer], o.offset, outputBuffers[i], 0, o.bytes)
    );
    device.queue.submit([encoder.finish()]);
  };

  const bytes = {
    ...plan.bytes,
    uniform: uniformBytes,
    total: 0,
  };
  bytes.total = bytes.state + bytes.input + bytes.constant + bytes.work + bytes.uniform;

  return {
    dispatches: plan.step.length,
    bytes,
    run(state, inputs) {
      const t0 = performance.now();
      const encoder = prepare(state, inputs);
      const pass = encoder.beginComputePass();
      let pipeline: GPUComputePipeline | undefined;
      plan.step.forEach((d, i) => {
        if (d.pipeline !== pipeline) pass.setPipeline(pipeline = d.pipeline);
        pass.setBindGroup(0, stepGroups[i]);
        pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
      });
      pass.end();
      finish(encoder);
      return performance.now() - t0;
    },
    state() {
      return plan.state.map((at, i) =>
        backend.createTensorFromGPUData(
          { buffer: buffers[at.buffer], zeroCopy: true },
          [...specs.state[i].shape],
          specs.state[i].dtype,
        )
      );
    },
    outputs() {
      return outputBuffers.map((buffer, i) =>
        backend.createTensorFromGPUData(
          { buffer, zeroCopy: true },
          [...specs.outputs[i].shape],
          specs.outputs[i].dtype,
        )
      );
    },
    async profile(state, inputs) {
      const n = plan.step.length;
      const perSet = 2048; // dispatches per query set (two timestamps each, 4,096 queries at most)
      const sets = Array.from(
        { length: Math.ceil(n / perSet) },
        (_, k) =>
          device.createQuerySet({ type: "timestamp", count: 2 * Math.min(perSet, n - k * perSet) }),
      );
      const resolve = device.createBuffer({
        size: 16 * n,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const read = device.createBuffer({
        size: 16 * n,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const encoder = prepare(state, inputs);
      plan.step.forEach((d, i) => {
        const set = sets[Math.floor(i / perSet)];
        const k = 2 * (i % perSet);
        const pass = encoder.beginComputePass({
          timestampWrites: {
            querySet: set,
            beginningOfPassWriteIndex: k,
            endOfPassWriteIndex: k + 1,
          },
        });
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, stepGroups[i]);
        pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        pass.end();
      });
      sets.forEach((set, k) =>
        encoder.resolveQuerySet(set, 0, set.count, resolve, 16 * k * perSet)
      );
      encoder.copyBufferToBuffer(resolve, 0, read, 0, 16 * n);
      finish(encoder);
      await read.mapAsync(GPUMapMode.READ);
      const stamps = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      for (const s of sets) s.destroy();
      resolve.destroy();
      read.destroy();
      const byKernel: Record<string, { ms: number; calls: number }> = {};
      let kernelMs = 0;
      plan.step.forEach((d, i) => {
        const ms = Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6;
        const k = (byKernel[d.kernel] ??= { ms: 0, calls: 0 });
        k.ms += ms;
        k.calls++;
        kernelMs += ms;
      });
      return { byKernel, kernelMs };
    },
    dispose() {
      for (const b of [...buffers, ...outputBuffers, uniformBuffer]) b.destroy();
    },
  };
}

function encodeDispatch(pass: GPUComputePassEncoder, d: PlanDispatch, group: GPUBindGroup): void {
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
}

/**
 * Submits TensorFlow.js's pending GPU work, so that work queued after it (a replay) runs after
 * every read and write the backend has recorded so far.
 * @param backend the WebGPU backend
 */
export function flushBackend(backend: WebGpuBackendInternals): void {
  if (backend.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
}

/**
 * Frees the buffers TensorFlow.js's pool keeps for reuse (the eager path's working set), e.g. once
 * a plan has its own buffers and the eager path will no longer run.
 * @param backend the WebGPU backend
 * @returns the bytes freed
 */
export function releasePooledBuffers(backend: WebGpuBackendInternals): number {
  const manager = backend.bufferManager;
  let freed = 0;
  for (const list of manager.freeBuffers.values()) {
    for (const b of list) {
      freed += b.size;
      b.destroy();
    }
    list.length = 0;
  }
  manager.numFreeBuffers = 0;
  manager.numBytesAllocated -= freed;
  return freed;
}
