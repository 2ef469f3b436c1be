/**
 * Times forward passes of the generator and of the global discriminator, side by side on several
 * backends in one run, and prints a table and one JSON line per backend.
 *
 *     deno task bench:forward [--backends wasm,cpu] [--runs 3] [model flags]
 *
 * Model flags are the training flags (default here: --light --img_size 256 --ch 64 --n_res 4
 * --n_dis 6, batch 1). Each timing is the median of `--runs` passes after `--warmup` passes
 * (default 1; kernels compile or caches fill on the first). Rows print as each backend finishes.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendName, discriminator, dispose, generator, selectBackend } from "../mod.ts";
import { flagsOrExit } from "../train/flags.ts";

const args = [...Deno.args];
const take = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : args.splice(i, 2)[1];
};
const backends = take("backends", "wasm,cpu").split(",") as BackendName[];
const runs = Number(take("runs", "3"));
const warmup = Number(take("warmup", "1"));
const flags = flagsOrExit(args, { light: true });
const S = flags.img_size;

async function time(fn: () => tf.Tensor): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = performance.now();
    const y = fn();
    await y.data(); // waits for the backend to finish
    y.dispose();
    if (i >= warmup) out.push(performance.now() - t0);
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
console.log("backend  generator ms  global D ms");
for (const name of backends) {
  const backend = await selectBackend(name);
  const G = generator({ ch: flags.ch, nRes: flags.n_res, imgSize: S, light: flags.light });
  const D = discriminator({ ch: flags.ch, nLayers: flags.n_dis + 1 });
  const g = G.init(flags.seed);
  const d = D.init(flags.seed);
  const x = tf.randomUniform([flags.batch_size, S, S, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  const gMs = median(await time(() => tf.tidy(() => G.apply(g, x).image)));
  const dMs = median(
    await time(() => tf.tidy(() => D.apply(d.params, d.state, x, false)[0].logit)),
  );
  dispose([g, d, x]);
  const row = {
    backend,
    config: {
      light: flags.light,
      img_size: S,
      ch: flags.ch,
      n_res: flags.n_res,
      n_layers: flags.n_dis + 1,
    },
    runs,
    g_forward_ms: Math.round(gMs),
    d_global_forward_ms: Math.round(dMs),
  };
  console.log(
    `${backend.padEnd(8)} ${String(row.g_forward_ms).padStart(12)} ${
      String(row.d_global_forward_ms).padStart(12)
    }`,
  );
  console.log(JSON.stringify(row));
}
