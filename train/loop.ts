/**
 * The training loop itself, shared by Deno's runner (`runner.ts`: files, checkpoints, a terminal)
 * and the browser page's fine-tuning (`finetune.ts`, in a worker): batches in, the step, the loss
 * terms read back, checked and timed, stop and pause between iterations, and a lost device. It
 * knows nothing of files or pages: what its caller does with an iteration comes in as hooks, and
 * nothing here needs Deno.
 *
 * Loss terms come back asynchronously, all of an iteration in one read. On a device they are read
 * `readLag` iterations late, so that the next iteration is queued while the device finishes the
 * last (no stall per iteration); an iteration the caller marks as due (a picture, a checkpoint, a
 * preview) waits for its own terms, so that what the caller does there sees a checked state.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { trainLoop } from "./loop.ts";
 * import { disposeState, trainer } from "./step.ts";
 * const model = trainer({
 *   generator: { ch: 2, nRes: 1, imgSize: 16, light: true },
 *   global: { ch: 2, nLayers: 3 }, local: { ch: 2, nLayers: 3 },
 *   weights: { adv: 1, cycle: 10, identity: 10, cam: 1000 },
 *   lr: 1e-4, weightDecay: 1e-4, iterations: 2, decay: false,
 * });
 * const run = { state: model.init(0) };
 * const end = await trainLoop(run, {
 *   stepper: model,
 *   until: 2,
 *   batches: () => [tf.zeros([1, 16, 16, 3]), tf.ones([1, 16, 16, 3])],
 *   readLag: 0,
 * });
 * console.log(end.status, run.state.step); // "done" 2
 * disposeState(run.state);
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { disposeState, type Terms, type TrainState } from "./step.ts";

/** What runs one iteration: a trainer, or its compiled step. */
export interface Stepper {
  /**
   * One iteration.
   * @returns the new state (the old one is the loop's to dispose) and the loss terms
   */
  step(state: TrainState, realA: tf.Tensor4D, realB: tf.Tensor4D): {
    state: TrainState;
    terms: Terms;
  };
}

/** How a caller steers a running loop; read between iterations. */
export interface LoopControl {
  /** Set it to stop after the iteration under way (the state is kept). */
  stop: boolean;
  /** While set, the loop waits for it before the next iteration (pause; resolve it to resume). */
  paused?: Promise<void>;
}

/** Where a loop stands after an iteration whose terms were read and found finite. */
export interface Progress {
  /** Iterations done (resumed ones included). */
  readonly step: number;
  /** The iterations the loop runs to. */
  readonly until: number;
  /** The iteration's loss terms by name. */
  readonly terms: Record<string, number>;
  /** Seconds since the loop started, time paused left out. */
  readonly seconds: number;
  /** Iterations per second since the loop started (pauses left out). */
  readonly rate: number;
  /** Seconds left at that rate (Infinity before there is one). */
  readonly secondsLeft: number;
}

/** What {@linkcode trainLoop} needs besides the state. */
export interface LoopOptions {
  /** The step: the trainer, or its compiled step. */
  readonly stepper: Stepper;
  /** The iteration count to reach (the state's `step` counts those done). */
  readonly until: number;
  /** The next batch of each domain (A drawn before B); the loop disposes them. */
  readonly batches: () => [tf.Tensor4D, tf.Tensor4D] | Promise<[tf.Tensor4D, tf.Tensor4D]>;
  /** How many iterations late the terms may be read (the backend's `readLag`). */
  readonly readLag: number;
  /** Stop and pause. */
  readonly control?: LoopControl;
  /**
   * Whether the device failed, and why: asked before each iteration (no argument) and when
   * something throws (the error); a reason ends the loop as `device_lost` instead of throwing.
   */
  readonly deviceFailure?: (error?: unknown) => string | undefined;
  /** Awaited between iterations: a page or worker handles its events there. */
  readonly between?: () => Promise<void>;
  /** Each iteration's progress, in order, once its terms are read and finite. */
  readonly onProgress?: (p: Progress) => void | Promise<void>;
  /** Whether iteration `step` is due: its terms are read before {@linkcode LoopOptions.at} runs. */
  readonly due?: (step: number) => boolean;
  /** Runs after a due iteration, its terms read and finite, with its state. */
  readonly at?: (state: TrainState) => void | Promise<void>;
}

