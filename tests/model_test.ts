import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertThrows } from "@std/assert";
import {
  count,
  discriminator,
  discriminatorNames,
  dispose,
  flatten,
  generator,
  generatorNames,
  selectBackend,
  unflatten,
} from "../mod.ts";
import { assertClose, assertNoLeak, modelGradients } from "./helpers.ts";
import { splitBatch } from "../train/step.ts";
import type { GeneratorOutput } from "../layers/generator.ts";
import type { DiscriminatorOutput } from "../layers/discriminator.ts";

await selectBackend("cpu");

const tableCount = (entries: { shape: readonly number[]; state?: boolean }[]) =>
  entries.filter((e) => !e.state).reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0);

Deno.test("parameter counts equal the reference's (SPEC.md)", () => {
  assertEquals(tableCount(generatorNames({ ch: 64, light: true })), 10_589_888);
  assertEquals(tableCount(generatorNames({ ch: 64, light: true, imgSize: 64 })), 10_589_888);
  assertEquals(tableCount(generatorNames({ ch: 64, light: false, imgSize: 256 })), 278_959_808);
  assertEquals(tableCount(generatorNames({ ch: 32, light: true })), 2_653_024);
  const d = (ch: number, nLayers: number) => tableCount(discriminatorNames({ ch, nLayers }));
  assertEquals([d(64, 7), d(64, 6), d(64, 5), d(64, 4)], [
    53_130_176,
    13_262_784,
    3_290_560,
    794_816,
  ]);
  assertEquals([d(32, 5), d(32, 3)], [826_080, 43_808]);
  // and the initialised records hold exactly that many
  const g = generator({ ch: 64, light: true }).init(0);
  assertEquals(count(g), 10_589_888);
  dispose(g);
  const { params, state } = discriminator({ ch: 32, nLayers: 5 }).init(0);
  assertEquals(count(params), 826_080);
  dispose([params, state]);
});

Deno.test("the reference name table lists every tensor of init() with its shape", () => {
  for (const light of [true, false]) {
    const config = { ch: 8, nRes: 3, imgSize: 32, light };
    const params = generator(config).init(1);
    const shapes = Object.fromEntries(
      Object.entries(flatten(params)).map(([k, t]) => [k, t.shape]),
    );
    assertEquals(
      shapes,
      Object.fromEntries(generatorNames(config).map((e) => [e.ours, [...e.shape]])),
    );
    dispose(params);
  }
  for (const nLayers of [3, 4, 6]) {
    const { params, state } = discriminator({ ch: 4, nLayers }).init(2);
    const shapes = (tree: object) =>
      Object.fromEntries(Object.entries(flatten(tree)).map(([k, t]) => [k, t.shape]));
    const table = discriminatorNames({ ch: 4, nLayers });
    const expect = (s: boolean) =>
      Object.fromEntries(table.filter((e) => !!e.state === s).map((e) => [e.ours, [...e.shape]]));
    assertEquals(shapes(params), expect(false));
    assertEquals(shapes(state), expect(true));
    dispose([params, state]);
  }
});

Deno.test("init(seed) is reproducible and seeds differ", () => {
  const g = generator({ ch: 4, nRes: 1, light: true });
  const [a, b, c] = [g.init(3), g.init(3), g.init(4)];
  assertEquals(a.stem.w.dataSync(), b.stem.w.dataSync());
  assertEquals(a.stem.w.dataSync()[0] === c.stem.w.dataSync()[0], false);
  assertEquals(a.decoder[0].norm1.rho!.dataSync()[0], Math.fround(0.9));
  assertEquals(Array.from(a.up[0].norm.rho.dataSync()).every((v) => v === 0), true);
  dispose([a, b, c]);
});

