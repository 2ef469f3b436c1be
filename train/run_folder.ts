/**
 * The run folder (`<result_dir>/<dataset>/`) as a training holds it, so that nothing spoils it:
 *
 * - **A lock.** A training holds `train.lock` in the folder: an exclusive lock of the operating
 *   system (`flock`) on that file, which names the holder (pid, host, start time). A second
 *   training that would write there stops at once, naming the holder. The kernel drops the lock
 *   when its process ends, however it ends (kill -9 included), and a power loss leaves none, so a
 *   lock file that can be locked is stale: its holder has ended. It is taken over with a line
 *   saying whose it was. Readers (`translate`, `eval`, `report`) take no lock: every file is
 *   written whole beside its place and renamed into it (`files/write_file.ts`).
 * - **No silent overwrite.** Without `--resume`, a folder that already holds a run (a checkpoint or
 *   a logged iteration) is refused with the newest iteration found and the ways on; `--overwrite`
 *   starts over (the previous run's checkpoints, log, pictures, evaluations and report removed).
 * - **Resuming from the newest valid checkpoint.** `--resume` takes, of `latest.safetensors` and
 *   the kept `ckpt_*`, the one of the highest iteration that reads whole and fits the model (at an
 *   equal iteration, `latest`), saying which and why when it is not `latest`; a broken file is
 *   named and skipped, never deleted (a broken `ckpt_*` the run would write again is kept aside as
 *   `<name>.broken`). A folder with files but nothing to resume from is refused.
 * - **The log** (`log.jsonl`, one JSON line per iteration), cut back on resuming to the iteration
 *   resumed from.
 *
 * @module
 */
import { orThrow } from "../decoded/decoded.ts";
import { readSafetensors, type SafetensorsFile, WeightFileError } from "../weights/safetensors.ts";
import {
  isFileSystemError,
  makeFolder,
  writeTextAtomically,
  writing,
} from "../files/write_file.ts";
import {
  type Checkpoint,
  checkpointFits,
  checkpointOf,
  readCheckpointHeader,
} from "./checkpoint.ts";
import { MODEL_SETTINGS, type ModelSettings } from "./settings.ts";
import type { TrainConfig } from "./step.ts";

/** The lock file a training holds in its run folder. */
export const LOCK_FILE = "train.lock";

/** A run folder that cannot be used as asked: in use, holding a run, nothing to resume. */
export class RunFolderError extends Error {
  /**
   * Makes the error.
   * @param message what stands in the way, naming the folder, and the ways on
   */
  constructor(message: string) {
    super(message);
    this.name = "RunFolderError";
  }
}

/** Who holds a run folder's lock: what `train.lock` says. */
export interface LockHolder {
  /** The process id. */
  readonly pid: number;
  /** The host it runs on. */
  readonly host: string;
  /** When it took the lock (ISO 8601). */
  readonly started: string;
}

/** A held lock; released by {@linkcode RunLock.release} or at the end of an `await using` block. */
export interface RunLock extends AsyncDisposable {
  /** The lock file. */
  readonly path: string;
  /** Releases the lock (removes the lock file); a second call does nothing. */
  release(): Promise<void>;
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "an unknown host"; // no --allow-sys
  }
}

function describeHolder(h: Partial<LockHolder> | undefined): string {
  if (!h?.pid) return "another process (its lock file names none)";
  return `process ${h.pid} on ${h.host ?? "an unknown host"} (started ${h.started ?? "?"})`;
}

function parseHolder(text: string): Partial<LockHolder> | undefined {
  try {
    const h = JSON.parse(text);
    return h && typeof h === "object" ? h : undefined;
  } catch {
    return undefined;
  }
}

