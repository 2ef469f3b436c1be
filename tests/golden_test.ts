/**
 * Golden fixtures: our generator and discriminators, loaded with the reference's weights by
 * name, reproduce the outputs of the PyTorch model (tools/pytorch) to a relative error < 1e-4,
 * on the cpu and wasm backends.
 */
import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertLess } from "@std/assert";
import {
  decodeSafetensors,
  discriminator,
  discriminatorNames,
  type DiscriminatorParams,
  type DiscriminatorState,
  flatten,
  fromHost,
  fromReference,
  generator,
  generatorNames,
  type GeneratorParams,
  type HostTensor,
  selectBackend,
  underPrefix,
} from "../mod.ts";
import { assertClose, findTorchPython, nchwToNhwc, readFixture, relativeError } from "./helpers.ts";

const TOLERANCE = 1e-4;
const toNchw = (t: tf.Tensor4D) => tf.transpose(t, [0, 3, 1, 2]);
// Prints the measured errors, so that the test log carries the figures.
const report = (what: string, errors: number[]) =>
  console.log(`  relative errors ${what}: ${errors.map((e) => e.toExponential(1)).join(", ")}`);

for (const backend of ["cpu", "wasm"] as const) {
  for (const name of ["light_s32_ch8", "full_s32_ch8"]) {
    Deno.test(`generator matches the PyTorch reference on ${name} (${backend})`, async () => {
      await selectBackend(backend);
      const { tensors, config } = await readFixture(name);
      const gConfig = {
        ch: config.ch,
        nRes: config.n_res,
        imgSize: config.img_size,
        light: config.light,
      };
      const { params: host, state } = fromReference(
        generatorNames(gConfig),
        underPrefix(tensors, "genA2B"),
        name,
      );
      assertEquals(Object.keys(state).length, 0);
      const params = fromHost<GeneratorParams>(host);
      const x = nchwToNhwc(tensors.input);
      const out = generator(gConfig).apply(params, x);
      const errors = [
        await assertClose(toNchw(out.image), tensors["genA2B.out.image"], TOLERANCE, "image"),
        await assertClose(out.camLogit!, tensors["genA2B.out.cam_logit"], TOLERANCE, "cam_logit"),
        await assertClose(toNchw(out.heatmap), tensors["genA2B.out.heatmap"], TOLERANCE, "heatmap"),
      ];
      report(`genA2B ${name} ${backend}`, errors);
      tf.dispose([params as unknown as tf.Tensor[], x, out as unknown as tf.Tensor[]]);
    });
  }

  for (
    const [prefix, key] of [["disGA", "n_layers_global"], ["disLA", "n_layers_local"]] as const
  ) {
    Deno.test(`${prefix} discriminator matches the PyTorch reference in evaluation mode (${backend})`, async () => {
      await selectBackend(backend);
      const { tensors, config } = await readFixture("light_s32_ch8");
      const dConfig = { ch: config.ch, nLayers: config[key] };
      const split = fromReference(
        discriminatorNames(dConfig),
        underPrefix(tensors, prefix),
        prefix,
      );
      const params = fromHost<DiscriminatorParams>(split.params);
      const state = fromHost<DiscriminatorState>(split.state);
      const x = nchwToNhwc(tensors.input);
      const [out, next] = discriminator(dConfig).apply(params, state, x, false);
      const errors = [
        await assertClose(toNchw(out.logit), tensors[`${prefix}.out.logit`], TOLERANCE, "logit"),
        await assertClose(
          out.camLogit!,
          tensors[`${prefix}.out.cam_logit`],
          TOLERANCE,
          "cam_logit",
        ),
        await assertClose(
          toNchw(out.heatmap),
          tensors[`${prefix}.out.heatmap`],
          TOLERANCE,
          "heatmap",
        ),
      ];
      report(`${prefix} ${backend}`, errors);
      tf.dispose([params, state, next, out, x] as unknown as tf.Tensor[]);
    });
  }
}

