/**
 * The command-line flags, with the reference implementation's names and defaults (SPEC.md),
 * parsed strictly: numbers must be numbers (weights are floats, not integers as in the
 * reference), booleans accept true/false/yes/no/1/0, and an unknown flag is an error naming it.
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import * as E from "fp-ts/Either";
import { pipe } from "fp-ts/function";
import { type Decoded, orThrow } from "../weights/decoded.ts";
import { type BackendName, BACKENDS } from "../backends/mod.ts";
import type { DecoderNorm } from "../layers/norm.ts";
import type { TrainConfig } from "./step.ts";

/** One flag: its default, kind and help text. */
interface FlagSpec {
  readonly kind: "int" | "float" | "bool" | "string";
  readonly default: number | boolean | string;
  readonly help: string;
}

/** Every flag, in the order `--help` lists them. */
export const FLAGS = {
  phase: { kind: "string", default: "train", help: "train or test" },
  light: { kind: "bool", default: false, help: "light model: the MLP reads pooled features" },
  dataset: {
    kind: "string",
    default: "emoji:google2twitter",
    help: "dataset folder or emoji:<from>2<to>",
  },
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
  use_ema: {
    kind: "bool",
    default: true,
    help: "translate, export, eval: the generators' moving average where the checkpoint has one",
  },
  ch: { kind: "int", default: 64, help: "base channel width" },
  n_res: { kind: "int", default: 4, help: "residual blocks" },
  n_dis: {
    kind: "int",
    default: 6,
    help: "discriminator depth: global n_dis+1, local n_dis-1 layers",
  },
  img_size: { kind: "int", default: 256, help: "image size" },
  img_ch: { kind: "int", default: 3, help: "image channels" },
  result_dir: { kind: "string", default: "results", help: "folder for results" },
  resume: { kind: "bool", default: false, help: "continue from the latest checkpoint" },
  features: {
    kind: "string",
    default: "builtin",
    help:
      "eval: KID/FID features: builtin, or a TensorFlow.js graph model.json path or URL (Inception-v3)",
  },
  decoder_norm: {
    kind: "string",
    default: "adalin",
    help: "ablation: decoder norm adalin, in, ln, adain or gn",
  },
  gen_cam: { kind: "bool", default: true, help: "ablation: CAM attention in the generators" },
  dis_cam: { kind: "bool", default: true, help: "ablation: CAM attention in the discriminators" },
  seed: { kind: "int", default: 0, help: "random seed (initialisation and data order)" },
  backend: { kind: "string", default: "auto", help: `one of ${BACKENDS.join(", ")}` },
  checkpoint: {
    kind: "string",
    default: "",
    help: "translate, export, eval: checkpoint or generator file (default: the run's latest " +
      "checkpoint; eval takes `all`: every kept one)",
  },
  direction: { kind: "string", default: "both", help: "translate, export: A2B, B2A or both" },
  model: {
    kind: "string",
    default: "",
    help:
      "translate: a model shipped in models/ (e.g. emoji-google2twitter), instead of a checkpoint",
  },
  size: {
    kind: "int",
    default: 0,
    help: "translate: resize inputs to this side (default: the model's; light models only)",
  },
  half: { kind: "bool", default: false, help: "export: store float16 (half the size)" },
  reference_names: {
    kind: "bool",
    default: false,
    help: "export: the reference's PyTorch names and layouts (genA2B.<state_dict name>)",
  },
  out: {
    kind: "string",
    default: "",
    help: "export: the file to write (default: beside the checkpoint)",
  },
} as const satisfies Record<string, FlagSpec>;

type FlagValue<S extends FlagSpec> = S["kind"] extends "bool" ? boolean
  : S["kind"] extends "string" ? string
  : number;

/** Parsed flags, by the reference's names. */
export type Flags = { -readonly [K in keyof typeof FLAGS]: FlagValue<typeof FLAGS[K]> } & {
  backend: BackendName;
  /** Positional arguments. */
  _: string[];
};