// What a held lock file says; its holder may be between taking the lock and writing its name.
async function readHolder(path: string): Promise<Partial<LockHolder> | undefined> {
  for (let i = 0; i < 20; i++) {
    const holder = parseHolder(await Deno.readTextFile(path).catch(() => ""));
    if (holder?.pid) return holder;
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/**
 * Takes a run folder's lock (`<dir>/train.lock`, which must be in an existing folder), or stops
 * naming the process that holds it. A lock file whose lock is free was left by a process that
 * ended without releasing it (killed, a power loss): it is taken over with a line to `warn`
 * naming that process. Where the file system cannot lock files, `warn` says so and the folder is
 * used unlocked.
 * @param dir the run folder
 * @param warn where the lines go
 * @returns the held lock
 * @throws {RunFolderError} naming the folder and the holder, when another process holds it
 * @throws {WriteError} when the lock file cannot be written
 */
export async function lockRunFolder(dir: string, warn: (line: string) => void): Promise<RunLock> {
  const path = `${dir}/${LOCK_FILE}`;
  const what = "the run folder's lock";
  for (let attempt = 0;; attempt++) {
    const file = await writing(
      path,
      what,
      () => Deno.open(path, { read: true, write: true, create: true }),
    );
    let locked: boolean;
    try {
      locked = await file.tryLock(true);
    } catch (e) {
      file.close();
      warn(
        `cannot lock ${dir} (${(e as Error).message}): nothing keeps a second training out of it`,
      );
      return { path, release: async () => {}, [Symbol.asyncDispose]: async () => {} };
    }
    if (!locked) {
      file.close();
      throw new RunFolderError(
        `${dir} is in use by ${describeHolder(await readHolder(path))}; wait for that training ` +
          "to end (Ctrl-C there saves and stops it), or choose another --result_dir",
      );
    }
    // Its holder may have removed the file (released it) between our open and our lock: then
    // ours is a lock on a file nobody else will see, and we try again on the path's own file.
    const [mine, there] = [await file.stat(), await Deno.stat(path).catch(() => undefined)];
    if (!there || (mine.ino !== null && there.ino !== mine.ino)) {
      file.close();
      if (attempt < 100) continue;
      throw new RunFolderError(`${dir}: its lock file keeps changing; is another training busy?`);
    }
    const before = new TextDecoder().decode(await Deno.readFile(path)).trim();
    if (before) {
      const holder = parseHolder(before);
      warn(
        `taking over the lock of ${dir} from ${describeHolder(holder)}: ` +
          "that process has ended without releasing it",
      );
    }
    const me: LockHolder = { pid: Deno.pid, host: hostName(), started: new Date().toISOString() };
    await writing(path, what, async () => {
      await file.truncate(0);
      await file.seek(0, Deno.SeekMode.Start);
      const bytes = new TextEncoder().encode(JSON.stringify(me) + "\n");
      for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
      await file.sync();
    }).catch((e) => {
      file.close();
      throw e;
    });
    let held = true;
    const release = async () => {
      if (!held) return;
      held = false;
      // Removed while still locked, so that no one takes the lock of a file about to vanish
      // (those who opened it before are sent to the path's new file by the check above).
      await Deno.remove(path).catch(() => {});
      file.close();
    };
    return { path, release, [Symbol.asyncDispose]: release };
  }
}

/** A checkpoint file of a run folder, as its header reads. */
interface Found {
  /** The file. */
  readonly path: string;
  /** Its name (`latest.safetensors`, `ckpt_0000020.safetensors`). */
  readonly name: string;
  /** The iteration its header names; absent when the header is broken. */
  readonly step?: number;
  /** The flags its header records. */
  readonly flags?: Record<string, unknown>;
  /** What is wrong with it. */
  readonly broken?: string;
}

// A folder's entries; none where it is missing.
const entriesOf = (folder: string): Promise<Deno.DirEntry[]> =>
  Array.fromAsync(Deno.readDir(folder)).catch(() => []);

const CHECKPOINT_NAME = /^(latest|ckpt_\d+)\.safetensors$/;

// Every checkpoint file of a run folder (latest and the kept ones), its header read.
async function checkpointsIn(dir: string): Promise<Found[]> {
  const files = (await entriesOf(`${dir}/model`)).filter((e) =>
    e.isFile && CHECKPOINT_NAME.test(e.name)
  ).map((e) => e.name)
    .sort();
  return await Promise.all(files.map(async (name): Promise<Found> => {
    const path = `${dir}/model/${name}`;
    try {
      return { path, name, ...(await readCheckpointHeader(path)) };
    } catch (e) {
      if (!(e instanceof WeightFileError)) throw e;
      return { path, name, broken: withoutPath(e.message, path) };
    }
  }));
}

const withoutPath = (message: string, path: string) =>
  message.startsWith(`${path}: `) ? message.slice(path.length + 2) : message;

// The last iteration the log records (its last 64 KiB read), if any.
async function lastLogged(dir: string): Promise<number | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${dir}/log.jsonl`);
  } catch {
    return undefined;
  }
  try {
    const size = (await file.stat()).size;
    const tail = new Uint8Array(Math.min(size, 65536));
    await file.seek(size - tail.length, Deno.SeekMode.Start);
    for (let at = 0; at < tail.length;) {
      const got = await file.read(tail.subarray(at));
      if (got === null) break;
      at += got;
    }
    const lines = new TextDecoder().decode(tail).split("\n").reverse();
    for (const line of lines) {
      try {
        const it = JSON.parse(line).iteration;
        if (Number.isFinite(it)) return it;
      } catch { /* a line cut by the read or by a crash */ }
    }
    return undefined;
  } finally {
    file.close();
  }
}

/** What a run resumes from: the checkpoint chosen, read whole and checked against the model. */
export interface ResumePoint {
  /** The file. */
  readonly path: string;
  /** Its iteration. */
  readonly step: number;
  /** The line that says where the run resumes (and, where it is not `latest`, why). */
  readonly line: string;
  /**
   * The checkpoint's tensors made on the active backend (once: the file's contents, read when it
   * was chosen, are let go).
   * @returns the checkpoint (tensors owned by the caller)
   */
  load(): Checkpoint;
}

/** A run folder held by a training: its lock, and where the run starts. */
export interface RunFolder extends AsyncDisposable {
  /** The folder. */
  readonly dir: string;
  /** What the run resumes from; absent for a new run. */
  readonly resume?: ResumePoint;
  /** Releases the folder's lock. */
  release(): Promise<void>;
}

/** What {@linkcode openRunFolder} reads of the settings (the model's, to match a checkpoint). */
export interface RunFolderSettings extends ModelSettings {
  /** Continue from the newest valid checkpoint. */
  readonly resume: boolean;
  /** Start over in a folder that holds a run. */
  readonly overwrite: boolean;
}

/**
 * Takes a run folder for a training (made if missing): its lock ({@linkcode lockRunFolder}), then
 * the rules of a used folder: without `--resume` a folder holding a run is refused (unless
 * `--overwrite`, which removes that run's files first); with `--resume` the newest valid
 * checkpoint is chosen and read (broken ones named to `warn` and skipped, never deleted), and the
 * log cut back to it.
 * @param dir the run folder
 * @param settings `resume`, `overwrite`, and the flags a checkpoint's recorded ones must match
 * @param config the model a checkpoint must fit
 * @param io where lines go
 * @returns the held folder and, when resuming, the checkpoint to resume from
 * @throws {RunFolderError} when the folder is in use, holds a run (without `--resume` or
 *   `--overwrite`), holds nothing to resume from, or was trained with other model flags
 * @throws {WriteError} when the folder, its lock or its log cannot be written
 */
export async function openRunFolder(
  dir: string,
  settings: RunFolderSettings,
  config: TrainConfig,
  io: { readonly out: (line: string) => void; readonly warn: (line: string) => void },
): Promise<RunFolder> {
  if (settings.resume && settings.overwrite) {
    throw new RunFolderError("--resume and --overwrite: give one of them");
  }
  await makeFolder(dir, "the run folder");
  const lock = await lockRunFolder(dir, io.warn);
  try {
    const found = await checkpointsIn(dir);
    const logged = await lastLogged(dir);
    let resume: ResumePoint | undefined;
    if (settings.overwrite) await startOver(dir, found, io.warn);
    else if (!settings.resume) refuseUsed(dir, found, logged);
    else {
      resume = await newestValid(dir, found, settings, config, io.warn);
      if (!resume && logged !== undefined) {
        throw new RunFolderError(
          `--resume: nothing to resume from in ${dir}: it holds no checkpoint, though its log ` +
            `reaches iteration ${logged}; ${WAYS_ON}`,
        );
      }
      if (!resume) io.warn(`--resume: ${dir} holds no run yet; starting a new run`);
      else await cutLog(dir, resume.step);
    }
    await makeFolder(`${dir}/img`, "the sample pictures' folder");
    await makeFolder(`${dir}/model`, "the checkpoints' folder");
    await removeLeftovers(dir, io.warn);
    return { dir, resume, release: lock.release, [Symbol.asyncDispose]: lock.release };
  } catch (e) {
    await lock.release();
    throw e;
  }
}

const WAYS_ON = "every file is left as it is; start over with --overwrite, or choose another " +
  "--result_dir";

// Without --resume or --overwrite: a folder that holds a run is refused.
function refuseUsed(dir: string, found: readonly Found[], logged: number | undefined): void {
  if (!found.length && logged === undefined) return;
  const newest = found.filter((f) => f.step !== undefined)
    .sort((a, b) => b.step! - a.step! || (a.name === "latest.safetensors" ? -1 : 1))[0];
  const what = newest
    ? `its newest checkpoint is model/${newest.name}, iteration ${newest.step}`
    : found.length
    ? `checkpoints whose headers cannot be read: ${found.map((f) => f.name).join(", ")}`
    : `its log reaches iteration ${logged}, no checkpoint yet`;
  throw new RunFolderError(
    `${dir} already holds a run (${what}); continue it with --resume, keep it and choose ` +
      "another --result_dir, or start over with --overwrite (removes its checkpoints, log, " +
      "pictures and evaluations)",
  );
}

const PREVIOUS_RUN = [
  /^log\.jsonl$/,
  /^report\.html$/,
  /^eval(_raw)?(_\d+)?\.json$/,
  /^img\/(A2B|B2A)_\d+\.png$/,
  /^model\/(latest|ckpt_\d+)\.safetensors(\.broken)?$/,
];

// --overwrite: the previous run's files removed (others, e.g. translations, left alone).
async function startOver(
  dir: string,
  found: readonly Found[],
  warn: (line: string) => void,
): Promise<void> {
  const names: string[] = [];
  for (const sub of ["", "img/", "model/"]) {
    for (const e of await entriesOf(`${dir}/${sub}`)) {
      if (e.isFile && PREVIOUS_RUN.some((p) => p.test(sub + e.name))) names.push(sub + e.name);
    }
  }
  if (!names.length) return;
  for (const name of names) {
    await writing(
      `${dir}/${name}`,
      "removing the previous run",
      () => Deno.remove(`${dir}/${name}`),
    );
  }
  const count = (p: RegExp, one: string) => {
    const n = names.filter((x) => p.test(x)).length;
    return n ? [`${n} ${one}${n > 1 ? "s" : ""}`] : [];
  };
  const steps = found.flatMap((f) => f.step ?? []);
  warn(
    `--overwrite: starting over in ${dir}; removed the previous run's ${
      [
        ...count(/^model\//, "checkpoint"),
        ...(names.includes("log.jsonl") ? ["log"] : []),
        ...count(/^img\//, "picture"),
        ...count(/^eval_(raw_)?\d+\.json$/, "evaluation"),
        ...(names.includes("report.html") ? ["report"] : []),
      ].join(", ")
    }${steps.length ? ` (to iteration ${Math.max(...steps)})` : ""}`,
  );
}

// --resume: the newest checkpoint that reads whole and fits the model; none (in a folder that has
// checkpoint files) is an error naming each and what is wrong with it.
async function newestValid(
  dir: string,
  found: readonly Found[],
  flags: ModelSettings,
  config: TrainConfig,
  warn: (line: string) => void,
): Promise<ResumePoint | undefined> {
  const broken = new Map(found.flatMap((f) => (f.broken ? [[f.name, f.broken]] : [])));
  const candidates = found.filter((f) => f.step !== undefined)
    .sort((a, b) => b.step! - a.step! || (a.name === "latest.safetensors" ? -1 : 1));
  let chosen: { f: Found; file: SafetensorsFile } | undefined;
  for (const f of candidates) {
    const differ = MODEL_SETTINGS.find((k) => f.flags![k] !== flags[k]);
    if (differ) {
      throw new RunFolderError(
        `--${differ}: the run in ${dir} was trained with ${differ}=${f.flags![differ]}, not ${
          flags[differ]
        }`,
      );
    }
    try {
      chosen = { f, file: orThrow(checkpointFits(await readSafetensors(f.path), f.path, config)) };
      break;
    } catch (e) {
      if (!(e instanceof WeightFileError)) throw e;
      broken.set(f.name, withoutPath(e.message, f.path));
    }
  }
  if (!chosen && broken.size) {
    throw new RunFolderError(
      `--resume: nothing to resume from in ${dir}: ${
        [...broken].map(([name, why]) => `model/${name}: ${why}`).join("; ")
      }; ${WAYS_ON}`,
    );
  }
  if (!chosen) return undefined;
  const step = chosen.f.step!;
  // A broken kept checkpoint is named and left as it is; one the run will write again (of a later
  // iteration than the one resumed from) is first moved aside, so that nothing is deleted.
  for (const [name, why] of broken) {
    if (name === "latest.safetensors") continue;
    const iteration = Number(name.slice(5, -12));
    let kept = "left as it is";
    if (iteration > step) {
      const aside = await freeName(`${dir}/model/${name}.broken`);
      await writing(
        aside,
        "a broken checkpoint kept aside",
        () => Deno.rename(`${dir}/model/${name}`, aside),
      );
      kept = `kept as ${aside.split("/").pop()}, since the run will write ${name} again`;
    }
    warn(`--resume: skipping ${dir}/model/${name} (${why}); ${kept}`);
  }
  const latest = found.find((f) => f.name === "latest.safetensors");
  const why = chosen.f === latest
    ? ""
    : !latest
    ? " (latest.safetensors is missing)"
    : broken.has(latest.name)
    ? ` (latest.safetensors is broken: ${broken.get(latest.name)})`
    : ` (latest.safetensors holds iteration ${latest.step}, an older one)`;
  let file: SafetensorsFile | undefined = chosen.file;
  const path = chosen.f.path;
  return {
    path,
    step,
    load: () => {
      if (!file) throw new Error(`${path}: already loaded`);
      const ck = checkpointOf(file, path, config);
      file = undefined;
      return ck;
    },
    line: `resuming ${dir} at iteration ${step}` +
      (why ? ` from model/${chosen.f.name}${why}` : ""),
  };
}

// The path, or the path with .1, .2, ... where it is taken.
async function freeName(path: string): Promise<string> {
  for (let i = 0;; i++) {
    const p = i ? `${path}.${i}` : path;
    if (!(await Deno.lstat(p).then(() => true, () => false))) return p;
  }
}

// On resuming: iterations logged after the checkpoint (a crash) are done again; their old lines
// go, and so does a line cut short.
async function cutLog(dir: string, step: number): Promise<void> {
  const path = `${dir}/log.jsonl`;
  const lines = (await Deno.readTextFile(path).catch(() => "")).split("\n").filter(Boolean);
  const kept = lines.filter((l) => {
    try {
      return JSON.parse(l).iteration <= step;
    } catch {
      return false;
    }
  });
  if (kept.length !== lines.length) {
    await writeTextAtomically(path, kept.map((l) => l + "\n").join(""), "the log, cut back");
  }
}

const LEFTOVER =
  /^(model\/(latest|ckpt_\d+)\.safetensors|img\/(A2B|B2A)_\d+\.png)\.\d+(\.\d+)?\.tmp$/;

// Temporary files of checkpoints and pictures, which only a lock holder writes: any there now
// were left by a process that ended while writing them.
async function removeLeftovers(dir: string, warn: (line: string) => void): Promise<void> {
  const gone: string[] = [];
  for (const sub of ["img/", "model/"]) {
    for (const e of await entriesOf(`${dir}/${sub}`)) {
      if (e.isFile && LEFTOVER.test(sub + e.name)) {
        await Deno.remove(`${dir}/${sub}${e.name}`).then(() => gone.push(sub + e.name), () => {});
      }
    }
  }
  if (gone.length) {
    warn(`removed what an ended process left half-written in ${dir}: ${gone.join(", ")}`);
  }
}

/** The run's log: one JSON line per iteration, appended. */
export interface RunLog {
  /**
   * Appends a record as one line.
   * @throws {WriteError} when the file system refuses it
   */
  append(record: Readonly<Record<string, unknown>>): Promise<void>;
  /** Closes the file. */
  close(): void;
}

/**
 * Opens a run's log (`<dir>/log.jsonl`) for appending. Each record is one `write` of one line; a
 * reader of a live run may meet a last line not yet whole, and skips it.
 * @param dir the run folder
 * @returns the log
 * @throws {WriteError} when it cannot be opened for writing
 */
export async function openRunLog(dir: string): Promise<RunLog> {
  const path = `${dir}/log.jsonl`;
  const what = "the log";
  const file = await writing(
    path,
    what,
    () => Deno.open(path, { append: true, create: true, write: true }),
  );
  const encoder = new TextEncoder();
  return {
    append: (record) =>
      writing(path, what, async () => {
        const bytes = encoder.encode(JSON.stringify(record) + "\n");
        for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
      }),
    close: () => file.close(),
  };
}

/**
 * The line's words for what a failed run keeps: its last checkpoint written whole, if it is still
 * there.
 * @param saved the last checkpoint written (or resumed from) and its iteration
 * @returns e.g. "the last good checkpoint is <file> (iteration 20)"
 */
export function keptCheckpoint(saved: { path: string; step: number } | undefined): string {
  if (!saved) return "no checkpoint was written yet";
  try {
    Deno.statSync(saved.path);
  } catch (e) {
    if (isFileSystemError(e)) return `no checkpoint is left (${saved.path} is gone)`;
    throw e;
  }
  return `the last good checkpoint is ${saved.path} (iteration ${saved.step})`;
}
