/**
 * What `deno task ablate` makes of its runs: each figure of each variant as its mean and spread
 * over seeds (the paired figures against the true targets where the data has aligned pairs), the
 * paper's figure (a row per held-out image drawn by the pick; columns: the source, each variant's
 * translation, and the true target where there is one) and `report.html` beside them, which shows
 * both and links every run's own report.
 *
 * @example
 * ```ts
 * import { spread } from "./ablation.ts";
 * console.log(spread([1, 2, 3])); // { mean: 2, sd: 1, n: 3 }
 * ```
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { loadTestImages } from "../data/domain_stream.ts";
import { writeTextAtomically } from "../files/write_file.ts";
import type { GeneratorSettings } from "../train/checkpoint.ts";
import type { Direction } from "../weights/generator_file.ts";
import type { DirectionResult, EvalResult } from "./eval_result.ts";
import { loadTranslator, type Picture, picturesOf, pictureTable, writePicture } from "./figure.ts";

/** A figure's mean over seeds and its sample standard deviation (none for one seed). */
export interface Spread {
  /** The mean. */
  readonly mean: number;
  /** The sample standard deviation (n - 1); undefined for a single value. */
  readonly sd?: number;
  /** How many values. */
  readonly n: number;
}

/**
 * The mean and sample standard deviation of some values.
 * @param values the values (one per seed)
 * @returns their spread, or undefined when there are none
 */
export function spread(values: readonly number[]): Spread | undefined {
  const n = values.length;
  if (!n) return undefined;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  if (n === 1) return { mean, n };
  const sd = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  return { mean, sd, n };
}

/** A figure of the table: its heading, digits, and how to read it of a direction's result. */
export interface AblationFigure {
  /** The heading. */
  readonly name: string;
  /** Digits shown. */
  readonly digits: number;
  /** Its value for the translations (undefined: not measured, e.g. no aligned pairs). */
  readonly of: (d: DirectionResult) => number | undefined;
  /** Its value for the untranslated sources, the baseline. */
  readonly ofSource: (d: DirectionResult) => number | undefined;
}

/** The table's figures: KID, FID, the judge's share, and the paired L1, PSNR and SSIM. */
export const ABLATION_FIGURES: readonly AblationFigure[] = [
  {
    name: "KID x100",
    digits: 2,
    of: (d) => 100 * d.kid.mean,
    ofSource: (d) => 100 * d.source.kid.mean,
  },
  { name: "FID", digits: 2, of: (d) => d.fid, ofSource: (d) => d.source.fid },
  {
    name: "as target %",
    digits: 1,
    of: (d) => 100 * d.classifier.translated,
    ofSource: (d) => 100 * d.classifier.source,
  },
  {
    name: "L1 to target",
    digits: 3,
    of: (d) => d.paired?.translation.l1,
    ofSource: (d) => d.paired?.identity.l1,
  },
  {
    name: "PSNR",
    digits: 2,
    of: (d) => d.paired?.translation.psnr,
    ofSource: (d) => d.paired?.identity.psnr,
  },
  {
    name: "SSIM to target",
    digits: 3,
    of: (d) => d.paired?.translation.ssim,
    ofSource: (d) => d.paired?.identity.ssim,
  },
];

/**
 * A spread as a table cell: `mean ± sd`, the mean alone for one seed, `-` for none.
 * @param s the spread
 * @param digits digits shown
 * @returns the cell
 */
export function spreadCell(s: Spread | undefined, digits: number): string {
  if (!s) return "-";
  return s.sd === undefined
    ? s.mean.toFixed(digits)
    : `${s.mean.toFixed(digits)} ± ${s.sd.toFixed(digits)}`;
}

/**
 * One direction's table: a row per variant (its figures' spread over seeds), and a last row for
 * the untranslated sources (the baseline, over every run); figures no run measured
 * (the paired ones, without aligned pairs) are left out.
 * @param runs each variant's evaluations, one per seed
 * @param direction which direction
 * @returns the heading row, then the rows
 */
export function ablationTable(
  runs: Readonly<Record<string, readonly EvalResult[]>>,
  direction: Direction,
): string[][] {
  const all = Object.values(runs).flat();
  const figures = ABLATION_FIGURES.filter((f) => all.some((r) => f.of(r[direction]) !== undefined));
  const measured = (rs: readonly EvalResult[], get: (d: DirectionResult) => number | undefined) =>
    rs.map((r) => get(r[direction])).filter((v): v is number => v !== undefined);
  return [
    [`${direction}: variant`, "seeds", ...figures.map((f) => f.name)],
    ...Object.entries(runs).map(([name, rs]) => [
      name,
      String(rs.length),
      ...figures.map((f) => spreadCell(spread(measured(rs, f.of)), f.digits)),
    ]),
    [
      "source",
      "-",
      ...figures.map((f) => spreadCell(spread(measured(all, f.ofSource)), f.digits)),
    ],
  ];
}

/** A column of the ablation figure: a name over it, and the checkpoint that translates it. */
export interface FigureColumn {
  /** The column's label (the variant's name). */
  readonly label: string;
  /** Its run's checkpoint. */
  readonly checkpoint: string;
}

