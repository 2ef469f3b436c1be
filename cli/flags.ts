/**
 * Command-line flags, with the reference implementation's names and defaults (SPEC.md), in
 * groups: the shared model group, the run's place, and each command's own (in its file under
 * `cli/`). A command decodes exactly its groups, strictly: numbers must be numbers (weights are
 * floats, not integers as in the reference), booleans accept true/false/yes/no/1/0, and a flag the
 * command does not use is an error naming it. The decoded record is the settings the lower floors
 * read by the same names (`train/settings.ts`).
 *
 * @example
 * ```ts
 * import { MODEL_FLAGS, parseFlags, RUN_FLAGS } from "./flags.ts";
 * const flags = parseFlags({ ...MODEL_FLAGS, ...RUN_FLAGS }, ["--light", "--img_size", "64"]);
 * console.log(flags.light, flags.img_size, flags.dataset); // true 64 "emoji:google2twitter"
 * ```
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import { type Decoded, orThrow } from "../decoded/decoded.ts";
import { BACKENDS } from "../backends/backend.ts";
import { SHIPPED_RECIPE } from "../train/settings.ts";

/** One flag: its default, kind and help text (and, for a closed set of strings, the set). */
export interface FlagSpec {
  /** How its value is read. */
  readonly kind: "int" | "float" | "bool" | "string";
  /** Its value when not given. */
  readonly default: number | boolean | string;
  /** What it means, for `--help`. */
  readonly help: string;
  /** The values it takes, where they are a closed set (its type is then their union). */
  readonly choices?: readonly string[];
}

/** Flags by name, in the order `--help` lists them. */
export type FlagGroup = Readonly<Record<string, FlagSpec>>;

type FlagValue<S extends FlagSpec> = S extends { readonly choices: readonly (infer C)[] } ? C
  : S["kind"] extends "bool" ? boolean
  : S["kind"] extends "string" ? string
  : number;

/** The decoded flags of a group, by name, with the positional arguments as `_`. */
export type Flags<G extends FlagGroup> = { -readonly [K in keyof G]: FlagValue<G[K]> } & {
  /** Positional arguments. */
  _: string[];
};

/** The model's shape: every command takes it (a checkpoint's own settings win over it). */
export const MODEL_FLAGS = {
  light: { kind: "bool", default: false, help: "light model: the MLP reads pooled features" },
  ch: { kind: "int", default: 64, help: "base channel width" },
  n_res: { kind: "int", default: 4, help: "residual blocks" },
  n_dis: {
    kind: "int",
    default: 6,
    help: "discriminator depth: global n_dis+1, local n_dis-1 layers",
  },
  img_size: { kind: "int", default: 256, help: "image size" },
  img_ch: { kind: "int", default: 3, help: "image channels" },
  decoder_norm: {
    kind: "string",
    default: "adalin",
    help: "ablation: decoder norm adalin, in, ln, adain or gn",
  },
  gen_cam: { kind: "bool", default: true, help: "ablation: CAM attention in the generators" },
  dis_cam: { kind: "bool", default: true, help: "ablation: CAM attention in the discriminators" },
} as const satisfies FlagGroup;

/** Which run: every command takes it (the run folder is `<result_dir>/<dataset's name>`). */
export const RUN_FLAGS = {
  dataset: {
    kind: "string",
    default: "emoji:google2twitter",
    help: "dataset folder or emoji:<from>2<to>",
  },
  result_dir: { kind: "string", default: "results", help: "folder for results" },
} as const satisfies FlagGroup;

/** The backend, for the commands that compute. */
export const BACKEND_FLAG = {
  backend: {
    kind: "string",
    default: "auto",
    choices: BACKENDS,
    help: `one of ${BACKENDS.join(", ")}`,
  },
} as const satisfies FlagGroup;

/** The seed, for the commands that draw random numbers. */
export const SEED_FLAG = {
  seed: { kind: "int", default: 0, help: "random seed (initialisation and data order)" },
} as const satisfies FlagGroup;

/** Whether a run's moving average of its generators is used, where it has one. */
export const USE_EMA_FLAG = {
  use_ema: {
    kind: "bool",
    default: true,
    help: "the generators' moving average where the checkpoint has one",
  },
} as const satisfies FlagGroup;

