import * as tf from "@tensorflow/tfjs";
import { assertEquals, assertRejects } from "@std/assert";
import sharp from "sharp";
import { DatasetError, openDataset } from "../data/dataset.ts";
import { resizeMargin } from "../data/decode_image.ts";
import { DomainStream, loadTestImages } from "../data/domain_stream.ts";
import { Rng } from "../data/random.ts";
import { selectBackend } from "../backends/mod.ts";
import { makeDataset } from "./helpers.ts";

await selectBackend("cpu");

// A PNG whose header claims 20000 x 20000 pixels (nothing else is needed for the check).
function hugePngHeader(): Uint8Array {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes: Uint8Array) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const ihdr = new Uint8Array(17);
  const dv = new DataView(ihdr.buffer);
  ihdr.set([73, 72, 68, 82]); // "IHDR"
  dv.setUint32(4, 20000);
  dv.setUint32(8, 20000);
  ihdr.set([8, 2, 0, 0, 0], 12); // 8-bit RGB
  // signature, IHDR, then an empty IDAT and IEND so that the header parses
  const chunk = (type: string, data: Uint8Array) => {
    const body = new Uint8Array(4 + data.length);
    body.set([...type].map((c) => c.charCodeAt(0)));
    body.set(data, 4);
    const c = new Uint8Array(8 + data.length + 4);
    new DataView(c.buffer).setUint32(0, data.length);
    c.set(body, 4);
    new DataView(c.buffer).setUint32(8 + data.length, crc(body));
    return c;
  };
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr.subarray(4)),
    chunk("IDAT", new Uint8Array(0)),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

Deno.test("openDataset() reads the reference's folder layout and skips bad files by name", async () => {
  const root = await makeDataset({ train: 3, test: 2, size: 20 });
  await Deno.writeTextFile(`${root}/trainA/notes.png`, "this is not an image");
  await Deno.writeFile(`${root}/trainB/huge.png`, hugePngHeader());
  await Deno.writeTextFile(`${root}/trainB/readme.txt`, "ignored: not an image extension");
  const warnings: string[] = [];
  const data = await openDataset(root, (l) => warnings.push(l));
  assertEquals([data.trainA.length, data.trainB.length, data.testA.length, data.testB.length], [
    3,
    3,
    2,
    2,
  ]);
  assertEquals(
    warnings.some((w) =>
      w.includes(`${root}/trainA/notes.png`) && w.includes("not a readable image")
    ),
    true,
  );
  assertEquals(
    warnings.some((w) => w.includes(`${root}/trainB/huge.png`) && w.includes("too large")),
    true,
  );
  assertEquals(warnings.at(-1), `2 file(s) skipped in ${root}`);
  await Deno.remove(root, { recursive: true });
});

Deno.test("openDataset() names a missing or empty folder", async () => {
  const root = await makeDataset({ train: 1, test: 1, size: 8 });
  await assertRejects(
    () => openDataset(`${root}/nope`),
    DatasetError,
    `dataset folder ${root}/nope/trainA does not exist`,
  );
  for (const f of Deno.readDirSync(`${root}/testB`)) Deno.removeSync(`${root}/testB/${f.name}`);
  await assertRejects(
    () => openDataset(root),
    DatasetError,
    `dataset folder ${root}/testB holds no images`,
  );
  await assertRejects(
    () => openDataset("emoji:google2google"),
    DatasetError,
    "expected emoji:<from>2<to>",
  );
  await Deno.remove(root, { recursive: true });
});

Deno.test("DomainStream draws augmented crops reproducibly and skips a truncated file by name", async () => {
  const root = await makeDataset({ train: 4, test: 1, size: 20 });
  const bytes = await Deno.readFile(`${root}/trainA/0.png`);
  await Deno.writeFile(`${root}/trainA/0.png`, bytes.slice(0, 60)); // header intact, data cut
  const files = [0, 1, 2, 3].map((i) => `${root}/trainA/${i}.png`);
  const warnings: string[] = [];
  const draw = async () => {
    const s = new DomainStream(files, 16, new Rng(7), undefined, (l) => warnings.push(l));
    const batches = [];
    for (let i = 0; i < 5; i++) batches.push(Array.from((await s.next(2)).dataSync()));
    return { batches, s };
  };
  const one = await draw();
  const two = await draw();
  assertEquals(one.batches, two.batches);
  assertEquals(one.s.skipped, 1);
  assertEquals(warnings[0].startsWith(`skipping ${root}/trainA/0.png: cannot decode`), true);
  const values = one.batches.flat();
  assertEquals(values.every((v) => v >= -1 && v <= 1), true);
  assertEquals(resizeMargin(256), 286);
  await Deno.remove(root, { recursive: true });
});

