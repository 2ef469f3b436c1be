/**
 * Writing files so that no reader ever sees half of one, and saying in one line why a write
 * failed. Every file the toolkit writes (checkpoints, pictures, the log, the report, evaluations,
 * translations, exported generators) goes through here: a whole file is written to a temporary
 * file beside it (named for this process), synced, then renamed over it, so that a reader sees the
 * old file or the new one and a crash or a full disk leaves the old one intact; the temporary
 * file is removed when the write fails. A failure of the file system (no space, no permission, a
 * read-only file system, a folder removed under the writer) becomes a {@linkcode WriteError} whose
 * message names the file, what was being written and the cause.
 *
 * @example
 * ```ts
 * import { writeTextAtomically, WriteError } from "./write_file.ts";
 * try {
 *   await writeTextAtomically("/no/such/folder/notes.txt", "hello", "the notes");
 * } catch (e) {
 *   console.log((e as WriteError).message);
 *   // cannot write /no/such/folder/notes.txt (the notes): its folder does not exist (ENOENT)
 * }
 * ```
 *
 * @module
 */

// The causes users meet, in their words; anything else keeps the system's message.
const CAUSES: Record<string, string> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is used up",
  EFBIG: "the file is too large for the file system",
  EACCES: "permission denied",
  EPERM: "not permitted",
  EROFS: "the file system is read-only",
  ENOENT: "its folder does not exist",
  ENOTDIR: "a file stands where its folder should be",
  EISDIR: "a folder stands where the file should be",
  EEXIST: "a file stands where the folder should be",
  EIO: "an input/output error of the device",
};

/**
 * A write the file system refused: the message names the file, what was being written and the
 * cause, on one line (`cannot write <file> (<what>): <cause> (<code>)`), and may go on with what
 * is kept ({@linkcode WriteError.and}).
 */
export class WriteError extends Error {
  /**
   * Makes the error.
   * @param path the file (or folder) being written
   * @param what what was being written, e.g. "the checkpoint of iteration 20"
   * @param cause the file system's own error
   * @param more what follows on the line (what is kept, the way on)
   */
  constructor(
    readonly path: string,
    readonly what: string,
    override readonly cause: unknown,
    readonly more = "",
  ) {
    super(`cannot write ${path} (${what}): ${describeCause(cause)}${more ? `; ${more}` : ""}`);
    this.name = "WriteError";
  }

  /**
   * The same failure, its line going on with more (what is kept, the way on).
   * @param more the words to add
   * @returns a new error
   */
  and(more: string): WriteError {
    return new WriteError(this.path, this.what, this.cause, more);
  }

  /** The system's error code (`ENOSPC`, `EACCES`, ...), where it has one. */
  get code(): string | undefined {
    return codeOf(this.cause);
  }
}

function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Whether an error comes from the file system (a system error code, or one of Deno's I/O error
 * classes), not from a mistake in the program.
 * @param e the caught error
 * @returns true for a file-system error
 */
export function isFileSystemError(e: unknown): boolean {
  if (codeOf(e) !== undefined) return true;
  return Object.values(Deno.errors).some((kind) => e instanceof kind);
}

function describeCause(e: unknown): string {
  const code = codeOf(e);
  if (code && CAUSES[code]) return `${CAUSES[code]} (${code})`;
  const message = e instanceof Error ? e.message : String(e);
  return message.split("\n")[0];
}

/**
 * Runs a file-system operation, its failure becoming a {@linkcode WriteError} naming the file and
 * what was being written (errors of the program itself are thrown on as they are).
 * @param path the file or folder
 * @param what what was being written
 * @param op the operation
 * @returns what the operation returns
 */
export async function writing<T>(path: string, what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (e instanceof WriteError || !isFileSystemError(e)) throw e;
    throw new WriteError(path, what, e);
  }
}

let written = 0; // temporary files made by this process, so that two writes never share one

/**
 * Writes bytes to a file atomically: to a temporary file beside it (`<file>.<pid>.<n>.tmp`,
 * synced), then renamed over it, so that a reader sees the old file or the new one and a crash
 * mid-write leaves the old one intact. When the write fails the temporary file is removed and a
 * {@linkcode WriteError} names the file, what was being written and the cause.
 * @param path the file
 * @param bytes its new contents
 * @param what what is being written, for the message (default "a file")
 */
export async function writeAtomically(
  path: string,
  bytes: Uint8Array,
  what = "a file",
): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${written++}.tmp`;
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    if (!isFileSystemError(e)) throw e;
    throw new WriteError(path, what, e);
  }
}

/**
 * Writes text (UTF-8) to a file atomically ({@linkcode writeAtomically}).
 * @param path the file
 * @param text its new contents
 * @param what what is being written, for the message
 */
export async function writeTextAtomically(
  path: string,
  text: string,
  what = "a file",
): Promise<void> {
  await writeAtomically(path, new TextEncoder().encode(text), what);
}

/**
 * Makes a folder and any missing above it; a failure is a {@linkcode WriteError} naming it.
 * @param path the folder
 * @param what what it is for, for the message
 */
export async function makeFolder(path: string, what = "a folder"): Promise<void> {
  await writing(path, what, () => Deno.mkdir(path, { recursive: true }));
}
