/**
 * The decoders of user input return `Either` (a `Left` names what is wrong, nothing is thrown),
 * the throwing conveniences throw that same error, and a command folds a `Left` into its one-line
 * message and exit status 2.
 */
import * as tf from "@tensorflow/tfjs";
import * as E from "fp-ts/Either";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { decodeFlags as decode, FlagError, parseFlags as parse } from "../cli/flags.ts";
import { TRAIN_FLAGS } from "../cli/train.ts";
import { decodeDataset, imagesIn } from "../data/dataset.ts";
import { checkpointFits, saveCheckpoint } from "../train/checkpoint.ts";
import { trainer } from "../train/step.ts";
import { DEFAULT_WEIGHTS } from "../losses/objectives.ts";
import {
  encodeSafetensors,
  readSafetensors,
  safetensorsFromBytes,
  WeightFileError,
} from "../weights/safetensors.ts";
import { selectBackend } from "../backends/mod.ts";
import { makeDataset } from "./helpers.ts";

const leftOf = <A>(d: E.Either<Error, A>) => (E.isLeft(d) ? d.left : undefined);
// The train command's flags.
const decodeFlags = (args: string[]) => decode(TRAIN_FLAGS, args);
const parseFlags = (args: string[]) => parse(TRAIN_FLAGS, args);

Deno.test("decodeFlags() gives Left naming the flag; parseFlags() throws the same error", () => {
  const bad = leftOf(decodeFlags(["--n_dis", "2"]));
  assert(bad instanceof FlagError);
  assertStringIncludes(bad.message, "--n_dis: must be at least 4");
  assertEquals(leftOf(decodeFlags(["--nope"]))?.message, "unknown flag --nope (see --help)");
  assertEquals(leftOf(decodeFlags(["--light", "maybe"])), undefined); // "maybe" is positional
  assertStringIncludes(leftOf(decodeFlags(["--lr", "x"]))!.message, "--lr: expected a number");
  const good = decodeFlags(["--light=false", "--img_size", "96"]);
  assert(E.isRight(good) && good.right.light === false && good.right.img_size === 96);
  assertThrows(() => parseFlags(["--n_dis", "2"]), FlagError, "--n_dis");
});

Deno.test("safetensorsFromBytes() gives Left naming the file and tensor", () => {
  const bytes = encodeSafetensors({
    w: { dtype: "F32", shape: [2], data: new Float32Array([1, NaN]) },
  });
  const nan = leftOf(safetensorsFromBytes(bytes, "m.safetensors"));
  assert(nan instanceof WeightFileError);
  assertEquals(nan.message, 'm.safetensors: tensor "w": value NaN at index 1 is not finite');
  assertStringIncludes(
    leftOf(safetensorsFromBytes(new Uint8Array(4), "x"))!.message,
    "x: too short for a safetensors file",
  );
  const ok = safetensorsFromBytes(bytes, "m", { allowNonFinite: true });
  assert(E.isRight(ok) && ok.right.tensors.w.shape[0] === 2);
});

Deno.test("checkpointFits() checks a checkpoint against the model the flags describe", async () => {
  await selectBackend("cpu");
  const config = (ch: number) => ({
    generator: { ch, nRes: 1, imgSize: 24, light: true },
    global: { ch, nLayers: 5 },
    local: { ch, nLayers: 3 },
    weights: DEFAULT_WEIGHTS,
    lr: 1e-4,
    weightDecay: 1e-4,
    iterations: 10,
    decay: true,
  });
  const dir = await Deno.makeTempDir();
  try {
    const state = trainer(config(2)).init(0);
    await saveCheckpoint(`${dir}/c.safetensors`, { state, rng: 1, streams: {}, flags: {} });
    const file = await readSafetensors(`${dir}/c.safetensors`);
    assert(E.isRight(checkpointFits(file, "c", config(2))));
    const misfit = leftOf(checkpointFits(file, "c", config(4)));
    assert(misfit instanceof WeightFileError);
    assertStringIncludes(misfit.message, "the model needs");
    assertStringIncludes(
      leftOf(checkpointFits({ tensors: {}, metadata: {} }, "d", config(2)))!.message,
      'd: not a training checkpoint (format "none")',
    );
    tf.dispose(Object.values(state.gen));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("imagesIn() and decodeDataset() give Left naming the folder; skipped files are listed", async () => {
  assertStringIncludes(leftOf(imagesIn("/no/such/folder"))!.message, "/no/such/folder");
  const root = await makeDataset({ train: 2, test: 1, size: 16 });
  try {
    await Deno.writeTextFile(`${root}/trainA/broken.png`, "not a png");
    const warnings: string[] = [];
    const opened = await decodeDataset(root, (l) => warnings.push(l));
    assert(E.isRight(opened));
    assertEquals(opened.right.skipped.map((s) => s.file), [`${root}/trainA/broken.png`]);
    assertStringIncludes(opened.right.skipped[0].reason, "not a readable image");
    assertEquals(opened.right.trainA.length, 2);
    const missing = await decodeDataset(`${root}/nothing`);
    assertStringIncludes(leftOf(missing)!.message, `${root}/nothing/trainA`);
    assertStringIncludes(leftOf(await decodeDataset("emoji:google2google"))!.message, "--dataset");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a command folds a Left into one line and exit status 2", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../cli/train.ts", import.meta.url).pathname, "--n_dis", "2"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(r.code, 2);
  assertEquals(
    new TextDecoder().decode(r.stderr).trim(),
    "error: --n_dis: must be at least 4 (local D has n_dis-1 >= 3 layers), got 2",
  );
});