/**
 * The paper's ablation figure: a row per source image; columns: the source, each column's
 * translation (its checkpoint's moving average where it has one, unless `use_ema` is false) and,
 * with `targets`, the true target. Pictures are zoomed to about 96 pixels.
 * @param file the PNG to write
 * @param columns the variants, in order
 * @param sources the held-out images (the rows)
 * @param targets their true targets (aligned pairs), if any
 * @param settings `use_ema`, and the model settings a checkpoint lacks
 * @param direction which generator of each checkpoint
 * @returns the figure's rows and columns (labels)
 */
export async function writeAblationFigure(
  file: string,
  columns: readonly FigureColumn[],
  sources: readonly string[],
  targets: readonly string[] | undefined,
  settings: GeneratorSettings,
  direction: Direction,
): Promise<{ rows: number; labels: string[] }> {
  const translated: Picture[][] = [];
  let source: { batch: tf.Tensor4D; files: string[] } | undefined;
  try {
    for (const column of columns) {
      const translator = await loadTranslator(column.checkpoint, settings, direction);
      try {
        source ??= await loadTestImages(sources, translator.size);
        translated.push(await translator.translate(source.batch));
      } finally {
        translator.dispose();
      }
    }
    if (!source) throw new Error("writeAblationFigure: no columns");
    if (source.files.length !== sources.length) {
      throw new Error(`writeAblationFigure: some of ${sources.length} images did not decode`);
    }
    const shown = await picturesOf(source.batch);
    const truth = targets
      ? await loadTestImages(targets, shown[0].width).then(async ({ batch }) => {
        const p = await picturesOf(batch);
        batch.dispose();
        return p;
      })
      : [];
    const rows = shown.map((s, i) => [s, ...translated.map((t) => t[i]), ...truth.slice(i, i + 1)]);
    const labels = ["source", ...columns.map((c) => c.label), ...(targets ? ["target"] : [])];
    const zoom = Math.max(1, Math.ceil(96 / shown[0].width));
    await writePicture(file, pictureTable(rows, { labels, zoom }));
    return { rows: rows.length, labels };
  } finally {
    source?.batch.dispose();
  }
}

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/** What the ablation report shows. */
export interface AblationReport {
  /** Each variant's evaluations, one per seed. */
  readonly runs: Readonly<Record<string, readonly EvalResult[]>>;
  /** The seeds. */
  readonly seeds: readonly number[];
  /** Each run's folder, relative to the report, by variant then seed (for links to its report). */
  readonly runDirs: Readonly<Record<string, readonly string[]>>;
  /** The figures' files, relative to the report, by direction. */
  readonly figures: Readonly<Partial<Record<Direction, string>>>;
  /** What the runs had in common (the budget), one line. */
  readonly budget: string;
}

/**
 * Writes the ablation's `report.html`: the tables (mean ± standard deviation over seeds), the
 * figures, and a link to each run's report. It opens from disk.
 * @param path the file
 * @param report what it shows
 * @returns the file
 */
export async function writeAblationReport(path: string, report: AblationReport): Promise<string> {
  const table = (rows: string[][]) =>
    `<table><tr>${rows[0].map((h) => `<th>${escape(h)}</th>`).join("")}</tr>${
      rows.slice(1).map((r) => `<tr>${r.map((c) => `<td>${escape(c)}</td>`).join("")}</tr>`).join(
        "",
      )
    }</table>`;
  const first = Object.values(report.runs).flat()[0];
  const figures = (["A2B", "B2A"] as const).filter((d) => report.figures[d]).map((d) =>
    `<figure><figcaption>${d}, seed ${report.seeds[0]}'s runs</figcaption><img src="${
      escape(report.figures[d]!)
    }" alt="ablation figure ${d}"></figure>`
  );
  const links = Object.entries(report.runDirs).map(([name, dirs]) =>
    `<li>${escape(name)}: ${
      dirs.map((d, i) => `<a href="${escape(d)}/report.html">seed ${report.seeds[i] ?? i}</a>`)
        .join(", ")
    }</li>`
  );
  const html =
    `<!doctype html><html lang="en"><meta charset="utf-8"><title>U-GAT-IT ablation</title>
<style>body{font-family:sans-serif;margin:1.5em}td,th{padding:2px 8px;text-align:left;white-space:nowrap}
table{margin-bottom:1em}figure{display:inline-block;margin:0 1em 1em 0}
img{image-rendering:pixelated}</style>
<h1>U-GAT-IT ablation</h1>
<p>${escape(report.budget)}. Seeds ${report.seeds.join(", ")}: each cell is the mean ± the
standard deviation over them; the last row, the untranslated sources (the baseline). Features:
${escape(first?.features ?? "-")}; "as target": the share the domain classifier takes for the
target domain.</p>
${(["A2B", "B2A"] as const).map((d) => table(ablationTable(report.runs, d))).join("\n")}
<h2>Figure</h2>
<p>Rows: held-out images drawn by the pick (spread over the test split, the same for every
variant); columns: the source, each variant's translation, and the true target where the data has
aligned pairs.</p>
${figures.join("\n")}
<h2>Runs</h2><ul>${links.join("")}</ul>
</html>
`;
  await writeTextAtomically(path, html, "the ablation report");
  return path;
}