/** The training recipe and pace: the train command's, and the ablations' and the benchmark's. */
export const TRAINING_FLAGS = {
  iteration: { kind: "int", default: 1_000_000, help: "training iterations" },
  batch_size: { kind: "int", default: 1, help: "images per batch" },
  print_freq: { kind: "int", default: 1000, help: "iterations between sample pictures" },
  save_freq: { kind: "int", default: 100_000, help: "iterations between kept checkpoints" },
  decay_flag: { kind: "bool", default: true, help: "decay the learning rate over the second half" },
  lr: { kind: "float", default: 1e-4, help: "learning rate" },
  weight_decay: {
    kind: "float",
    default: 1e-4,
    help: "L2 weight decay (coupled, as torch.optim.Adam)",
  },
  adv_weight: { kind: "float", default: 1, help: "weight of the adversarial loss" },
  cycle_weight: { kind: "float", default: 10, help: "weight of the cycle loss" },
  identity_weight: { kind: "float", default: 10, help: "weight of the identity loss" },
  cam_weight: { kind: "float", default: 1000, help: "weight of the CAM loss" },
  ema: {
    kind: "float",
    default: 0,
    help: "keep a moving average of the generators' weights, this decay per iteration " +
      "(e.g. 0.999; 0: none, as the reference)",
  },
  resume: {
    kind: "bool",
    default: false,
    help: "continue from the newest valid checkpoint (latest, else the newest whole ckpt_*)",
  },
  overwrite: {
    kind: "bool",
    default: false,
    help: "start over in a run folder that holds a run (removes its checkpoints, log, pictures " +
      "and evaluations)",
  },
} as const satisfies FlagGroup;

/**
 * The bare `deno task train` configuration: the recipe of the shipped `emoji-google2twitter` model
 * (models/emoji-google2twitter/MODEL_CARD.md), sized for a 2-core CPU: light, 64 px, ch 32, the
 * reference's learning rate, its adversarial and CAM weights with cycle 1 and identity 0.5 (the
 * reference's 10 and 10 kept translations close to their sources: 45% taken for Twitter, 68% with
 * 3 and 1.5, 92% with these), a moving average of the generators (0.999), 10,000 iterations (about
 * 100 minutes there), a picture every 250 iterations and a kept checkpoint every 1,000 (the points of
 * the evaluation curve). At 32 px and ch 16 (an earlier default) translations stayed mush; without
 * the average the evaluation figures swung from one checkpoint to the next. The commands that read
 * a run (translate, export, eval, report) take its model part as their defaults.
 */
export const LAPTOP_DEFAULTS: Partial<Flags<typeof MODEL_FLAGS & typeof TRAINING_FLAGS>> = {
  light: true,
  img_size: 64,
  ch: 32,
  n_res: 4,
  n_dis: 4,
  ...SHIPPED_RECIPE,
  iteration: 10_000,
  print_freq: 250,
  save_freq: 1_000,
};

/** Which generators a command reads (translate, export): a file, its directions, which weights. */
export const GENERATORS_FLAGS = {
  checkpoint: {
    kind: "string",
    default: "",
    help: "checkpoint or generator file (default: the run's latest checkpoint)",
  },
  direction: { kind: "string", default: "both", help: "A2B, B2A or both" },
  ...USE_EMA_FLAG,
} as const satisfies FlagGroup;

/** A bad command line; the message names the flag. */
export class FlagError extends Error {
  /**
   * Makes the error.
   * @param message what is wrong, naming the flag
   */
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

type Checked<A> = Decoded<A, FlagError>;

function parseBool(name: string, v: unknown): Checked<boolean> {
  if (typeof v === "boolean") return E.right(v);
  const s = String(v).toLowerCase();
  if (["true", "yes", "1", "on"].includes(s)) return E.right(true);
  if (["false", "no", "0", "off"].includes(s)) return E.right(false);
  return E.left(new FlagError(`--${name}: expected true or false, got "${v}"`));
}

// Booleans are read here: bare (`--light`), or with a value (`--light false`, as the reference
// takes them, or `--light=false`); the general parser sees only the other arguments.
function splitBooleans(
  args: string[],
  bools: readonly string[],
): Checked<{ given: Record<string, boolean>; rest: string[] }> {
  const words = /^(true|false|yes|no|1|0|on|off)$/i;
  const given: Record<string, boolean> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, value] = args[i].split(/=(.*)/s, 2);
    const name = flag.replace(/^--/, "");
    if (!flag.startsWith("--") || !bools.includes(name)) {
      rest.push(args[i]);
      continue;
    }
    if (name in given) return E.left(new FlagError(`--${name}: given more than once`));
    const parsed = value !== undefined
      ? parseBool(name, value)
      : words.test(args[i + 1] ?? "")
      ? parseBool(name, args[++i])
      : E.right(true);
    if (E.isLeft(parsed)) return parsed;
    given[name] = parsed.right;
  }
  return E.right({ given, rest });
}

// The other flags as the parser reads them (strings), an unknown one refused by name.
function parseRest(rest: string[], strings: string[]): Checked<Record<string, unknown>> {
  return E.tryCatch(
    () =>
      parseArgs(rest, {
        string: strings,
        unknown: (arg: string) => {
          if (arg.startsWith("-")) {
            throw new FlagError(`unknown flag ${arg.split("=")[0]} (see --help)`);
          }
          return true;
        },
      }) as Record<string, unknown>,
    (e) => e as FlagError,
  );
}

