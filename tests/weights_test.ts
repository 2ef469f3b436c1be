import * as tf from "@tensorflow/tfjs";
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  decodeSafetensors,
  discriminatorNames,
  dispose,
  encodeSafetensors,
  flatten,
  fromHalf,
  fromReference,
  generator,
  generatorNames,
  type HostTensor,
  loadRecord,
  saveRecord,
  selectBackend,
  toHalf,
  toHost,
  toReference,
  underPrefix,
  WeightFileError,
} from "../mod.ts";
import { findTorchPython, readFixture } from "./helpers.ts";

await selectBackend("cpu");

const f32 = (shape: number[], values: number[]): HostTensor => ({
  dtype: "F32",
  shape,
  data: new Float32Array(values),
});

// Builds a file by hand from a header object and a data length, to make lying headers.
function rawFile(header: unknown, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

Deno.test("safetensors round-trips tensors and metadata, with an 8-byte aligned header", () => {
  const bytes = encodeSafetensors(
    {
      b: f32([2, 2], [1, 2, 3, 4]),
      a: { dtype: "I32", shape: [3], data: new Int32Array([7, 8, 9]) },
    },
    { config: '{"ch":8}' },
  );
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(headerLen % 8, 0);
  const { tensors, metadata } = decodeSafetensors(bytes);
  assertEquals(metadata, { config: '{"ch":8}' });
  assertEquals(Array.from(tensors.b.data as Float32Array), [1, 2, 3, 4]);
  assertEquals(tensors.b.shape, [2, 2]);
  assertEquals(Array.from(tensors.a.data as Int32Array), [7, 8, 9]);
});

Deno.test("safetensors reading refuses lying headers, naming the file and tensor", () => {
  const cases: [Uint8Array, string][] = [
    [new Uint8Array(4), "too short"],
    [
      (() => {
        const b = rawFile({}, 0);
        new DataView(b.buffer).setBigUint64(0, 1_000_000n, true);
        return b;
      })(),
      "exceeds the file",
    ],
    [
      rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8),
      'tensor "w": data ends at 16',
    ],
    [
      rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 16] } }, 16),
      'tensor "w": shape [3] needs 12 bytes',
    ],
    [
      rawFile({ w: { dtype: "Q4", shape: [1], data_offsets: [0, 4] } }, 4),
      'tensor "w": unsupported dtype',
    ],
    [rawFile({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4), 'tensor "w": shape'],
    [
      rawFile({
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      }, 12),
      "overlap",
    ],
  ];
  for (const [bytes, message] of cases) {
    const e = assertThrows(
      () => decodeSafetensors(bytes, "model.safetensors"),
      WeightFileError,
      message,
    );
    assertEquals(e.message.startsWith("model.safetensors: "), true);
  }
  const json = new TextEncoder().encode("{not json");
  const bad = new Uint8Array(8 + json.length);
  new DataView(bad.buffer).setBigUint64(0, BigInt(json.length), true);
  bad.set(json, 8);
  assertThrows(() => decodeSafetensors(bad, "x"), WeightFileError, "not valid JSON");
});

Deno.test("safetensors reading refuses NaN and infinite values, naming the tensor", () => {
  const bytes = encodeSafetensors({ ok: f32([1], [1]), "layer.w": f32([3], [1, NaN, 2]) });
  assertThrows(
    () => decodeSafetensors(bytes, "f"),
    WeightFileError,
    'tensor "layer.w": value NaN at index 1',
  );
  assertEquals(decodeSafetensors(bytes, "f", { allowNonFinite: true }).tensors["layer.w"].shape, [
    3,
  ]);
});