Deno.test("test images are resized to S, composited on white, in [-1, 1]", async () => {
  const dir = await Deno.makeTempDir();
  await sharp({
    create: { width: 10, height: 6, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .png().toFile(`${dir}/clear.png`);
  const { batch } = await loadTestImages([`${dir}/clear.png`], 8);
  assertEquals(batch.shape, [1, 8, 8, 3]);
  assertEquals(tf.min(batch).dataSync()[0], 1); // transparent becomes white
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the built-in emoji task has aligned test pairs and a stable ~90/10 split", async () => {
  const data = await openDataset("emoji:google2twitter");
  assertEquals(data.alignedTest, true);
  assertEquals(
    data.testA.map((f) => f.split("/").pop()),
    data.testB.map((f) => f.split("/").pop()),
  );
  const share = data.testA.length / (data.testA.length + data.trainA.length);
  assertEquals(share > 0.07 && share < 0.13, true, `test share ${share}`);
  assertEquals(data.trainA[0].includes("/img/google/64/"), true);
  assertEquals(data.trainB[0].includes("/img/twitter/64/"), true);
});

Deno.test("every listed format decodes to the same pixels: PNG, TIFF, WebP, BMP, PPM and PGM", async () => {
  const side = 6; // BMP rows of 18 bytes are padded to 20
  const rgb = new Uint8Array(side * side * 3).map((_, i) => (i * 37 + 11) % 256);
  const gray = rgb.filter((_, i) => i % 3 === 0);
  const enc = new TextEncoder();
  // A 24-bit BMP by hand: file and info headers, then bottom-up BGR rows padded to 4 bytes.
  const row = Math.ceil((side * 3) / 4) * 4;
  const bmpFile = new Uint8Array(54 + row * side);
  const dv = new DataView(bmpFile.buffer);
  bmpFile.set([0x42, 0x4d]);
  dv.setUint32(2, bmpFile.length, true);
  dv.setUint32(10, 54, true);
  dv.setUint32(14, 40, true);
  dv.setInt32(18, side, true);
  dv.setInt32(22, side, true);
  dv.setUint16(26, 1, true);
  dv.setUint16(28, 24, true);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const src = ((side - 1 - y) * side + x) * 3;
      bmpFile.set([rgb[src + 2], rgb[src + 1], rgb[src]], 54 + y * row + 3 * x);
    }
  }
  const dir = await Deno.makeTempDir();
  try {
    const raw = sharp(rgb, { raw: { width: side, height: side, channels: 3 } });
    await raw.clone().png().toFile(`${dir}/a.png`);
    await raw.clone().tiff({ compression: "lzw" }).toFile(`${dir}/a.tif`);
    await raw.clone().webp({ lossless: true }).toFile(`${dir}/a.webp`);
    await Deno.writeFile(`${dir}/a.bmp`, bmpFile);
    await Deno.writeFile(
      `${dir}/a.ppm`,
      new Uint8Array([...enc.encode(`P6\n# made by a test\n${side} ${side}\n255\n`), ...rgb]),
    );
    await Deno.writeFile(
      `${dir}/plain.ppm`,
      enc.encode(`P3 ${side} ${side} 255\n${Array.from(rgb).join(" ")}\n`),
    );
    await Deno.writeFile(
      `${dir}/a.pgm`,
      new Uint8Array([...enc.encode(`P5 ${side} ${side} 255\n`), ...gray]),
    );
    const pixels = async (f: string) => {
      const { batch } = await loadTestImages([`${dir}/${f}`], side, () => {});
      const v = await batch.data();
      batch.dispose();
      return Array.from(v, (x) => Math.round((x + 1) * 127.5));
    };
    const expected = Array.from(rgb);
    for (const f of ["a.png", "a.tif", "a.webp", "a.bmp", "a.ppm", "plain.ppm"]) {
      assertEquals(await pixels(f), expected, f);
    }
    assertEquals(await pixels("a.pgm"), Array.from(rgb, (_, i) => gray[Math.floor(i / 3)]));
    // A BMP cut short is named, and skipped, when it is met.
    await Deno.writeFile(`${dir}/cut.bmp`, bmpFile.subarray(0, 60));
    const warnings: string[] = [];
    await loadTestImages([`${dir}/cut.bmp`, `${dir}/a.png`], side, (l) => warnings.push(l));
    assertEquals(warnings.length, 1);
    assertEquals(warnings[0].startsWith(`skipping ${dir}/cut.bmp: cannot decode`), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
