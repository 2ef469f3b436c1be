/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The translation page (`deno task demo`, `deno task build:web`): picks WebGPU, then WebGL, then
 * WebAssembly (or the backend the user chooses), loads a generator file (`deno task export`) with
 * a progress bar, and translates a picture that is picked, dropped, pasted or chosen among the test
 * emoji, showing the input, the CAM heatmap over it (opacity slider), the translation and the time
 * taken, with a download link. Everything runs in the page; nothing is sent anywhere.
 *
 * It uses the same `layers/` and `weights/` code as Deno, and selects its backend through
 * `backends/browser.ts` (the same `Backend` descriptor as Deno's `selectBackend`). Its fine-tune
 * panel (`finetune_panel.ts`, training in `finetune_worker.ts`) fine-tunes the loaded model on
 * the user's pictures and hands the result back here.
 * `window.ugatitDemo` exposes `ready`, `translateUrl(url)`, `addPictures(domain, urls)`,
 * `fineTune(iterations, seed)` and `pictures(domain)` for the browser tests.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import { selectBrowserBackend } from "../backends/browser.ts";
import { toBatch } from "../data/pictures.ts";
import { jetHeatmap, toDisplay } from "../layers/display.ts";
import { generator, type GeneratorParams } from "../layers/generator.ts";
import { dispose } from "../tree/tree.ts";
import {
  type Direction,
  type GeneratorFile,
  generatorFileFrom,
} from "../weights/generator_file.ts";
import { fromHost } from "../weights/params_io.ts";
import { safetensorsFromBytes } from "../weights/safetensors.ts";
import {
  type Domain,
  type FineTunePanel,
  fineTunePanel,
  type PanelResult,
} from "./finetune_panel.ts";
import { dropFilesOn, pictureRgb } from "./pictures.ts";

/**
 * What `build:web` writes beside the page: the bundled model (if any), the test emoji (held-out
 * domain A), and the held-out domain-B emoji paired with them (the fine-tune panel's defaults).
 */
interface SiteConfig {
  readonly model?: string;
  readonly emoji: readonly string[];
  readonly emojiB?: readonly string[];
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (text: string, error = false) => {
  const el = $("status");
  el.textContent = text;
  el.className = error ? "error" : "muted";
};

// ---- backend ------------------------------------------------------------------------------

async function pickBackend(): Promise<string> {
  const asked = new URLSearchParams(location.search).get("backend") ?? undefined;
  const backend = await selectBrowserBackend({
    asked,
    wasmPaths: new URL("./", location.href).href,
  });
  return backend.name;
}

// ---- model --------------------------------------------------------------------------------

interface Model {
  readonly file: GeneratorFile;
  readonly params: Partial<Record<Direction, GeneratorParams>>;
  readonly name: string;
  readonly bytes: Uint8Array;
}
let model: Model | undefined;

function useModel(bytes: Uint8Array, name: string): void {
  const decoded = pipe(
    safetensorsFromBytes(bytes, name),
    E.chain((file) => generatorFileFrom(file, name)),
  );
  if (E.isLeft(decoded)) {
    status(decoded.left.message, true);
    return;
  }
  if (model) Object.values(model.params).forEach((p) => dispose(p!));
  const file = decoded.right;
  const params = Object.fromEntries(
    Object.entries(file.generators).map(([d, host]) => [d, fromHost<GeneratorParams>(host!)]),
  ) as Model["params"];
  model = { file, params, name, bytes };
  const c = file.config;
  $("model-name").textContent = `${name}: ${c.light ? "light" : "full"} S=${c.imgSize} ch=${c.ch}` +
    `${file.half ? ", float16" : ""}${
      file.metadata.step ? `, iteration ${file.metadata.step}` : ""
    }`;
  const select = $<HTMLSelectElement>("direction");
  select.replaceChildren(
    ...Object.keys(params).map((d) =>
      Object.assign(document.createElement("option"), { value: d, textContent: d })
    ),
  );
  status("model loaded: pick, drop or paste a picture");
}

async function fetchWithProgress(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`${url}: ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get("content-length")) || 0;
  const bar = $<HTMLProgressElement>("model-progress");
  bar.hidden = false;
  const chunks: Uint8Array[] = [];
  let got = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    if (total) bar.value = got / total;
  }
  bar.hidden = true;
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

// ---- translation --------------------------------------------------------------------------

let heat: HTMLCanvasElement | undefined; // the coloured heatmap, kept for the opacity slider

function drawCam(): void {
  const cam = $<HTMLCanvasElement>("cam");
  const ctx = cam.getContext("2d")!;
  ctx.drawImage($<HTMLCanvasElement>("input"), 0, 0);
  if (!heat) return;
  ctx.globalAlpha = Number($<HTMLInputElement>("opacity").value);
  ctx.drawImage(heat, 0, 0);
  ctx.globalAlpha = 1;
}

/** What one translation gives the test: the backend, the time and the raw output. */
interface Translated {
  readonly backend: string;
  readonly ms: number;
  readonly shape: number[];
  readonly output: number[];
}

let lastPicture: Blob | undefined; // translated again when the model changes

async function translate(blob: Blob): Promise<Translated> {
  if (!model) throw new Error("load a generator file first");
  lastPicture = blob;
  const direction = $<HTMLSelectElement>("direction").value as Direction;
  const S = model.file.config.imgSize!;
  const x = toBatch([await pictureRgb(blob, S)], S);
  const t0 = performance.now();
  const out = generator(model.file.config).apply(model.params[direction]!, x);
  const output = await out.image.data();
  const ms = performance.now() - t0;
  for (const id of ["input", "cam", "output"]) {
    Object.assign($<HTMLCanvasElement>(id), { width: S, height: S });
  }
  const [shownIn, shownOut, colours] = tf.tidy(() => [
    toDisplay(x).squeeze([0]) as tf.Tensor3D,
    toDisplay(out.image).squeeze([0]) as tf.Tensor3D,
    jetHeatmap(out.heatmap, S).squeeze([0]) as tf.Tensor3D,
  ]);
  await tf.browser.toPixels(shownIn, $<HTMLCanvasElement>("input"));
  await tf.browser.toPixels(shownOut, $<HTMLCanvasElement>("output"));
  heat = Object.assign(document.createElement("canvas"), { width: S, height: S });
  await tf.browser.toPixels(colours, heat);
  drawCam();
  const link = $<HTMLAnchorElement>("download");
  link.href = $<HTMLCanvasElement>("output").toDataURL("image/png");
  link.hidden = false;
  tf.dispose([x, out.image, out.camLogit, out.heatmap, shownIn, shownOut, colours]);
  const backend = tf.getBackend();
  status(`${direction} in ${ms.toFixed(0)} ms on ${backend}`);
  document.body.dataset.translated = String(Number(document.body.dataset.translated ?? 0) + 1);
  return { backend, ms, shape: [1, S, S, 3], output: Array.from(output) };
}

const run = (blob: Blob) => translate(blob).catch((e) => status((e as Error).message, true));

// ---- page ---------------------------------------------------------------------------------

async function start(): Promise<void> {
  const backend = await pickBackend();
  $("backend").textContent = backend;
  const choice = $<HTMLSelectElement>("backend-choice");
  choice.value = new URLSearchParams(location.search).get("backend") ?? "";
  choice.onchange = () => {
    const url = new URL(location.href);
    if (choice.value) url.searchParams.set("backend", choice.value);
    else url.searchParams.delete("backend");
    location.href = url.href;
  };
  $<HTMLInputElement>("opacity").oninput = drawCam;
  $<HTMLInputElement>("model-file").onchange = async (e) => {
    const f = (e.target as HTMLInputElement).files?.[0];
    if (f) useModel(new Uint8Array(await f.arrayBuffer()), f.name);
  };
  $<HTMLInputElement>("image-file").onchange = (e) => {
    const f = (e.target as HTMLInputElement).files?.[0];
    if (f) run(f);
  };
  dropFilesOn($("drop"), ([f]) => f && run(f));
  document.onpaste = (e) => {
    const f = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (f) run(f);
  };

  const site = await (await fetch("site.json")).json() as SiteConfig;
  $("emoji").replaceChildren(
    "or a test emoji: ",
    ...site.emoji.map((src) => {
      const img = Object.assign(document.createElement("img"), { src, alt: src, title: src });
      img.onclick = async () => run(await (await fetch(src)).blob());
      return img;
    }),
  );
  if (site.model) {
    status(`loading ${site.model}`);
    useModel(await fetchWithProgress(site.model), site.model);
  } else status("load a generator file to start");
  panel = fineTunePanel({
    model: () =>
      model && { bytes: model.bytes, name: model.name, size: model.file.config.imgSize ?? 256 },
    defaults: { A: site.emoji, B: site.emojiB ?? [] },
    use: (bytes, name) => {
      useModel(bytes, name);
      if (lastPicture) run(lastPicture);
    },
    asked: new URLSearchParams(location.search).get("backend") ?? undefined,
  });
}

let panel: FineTunePanel | undefined;

const ready = start().catch((e) => status((e as Error).message, true));

(globalThis as unknown as { ugatitDemo: unknown }).ugatitDemo = {
  ready,
  /** Translates the picture at `url` with the loaded model. */
  async translateUrl(url: string): Promise<Translated> {
    await ready;
    return translate(await (await fetch(url)).blob());
  },
  /** Adds the pictures at `urls` to a domain of the fine-tune panel, as dropping them does. */
  async addPictures(domain: Domain, urls: string[]): Promise<void> {
    await ready;
    await panel!.add(domain, await Promise.all(urls.map(async (u) => (await fetch(u)).blob())));
  },
  /** Fine-tunes the loaded model, as the panel's start button does. */
  async fineTune(iterations: number, seed = 0, previewEvery?: number): Promise<PanelResult> {
    await ready;
    return await panel!.start(iterations, seed, previewEvery);
  },
  /** A domain's training pictures as the fine-tuning worker receives them. */
  async pictures(domain: Domain): Promise<number[][]> {
    await ready;
    return await panel!.pictures(domain);
  },
};
