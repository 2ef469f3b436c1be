/**
 * A reference checkpoint round trip through PyTorch: modules built from SPEC.md are saved with
 * torch.save, converted to safetensors, loaded into our records (and run), written back and
 * converted to a .pt that loads strictly into the PyTorch modules with equal tensors.
 */
import * as tf from "@tensorflow/tfjs";
import { assertEquals } from "@std/assert";
import {
  dispose,
  generator,
  readReferenceCheckpoint,
  selectBackend,
  writeReferenceCheckpoint,
} from "../mod.ts";
import { findTorchPython } from "./helpers.ts";

const tools = new URL("../tools/pytorch/", import.meta.url).pathname;

async function python(exe: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(exe, { args, cwd: tools }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, text);
  return text;
}

Deno.test("a reference checkpoint loads into our model and goes back to PyTorch unchanged", async () => {
  const exe = await findTorchPython();
  if (!exe) {
    console.log("  SKIPPED: no python3 with torch here (apt-get install python3-torch)");
    return;
  }
  await selectBackend("cpu");
  const dir = await Deno.makeTempDir();
  try {
    const make = `
import torch
from ugatit_torch import Generator, Discriminator
torch.manual_seed(0)
g = lambda: Generator(ch=4, n_res=1, img_size=32, light=True).state_dict()
d = lambda n: Discriminator(ch=4, n_layers=n).state_dict()
torch.save({"genA2B": g(), "genB2A": g(), "disGA": d(5), "disGB": d(5), "disLA": d(3), "disLB": d(3)},
           "${dir}/ref.pt")`;
    await python(exe, ["-c", make]);
    await python(exe, [
      "convert_checkpoint.py",
      "to-safetensors",
      `${dir}/ref.pt`,
      `${dir}/ref.safetensors`,
    ]);
    const config = {
      generator: { ch: 4, nRes: 1, imgSize: 32, light: true },
      global: { ch: 4, nLayers: 5 },
      local: { ch: 4, nLayers: 3 },
    };
    const model = await readReferenceCheckpoint(`${dir}/ref.safetensors`, config);
    const out = generator(config.generator).apply(
      model.genA2B,
      tf.zeros([1, 32, 32, 3]) as tf.Tensor4D,
    );
    assertEquals(out.image.shape, [1, 32, 32, 3]);
    await writeReferenceCheckpoint(`${dir}/ours.safetensors`, model, config);
    await python(exe, [
      "convert_checkpoint.py",
      "to-torch",
      `${dir}/ours.safetensors`,
      `${dir}/ours.pt`,
    ]);
    const check = `
import torch
from ugatit_torch import Generator, Discriminator
a, b = torch.load("${dir}/ref.pt"), torch.load("${dir}/ours.pt")
for net, module in [("genA2B", Generator(4, 1, 32, True)), ("disGA", Discriminator(4, 5)), ("disLB", Discriminator(4, 3))]:
    module.load_state_dict(b[net], strict=True)
for net in a:
    assert a[net].keys() == b[net].keys(), net
    for k in a[net]:
        assert torch.equal(a[net][k], b[net][k]), (net, k)
print("equal")`;
    assertEquals((await python(exe, ["-c", check])).trim(), "equal");
    dispose([model, out]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
