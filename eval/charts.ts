/**
 * The report's charts, drawn with vega-lite and rendered to SVG here (the page needs no script
 * library and no server). A loss curve shows each term's values per iteration faintly and, over
 * them, their exponential moving average (bias-corrected, as TensorBoard smooths), so that the
 * trend reads through the noise of one-image batches; its y axis spans the bulk of the values
 * (an early spike is clipped, not allowed to flatten the rest). An evaluation curve joins its
 * points and can mark one iteration with a labelled rule (the checkpoint a model was shipped
 * from).
 *
 * @example
 * ```ts
 * import { movingAverage, smoothingDecay } from "./charts.ts";
 * console.log(movingAverage([1, 3, 3], 0.5)); // [1, 2.333..., 2.714...]
 * console.log(smoothingDecay(10_000)); // 0.995: about 200 iterations
 * ```
 *
 * @module
 */
import * as vega from "vega";
import * as vl from "vega-lite";

const MAX_POINTS = 1500; // per curve: longer logs are averaged in buckets

/** A chart's rows: an iteration and a value per series. */
export type ChartRows = readonly Readonly<Record<string, number>>[];

/**
 * The exponential moving average of a series, bias-corrected: point t is
 * `sum_k decay^(t-k) (1 - decay) v_k / (1 - decay^(t+1))`, so the first point is the first value
 * and no early point is pulled toward zero.
 * @param values the series
 * @param decay the weight of the past, in [0, 1)
 * @returns the average at each point
 */
export function movingAverage(values: readonly number[], decay: number): number[] {
  let sum = 0;
  let weight = 0;
  return values.map((v) => {
    sum = decay * sum + (1 - decay) * v;
    weight = decay * weight + (1 - decay);
    return sum / weight;
  });
}

/**
 * The loss curves' smoothing for a log of `n` iterations: an average over about a fiftieth of the
 * run, at least 10 iterations (`decay = 1 - 1 / span`).
 * @param n iterations logged
 * @returns the decay, rounded to 3 decimals
 */
export function smoothingDecay(n: number): number {
  const span = Math.max(10, Math.round(n / 50));
  return Number((1 - 1 / span).toFixed(3));
}

// One series' points, bucket-averaged to at most MAX_POINTS.
function downsample(
  points: readonly { iteration: number; value: number; smooth?: number }[],
): { iteration: number; value: number; smooth?: number }[] {
  const size = Math.ceil(points.length / MAX_POINTS);
  if (size <= 1) return [...points];
  const out = [];
  for (let i = 0; i < points.length; i += size) {
    const chunk = points.slice(i, i + size);
    const mean = (f: (p: (typeof chunk)[number]) => number | undefined) =>
      chunk.reduce((s, p) => s + (f(p) ?? 0), 0) / chunk.length;
    out.push({
      iteration: chunk[chunk.length - 1].iteration,
      value: mean((p) => p.value),
      ...(chunk[0].smooth === undefined ? {} : { smooth: mean((p) => p.smooth) }),
    });
  }
  return out;
}

// The q-th quantile (0..1) of some numbers.
function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
}

async function render(spec: unknown): Promise<string> {
  const compiled = vl.compile(spec as vl.TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

const AXES = {
  x: { field: "iteration", type: "quantitative" },
  color: { field: "term", type: "nominal", legend: { symbolOpacity: 1, symbolStrokeWidth: 2 } },
} as const;

/**
 * A loss chart: each key's values faint, its moving average ({@linkcode smoothingDecay} of the
 * log's length) drawn over them; the y axis spans the 1st to 99th percentile of the values and
 * the whole average.
 * @param title the chart's title (the term's name)
 * @param rows the log's lines (`iteration` and the terms)
 * @param keys the terms to draw
 * @returns the chart as SVG
 */
export async function lossChart(title: string, rows: ChartRows, keys: string[]): Promise<string> {
  const decay = smoothingDecay(rows.length);
  const series = keys.map((term) => {
    const points = rows.filter((r) => Number.isFinite(r[term]));
    const smooth = movingAverage(points.map((r) => r[term]), decay);
    return downsample(points.map((r, i) => ({
      iteration: r.iteration,
      value: r[term],
      smooth: smooth[i],
    }))).map((p) => ({ ...p, term }));
  });
  const values = series.flat();
  const raw = values.map((v) => v.value);
  const averaged = values.map((v) => v.smooth!);
  const domain = raw.length
    ? [
      Math.min(quantile(raw, 0.01), ...averaged),
      Math.max(quantile(raw, 0.99), ...averaged),
    ]
    : undefined;
  const y = {
    type: "quantitative",
    title: null,
    ...(domain && domain[1] > domain[0] ? { scale: { domain, zero: false } } : {}),
  };
  return await render({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: { text: title, subtitle: `faint: each iteration; line: moving average (${decay})` },
    width: 420,
    height: 180,
    data: { values },
    layer: [
      {
        mark: { type: "line", strokeWidth: 1, opacity: 0.25, clip: true },
        encoding: { ...AXES, y: { field: "value", ...y } },
      },
      {
        mark: { type: "line", strokeWidth: 1.75, clip: true },
        encoding: { ...AXES, y: { field: "smooth", ...y } },
      },
    ],
  });
}

/** An iteration marked on an evaluation curve, with what it is. */
export interface Mark {
  /** The iteration. */
  readonly iteration: number;
  /** What it is (e.g. `shipped: 10000`). */
  readonly label: string;
}

/**
 * An evaluation chart: each key's points joined, and a dashed, labelled rule at `mark`.
 * @param title the chart's title (the figure's name)
 * @param rows one row per evaluated checkpoint (`iteration` and a value per key)
 * @param keys the series to draw
 * @param mark the iteration to mark, if any
 * @returns the chart as SVG
 */
export async function evalChart(
  title: string,
  rows: ChartRows,
  keys: string[],
  mark?: Mark,
): Promise<string> {
  const values = keys.flatMap((term) =>
    rows.filter((r) => Number.isFinite(r[term])).map((r) => ({
      iteration: r.iteration,
      value: r[term],
      term,
    }))
  );
  return await render({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: 420,
    height: 180,
    layer: [
      {
        data: { values },
        mark: { type: "line", strokeWidth: 1.5, point: true },
        encoding: { ...AXES, y: { field: "value", type: "quantitative", title: null } },
      },
      ...(mark
        ? [{
          data: { values: [mark] },
          encoding: { x: { field: "iteration", type: "quantitative" } },
          layer: [
            { mark: { type: "rule", strokeDash: [4, 3], color: "#444" } },
            {
              mark: { type: "text", align: "right", baseline: "top", dx: -3, y: 2, color: "#444" },
              encoding: { text: { field: "label" } },
            },
          ],
        }]
        : []),
    ],
  });
}
