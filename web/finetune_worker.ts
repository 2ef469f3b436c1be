/**
 * The page's fine-tuning, in a worker of its own (bundled as `finetune_worker.js`), so that the tab
 * stays responsive whatever the backend: it starts its own backend (WebGPU, WebGL or WebAssembly,
 * `backends/browser.ts`), runs `fineTune` (`train/finetune.ts`, the loop Deno runs) on the
 * pictures the page decoded, and posts its progress, previews and result back. Pause, resume and
 * stop arrive as messages between iterations. Nothing leaves the machine: the pictures and the
 * model come from the page, and the fine-tuned generator file goes back to it.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import { orThrow } from "../decoded/decoded.ts";
import { browserDeviceFailure, selectBrowserBackend } from "../backends/browser.ts";
import type { Picture } from "../data/pictures.ts";
import { toDisplay } from "../layers/display.ts";
import { toBatch } from "../data/pictures.ts";
import type { Progress } from "../train/loop.ts";
import { fineTune } from "../train/finetune.ts";
import type { Translations } from "../train/step.ts";
import { generatorFileFrom } from "../weights/generator_file.ts";
import { safetensorsFromBytes } from "../weights/safetensors.ts";

/** What the page asks of the worker. */
export type ToWorker =
  | {
    /** Start fine-tuning. */
    readonly type: "start";
    /** The model's file (a generator file holding both directions). */
    readonly model: Uint8Array;
    /** Its name. */
    readonly name: string;
    /** Each domain's training pictures at the margin side of the model's size. */
    readonly pictures: { readonly A: Picture[]; readonly B: Picture[] };
    /** Each domain's preview pictures, RGB at the model's size. */
    readonly preview: { readonly A: Uint8Array[]; readonly B: Uint8Array[] };
    /** Iterations between previews. */
    readonly previewEvery: number;
    /** Iterations to run. */
    readonly iterations: number;
    /** Seed of the data order and augmentation. */
    readonly seed: number;
    /** The backend asked for (the page's menu), or undefined for the best one here. */
    readonly backend?: string;
    /** Where TensorFlow.js's `.wasm` files are. */
    readonly wasmPaths: string;
  }
  | { readonly type: "pause" | "resume" | "stop" };

/** What the worker tells the page. */
export type FromWorker =
  | { readonly type: "started"; readonly backend: string }
  | { readonly type: "line"; readonly text: string }
  | {
    /** An iteration's progress, and how steps run now (replayed, or eager and why). */
    readonly type: "progress";
    readonly progress: Progress;
    readonly mode: string;
  }
  | {
    /** Translations of the preview pictures by the generators of iteration `step`. */
    readonly type: "preview";
    readonly step: number;
    /** A->B of the A pictures, then B->A of the B pictures: `[n, S, S, 3]` in [0, 1]. */
    readonly A2B: Float32Array;
    readonly B2A: Float32Array;
  }
  | {
    /** The end: how, the iteration kept, and its generator file. */
    readonly type: "done";
    readonly status: string;
    readonly step: number;
    readonly file: Uint8Array;
    readonly mode: string;
    readonly line: string;
    readonly terms: Record<string, number>;
  }
  | { readonly type: "error"; readonly message: string };

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
};
const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);

const control: { stop: boolean; paused?: Promise<void> } = { stop: false };
let resume: (() => void) | undefined;
// A macrotask between iterations, so that pause and stop messages are handled.
const between = () => new Promise<void>((ok) => setTimeout(ok, 0));

async function start(job: Extract<ToWorker, { type: "start" }>): Promise<void> {
  const log = (text: string) => post({ type: "line", text });
  const backend = await selectBrowserBackend({
    asked: job.backend,
    wasmPaths: job.wasmPaths,
    log,
  });
  post({ type: "started", backend: backend.name });
  const model = orThrow(
    pipe(safetensorsFromBytes(job.model, job.name), E.chain((f) => generatorFileFrom(f, job.name))),
  );
  const S = model.config.imgSize!;
  const preview = {
    A: toBatch(job.preview.A, S),
    B: toBatch(job.preview.B, S),
    every: job.previewEvery,
    show: async (step: number, t: Translations) => {
      const [a, b] = tf.tidy(() => [
        toDisplay(t.A2B.translation.image),
        toDisplay(t.B2A.translation.image),
      ]);
      // Copies (a backend may hand out its own arrays), so that they can be transferred.
      const [A2B, B2A] = [
        (await a.data()).slice() as Float32Array,
        (await b.data()).slice() as Float32Array,
      ];
      tf.dispose([a, b]);
      post({ type: "preview", step, A2B, B2A }, [A2B.buffer, B2A.buffer]);
    },
  };
  try {
    const tuned = await fineTune({
      model,
      name: job.name,
      pictures: job.pictures,
      iterations: job.iterations,
      seed: job.seed,
      backend,
      log,
      control,
      between,
      deviceFailure: browserDeviceFailure,
      onProgress: (progress, mode) => post({ type: "progress", progress, mode }),
      preview,
    });
    const { status, step, end, file, mode } = tuned;
    const line = status === "done"
      ? `fine-tuned ${step} iterations on ${backend.name}`
      : status === "interrupted"
      ? `stopped at iteration ${step} on ${backend.name}; the weights of iteration ${step} are kept`
      : status === "diverged"
      ? `stopped at iteration ${end.bad!.step}: loss term ${end.bad!.term} is ${end.bad!.value}; ` +
        `the weights of iteration ${step} are kept (try fewer iterations)`
      : `stopped after iteration ${end.good}: ${end.failure}; the weights of iteration ${step} ` +
        "are kept";
    post({ type: "done", status, step, file, mode, line, terms: end.terms }, [file.buffer]);
  } finally {
    tf.dispose([preview.A, preview.B]);
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  if (m.type === "start") {
    control.stop = false;
    start(m).catch((err) =>
      post({ type: "error", message: (err as Error).message ?? String(err) })
    );
  } else if (m.type === "pause" && !control.paused) {
    control.paused = new Promise((ok) => (resume = ok));
  } else if (m.type === "resume" && control.paused) {
    control.paused = undefined;
    resume?.();
  } else if (m.type === "stop") {
    control.stop = true;
    if (control.paused) {
      control.paused = undefined;
      resume?.();
    }
  }
};