/**
 * The bare `deno task train` configuration: the recipe of the shipped `emoji-google2twitter` model
 * (models/emoji-google2twitter/MODEL_CARD.md), sized for a 2-core CPU: light, 64 px, ch 32, the
 * reference's learning rate, its adversarial and CAM weights with cycle 1 and identity 0.5 (the
 * reference's 10 and 10 kept translations close to their sources: 45% taken for Twitter, 68% with
 * 3 and 1.5, 92% with these), a moving average of the generators (0.999), 10,000 iterations (about
 * 100 minutes there), a picture every 250 iterations and a kept checkpoint every 1,000 (the points of
 * the evaluation curve). At 32 px and ch 16 (an earlier default) translations stayed mush; without
 * the average the evaluation figures swung from one checkpoint to the next.
 */
export const LAPTOP_DEFAULTS: Partial<Flags> = {
  light: true,
  img_size: 64,
  ch: 32,
  n_res: 4,
  n_dis: 4,
  lr: 1e-4,
  cycle_weight: 1,
  identity_weight: 0.5,
  ema: 0.999,
  iteration: 10_000,
  print_freq: 250,
  save_freq: 1_000,
};

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

const SPECS = FLAGS as Record<string, FlagSpec>;
const BOOLS = Object.keys(SPECS).filter((k) => SPECS[k].kind === "bool");

// Booleans are read here: bare (`--light`), or with a value (`--light false`, as the reference
// takes them, or `--light=false`); the general parser sees only the other arguments.
function splitBooleans(
  args: string[],
): Checked<{ bools: Record<string, boolean>; rest: string[] }> {
  const words = /^(true|false|yes|no|1|0|on|off)$/i;
  const bools: Record<string, boolean> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, value] = args[i].split(/=(.*)/s, 2);
    const name = flag.replace(/^--/, "");
    if (!flag.startsWith("--") || !BOOLS.includes(name)) {
      rest.push(args[i]);
      continue;
    }
    if (name in bools) return E.left(new FlagError(`--${name}: given more than once`));
    const given = value !== undefined
      ? parseBool(name, value)
      : words.test(args[i + 1] ?? "")
      ? parseBool(name, args[++i])
      : E.right(true);
    if (E.isLeft(given)) return given;
    bools[name] = given.right;
  }
  return E.right({ bools, rest });
}

