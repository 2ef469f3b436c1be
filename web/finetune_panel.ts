/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The page's fine-tune panel: pictures dropped or picked for domain A and for domain B (a side
 * left empty trains on the page's bundled held-out pictures of that domain), the number of
 * iterations, start, pause and resume, and a stop that keeps the result. While the worker
 * (`finetune_worker.ts`) trains it shows the iteration, iterations per second, the time left, the
 * named loss terms, the backend and whether the step is replayed, and translations of the same few
 * pictures refreshed every so often; at the end it offers the fine-tuned generators as a file
 * (`deno task translate --checkpoint` reads it) and hands them to the page's translation at once.
 * The pictures are decoded here (a canvas, on white) and never leave the machine.
 *
 * @module
 */
import { resizeMargin } from "../data/pictures.ts";
import type { Picture } from "../data/pictures.ts";
import type { Progress } from "../train/loop.ts";
import type { FromWorker, ToWorker } from "./finetune_worker.ts";
import { dropFilesOn, pictureRgb } from "./pictures.ts";

/** The two domains. */
export type Domain = "A" | "B";

/** What the panel needs of the page. */
export interface PanelHooks {
  /** The loaded model: its file's bytes, its name and its image size; undefined before one is. */
  model(): { readonly bytes: Uint8Array; readonly name: string; readonly size: number } | undefined;
  /** Each domain's pictures bundled with the page (URLs), for a side the user leaves empty. */
  readonly defaults: Readonly<Record<Domain, readonly string[]>>;
  /** Hands the fine-tuned file to the page's translation. */
  use(bytes: Uint8Array, name: string): void;
  /** The backend asked for in the page's menu, if any. */
  readonly asked?: string;
}

/** How a fine-tuning run in the page ended (what the browser test reads). */
export interface PanelResult {
  /** `done`, `interrupted`, `diverged` or `device_lost`. */
  readonly status: string;
  /** The iteration of the weights kept. */
  readonly step: number;
  /** The backend the worker trained on. */
  readonly backend: string;
  /** How its steps ran (`replayed`, or `eager` and why). */
  readonly mode: string;
  /** The line the panel shows. */
  readonly line: string;
  /** The fine-tuned generator file's bytes. */
  readonly file: Uint8Array;
  /** Lines the worker said on the way (fresh discriminators, a step that cannot replay). */
  readonly lines: string[];
  /** Seconds from the loop's start to each iteration's read (pauses left out), in order. */
  readonly seconds: number[];
  /** Each iteration's loss terms, in order. */
  readonly terms: Record<string, number>[];
}

