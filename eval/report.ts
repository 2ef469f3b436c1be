/**
 * The run report: `report.html` in the run folder, regenerated as training goes (the train command
 * refreshes it after each sample picture and checkpoint), by each evaluation and by
 * `deno task report`. It shows the configuration, a loss curve for every
 * named term (vega-lite, rendered to SVG here, so that the page needs no script library and no
 * server), the sample pictures over time and the evaluation tables. It opens from disk.
 *
 * @module
 */
import { writeTextAtomically } from "../files/write_file.ts";
import { readCheckpointFlags } from "../train/checkpoint.ts";
import { evalChart, lossChart, type Mark } from "./charts.ts";
import type { EvalResult } from "./eval_result.ts";

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

function evalTables(e: EvalResult): string {
  // Each cell: the translations' figure, then the untranslated sources' (the baseline).
  const pair = (a: number | undefined, b: number | undefined, digits: number) =>
    a === undefined || b === undefined ? "-" : `${a.toFixed(digits)} (${b.toFixed(digits)})`;
  const rows = (["A2B", "B2A"] as const).map((dir) => {
    const r = e[dir];
    const p = r.paired;
    const cells = [
      dir,
      String(r.images),
      pair(100 * r.kid.mean, 100 * r.source.kid.mean, 2),
      pair(r.fid, r.source.fid, 2),
      pair(100 * r.classifier.translated, 100 * r.classifier.source, 1),
      pair(p?.translation.l1, p?.identity.l1, 3),
      pair(p?.translation.psnr, p?.identity.psnr, 2),
      pair(p?.translation.ssim, p?.identity.ssim, 3),
    ];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
  });
  const head = ["direction", "images", "KID x100", "FID", "as target %", "L1", "PSNR", "SSIM"];
  const right = e.classifierRight
    ? `${(100 * e.classifierRight.A).toFixed(1)}% of real test A and ${
      (100 * e.classifierRight.B).toFixed(1)
    }% of real test B`
    : `${(100 * e.classifierAccuracy).toFixed(1)}% of real test images`;
  return [
    `<p>Checkpoint at iteration ${e.iteration}; features: ${escape(e.features)}.`,
    "In brackets: the untranslated sources, the baseline.",
    `"As target": the share the domain classifier (right on ${right}) takes for the target`,
    "domain.</p>",
    `<table><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>${rows.join("")}</table>`,
  ].join("\n");
}

// Every `eval_<prefix><iteration>.json` of a run folder, by iteration order.
async function evalFiles(dir: string, prefix: string): Promise<EvalResult[]> {
  const pattern = new RegExp(`^eval_${prefix}\\d+\\.json$`);
  const names = (await Array.fromAsync(Deno.readDir(dir)).catch(() => []))
    .map((e) => e.name).filter((n) => pattern.test(n)).sort();
  const evals: EvalResult[] = [];
  for (const n of names) {
    try {
      evals.push(JSON.parse(await Deno.readTextFile(`${dir}/${n}`)));
    } catch {
      // one being written
    }
  }
  return evals;
}

// The evaluation figures against iterations, from every `eval_<iteration>.json` of the run: one
// chart per figure, each direction next to its untranslated sources (the baseline) and, for a run
// with a moving average (`--ema`) also evaluated with `--use_ema false`, the weights as trained;
// `mark` is drawn on each.
async function evalCurves(dir: string, mark?: Mark): Promise<string[]> {
  const evals = await evalFiles(dir, "");
  if (evals.length < 2) return [];
  const trained = new Map((await evalFiles(dir, "raw_")).map((e) => [e.iteration, e]));
  const figures: [
    string,
    (e: EvalResult, d: "A2B" | "B2A", source: boolean) => number | undefined,
  ][] = [
    ["as target %", (e, d, src) => 100 * e[d].classifier[src ? "source" : "translated"]],
    ["KID x100", (e, d, src) => 100 * (src ? e[d].source.kid.mean : e[d].kid.mean)],
    ["paired L1", (e, d, src) => e[d].paired?.[src ? "identity" : "translation"].l1],
    ["paired SSIM", (e, d, src) => e[d].paired?.[src ? "identity" : "translation"].ssim],
  ];
  const keys = [
    "A2B",
    "B2A",
    ...(trained.size ? ["A2B as trained", "B2A as trained"] : []),
    "A2B source",
    "B2A source",
  ];
  const charts = figures.map(([title, get]) => {
    const rows = evals.map((e) => {
      const row: Record<string, number> = { iteration: e.iteration };
      for (const key of keys) {
        const of = key.endsWith("as trained") ? trained.get(e.iteration) : e;
        const v = of && get(of, key.slice(0, 3) as "A2B" | "B2A", key.endsWith("source"));
        if (v !== undefined) row[key] = v;
      }
      return row;
    });
    return { title, rows };
  });
  // A figure no evaluation has (the paired ones, without aligned pairs) gets no empty chart.
  return await Promise.all(
    charts.filter(({ rows }) => rows.some((r) => Object.keys(r).length > 1))
      .map(({ title, rows }) => evalChart(title, rows, keys, mark)),
  );
}

