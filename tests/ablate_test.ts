import { assert, assertEquals, assertRejects } from "@std/assert";
import { runAblation } from "../cli/ablate.ts";
import { makeDataset, tinyFlags } from "./helpers.ts";

Deno.test("runAblation() trains and evaluates each variant on the same budget and tabulates them", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = tinyFlags(root, results, {
      backend: "wasm",
      iteration: "2",
      print_freq: "10",
      save_freq: "10",
    });
    const lines: string[] = [];
    const r = await runAblation(flags, ["full", "no_cam", "adain"], {
      out: (l) => lines.push(l),
      warn: () => {},
    });
    assertEquals(Object.keys(r), ["full", "no_cam", "adain"]);
    assert(Object.values(r).every((e) => e.iteration === 2 && Number.isFinite(e.A2B.fid)));
    const header = lines.findIndex((l) => l.startsWith("variant"));
    assertEquals(lines.slice(header + 1, header + 4).map((l) => l.split(" ")[0]), [
      "full",
      "no_cam",
      "adain",
    ]);
    const saved = JSON.parse(await Deno.readTextFile(`${results}/ablate/ablation.json`));
    assertEquals(Object.keys(saved), ["full", "no_cam", "adain"]);
    await assertRejects(
      () => runAblation(flags, ["gn2"], { out: () => {}, warn: () => {} }),
      Error,
      "--variants: unknown gn2",
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});