/** The panel, as the page and its test drive it. */
export interface FineTunePanel {
  /**
   * Adds pictures to a domain, as dropping them does.
   * @param domain A or B
   * @param files the pictures
   */
  add(domain: Domain, files: readonly Blob[]): Promise<void>;
  /**
   * Starts fine-tuning, as the start button does.
   * @param iterations how many (default: the panel's field)
   * @param seed the data order's seed (default 0)
   * @param previewEvery iterations between previews (default: a tenth of the run, 1 to 25)
   * @returns how it ended
   */
  start(iterations?: number, seed?: number, previewEvery?: number): Promise<PanelResult>;
  /**
   * The training pictures of a domain as the worker receives them (RGB at the margin side).
   * @param domain A or B
   * @returns the pictures' bytes
   */
  pictures(domain: Domain): Promise<number[][]>;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const PREVIEWS = 4; // pictures per domain in the preview

const formatTime = (s: number) =>
  !Number.isFinite(s)
    ? "?"
    : s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;

/**
 * Sets up the panel's controls in the page (`index.html`'s `#finetune`).
 * @param hooks the model, the bundled pictures, where the result goes
 * @returns the panel
 */
export function fineTunePanel(hooks: PanelHooks): FineTunePanel {
  const chosen: Record<Domain, Blob[]> = { A: [], B: [] };
  let worker: Worker | undefined;
  let running = false;
  let paused = false;
  let download: string | undefined;

  const status = (text: string, error = false) => {
    const el = $("ft-status");
    el.textContent = text;
    el.className = error ? "error" : "muted";
  };
  const buttons = () => {
    $<HTMLButtonElement>("ft-start").disabled = running;
    $<HTMLButtonElement>("ft-pause").disabled = !running;
    $<HTMLButtonElement>("ft-stop").disabled = !running;
    $<HTMLButtonElement>("ft-pause").textContent = paused ? "resume" : "pause";
  };

  const add = (domain: Domain, files: readonly Blob[]): Promise<void> => {
    const images = files.filter((f) => !f.type || f.type.startsWith("image/"));
    chosen[domain].push(...images);
    $(`ft-count-${domain}`).textContent = `${chosen[domain].length} picture(s)`;
    const thumbs = $(`ft-thumbs-${domain}`);
    for (const f of images) {
      const src = URL.createObjectURL(f);
      // The thumbnail holds its pixels once drawn: its URL can go.
      const img = Object.assign(document.createElement("img"), { src });
      img.onload = img.onerror = () => URL.revokeObjectURL(src);
      thumbs.append(img);
    }
    return Promise.resolve();
  };
  // A domain's pictures: the user's, else the page's bundled ones.
  const blobsOf = async (domain: Domain) =>
    chosen[domain].length
      ? chosen[domain]
      : await Promise.all(hooks.defaults[domain].map(async (u) => await (await fetch(u)).blob()));

  for (const domain of ["A", "B"] as const) {
    dropFilesOn($(`ft-drop-${domain}`), (files) => add(domain, files));
    $<HTMLInputElement>(`ft-files-${domain}`).onchange = (e) =>
      add(domain, [...((e.target as HTMLInputElement).files ?? [])]);
    $<HTMLButtonElement>(`ft-clear-${domain}`).onclick = () => {
      chosen[domain] = [];
      $(`ft-count-${domain}`).textContent = "none: the page's own pictures";
      $(`ft-thumbs-${domain}`).replaceChildren();
    };
  }

  // The preview: rows of A pictures, their A->B, B pictures, their B->A.
  const drawRow = (row: number, data: Float32Array | Uint8Array, n: number, S: number) => {
    const ctx = $<HTMLCanvasElement>("ft-preview").getContext("2d")!;
    const img = ctx.createImageData(S, S);
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < S * S; i++) {
        for (let c = 0; c < 3; c++) {
          const v = data[(k * S * S + i) * 3 + c];
          img.data[4 * i + c] = data instanceof Float32Array ? Math.round(v * 255) : v;
        }
        img.data[4 * i + 3] = 255;
      }
      ctx.putImageData(img, k * S, row * S);
    }
  };
  const showTerms = (terms: Record<string, number>) => {
    const names = [...new Set(Object.keys(terms).map((k) => k.replace(/_[AB]$/, "")))];
    $("ft-terms").replaceChildren(
      Object.assign(document.createElement("tr"), {
        innerHTML: "<th>loss term</th><th>A</th><th>B</th>",
      }),
      ...names.map((n) => {
        const tr = document.createElement("tr");
        for (
          const text of [n, terms[`${n}_A`]?.toFixed(3) ?? "", terms[`${n}_B`]?.toFixed(3) ?? ""]
        ) {
          tr.append(Object.assign(document.createElement("td"), { textContent: text }));
        }
        return tr;
      }),
    );
  };

  const start = async (
    iterations?: number,
    seed = 0,
    previewEvery?: number,
  ): Promise<PanelResult> => {
    const model = hooks.model();
    if (!model) throw new Error("load a model first: fine-tuning starts from its weights");
    if (running) throw new Error("fine-tuning is already running");
    const n = iterations ?? Number($<HTMLInputElement>("ft-iterations").value);
    if (!Number.isInteger(n) || n < 1) throw new Error("iterations: a whole number, at least 1");
    $<HTMLInputElement>("ft-iterations").value = String(n);
    if (!chosen.A.length && !chosen.B.length) {
      throw new Error("drop pictures for domain A, domain B or both first");
    }
    const S = model.size;
    const M = resizeMargin(S);
    running = true;
    paused = false;
    buttons();
    status("decoding the pictures");
    const lines: string[] = [];
    const seconds: number[] = [];
    const terms: Record<string, number>[] = [];
    try {
      const [blobsA, blobsB] = [await blobsOf("A"), await blobsOf("B")];
      const train = async (blobs: Blob[]) =>
        await Promise.all(blobs.map(async (b): Promise<Picture> => ({
          rgb: await pictureRgb(b, M),
          size: M,
        })));
      const shown = async (blobs: Blob[]) =>
        await Promise.all(blobs.slice(0, PREVIEWS).map((b) => pictureRgb(b, S)));
      const pictures = { A: await train(blobsA), B: await train(blobsB) };
      const preview = { A: await shown(blobsA), B: await shown(blobsB) };
      const canvas = $<HTMLCanvasElement>("ft-preview");
      Object.assign(canvas, { width: PREVIEWS * S, height: 4 * S });
      canvas.getContext("2d")!.clearRect(0, 0, canvas.width, canvas.height);
      drawRow(0, concat(preview.A), preview.A.length, S);
      drawRow(2, concat(preview.B), preview.B.length, S);
      const sides = (["A", "B"] as const).map((d) =>
        `${d}: ${pictures[d].length} ${chosen[d].length ? "of yours" : "of the page's"}`
      ).join(", ");
      status(`starting: ${sides}`);
      $<HTMLAnchorElement>("ft-download").hidden = true;

      worker?.terminate();
      worker = new Worker(new URL("finetune_worker.js", location.href), { type: "module" });
      let backend = "?";
      const bar = $<HTMLProgressElement>("ft-progress");
      bar.value = 0;
      bar.hidden = false;
      const result = await new Promise<PanelResult>((ok, fail) => {
        worker!.onerror = (e) => fail(new Error(e.message));
        worker!.onmessage = (e: MessageEvent<FromWorker>) => {
          const m = e.data;
          if (m.type === "started") {
            backend = m.backend;
            status(`fine-tuning on ${backend} (${sides})`);
          } else if (m.type === "line") {
            lines.push(m.text);
            $("ft-lines").textContent = lines.join("\n");
          } else if (m.type === "progress") {
            const p: Progress = m.progress;
            seconds.push(p.seconds);
            terms.push(p.terms);
            bar.value = p.step / p.until;
            status(
              `iteration ${p.step}/${p.until} · ${p.rate.toFixed(2)} it/s · ` +
                `${formatTime(p.secondsLeft)} left · ${backend}, ${m.mode}`,
            );
            showTerms(p.terms);
            document.body.dataset.ftStep = String(p.step);
          } else if (m.type === "preview") {
            drawRow(1, m.A2B, preview.A.length, S);
            drawRow(3, m.B2A, preview.B.length, S);
            $("ft-preview-step").textContent = `the translations at iteration ${m.step}`;
          } else if (m.type === "done") {
            ok({
              status: m.status,
              step: m.step,
              backend,
              mode: m.mode,
              line: m.line,
              file: m.file,
              lines,
              seconds,
              terms,
            });
          } else if (m.type === "error") fail(new Error(m.message));
        };
        const job: ToWorker = {
          type: "start",
          model: model.bytes.slice(),
          name: model.name,
          pictures,
          preview,
          previewEvery: previewEvery ?? Math.max(1, Math.min(25, Math.round(n / 10))),
          iterations: n,
          seed,
          backend: hooks.asked,
          wasmPaths: new URL("./", location.href).href,
        };
        worker!.postMessage(job);
      });
      const bytes = result.file;
      const name = `${
        model.name.replace(/\.safetensors$/, "")
      }_finetuned_${result.step}.safetensors`;
      if (download) URL.revokeObjectURL(download);
      // (The bytes came from the worker: a plain ArrayBuffer, never a shared one.)
      const blob = new Blob([bytes as Uint8Array<ArrayBuffer>], {
        type: "application/octet-stream",
      });
      download = URL.createObjectURL(blob);
      Object.assign($<HTMLAnchorElement>("ft-download"), {
        href: download,
        download: name,
        hidden: false,
      });
      hooks.use(bytes, name);
      status(`${result.line}; ${result.mode}; the translation above now uses ${name}`);
      return result;
    } catch (e) {
      status((e as Error).message, true);
      throw e;
    } finally {
      running = false;
      paused = false;
      buttons();
      worker?.terminate();
      worker = undefined;
    }
  };

  $<HTMLButtonElement>("ft-start").onclick = () => void start().catch(() => {});
  $<HTMLButtonElement>("ft-pause").onclick = () => {
    if (!worker) return;
    paused = !paused;
    worker.postMessage({ type: paused ? "pause" : "resume" } satisfies ToWorker);
    if (paused) status(`paused at ${$("ft-status").textContent}`);
    buttons();
  };
  $<HTMLButtonElement>("ft-stop").onclick = () => {
    worker?.postMessage({ type: "stop" } satisfies ToWorker);
    status("stopping after this iteration; the weights are kept");
  };
  buttons();

  return {
    add,
    start,
    async pictures(domain) {
      const S = hooks.model()?.size ?? 0;
      return (await Promise.all((await blobsOf(domain)).map((b) => pictureRgb(b, resizeMargin(S)))))
        .map((p) => Array.from(p));
    },
  };
}

// Pictures' bytes one after another.
function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
