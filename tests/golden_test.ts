/**
 * Golden fixtures: our generator and discriminators, loaded with the reference's weights by
 * name, reproduce the outputs of the PyTorch model (tools/pytorch) to a relative error < 1e-4,
 * on the cpu and wasm backends.
 */
import * as tf from "@tensorflow/tfjs";
import { assertEquals } from "@std/assert";
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
  selectBackend,
  underPrefix,
} from "../mod.ts";
import { assertClose, findTorchPython, nchwToNhwc, readFixture } from "./helpers.ts";

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
  const out = await Deno.makeTempDir();
  try {
    const script = new URL("../tools/pytorch/make_fixtures.py", import.meta.url).pathname;
    const run = await new Deno.Command(python, { args: [script, "--out", out] }).output();
    assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
    for (const name of ["light_s32_ch8", "full_s32_ch8"]) {
      await t.step(name, async () => {
        const fresh = decodeSafetensors(await Deno.readFile(`${out}/${name}.safetensors`)).tensors;
        const { tensors } = await readFixture(name);
        assertEquals(Object.keys(fresh).sort(), Object.keys(tensors).sort());
        for (const k of Object.keys(tensors)) {
          await assertClose(fresh[k].data as Float32Array, tensors[k], 1e-5, k);
        }
      });
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
