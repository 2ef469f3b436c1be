/**
 * Stand-in for `jsr:@std/cli` (jsr.io is unreachable on our build machines): `parseArgs` with
 * std's options, on `minimist`, the parser std's is derived from. To switch back, point
 * `@std/cli` in deno.json at `jsr:@std/cli@1`.
 *
 * @module
 */
// @deno-types="npm:@types/minimist@1.2.5"
import minimist from "minimist";

/** Options of `parseArgs`, as in std. */
export interface ParseOptions {
  /** Flags whose values are strings. */
  string?: string[];
  /** Flags that are booleans. */
  boolean?: string[];
  /** Default values. */
  default?: Record<string, unknown>;
  /** Other names for a flag. */
  alias?: Record<string, string | string[]>;
  /** Called for each flag not listed; return false to drop it. */
  unknown?: (arg: string) => unknown;
  /** Stop at the first positional argument. */
  stopEarly?: boolean;
  /** Collect what follows `--` into `args["--"]`. */
  "--"?: boolean;
}

/** Parsed arguments: flags by name, positionals in `_`. */
export interface Args {
  /** Positional arguments. */
  _: Array<string | number>;
  /** Flags. */
  [flag: string]: unknown;
}

/**
 * Parses command-line arguments.
 * @param args the arguments, e.g. `Deno.args`
 * @param options which flags are strings and booleans, defaults, aliases
 * @returns flags by name and positionals in `_`
 * @example
 * ```ts
 * import { parseArgs } from "@std/cli";
 * const args = parseArgs(["--ch", "32", "--light"], { boolean: ["light"], string: ["ch"] });
 * console.log(args.ch, args.light); // "32" true
 * ```
 */
export function parseArgs(args: string[], options: ParseOptions = {}): Args {
  return minimist(args, options as minimist.Opts) as Args;
}
