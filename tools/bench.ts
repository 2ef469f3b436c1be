/**
 * `deno task bench`: times training iterations of ours, and with `--vs-torch` of the PyTorch
 * peer (tools/pytorch/bench_step.py: the same model and iteration) in the same run, and prints
 * a table and one JSON line per implementation.
 *
 *     deno task bench --light --img_size 64 --ch 32 --n_res 4 --n_dis 4 --steps 11 --vs-torch
 *
 * Takes the training flags (model, batch size, `--backend`) plus:
 * - `--steps N`: timed iterations (default 5), after `--warmup N` warm-up ones (default 3);
 * - `--vs-torch`: also the peer; the two alternate one iteration each, so that both meet the same
 *   slow spells of a shared machine;
 * - `--torch-device cuda`: the peer on the GPU (eager PyTorch, its defaults), for `--backend webgpu`;
 * - `--vs-eager` (webgpu, the step replayed): also the same iteration run eagerly, from a state of
 *   its own, alternating with the replayed one, and their ratio (`UGATIT_WEBGPU_REPLAY=off` gives
 *   the eager path alone);
 * - `--adapter`: only print the adapter (`--backend webgpu`) and exit;
 * - `--profile`: time per kernel over one more iteration (on webgpu from GPU timestamps), the
 *   kernel count, and the time outside kernels.
 *
 * GFLOP/s count the convolutions and linear maps of the
 * reference's iteration: 8 generator and 12 discriminator forward passes and their backward
 * passes (a backward pass costs about twice its forward; the generator step needs only input
 * gradients through the discriminators).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../backends/select_backend.ts";
import { loadBlas } from "../backends/native/blas.ts";
import { convRouteCounts } from "../backends/native/native_kernels.ts";
import { exitOnUserError, flagsOrExit } from "../cli/command.ts";
import { BACKEND_FLAG, MODEL_FLAGS, SEED_FLAG, TRAINING_FLAGS } from "../cli/flags.ts";
import { kernelHere } from "../ops/kernel.ts";
import { LIN_NORM } from "../ops/lin_norm.ts";
import { configFromSettings } from "../train/settings.ts";
import { disposeState, trainer, type TrainState } from "../train/step.ts";
import { type PeerRound, startTorchPeer } from "./pytorch/peer.ts";
import { cpuMs } from "./cpu_time.ts";
import { peakRssMb } from "./peak_rss.ts";

const args = [...Deno.args];
const take = (flag: string) => args.includes(flag) && args.splice(args.indexOf(flag), 1).length > 0;
const vsTorch = take("--vs-torch");
const vsEager = take("--vs-eager");
const profile = take("--profile");
const adapterOnly = take("--adapter");
const torchDeviceAt = args.indexOf("--torch-device");
const torchDevice = torchDeviceAt < 0 ? "cpu" : args.splice(torchDeviceAt, 2)[1];
if (!["cpu", "cuda"].includes(torchDevice)) {
  console.error(`--torch-device: expected cpu or cuda, got "${torchDevice}"`);
  Deno.exit(2);
}
const stepsAt = args.indexOf("--steps");
const steps = stepsAt < 0 ? 5 : Number(args.splice(stepsAt, 2)[1]);
const warmupAt = args.indexOf("--warmup");
const WARMUP = warmupAt < 0 ? 3 : Math.max(1, Number(args.splice(warmupAt, 2)[1]));
const flags = flagsOrExit(
  { ...MODEL_FLAGS, ...TRAINING_FLAGS, ...BACKEND_FLAG, ...SEED_FLAG },
  args,
  { light: true, img_size: 64, ch: 32, n_dis: 4 },
);
const S = flags.img_size;

// Multiply-adds x 2 of one forward pass, from the architecture (SPEC.md).
function generatorFlops(): number {
  const { ch, n_res: nRes, light } = flags;
  const c = 4 * ch;
  const conv = (k: number, cin: number, cout: number, side: number) =>
    2 * k * k * cin * cout * side * side;
  let f = conv(7, 3, ch, S) + conv(3, ch, 2 * ch, S / 2) + conv(3, 2 * ch, c, S / 4);
  f += 2 * 2 * nRes * conv(3, c, c, S / 4); // encoder and decoder residual blocks
  f += conv(1, 2 * c, c, S / 4);
  f += 2 * (light ? c : c * (S / 4) ** 2) * c + 3 * 2 * c * c; // MLP and gamma/beta heads
  f += conv(3, c, c / 2, S / 2) + conv(3, c / 2, ch, S) + conv(7, ch, 3, S);
  return f;
}
function discriminatorFlops(nLayers: number): number {
  const conv = (cin: number, cout: number, side: number) => 2 * 16 * cin * cout * side * side;
  let side = S;
  let [cin, cout] = [3, flags.ch];
  let f = 0;
  for (let i = 0; i < nLayers - 1; i++) {
    side = i < nLayers - 2 ? Math.floor((side - 2) / 2) + 1 : side - 1;
    f += conv(cin, cout, side);
    [cin, cout] = [cout, cout * 2];
  }
  f += 2 * 2 * cin * cin * side * side; // conv1x1
  return f + conv(cin, 1, side - 1);
}
const g = generatorFlops();
const d = discriminatorFlops(flags.n_dis + 1) + discriminatorFlops(flags.n_dis - 1);
// D step: 2 G forwards without gradients, 8 D forwards and their full backward passes;
// G step: 6 G forwards with backward, 4 D forwards with input-gradient backward.
const iterationFlops = flags.batch_size * (2 * g + 6 * 3 * g + 4 * d * 3 + 2 * d * 2);

const config = {
  light: flags.light,
  img_size: S,
  ch: flags.ch,
  n_res: flags.n_res,
  n_dis: flags.n_dis,
  batch_size: flags.batch_size,
};
const rows: Record<string, unknown>[] = [];

const { name: backend, gpu, replays } = await selectBackend(flags.backend);
if (gpu) {
  console.log(
    `webgpu adapter: ${gpu.adapter}${gpu.software ? " (software renderer)" : ""}; ` +
      `kernels of ours ${kernelHere(LIN_NORM) ? "on" : "off"}; ` +
      `training step ${
        replays ? "recorded once and replayed" : "eager (UGATIT_WEBGPU_REPLAY=off)"
      }`,
  );
}
if (vsEager && !(gpu && replays)) {
  console.error(
    "--vs-eager: needs --backend webgpu with the step replayed (not UGATIT_WEBGPU_REPLAY=off)",
  );
  Deno.exit(2);
}
if (adapterOnly) {
  if (!gpu) console.log(`backend ${backend}: no GPU adapter in use`);
  Deno.exit(0);
}
// GPU dispatches per iteration: every WebGPU program run is one.
let dispatches = 0;
if (gpu) {
  const b = tf.backend() as unknown as { runWebGPUProgram: (...a: unknown[]) => unknown };
  const run = b.runWebGPUProgram.bind(b);
  b.runWebGPUProgram = (...a: unknown[]) => (dispatches++, run(...a));
}
const dispatchCounts: number[] = [];
const recordTimes: number[] = [];
const cpuTimes: number[] = []; // CPU ms per iteration, all threads
// The GPU memory our buffer pool holds (it keeps freed buffers, so this tracks the peak).
let gpuMb = 0;
const noteGpuMemory = () => {
  const bytes = (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU;
  if (bytes !== undefined) gpuMb = Math.max(gpuMb, Math.round(bytes / 2 ** 20));
};
const peer = vsTorch
  ? await startTorchPeer([
    ...(flags.light ? ["--light"] : []),
    ...["--img_size", S, "--ch", flags.ch, "--n_res", flags.n_res, "--n_dis", flags.n_dis].map(
      String,
    ),
    ...["--batch_size", flags.batch_size].map(String),
  ], torchDevice)
  : undefined;
try {
  const t = trainer(configFromSettings(flags));
  const compiled = replays ? t.compile({ log: console.error }) : undefined;
  const stepper = compiled ?? t;
  let state = t.init(flags.seed);
  const a = tf.randomUniform([flags.batch_size, S, S, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const b = tf.randomUniform([flags.batch_size, S, S, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  // One iteration of `step` from `from`: its wall time, and its host time, CPU time and dispatches
  // into `into`; the state it leaves.
  const timeOne = async (
    stepOf: typeof stepper,
    from: TrainState,
    into: { record: number[]; cpu: number[]; dispatches: number[] },
  ) => {
    const d0 = dispatches;
    const replayed = stepOf === compiled && compiled.compiled.mode === "replaying";
    const c0 = cpuMs();
    const t0 = performance.now();
    const { state: next, terms } = stepOf.step(from, a, b);
    // On an asynchronous device (webgpu) the step returns once its work is queued: the host's
    // own share of the iteration.
    into.record.push(performance.now() - t0);
    // One read of all loss terms: the iteration is done when it returns.
    const all = tf.stack(Object.values(terms));
    await all.data();
    const ms = performance.now() - t0;
    into.cpu.push(cpuMs() - c0);
    into.dispatches.push(replayed ? compiled!.compiled.stats()!.dispatches : dispatches - d0);
    tf.dispose([all, ...Object.values(terms)]);
    disposeState(from);
    return { ms, next };
  };
  const ours = { record: recordTimes, cpu: cpuTimes, dispatches: dispatchCounts };
  const iterate = async () => {
    const { ms, next } = await timeOne(stepper, state, ours);
    noteGpuMemory();
    state = next;
    return ms;
  };
  // With --vs-eager, the eager path beside the replayed one, from a state of its own.
  let eagerState = vsEager ? t.init(flags.seed) : undefined;
  const eager = { record: [] as number[], cpu: [] as number[], dispatches: [] as number[] };
  const eagerTimes: number[] = [];
  const iterateEager = async () => {
    const { ms, next } = await timeOne(t, eagerState!, eager);
    eagerState = next;
    return ms;
  };
  // Warm-up: V8 keeps optimising our kernels over the first iterations; both get the same. A
  // compiled step records its first iterations, then replays once more before the timed ones (a
  // software adapter compiles the plan's shaders when they first run: seconds).
  let warmReplays = 0;
  const unreplayed = () =>
    compiled !== undefined && compiled.compiled.mode !== "eager" && warmReplays < 1;
  for (let i = 0; i < WARMUP || (unreplayed() && i < WARMUP + 5); i++) {
    const replaying = compiled?.compiled.mode === "replaying";
    await iterate();
    if (replaying) warmReplays++;
  }
  for (let i = 0; vsEager && i < WARMUP; i++) await iterateEager();
  gpuMb = 0; // the timed iterations' pool, not the warm-up's (recorded iterations run eagerly)
  await peer?.run(WARMUP - 1); // the peer ran one on its own
  // One iteration of ours, then one of the peer, and so on: both meet the same noisy spells.
  const times: number[] = [];
  const peerTimes: number[] = [];
  let peerInfo: PeerRound | undefined;
  for (let i = 0; i < steps; i++) {
    times.push(await iterate());
    if (vsEager) eagerTimes.push(await iterateEager());
    if (peer) {
      const r = await peer.run(1);
      peerTimes.push(...r.times_ms);
      peerInfo = r;
    }
  }
  await peer?.close();
  if (profile && compiled?.compiled.mode === "replaying") {
    // A replayed iteration with a GPU timestamp around every dispatch, summed by kernel name.
    const { step: done, ...tensors } = state;
    const step = tf.scalar(done);
    const r = await compiled.compiled.profile(tensors, { realA: a, realB: b, step });
    step.dispose();
    tf.dispose(Object.values(r.outputs));
    state = { step: done + 1, ...r.state };
    const median = [...times].sort((x, y) => x - y)[Math.floor(times.length / 2)];
    const ranked = Object.entries(r.profile.byKernel).sort((x, y) => y[1].ms - x[1].ms);
    const total = r.profile.kernelMs;
    console.log(
      `per-kernel profile of one replayed iteration on ${backend}: ${
        compiled.compiled.stats()!.dispatches
      } dispatches summing to ${total.toFixed(1)} ms of GPU time (each timed alone); the timed ` +
        `iterations' median is ${median.toFixed(1)} ms`,
    );
    for (const [name, e] of ranked.slice(0, 20)) {
      console.log(
        `  ${name.padEnd(28)} ${e.ms.toFixed(1).padStart(8)} ms ${
          (100 * e.ms / total).toFixed(1).padStart(6)
        }%  ${e.calls} dispatches`,
      );
    }
    console.log(JSON.stringify({
      profile: backend,
      replayed: true,
      dispatches: compiled.compiled.stats()!.dispatches,
      kernel_ms: Number(total.toFixed(2)),
      step_ms_median: Number(median.toFixed(1)),
      by_kernel: Object.fromEntries(
        ranked.map(([k, e]) => [k, { ms: Number(e.ms.toFixed(2)), dispatches: e.calls }]),
      ),
    }));
  } else if (profile) {
    // One more iteration under tf.profile: wall time per kernel, summed by kernel name.
    const start = performance.now();
    const info = await tf.profile(() => {
      const { state: next, terms } = t.step(state, a, b);
      tf.dispose(Object.values(terms));
      disposeState(next);
    });
    // On the CPU backends the iteration's kernels ran inside that call; on webgpu they are queued.
    const profiledMs = performance.now() - start;
    const byKernel = new Map<string, { ms: number; calls: number }>();
    // Ops with a custom gradient show as "unnamed scope", timed with the kernels they run, which
    // are listed themselves: left out of the sum.
    for (const k of info.kernels.filter((k) => k.name !== "unnamed scope")) {
      const ms = typeof k.kernelTimeMs === "number"
        ? k.kernelTimeMs
        : (await k.kernelTimeMs as { kernelMs?: number }).kernelMs ?? 0;
      const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
      byKernel.set(k.name, { ms: e.ms + ms, calls: e.calls + 1 });
    }
    const total = [...byKernel.values()].reduce((s, e) => s + e.ms, 0);
    const calls = [...byKernel.values()].reduce((s, e) => s + e.calls, 0);
    // Kernels that took time: on webgpu, the GPU dispatches (reshapes and the like are free).
    const timed = [...byKernel.values()].filter((e) => e.ms > 0).reduce((s, e) => s + e.calls, 0);
    const median = [...times].sort((x, y) => x - y)[Math.floor(times.length / 2)];
    // Outside kernels: against the profiled iteration's own wall time where it ran in the call
    // (other iterations differ by the machine's noise), else against the timed median.
    const reference = gpu ? median : profiledMs;
    console.log(
      `per-kernel profile of one iteration on ${backend}: ${calls} kernels (${timed} timed) summing to ` +
        `${total.toFixed(1)} ms; ${
          gpu ? "the timed iterations' median is" : "that iteration took"
        } ${reference.toFixed(1)} ms, so about ${
          Math.max(0, reference - total).toFixed(1)
        } ms is spent outside kernels (dispatch, JavaScript, garbage collection)`,
    );
    const ranked = [...byKernel].sort((x, y) => y[1].ms - x[1].ms);
    for (const [name, e] of ranked.slice(0, 20)) {
      console.log(
        `  ${name.padEnd(28)} ${e.ms.toFixed(1).padStart(8)} ms ${
          (100 * e.ms / total).toFixed(1).padStart(6)
        }%  ${e.calls} calls`,
      );
    }
    const routes = backend.startsWith("native") ? convRouteCounts() : undefined;
    if (routes) {
      console.log(
        "convolution geometries on oneDNN / lowered to GEMM (the faster when first met): " +
          Object.entries(routes).map(([pass, c]) => `${pass} ${c.onednn} / ${c.gemm}`).join(", "),
      );
    }
    console.log(JSON.stringify({
      profile: backend,
      ...(routes ? { conv_routes: routes } : {}),
      kernels: calls,
      timed_kernels: timed,
      kernel_ms: Number(total.toFixed(2)),
      step_ms_median: Number(median.toFixed(1)),
      ...(gpu ? {} : { profiled_iteration_ms: Number(profiledMs.toFixed(1)) }),
      by_kernel: Object.fromEntries(
        ranked.map(([k, e]) => [k, { ms: Number(e.ms.toFixed(2)), calls: e.calls }]),
      ),
    }));
  }
  disposeState(state);
  if (eagerState) disposeState(eagerState);
  const plan = compiled?.compiled.stats();
  compiled?.compiled.dispose();
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  // A row of ours: the timed iterations, and on webgpu what their stream measured besides.
  const oursRow = (
    timed: number[],
    from: typeof ours,
    extra: Record<string, unknown>,
  ): Record<string, unknown> => ({
    impl: "ugatit",
    backend,
    step_ms_median: Math.round(median(timed)),
    step_ms: timed.map(Math.round),
    gflops: Number((iterationFlops / median(timed) / 1e6).toFixed(1)),
    peak_rss_mb: peakRssMb(),
    ...(gpu
      ? {
        adapter: gpu.adapter,
        ...extra,
        dispatches: from.dispatches.at(-1),
        record_ms_median: Number(median(from.record.slice(-steps)).toFixed(1)),
        record_us_per_dispatch: Number(
          (1000 * median(from.record.slice(-steps)) / from.dispatches.at(-1)!).toFixed(1),
        ),
        cpu_ms_median: Math.round(median(from.cpu.slice(-steps))),
      }
      : {}),
    steps,
    config,
  });
  rows.push(oursRow(times, ours, {
    replayed: plan !== undefined,
    gpu_pool_mb: gpuMb,
    ...(plan ? { plan_mb: Number((plan.bytes.total / 2 ** 20).toFixed(1)) } : {}),
  }));
  if (vsEager) rows.push(oursRow(eagerTimes, eager, { replayed: false }));
  if (peerInfo) {
    rows.push({
      impl: "pytorch",
      backend: peerInfo.backend,
      step_ms_median: Math.round(median(peerTimes)),
      step_ms: peerTimes.map(Math.round),
      gflops: Number((iterationFlops / median(peerTimes) / 1e6).toFixed(1)),
      peak_rss_mb: peerInfo.peak_rss_mb,
      ...(peerInfo.peak_gpu_mb !== undefined ? { peak_gpu_mb: peerInfo.peak_gpu_mb } : {}),
      steps,
      config,
    });
  }
} catch (e) {
  exitOnUserError(e); // a wasm heap that ran out says which backend to use
}

console.log(
  `training iteration, ${
    flags.light ? "light" : "full"
  } S=${S} ch=${flags.ch} n_res=${flags.n_res} ` +
    `n_dis=${flags.n_dis} batch ${flags.batch_size}: ${
      (iterationFlops / 1e9).toFixed(1)
    } GFLOP; median of ${steps}`,
);
// The machine's practical CPU peak: a large OpenBLAS multiply, where one is installed (not
// for a GPU backend).
const peak = gpu ? undefined : (() => {
  const blas = loadBlas();
  if (typeof blas === "string") return undefined;
  const n = 2048;
  const [a, b, c] = [0, 1, 2].map(() => new Float32Array(n * n).fill(0.5));
  blas.sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n);
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) blas.sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n);
  return Math.round(2 * n ** 3 * 5 / (performance.now() - t0) / 1e6);
})();
if (peak) {
  console.log(`practical peak: ${peak} GFLOP/s (sgemm 2048x2048x2048 on the native BLAS)`);
  for (const r of rows) r.peak_share = Number(((r.gflops as number) / peak).toFixed(3));
}
console.log(
  "impl     backend                          ms/iter   GFLOP/s  of peak  peak RSS MB",
);
// A webgpu row says whether its step was replayed.
const label = (r: Record<string, unknown>) =>
  r.replayed === undefined
    ? String(r.backend)
    : `${r.backend} (${r.replayed ? "replayed" : "eager"})`;
for (const r of rows) {
  const share = r.peak_share === undefined ? "" : `${Math.round(100 * (r.peak_share as number))}%`;
  console.log(
    `${String(r.impl).padEnd(8)} ${label(r).padEnd(32)} ${String(r.step_ms_median).padStart(7)} ` +
      `${String(r.gflops).padStart(9)} ${share.padStart(8)} ${String(r.peak_rss_mb).padStart(12)}`,
  );
}
const [ugatit, eagerRow, torch] = [
  rows.find((r) => r.impl === "ugatit" && r.replayed !== false),
  rows.find((r) => r.impl === "ugatit" && r.replayed === false && vsEager),
  rows.find((r) => r.impl === "pytorch"),
];
const ratioOf = (x: Record<string, unknown>, y: Record<string, unknown>) =>
  ((x.step_ms_median as number) / (y.step_ms_median as number)).toFixed(2);
if (ugatit && eagerRow) {
  console.log(`replayed / eager step time: ${ratioOf(ugatit, eagerRow)}x (medians, alternating)`);
}
if (ugatit && torch) console.log(`ours / PyTorch step time: ${ratioOf(ugatit, torch)}x`);
for (const r of rows) console.log(JSON.stringify(r));