// One flag's value of its kind: given (once), or the default in force.
function valueOf(
  name: string,
  spec: FlagSpec,
  given: unknown,
  fallback: unknown,
): Checked<unknown> {
  if (given === undefined) return E.right(fallback);
  if (Array.isArray(given)) return E.left(new FlagError(`--${name}: given more than once`));
  if (spec.kind === "bool") return parseBool(name, given);
  if (spec.kind === "string") return E.right(String(given));
  const n = Number(given);
  if (given === "" || !Number.isFinite(n)) {
    return E.left(new FlagError(`--${name}: expected a number, got "${given}"`));
  }
  if (spec.kind === "int" && !Number.isInteger(n)) {
    return E.left(new FlagError(`--${name}: expected a whole number, got "${given}"`));
  }
  return E.right(n);
}

// Checks of single values, for the flags a group has; each gives the message of what it refuses.
const atLeastOne = (name: string) => (v: number) =>
  v < 1 ? `--${name}: must be at least 1, got ${v}` : undefined;
const CHECKS: Record<string, (v: never) => string | undefined> = {
  ...Object.fromEntries(
    [
      ...["iteration", "batch_size", "print_freq", "save_freq", "ch", "img_size", "img_ch"],
      ...["pairs", "seeds", "figure_rows"],
    ].map((name) => [name, atLeastOne(name)]),
  ),
  ema: (v: number) => (v < 0 || v >= 1 ? `--ema: must be in [0, 1), got ${v}` : undefined),
  n_res: (v: number) => (v < 0 ? `--n_res: must not be negative, got ${v}` : undefined),
  pick: (v: number) => (v < 0 ? `--pick: must not be negative, got ${v}` : undefined),
  size: (v: number) =>
    v < 0 || v % 4
      ? `--size: must be a positive multiple of 4 (or 0: the model's), got ${v}`
      : undefined,
  n_dis: (v: number) =>
    v < 4 ? `--n_dis: must be at least 4 (local D has n_dis-1 >= 3 layers), got ${v}` : undefined,
  decoder_norm: (v: string) =>
    ["adalin", "in", "ln", "adain", "gn"].includes(v)
      ? undefined
      : `--decoder_norm: expected adalin, in, ln, adain or gn, got "${v}"`,
  backend: (v: string) =>
    (BACKENDS as readonly string[]).includes(v)
      ? undefined
      : `--backend: unknown backend "${v}"; choose one of ${BACKENDS.join(", ")}`,
};

/**
 * Decodes a command line against a command's flag groups: booleans, then the other flags, each
 * value of its kind, then each value's checks.
 * @param group the command's flags
 * @param args e.g. `Deno.args`
 * @param defaults overrides of the reference's defaults (e.g. a laptop-sized configuration)
 * @returns `Right` with the flags, or `Left` with a {@linkcode FlagError} naming the flag that is
 *   unknown (to this command) or malformed
 */
export function decodeFlags<G extends FlagGroup>(
  group: G,
  args: string[],
  defaults: Partial<Flags<NoInfer<G>>> = {},
): Decoded<Flags<G>, FlagError> {
  const names = Object.keys(group);
  const bools = names.filter((k) => group[k].kind === "bool");
  const fallback = (name: string) =>
    (defaults as Record<string, unknown>)[name] ?? group[name].default;
  return pipe(
    splitBooleans(args, bools),
    E.chain(({ given, rest }) =>
      pipe(
        parseRest(rest, names.filter((k) => !bools.includes(k))),
        E.map((raw) => ({ ...raw, ...given } as Record<string, unknown>)),
      )
    ),
    E.chain((raw) =>
      pipe(
        names,
        E.traverseArray((name) =>
          pipe(
            valueOf(name, group[name], raw[name], fallback(name)),
            E.map((v) => [name, v] as const),
          )
        ),
        E.map((pairs) =>
          ({ _: (raw._ as unknown[]).map(String), ...Object.fromEntries(pairs) }) as Flags<G>
        ),
      )
    ),
    E.chain((flags) => {
      const values = flags as Record<string, unknown>;
      const refused = names.map((name) => CHECKS[name]?.(values[name] as never))
        .find((m) => m !== undefined);
      return refused ? E.left(new FlagError(refused)) : E.right(flags);
    }),
  );
}

/**
 * Parses a command line; {@linkcode decodeFlags}, throwing.
 * @param group the command's flags
 * @param args e.g. `Deno.args`
 * @param defaults overrides of the reference's defaults (e.g. a laptop-sized configuration)
 * @returns the flags
 * @throws {FlagError} naming the flag that is unknown (to this command) or malformed
 */
export function parseFlags<G extends FlagGroup>(
  group: G,
  args: string[],
  defaults: Partial<Flags<NoInfer<G>>> = {},
): Flags<G> {
  return orThrow(decodeFlags(group, args, defaults));
}

/**
 * The `--help` text: every flag of the group with its default and meaning.
 * @param group the command's flags
 * @param defaults the defaults in force (as passed to {@linkcode parseFlags})
 * @returns the text
 */
export function flagHelp<G extends FlagGroup>(
  group: G,
  defaults: Partial<Flags<NoInfer<G>>> = {},
): string {
  return Object.entries(group).map(([name, spec]) => {
    const d = (defaults as Record<string, unknown>)[name] ?? spec.default;
    return `  --${name.padEnd(16)} ${spec.help} (default: ${d})`;
  }).join("\n");
}