// The other flags as the parser reads them (strings), an unknown one refused by name.
function parseRest(rest: string[]): Checked<Record<string, unknown>> {
  return E.tryCatch(
    () =>
      parseArgs(rest, {
        string: Object.keys(SPECS).filter((k) => !BOOLS.includes(k)),
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
function valueOf(name: string, given: unknown, fallback: unknown): Checked<unknown> {
  const spec = SPECS[name];
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

// Checks across values; each gives the message of what it refuses, or undefined.
const CHECKS: ((f: Flags) => string | undefined)[] = [
  ...(["iteration", "batch_size", "print_freq", "save_freq", "ch", "img_size", "img_ch"] as const)
    .map((name) => (f: Flags) =>
      f[name] < 1 ? `--${name}: must be at least 1, got ${f[name]}` : undefined
    ),
  (f) => (f.ema < 0 || f.ema >= 1 ? `--ema: must be in [0, 1), got ${f.ema}` : undefined),
  (f) => (f.n_res < 0 ? `--n_res: must not be negative, got ${f.n_res}` : undefined),
  (f) =>
    f.size < 0 || f.size % 4
      ? `--size: must be a positive multiple of 4 (or 0: the model's), got ${f.size}`
      : undefined,
  (f) =>
    f.n_dis < 4
      ? `--n_dis: must be at least 4 (local D has n_dis-1 >= 3 layers), got ${f.n_dis}`
      : undefined,
  (f) =>
    ["adalin", "in", "ln", "adain", "gn"].includes(f.decoder_norm)
      ? undefined
      : `--decoder_norm: expected adalin, in, ln, adain or gn, got "${f.decoder_norm}"`,
  (f) =>
    (BACKENDS as readonly string[]).includes(f.backend)
      ? undefined
      : `--backend: unknown backend "${f.backend}"; choose one of ${BACKENDS.join(", ")}`,
];

/**
 * Decodes a command line: booleans, then the other flags, each value of its kind, then the checks
 * across values.
 * @param args e.g. `Deno.args`
 * @param defaults overrides of the reference's defaults (e.g. a laptop-sized configuration)
 * @returns `Right` with the flags, or `Left` with a {@linkcode FlagError} naming the flag that is
 *   unknown or malformed
 */
export function decodeFlags(
  args: string[],
  defaults: Partial<Flags> = {},
): Decoded<Flags, FlagError> {
  const fallback = (name: string) =>
    (defaults as Record<string, unknown>)[name] ?? SPECS[name].default;
  return pipe(
    splitBooleans(args),
    E.chain(({ bools, rest }) =>
      pipe(parseRest(rest), E.map((raw) => ({ ...raw, ...bools } as Record<string, unknown>)))
    ),
    E.chain((raw) =>
      pipe(
        Object.keys(SPECS),
        E.traverseArray((name) =>
          pipe(valueOf(name, raw[name], fallback(name)), E.map((v) => [name, v] as const))
        ),
        E.map((pairs) =>
          ({ _: (raw._ as unknown[]).map(String), ...Object.fromEntries(pairs) }) as Flags
        ),
      )
    ),
    E.chain((flags) => {
      const refused = CHECKS.map((check) => check(flags)).find((m) => m !== undefined);
      return refused ? E.left(new FlagError(refused)) : E.right(flags);
    }),
  );
}

/**
 * Parses a command line; {@linkcode decodeFlags}, throwing.
 * @param args e.g. `Deno.args`
 * @param defaults overrides of the reference's defaults (e.g. a laptop-sized configuration)
 * @returns the flags
 * @throws {FlagError} naming the flag that is unknown or malformed
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * const flags = parseFlags(["--light", "--img_size", "64", "--cam_weight", "0.5"]);
 * console.log(flags.light, flags.img_size, flags.cam_weight); // true 64 0.5
 * ```
 */
export function parseFlags(args: string[], defaults: Partial<Flags> = {}): Flags {
  return orThrow(decodeFlags(args, defaults));
}

/**
 * The `--help` text: every flag with its default and meaning.
 * @param defaults the defaults in force (as passed to {@linkcode parseFlags})
 * @returns the text
 */
export function flagHelp(defaults: Partial<Flags> = {}): string {
  return Object.entries(FLAGS as Record<string, FlagSpec>).map(([name, spec]) => {
    const d = (defaults as Record<string, unknown>)[name] ?? spec.default;
    return `  --${name.padEnd(16)} ${spec.help} (default: ${d})`;
  }).join("\n");
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
 * For commands: the flags, or (a `Left`) the one-line error and exit status 2.
 * @param args e.g. `Deno.args`
 * @param defaults the command's defaults
 * @returns the flags
 */
export function flagsOrExit(args: string[], defaults: Partial<Flags> = {}): Flags {
  return pipe(decodeFlags(args, defaults), E.getOrElse((e): Flags => userError(e)));
}

/**
 * The end of every command's `catch`: a mistake in the user's input (a flag, a dataset, a weight
 * file; matched by error name, so this module needs none of their modules) prints one line and
 * exits with status 2; the wasm heap running out prints which backend to use instead and exits
 * with status 3; anything else is a bug and is thrown on.
 * @param e the caught error
 */
export function exitOnUserError(e: unknown): never {
  if (e instanceof Error && ["FlagError", "DatasetError", "WeightFileError"].includes(e.name)) {
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
 * The model and optimiser configuration the flags describe.
 * @param flags the parsed flags
 * @returns the training configuration
 */
export function configFromFlags(flags: Flags): TrainConfig {
  const decoderNorm = flags.decoder_norm as DecoderNorm;
  return {
    generator: {
      ch: flags.ch,
      nRes: flags.n_res,
      imgSize: flags.img_size,
      light: flags.light,
      imgCh: flags.img_ch,
      decoderNorm,
      cam: flags.gen_cam,
    },
    global: { ch: flags.ch, nLayers: flags.n_dis + 1, imgCh: flags.img_ch, cam: flags.dis_cam },
    local: { ch: flags.ch, nLayers: flags.n_dis - 1, imgCh: flags.img_ch, cam: flags.dis_cam },
    weights: {
      adv: flags.adv_weight,
      cycle: flags.cycle_weight,
      identity: flags.identity_weight,
      cam: flags.cam_weight,
    },
    lr: flags.lr,
    weightDecay: flags.weight_decay,
    iterations: flags.iteration,
    decay: flags.decay_flag,
    ema: flags.ema,
  };
}