Deno.test("discriminator's training-mode power iteration matches the reference's", async () => {
  await selectBackend("cpu");
  const { tensors, config } = await readFixture("light_s32_ch8");
  const dConfig = { ch: config.ch, nLayers: config.n_layers_global };
  const names = discriminatorNames(dConfig);
  const split = fromReference(names, underPrefix(tensors, "disGA"), "disGA");
  const params = fromHost<DiscriminatorParams>(split.params);
  const state = fromHost<DiscriminatorState>(split.state);
  const x = nchwToNhwc(tensors.input);
  const [out, next] = discriminator(dConfig).apply(params, state, x, true);
  await assertClose(toNchw(out.logit), tensors["disGA.out_train.logit"], TOLERANCE, "logit");
  await assertClose(out.camLogit!, tensors["disGA.out_train.cam_logit"], TOLERANCE, "cam_logit");
  const after = underPrefix(tensors, "disGA.after_train");
  const nextFlat = flatten(next);
  for (const e of names.filter((e) => e.state)) {
    await assertClose(nextFlat[e.ours], after[e.theirs], TOLERANCE, e.theirs);
  }
  tf.dispose([params, state, next, out, x] as unknown as tf.Tensor[]);
});

Deno.test("the committed fixtures are what tools/pytorch/make_fixtures.py writes", async (t) => {
  const python = await findTorchPython();
  if (!python) {
    console.log("  SKIPPED: no python3 with torch here (apt-get install python3-torch)");
    return;
  }
  const [out, exact] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    const script = new URL("../tools/pytorch/make_fixtures.py", import.meta.url).pathname;
    for (const [dir, extra] of [[out, []], [exact, ["--float64"]]] as const) {
      const run = await new Deno.Command(python, { args: [script, "--out", dir, ...extra] })
        .output();
      assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
    }
    // The input and the weights are random draws and elementwise arithmetic, correctly rounded on
    // every processor: equal bit for bit. The results of sums (the power iterations' u and v, the
    // outputs) depend on the order of the sums, which PyTorch's kernels choose by processor (AVX2,
    // AVX-512, ...): the committed ones must lie as close to the float64 result as float32
    // arithmetic lands here (its largest error over all of them, relative to each tensor's
    // largest value), within a factor of 4 for another order's luck. On this model float32 lands
    // within about 2e-6 (30 roundings); a change of the model or its seeds is off by far more.
    const summed = /\.out(_train)?\.|\.after_train\.|\.weight_[uv]$/;
    const read = async (dir: string, name: string) =>
      decodeSafetensors(await Deno.readFile(`${dir}/${name}.safetensors`)).tensors;
    for (const name of ["light_s32_ch8", "full_s32_ch8"]) {
      await t.step(name, async () => {
        const [fresh, widened] = [await read(out, name), await read(exact, name)];
        const { tensors } = await readFixture(name);
        assertEquals(Object.keys(fresh).sort(), Object.keys(tensors).sort());
        const data = (x: HostTensor) => x.data as Float32Array;
        const sums = Object.keys(tensors).filter((k) => summed.test(k));
        const envelope = Math.max(
          ...sums.map((k) => relativeError(data(fresh[k]), data(widened[k]))),
          2 ** -23,
        );
        assertLess(envelope, TOLERANCE, "float32 here is far from float64: is --float64 broken?");
        for (const k of Object.keys(tensors)) {
          if (!summed.test(k)) {
            assertEquals(data(fresh[k]), data(tensors[k]), `${k}: not equal bit for bit`);
            continue;
          }
          const err = relativeError(data(tensors[k]), data(widened[k]));
          assert(
            err <= 4 * envelope,
            `${k}: ${err.toExponential(2)} from the float64 result, float32 here ` +
              `${envelope.toExponential(2)} at most`,
          );
        }
        console.log(`  float32 within ${envelope.toExponential(1)} of float64 here`);
      });
    }
  } finally {
    for (const d of [out, exact]) await Deno.remove(d, { recursive: true });
  }
});