Deno.test("saveRecord() writes atomically and loadRecord() checks the file against the model", async () => {
  const dir = await Deno.makeTempDir();
  const config = { ch: 4, nRes: 1, imgSize: 32, light: true };
  const params = generator(config).init(0);
  const path = `${dir}/g.safetensors`;
  await saveRecord(path, params, { config: JSON.stringify(config) });
  assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["g.safetensors"]);
  const { record, metadata } = await loadRecord(path, generatorNames(config));
  assertEquals(JSON.parse(metadata.config), config);
  assertEquals(flatten(record)["stem.w"].dataSync(), params.stem.w.dataSync());
  // the same file does not fit a wider model: the error names the tensor and the file
  await assertRejects(
    () => loadRecord(path, generatorNames({ ...config, ch: 8 })),
    WeightFileError,
    `${path}: tensor "stem.w" has shape [7,7,3,4], the model needs [7,7,3,8]`,
  );
  await assertRejects(
    () => loadRecord(path, generatorNames({ ...config, nRes: 2 })),
    WeightFileError,
    '"encoder.1.conv1.w" is missing',
  );
  await assertRejects(
    () => loadRecord(path, generatorNames({ ...config, nRes: 0 })),
    WeightFileError,
    "not part of this model",
  );
  await assertRejects(
    () => loadRecord(`${dir}/none.safetensors`, generatorNames(config)),
    WeightFileError,
    "cannot read",
  );
  dispose([params, record]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("reference names convert both ways without loss (generator and discriminator)", async () => {
  const { tensors, config } = await readFixture("light_s32_ch8");
  const gNames = generatorNames({
    ch: config.ch,
    nRes: config.n_res,
    imgSize: config.img_size,
    light: true,
  });
  const theirs = underPrefix(tensors, "genA2B");
  const ours = fromReference(gNames, theirs, "fixture").params;
  const back = toReference(gNames, ours);
  assertEquals(
    Object.keys(back).sort(),
    Object.keys(theirs).filter((k) => !k.startsWith("out.")).sort(),
  );
  for (const [k, t] of Object.entries(back)) {
    assertEquals(t.shape, theirs[k].shape, k);
    assertEquals(t.data, theirs[k].data, k);
  }
  assertEquals(ours["stem.w"].shape, [7, 7, 3, 8]);
  assertEquals(ours["decoder.0.norm1.rho"].shape, [32]);
  const dNames = discriminatorNames({ ch: config.ch, nLayers: config.n_layers_global });
  const dTheirs = underPrefix(tensors, "disGA");
  const split = fromReference(dNames, dTheirs, "fixture");
  const dBack = toReference(dNames, { ...split.params, ...split.state });
  for (const [k, t] of Object.entries(dBack)) assertEquals(t.data, dTheirs[k].data, k);
  assertThrows(
    () => fromReference(gNames, { ...theirs, "FC.0.weight": f32([1], [0]) }, "ckpt.safetensors"),
    WeightFileError,
    'ckpt.safetensors: tensor "FC.0.weight" has shape [1], the model needs [32,32]',
  );
});

Deno.test("toHost() reads tensors back by path", async () => {
  const t = { a: { w: tf.tensor2d([[1, 2]]) } };
  const host = await toHost(t);
  assertEquals(host["a.w"].shape, [1, 2]);
  assertEquals(Array.from(host["a.w"].data as Float32Array), [1, 2]);
  dispose(t);
});

Deno.test("toHalf() rounds as IEEE float16 does (ties to even, overflow, subnormals); fromHalf() is exact", async () => {
  const x = new Float32Array([
    0,
    -0,
    1,
    -2.5,
    65504,
    65520,
    2049,
    2051,
    6e-8,
    1e-8,
    3e-5,
    Infinity,
  ]);
  assertEquals(
    Array.from(fromHalf(toHalf(x))),
    [0, -0, 1, -2.5, 65504, Infinity, 2048, 2052, 2 ** -24, 0, 0.000029981136322021484, Infinity],
  );
  assert(Number.isNaN(fromHalf(toHalf(new Float32Array([NaN])))[0]));
  // and bit for bit as numpy converts, on random values of every magnitude
  const python = await findTorchPython();
  if (!python) {
    console.log("  SKIPPED (the numpy part): no Python with numpy and torch");
    return;
  }
  const values = Float32Array.from(
    { length: 2000 },
    (_, i) => Math.sin(i * 12.9898) * 10 ** ((i % 14) - 9),
  );
  const r = await new Deno.Command(python, {
    args: [
      "-c",
      "import sys, numpy as np; a = np.frombuffer(sys.stdin.buffer.read(), '<f4'); " +
      "sys.stdout.buffer.write(a.astype('<f2').tobytes())",
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = r.stdin.getWriter();
  await w.write(new Uint8Array(values.buffer));
  await w.close();
  const out = await r.output();
  assertEquals(Array.from(toHalf(values)), Array.from(new Uint16Array(out.stdout.buffer)));
});
