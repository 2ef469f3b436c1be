/**
 * Times forward passes of the generator and of the global discriminator, side by side on several
 * backends in one run, and prints a table and one JSON line per backend.
 *
 *     deno task bench:forward [--backends wasm,cpu] [--runs 3] [model flags]
 *     deno task bench:forward --backends native --vs-torch --runs 5 --img_size 256 --ch 64
 *
 * `--vs-torch` also times the PyTorch peer's forward pass of the same generator (eval mode, no
 * autograd, 2 threads; tools/pytorch/bench_step.py --forward), one pass of ours and one of its in
 * turn, and both processes' peak resident memory; the discriminator is then left out.
 *
 * Model flags are the training flags (default here: --light --img_size 256 --ch 64 --n_res 4
 * --n_dis 6, batch 1). Each timing is the median of `--runs` passes after `--warmup` passes
 * (default 1; kernels compile or caches fill on the first). Rows print as each backend finishes.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendName, discriminator, dispose, generator, selectBackend } from "../mod.ts";
import { flagsOrExit } from "../cli/command.ts";
import { MODEL_FLAGS, SEED_FLAG, TRAINING_FLAGS } from "../cli/flags.ts";
import { type PeerRound, startTorchPeer } from "./pytorch/peer.ts";
import { peakRssMb } from "./peak_rss.ts";

const args = [...Deno.args];
const take = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : args.splice(i, 2)[1];
};
const backends = take("backends", "wasm,cpu").split(",") as BackendName[];
const runs = Number(take("runs", "3"));
const vsTorchAt = args.indexOf("--vs-torch");
const vsTorch = vsTorchAt >= 0 && args.splice(vsTorchAt, 1).length > 0;
const warmup = Number(take("warmup", "1"));
const flags = flagsOrExit({ ...MODEL_FLAGS, ...TRAINING_FLAGS, ...SEED_FLAG }, args, {
  light: true,
});
const S = flags.img_size;

// Times `fn`; after each timed run of ours, `between` (the peer's run) if given.
async function time(fn: () => tf.Tensor, between?: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = performance.now();
    const y = fn();
    await y.data(); // waits for the backend to finish
    y.dispose();
    if (i >= warmup) {
      out.push(performance.now() - t0);
      await between?.();
    }
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(
  `forward pass, batch ${flags.batch_size}, ${
    flags.light ? "light" : "full"
  } S=${S} ch=${flags.ch}, ` +
    `global D ${flags.n_dis + 1} layers; median of ${runs} after ${warmup} warm-up`,
);
const peer = vsTorch
  ? await startTorchPeer([
    "--forward",
    ...(flags.light ? ["--light"] : []),
    ...["--img_size", S, "--ch", flags.ch, "--n_res", flags.n_res].map(String),
    ...["--batch_size", flags.batch_size].map(String),
  ])
  : undefined;
console.log(`backend${" ".repeat(28)}generator ms  global D ms  peak RSS MB`);
const line = (name: string, g: number, d: number | undefined, rss: number) =>
  console.log(
    `${name.padEnd(34)} ${String(g).padStart(12)} ${String(d ?? "-").padStart(12)} ${
      String(rss).padStart(12)
    }`,
  );
const config = {
  light: flags.light,
  img_size: S,
  ch: flags.ch,
  n_res: flags.n_res,
  n_layers: flags.n_dis + 1,
  batch_size: flags.batch_size,
};
for (const name of backends) {
  const backend = (await selectBackend(name)).name;
  const G = generator({ ch: flags.ch, nRes: flags.n_res, imgSize: S, light: flags.light });
  const D = discriminator({ ch: flags.ch, nLayers: flags.n_dis + 1 });
  const g = G.init(flags.seed);
  const d = D.init(flags.seed);
  const x = tf.randomUniform([flags.batch_size, S, S, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const peerTimes: number[] = [];
  let peerInfo: PeerRound | undefined;
  const gMs = median(
    await time(
      () => tf.tidy(() => G.apply(g, x).image),
      peer && (async () => {
        peerInfo = await peer.run(1);
        peerTimes.push(...peerInfo.times_ms);
      }),
    ),
  );
  // With the peer, the generator alone: its peak memory is the translation's.
  const dMs = peer ? undefined : median(
    await time(() => tf.tidy(() => D.apply(d.params, d.state, x, false)[0].logit)),
  );
  dispose([g, d, x]);
  const row = {
    impl: "ugatit",
    backend,
    config,
    runs,
    g_forward_ms: Math.round(gMs),
    ...(dMs === undefined ? {} : { d_global_forward_ms: Math.round(dMs) }),
    peak_rss_mb: peakRssMb(),
  };
  line(backend, row.g_forward_ms, row.d_global_forward_ms, row.peak_rss_mb);
  console.log(JSON.stringify(row));
  if (peerInfo) {
    const peerRow = {
      impl: "pytorch",
      backend: peerInfo.backend,
      config,
      runs,
      g_forward_ms: Math.round(median(peerTimes)),
      peak_rss_mb: peerInfo.peak_rss_mb,
    };
    line(peerInfo.backend, peerRow.g_forward_ms, undefined, peerRow.peak_rss_mb);
    console.log(JSON.stringify(peerRow));
    console.log(
      `ours / PyTorch: time ${(gMs / median(peerTimes)).toFixed(2)}x, peak RSS ${
        (row.peak_rss_mb / peerInfo.peak_rss_mb).toFixed(2)
      }x`,
    );
  }
}
await peer?.close();