Deno.test("generator() and discriminator() return the documented shapes and leave no tensors behind", () => {
  const x = tf.randomUniform([2, 32, 32, 3], -1, 1, "float32", 1) as tf.Tensor4D;
  for (const light of [true, false]) {
    const g = generator({ ch: 8, nRes: 2, imgSize: 32, light });
    const params = g.init(0);
    const out = g.apply(params, x);
    assertEquals([out.image.shape, out.camLogit!.shape, out.heatmap.shape], [
      [2, 32, 32, 3],
      [2, 2],
      [2, 8, 8, 1],
    ]);
    const values = Array.from(out.image.dataSync());
    assertEquals(values.every((v) => v >= -1 && v <= 1), true);
    tf.dispose(out as unknown as tf.Tensor[]);
    assertNoLeak(() => g.apply(params, x) as unknown as tf.Tensor[]);
    dispose(params);
  }
  const d = discriminator({ ch: 8, nLayers: 5 });
  const { params, state } = d.init(0);
  const [out, next] = d.apply(params, state, x, true);
  assertEquals([out.logit.shape, out.camLogit!.shape, out.heatmap.shape], [[2, 2, 2, 1], [2, 2], [
    2,
    3,
    3,
    1,
  ]]);
  dispose([next, out]);
  assertNoLeak(() => d.apply(params, state, x, true) as unknown as tf.Tensor[]);
});

Deno.test("a gradient reaches every generator and discriminator parameter", () => {
  const g = generator({ ch: 4, nRes: 1, imgSize: 32, light: false });
  const d = discriminator({ ch: 4, nLayers: 4 });
  const x = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 2) as tf.Tensor4D;
  const { names, grads } = modelGradients(g, d, x);
  const dead = names.filter((_, i) => tf.max(tf.abs(grads[i])).dataSync()[0] === 0);
  assertEquals(dead, []);
});

Deno.test("a discriminator too deep for the image size fails with a message naming --n_dis", () => {
  const d = discriminator({ ch: 4, nLayers: 7 });
  const { params, state } = d.init(0);
  const x = tf.zeros([1, 64, 64, 3]) as tf.Tensor4D;
  assertThrows(() => d.apply(params, state, x, false), Error, "at least 96px");
  assertThrows(() => d.apply(params, state, x, false), Error, "--n_dis");
});

Deno.test("ablation variants: the name table matches init() and a gradient reaches every parameter", () => {
  const variants = [
    ...(["adalin", "adain", "in", "ln", "gn"] as const).map((decoderNorm) => ({
      decoderNorm,
      cam: true,
    })),
    { decoderNorm: "adalin" as const, cam: false },
  ];
  const x = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 3) as tf.Tensor4D;
  for (const v of variants) {
    const config = { ch: 4, nRes: 1, imgSize: 32, light: true, ...v };
    const g = generator(config);
    const params = flatten(g.init(0));
    const shapes = Object.fromEntries(Object.entries(params).map(([k, t]) => [k, t.shape]));
    assertEquals(
      shapes,
      Object.fromEntries(generatorNames(config).map((e) => [e.ours, [...e.shape]])),
      JSON.stringify(v),
    );
    const keys = Object.keys(params);
    const grads = tf.grads((...ts: tf.Tensor[]) => {
      // deno-lint-ignore no-explicit-any
      const o = g.apply(unflatten(Object.fromEntries(keys.map((k, i) => [k, ts[i]]))) as any, x);
      return tf.add(tf.mean(tf.square(o.image)), o.camLogit ? tf.mean(o.camLogit) : tf.scalar(0));
    })(Object.values(params));
    const dead = keys.filter((_, i) => tf.max(tf.abs(grads[i])).dataSync()[0] === 0);
    assertEquals(dead, [], JSON.stringify(v));
    assertEquals(g.apply(unflatten(params) as never, x).camLogit === undefined, !v.cam);
    dispose([params, grads]);
  }
  const d = discriminator({ ch: 4, nLayers: 4, cam: false });
  const { params, state } = d.init(0);
  assertEquals(Object.keys(flatten(params)).some((k) => k.startsWith("cam.")), false);
  assertEquals(
    Object.keys(flatten(params)).sort(),
    discriminatorNames({ ch: 4, nLayers: 4, cam: false }).filter((e) => !e.state).map((e) => e.ours)
      .sort(),
  );
  const [out] = d.apply(params, state, x, true);
  assertEquals([out.camLogit, out.logit.shape], [undefined, [1, 6, 6, 1]]);
});

