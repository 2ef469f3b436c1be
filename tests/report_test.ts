/**
 * The run report: written as training goes, with a chart per loss term (its moving average over
 * the faint values), the pictures and the evaluation (its curve marking the checkpoint of
 * eval.json); and, where Debian's chromium is installed, it loads from disk in headless Chromium
 * with every picture shown and no console error.
 */
import { assert, assertEquals } from "@std/assert";
import { runEval } from "../eval/evaluate.ts";
import { trainWithReport } from "../cli/train.ts";
import { makeDataset, tinyFlags } from "./helpers.ts";

async function chromium(): Promise<string | undefined> {
  for (const exe of ["chromium", "/usr/bin/chromium"]) {
    try {
      if (
        (await new Deno.Command(exe, { args: ["--version"], stdout: "null", stderr: "null" })
          .output()).success
      ) return exe;
    } catch {
      // not installed
    }
  }
  return undefined;
}

Deno.test("report.html shows losses, pictures, evaluation and its curve, and loads cleanly in Chromium", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  try {
    const flags = tinyFlags(root, results, { backend: "wasm", print_freq: "2", save_freq: "1" });
    const run = await trainWithReport(flags, { out: () => {}, warn: () => {} });
    const quiet = { out: () => {}, warn: () => {} };
    assertEquals((await runEval(flags, quiet)).iteration, 3);
    let html = await Deno.readTextFile(`${run.dir}/report.html`);
    assertEquals(html.match(/<svg/g)?.length, 5); // one evaluation: no curve yet
    // Every kept checkpoint, in order: the points of the evaluation curve.
    const lines: string[] = [];
    const last = await runEval({ ...flags, checkpoint: "all" }, {
      ...quiet,
      out: (l) => lines.push(l),
    });
    assertEquals(last.iteration, 3);
    assertEquals(
      lines.filter((l) => l.startsWith("evaluating")).map((l) => /ckpt_(\d+)/.exec(l)?.[1]),
      ["0000001", "0000002", "0000003"],
    );
    for (const it of [1, 2, 3]) {
      const e = JSON.parse(await Deno.readTextFile(`${run.dir}/eval_000000${it}.json`));
      assertEquals(e.iteration, it);
    }
    html = await Deno.readTextFile(`${run.dir}/report.html`);
    for (const term of ["d_adv", "adv", "cycle", "identity", "cam"]) {
      assert(html.includes(`>${term}</text>`), term);
    }
    // the five loss charts and two evaluation curves: a folder dataset has no aligned pairs, so
    // no paired L1 or SSIM to draw
    assertEquals(html.match(/<svg/g)?.length, 7);
    for (const title of ["as target %", "KID x100"]) {
      assert(html.includes(`>${title}</text>`), title);
    }
    assert(!html.includes(">paired L1</text>"));
    // Each loss curve: the faint values and their moving average; each evaluation curve marks
    // the checkpoint of eval.json.
    assertEquals(html.match(/moving average \(0\.9\)<\/text>/g)?.length, 5);
    assertEquals(html.match(/>eval\.json: 3<\/text>/g)?.length, 2);
    assertEquals(html.match(/<img /g)?.length, 4); // A2B and B2A at iterations 1 and 2
    assert(html.includes("KID x100") && html.includes("--n_dis"));

    const exe = await chromium();
    if (!exe) {
      console.log("  SKIPPED the browser check: no chromium here (apt-get install chromium)");
      return;
    }
    const profile = await Deno.makeTempDir();
    const out = await new Deno.Command(exe, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        `file://${run.dir}/report.html`,
      ],
    }).output();
    await Deno.remove(profile, { recursive: true });
    const dom = new TextDecoder().decode(out.stdout);
    const log = new TextDecoder().decode(out.stderr);
    const body = /<body data-images-loaded="(\d+)" data-images="(\d+)">/.exec(dom);
    assert(body, `the page's load handler did not run:\n${dom.slice(0, 300)}`);
    assertEquals(body[1], body[2], "some pictures did not load");
    assertEquals(body[2], "4");
    const consoleErrors = log.split("\n").filter((l) =>
      /CONSOLE/.test(l) && /error|uncaught/i.test(l)
    );
    assertEquals(consoleErrors, []);
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});