/** How a loop ended. */
export interface LoopEnd {
  /**
   * `done` (the iterations asked for), `interrupted` (`control.stop`), `diverged` (a NaN or
   * infinite loss term) or `device_lost` (the device failed: lost, out of memory).
   */
  readonly status: "done" | "interrupted" | "diverged" | "device_lost";
  /** The last iteration whose terms were read and found finite. */
  readonly good: number;
  /** That iteration's terms. */
  readonly terms: Record<string, number>;
  /** Where it diverged: the iteration, the first non-finite term and its value. */
  readonly bad?: { readonly step: number; readonly term: string; readonly value: number };
  /** Where the device failed: why. */
  readonly failure?: string;
}

/**
 * Trains until `until` iterations are done, the caller stops it, a loss term is not finite or the
 * device fails. The state lives in `run.state`: the loop replaces it after each iteration
 * (disposing the old one), so the caller always holds the newest, and disposes it in the end.
 * @param run holds the state
 * @param options the step, the data, the pace of reads, and the caller's hooks
 * @returns how it ended
 * @throws what the step or a hook throws, unless `deviceFailure` names a failed device
 */
export async function trainLoop(
  run: { state: TrainState },
  options: LoopOptions,
): Promise<LoopEnd> {
  const { stepper, until, batches, readLag, control = { stop: false }, deviceFailure } = options;
  const startStep = run.state.step;
  let t0 = performance.now();
  const pending: { step: number; names: string[]; values: Promise<Float32Array> }[] = [];
  let good = startStep;
  let terms: Record<string, number> = {};
  let bad: LoopEnd["bad"];

  // Reads, checks and reports iterations until `keep` remain unread; false at a non-finite term.
  const settle = async (keep: number): Promise<boolean> => {
    while (pending.length > keep) {
      const { step, names, values: read } = pending.shift()!;
      const values = await read;
      const at = names.findIndex((_, i) => !Number.isFinite(values[i]));
      if (at >= 0) {
        bad = { step, term: names[at], value: values[at] };
        return false;
      }
      good = step;
      terms = Object.fromEntries(names.map((n, i) => [n, values[i]]));
      const seconds = (performance.now() - t0) / 1000;
      const rate = (step - startStep) / seconds;
      await options.onProgress?.({
        step,
        until,
        terms,
        seconds,
        rate,
        secondsLeft: rate > 0 ? (until - step) / rate : Infinity,
      });
    }
    return true;
  };
  const end = (status: LoopEnd["status"], failure?: string): LoopEnd => ({
    status,
    good,
    terms,
    ...(bad ? { bad } : {}),
    ...(failure ? { failure } : {}),
  });

  try {
    let status: LoopEnd["status"] = "done";
    while (run.state.step < until) {
      await options.between?.();
      if (control.paused) {
        const since = performance.now();
        await control.paused;
        t0 += performance.now() - since; // time paused is no training time
      }
      if (control.stop) {
        status = "interrupted";
        break;
      }
      const failed = deviceFailure?.();
      if (failed) return end("device_lost", failed);
      const [realA, realB] = await batches();
      let stepped: ReturnType<typeof stepper.step>;
      try {
        stepped = stepper.step(run.state, realA, realB);
      } finally {
        tf.dispose([realA, realB]);
      }
      const { state: next, terms: t } = stepped;
      disposeState(run.state);
      run.state = next;
      const names = Object.keys(t);
      const stacked = tf.stack(names.map((n) => t[n]));
      tf.dispose(Object.values(t));
      const values = stacked.data() as Promise<Float32Array>;
      values.finally(() => stacked.dispose()).catch(() => {});
      pending.push({ step: next.step, names, values });
      const due = options.due?.(next.step) ?? false;
      if (!(await settle(due ? 0 : readLag))) return end("diverged");
      if (due) await options.at?.(run.state);
    }
    if (!(await settle(0))) return end("diverged");
    return end(status);
  } catch (e) {
    const failed = deviceFailure?.(e);
    if (!failed) throw e;
    return end("device_lost", failed);
  }
}