/**
 * Writes `report.html` for a run folder from its log, pictures, checkpoint and evaluation.
 * @param dir the run folder (`<result_dir>/<dataset>`)
 * @returns the report's path
 */
export async function writeReport(dir: string): Promise<string> {
  const log = (await Deno.readTextFile(`${dir}/log.jsonl`).catch(() => "")).split("\n").flatMap(
    (l) => {
      try {
        return l ? [JSON.parse(l) as Record<string, number>] : [];
      } catch {
        return []; // a line being written
      }
    },
  );
  const flags = await readCheckpointFlags(`${dir}/model/latest.safetensors`).catch(() => undefined);
  const evaluation = await Deno.readTextFile(`${dir}/eval.json`).then(
    (t) => JSON.parse(t) as EvalResult,
    () => undefined,
  );
  const pictures = [...(await Array.fromAsync(Deno.readDir(`${dir}/img`)).catch(() => []))]
    .map((e) => e.name).filter((n) => /^A2B_\d+\.png$/.test(n)).sort();

  const terms = log.length ? Object.keys(log[log.length - 1]).filter((k) => /_[AB]$/.test(k)) : [];
  const groups = [...new Set(terms.map((t) => t.replace(/_[AB]$/, "")))];
  const charts = await Promise.all(
    groups.map((g) => lossChart(g, log, terms.filter((t) => t.replace(/_[AB]$/, "") === g))),
  );
  // The checkpoint eval.json reports: the one whose eval.json a model shipped from the run carries
  // beside its card (models/<name>/eval.json).
  const curves = await evalCurves(
    dir,
    evaluation && { iteration: evaluation.iteration, label: `eval.json: ${evaluation.iteration}` },
  );
  const config = flags
    ? `<table>${
      Object.entries(flags).filter(([k]) => k !== "_").map(([k, v]) =>
        `<tr><td>--${escape(k)}</td><td>${escape(String(v))}</td></tr>`
      ).join("")
    }</table>`
    : "<p>No checkpoint yet.</p>";
  const last = log[log.length - 1];
  const samples = pictures.map((a) => {
    const b = a.replace("A2B", "B2A");
    const it = Number(a.slice(4, -4));
    return `<figure><figcaption>iteration ${it}</figcaption><img src="img/${a}" alt="A2B ${it}">` +
      `<img src="img/${b}" alt="B2A ${it}"></figure>`;
  });
  const html = `<!doctype html><html lang="en"><meta charset="utf-8"><title>U-GAT-IT run: ${
    escape(dir)
  }</title>
<style>body{font-family:sans-serif;margin:1.5em}td,th{padding:2px 8px;text-align:left}
figure{display:inline-block;margin:0 1em 1em 0}img{image-rendering:pixelated;margin-right:4px}
.charts svg{margin:0 1em 1em 0}</style>
<h1>U-GAT-IT run <code>${escape(dir)}</code></h1>
<p>${
    log.length
      ? `${last.iteration} iterations logged, ${(last.time / 60).toFixed(1)} min.`
      : "Nothing logged yet."
  }
Rows of each picture: real, identity CAM heatmap, identity, translation heatmap, translation, cycle heatmap, cycle.</p>
<h2>Evaluation</h2>${
    evaluation ? evalTables(evaluation) : "<p>Not evaluated yet (<code>deno task eval</code>).</p>"
  }${
    curves.length
      ? `<h3>Over iterations</h3><p>Each evaluated checkpoint (<code>deno task eval --checkpoint all</code>); "source": the untranslated sources. The dashed line marks the checkpoint of the table above (<code>eval.json</code>, which a model shipped from the run carries beside its card).</p><div class="charts">${
        curves.join("\n")
      }</div>`
      : ""
  }
<h2>Losses</h2><p>Each term of both directions: faint, its value at each iteration (averaged in buckets past 1,500 points); the line over it, its exponential moving average (bias-corrected; the decay in each chart's subtitle, about a fiftieth of the run). Early spikes past the 99th percentile are clipped.</p><div class="charts">${
    charts.join("\n")
  }</div>
<h2>Samples over time</h2>${samples.join("\n") || "<p>No pictures yet.</p>"}
<h2>Configuration</h2>${config}
<script>
// Marks the page once every picture has loaded, for the report's own test.
addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.imagesLoaded = String(images.filter((i) => i.complete && i.naturalWidth > 0).length);
  document.body.dataset.images = String(images.length);
});
</script></html>
`;
  await writeTextAtomically(`${dir}/report.html`, html, "the run report");
  return `${dir}/report.html`;
}
