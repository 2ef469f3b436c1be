/**
 * The one entry of every command: `--help` (its usage, what it does and its flags), the flags
 * decoded (a bad one is `error: <message>` on one line, exit status 2), the command run, and its
 * errors folded the same way: a mistake in the user's input, a run folder in use or holding a run,
 * or a write the file system refused (no space, no permission) prints one line, the WebAssembly
 * heap running out names the backend to use instead, anything else is a bug and is thrown on.
 *
 * @example
 * ```ts ignore
 * import { runCommand } from "./command.ts";
 * import { MODEL_FLAGS, RUN_FLAGS } from "./flags.ts";
 * if (import.meta.main) {
 *   await runCommand({
 *     usage: "deno task hello [flags]",
 *     about: "Says which run folder the flags name.",
 *     flags: { ...MODEL_FLAGS, ...RUN_FLAGS },
 *     run: (flags) => console.log(`${flags.result_dir}/${flags.dataset}`),
 *   });
 * }
 * ```
 *
 * @module
 */
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import type { RunnerIO } from "../train/runner.ts";
import { decodeFlags, type FlagGroup, flagHelp, type Flags } from "./flags.ts";

/** Where a command's lines go: progress and summaries to stdout, warnings to stderr. */
export const CONSOLE: RunnerIO = { out: console.log, warn: console.error };

/** A command: its usage line, what it does, its flags and what it runs. */
export interface Command<G extends FlagGroup> {
  /** E.g. `deno task translate [flags] [image or folder ...]`. */
  readonly usage: string;
  /** What it does, in a sentence or two. */
  readonly about: string;
  /** Every flag it takes. */
  readonly flags: G;
  /** Its defaults, where they are not the reference's. */
  readonly defaults?: Partial<Flags<NoInfer<G>>>;
  /**
   * Runs it.
   * @returns the exit status where it returns a number, else 0
   */
  readonly run: (flags: Flags<NoInfer<G>>) => unknown;
}

/**
 * A mistake in the user's input, as every command reports it: `error: <message>` on one line,
 * exit status 2.
 * @param e the error (its message names the flag, file or folder)
 */
export function userError(e: Error): never {
  console.error(`error: ${e.message}`);
  Deno.exit(2);
}

/**
 * The end of every command: a mistake in the user's input (a flag, a dataset, a weight file), a
 * run folder that cannot be used as asked, or a write the file system refused (all matched by
 * error name, so this module needs none of their modules) prints one line and exits with status
 * 2; the wasm heap running out prints which backend to use instead and exits with status 3;
 * anything else is a bug and is thrown on.
 * @param e the caught error
 */
export function exitOnUserError(e: unknown): never {
  const known = ["FlagError", "DatasetError", "WeightFileError", "RunFolderError", "WriteError"];
  if (e instanceof Error && known.includes(e.name)) {
    userError(e);
  }
  // The wasm heap (native and wasm backends) ends at 4 GiB; its allocator aborts past that.
  if (e instanceof WebAssembly.RuntimeError && /Aborted/.test(e.message)) {
    console.error(
      "error: the WebAssembly memory of the wasm backend (at most 4 GiB of tensors) ran out at " +
        "this size; use --backend native-cpu (the same native kernels, tensors in JavaScript " +
        "memory) or a smaller --img_size / --ch (the last checkpoint is kept; --resume goes on)",
    );
    Deno.exit(3);
  }
  throw e;
}

/**
 * The flags of a command line, or (a `Left`) the one-line error and exit status 2: for scripts
 * with options of their own beside a flag group (the benchmarks, the examples).
 * @param group the flags
 * @param args the command line
 * @param defaults the defaults in force
 * @returns the flags
 */
export function flagsOrExit<G extends FlagGroup>(
  group: G,
  args: string[],
  defaults: Partial<Flags<NoInfer<G>>> = {},
): Flags<G> {
  return pipe(decodeFlags(group, args, defaults), E.getOrElse((e): Flags<G> => userError(e)));
}

/**
 * Runs a command from the command line: `--help` or `-h` prints its help; otherwise its flags are
 * decoded and it runs, and the process exits with its status.
 * @param command the command
 * @param args the command line (default `Deno.args`)
 */
export async function runCommand<G extends FlagGroup>(
  command: Command<G>,
  args: string[] = Deno.args,
): Promise<never> {
  const { usage, about, flags, defaults = {}, run } = command;
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`usage: ${usage}\n\n${about}\n\n${flagHelp(flags, defaults)}`);
    Deno.exit(0);
  }
  const decoded = flagsOrExit(flags, args, defaults);
  try {
    const status = await run(decoded);
    Deno.exit(typeof status === "number" ? status : 0);
  } catch (e) {
    exitOnUserError(e);
  }
}