Deno.test("a generator pass on two stacked batches equals the two passes (values and gradients)", async () => {
  for (const light of [true, false]) {
    const g = generator({ ch: 4, nRes: 1, imgSize: 32, light });
    const gp = flatten(g.init(3));
    const a = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 4) as tf.Tensor4D;
    const b = tf.randomUniform([2, 32, 32, 3], -1, 1, "float32", 5) as tf.Tensor4D;
    const wa = tf.randomNormal([1, 32, 32, 3], 0, 1, "float32", 6);
    const wb = tf.randomNormal([2, 32, 32, 3], 0, 1, "float32", 7);
    // A loss over both batches' images, CAM logits and heatmaps, with the passes apart or stacked.
    const loss = (stacked: boolean) => (...ts: tf.Tensor[]) => {
      // deno-lint-ignore no-explicit-any
      const p = unflatten(Object.fromEntries(Object.keys(gp).map((k, i) => [k, ts[i]]))) as any;
      const [oa, ob] = stacked
        ? splitBatch(g.apply(p, tf.concat([a, b])), 1)
        : [g.apply(p, a), g.apply(p, b)];
      const terms = (o: GeneratorOutput, w: tf.Tensor) =>
        tf.addN([tf.sum(tf.mul(o.image, w)), tf.sum(tf.square(o.camLogit!)), tf.mean(o.heatmap)]);
      return tf.add(terms(oa, wa), tf.mul(terms(ob, wb), 2)) as tf.Scalar;
    };
    const apart = tf.valueAndGrads(loss(false))(Object.values(gp));
    const stacked = tf.valueAndGrads(loss(true))(Object.values(gp));
    await assertClose(stacked.value, apart.value, 1e-6, `loss (light ${light})`);
    for (const [i, k] of Object.keys(gp).entries()) {
      await assertClose(
        stacked.grads[i],
        apart.grads[i],
        1e-5,
        `gradient of ${k} (light ${light})`,
      );
    }
    tf.dispose([a, b, wa, wb, apart.value, stacked.value, ...apart.grads, ...stacked.grads]);
    dispose(unflatten(gp));
  }
});

Deno.test("a discriminator pass on two stacked batches equals two calls (outputs, state, gradients)", async () => {
  const d = discriminator({ ch: 4, nLayers: 5 });
  const init = d.init(8);
  const dp = flatten(init.params);
  const real = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 9) as tf.Tensor4D;
  const fake = tf.randomUniform([1, 32, 32, 3], -1, 1, "float32", 10) as tf.Tensor4D;
  let states: { apart?: unknown; stacked?: unknown } = {};
  // A loss over both batches' logits, CAM logits and heatmaps, by two calls or one of two passes.
  const loss = (stacked: boolean) => (...ts: tf.Tensor[]) => {
    // deno-lint-ignore no-explicit-any
    const p = unflatten(Object.fromEntries(Object.keys(dp).map((k, i) => [k, ts[i]]))) as any;
    let outs: DiscriminatorOutput[];
    if (stacked) {
      const [o, s] = d.apply(p, init.state, tf.concat([real, fake]), true, 2);
      outs = splitBatch(o, 1);
      states.stacked = (Object.values(flatten(s as never)) as tf.Tensor[]).map((t) => tf.keep(t));
    } else {
      const [o1, s1] = d.apply(p, init.state, real, true);
      const [o2, s2] = d.apply(p, s1, fake, true);
      outs = [o1, o2];
      states.apart = (Object.values(flatten(s2 as never)) as tf.Tensor[]).map((t) => tf.keep(t));
    }
    const terms = outs.map((o, i) =>
      tf.addN([tf.mean(tf.square(o.logit)), tf.sum(o.camLogit!), tf.mean(o.heatmap)]).mul(i + 1)
    );
    return tf.addN(terms) as tf.Scalar;
  };
  const apart = tf.valueAndGrads(loss(false))(Object.values(dp));
  const stacked = tf.valueAndGrads(loss(true))(Object.values(dp));
  await assertClose(stacked.value, apart.value, 1e-5, "loss");
  for (const [i, k] of Object.keys(dp).entries()) {
    await assertClose(stacked.grads[i], apart.grads[i], 1e-4, `gradient of ${k}`);
  }
  const [sa, ss] = [states.apart as tf.Tensor[], states.stacked as tf.Tensor[]];
  for (let i = 0; i < sa.length; i++) await assertClose(ss[i], sa[i], 1e-6, `state ${i}`);
  tf.dispose([
    real,
    fake,
    apart.value,
    stacked.value,
    ...apart.grads,
    ...stacked.grads,
    ...sa,
    ...ss,
  ]);
  states = {};
});
