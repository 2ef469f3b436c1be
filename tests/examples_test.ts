/**
 * Every example script runs, with tiny settings, so that none of them rots.
 */
import { assert, assertEquals } from "@std/assert";
import { makeDataset } from "./helpers.ts";

async function runExample(script: string, args: string[]): Promise<string> {
  const path = new URL(`../examples/${script}`, import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", path, ...args] })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, `${script} failed:\n${text}`);
  return text;
}

Deno.test("the examples run and write their pictures", async (t) => {
  const dir = await Deno.makeTempDir();
  const data = await makeDataset({ train: 2, test: 2, size: 28 });
  const tiny = [
    "--dataset",
    data,
    "--result_dir",
    dir,
    "--img_size",
    "24",
    "--ch",
    "2",
    "--n_res",
    "1",
  ];
  try {
    await t.step("adalin.ts", async () => {
      await runExample("adalin.ts", ["--out", dir]);
      assert((await Deno.stat(`${dir}/adalin.png`)).size > 0);
    });
    await t.step("forward_pass.ts", async () => {
      await runExample("forward_pass.ts", ["--img_size", "32", "--ch", "4", "--result_dir", dir]);
      assert((await Deno.stat(`${dir}/forward/A2B_forward.png`)).size > 0);
    });
    const run = `${dir}/${data.split("/").pop()}`;
    await t.step("train_tiny.ts", async () => {
      await runExample("train_tiny.ts", [...tiny, "--iteration", "2"]);
      assert((await Deno.stat(`${run}/img/A2B_0000001.png`)).size > 0);
    });
    await t.step("translate_and_evaluate.ts", async () => {
      const text = await runExample("translate_and_evaluate.ts", [
        "--dataset",
        data,
        "--result_dir",
        dir,
      ]);
      assert(text.includes("KID x100"), text);
      assert((await Deno.stat(`${run}/translate/index.html`)).size > 0);
      assert((await Deno.stat(`${run}/eval.json`)).size > 0);
    });
  } finally {
    for (const d of [dir, data]) await Deno.remove(d, { recursive: true });
  }
});
