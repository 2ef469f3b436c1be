/**
 * The command-line flags, with the reference implementation's names and defaults (SPEC.md),
 * parsed strictly: numbers must be numbers (weights are floats, not integers as in the
 * reference), booleans accept true/false/yes/no/1/0, and an unknown flag is an error naming it.
 *
 * @module
 */
import { parseArgs } from "@std/cli";
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
    help: "translate: checkpoint (default: the run's latest)",
  },
  direction: { kind: "string", default: "both", help: "translate: A2B, B2A or both" },
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
 * The bare `deno task train` configuration, sized for a laptop CPU: light, 32 px, ch 16 (about
 * 1.2 s per iteration on wasm), a picture every 100 iterations, and a learning rate of 1e-3 (the
 * reference's 1e-4 shows nothing but blur in the first hundred iterations at this size).
 */
export const LAPTOP_DEFAULTS: Partial<Flags> = {
  light: true,
  img_size: 32,
  ch: 16,
  n_dis: 4,
  lr: 1e-3,
  iteration: 20_000,
  print_freq: 100,
  save_freq: 2_000,
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

function parseBool(name: string, v: unknown): boolean {
  if (typeof v === "boolean") return v;
  const s = String(v).toLowerCase();
  if (["true", "yes", "1", "on"].includes(s)) return true;
  if (["false", "no", "0", "off"].includes(s)) return false;
  throw new FlagError(`--${name}: expected true or false, got "${v}"`);
}

/**
 * Parses a command line.
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
  const specs = FLAGS as Record<string, FlagSpec>;
  const bools = Object.keys(specs).filter((k) => specs[k].kind === "bool");
  // Booleans are read here: bare (`--light`), or with a value (`--light false`, as the reference
  // takes them, or `--light=false`); the parser sees only the other flags.
  const words = /^(true|false|yes|no|1|0|on|off)$/i;
  const boolGiven: Record<string, boolean> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, value] = args[i].split(/=(.*)/s, 2);
    const name = flag.replace(/^--/, "");
    if (!flag.startsWith("--") || !bools.includes(name)) {
      rest.push(args[i]);
      continue;
    }
    if (name in boolGiven) throw new FlagError(`--${name}: given more than once`);
    if (value !== undefined) boolGiven[name] = parseBool(name, value);
    else if (words.test(args[i + 1] ?? "")) boolGiven[name] = parseBool(name, args[++i]);
    else boolGiven[name] = true;
  }
  const fallback = (name: string) =>
    (defaults as Record<string, unknown>)[name] ?? specs[name].default;
  const raw = parseArgs(rest, {
    string: Object.keys(specs).filter((k) => !bools.includes(k)),
    unknown: (arg: string) => {
      if (arg.startsWith("-")) {
        throw new FlagError(`unknown flag ${arg.split("=")[0]} (see --help)`);
      }
      return true;
    },
  });
  Object.assign(raw, boolGiven);
  const out: Record<string, unknown> = { _: raw._.map(String) };
  for (const [name, spec] of Object.entries(specs)) {
    const given = raw[name];
    if (given === undefined) {
      out[name] = fallback(name);
      continue;
    }
    if (Array.isArray(given)) throw new FlagError(`--${name}: given more than once`);
    if (spec.kind === "bool") out[name] = parseBool(name, given);
    else if (spec.kind === "string") out[name] = String(given);
    else {
      const n = Number(given);
      if (given === "" || !Number.isFinite(n)) {
        throw new FlagError(`--${name}: expected a number, got "${given}"`);
      }
      if (spec.kind === "int" && !Number.isInteger(n)) {
        throw new FlagError(`--${name}: expected a whole number, got "${given}"`);
      }
      out[name] = n;
    }
  }
  const flags = out as Flags;
  for (
    const name of [
      "iteration",
      "batch_size",
      "print_freq",
      "save_freq",
      "ch",
      "img_size",
      "img_ch",
    ] as const
  ) {
    if (flags[name] < 1) throw new FlagError(`--${name}: must be at least 1, got ${flags[name]}`);
  }
  if (flags.n_res < 0) throw new FlagError(`--n_res: must not be negative, got ${flags.n_res}`);
  if (flags.n_dis < 4) {
    throw new FlagError(
      `--n_dis: must be at least 4 (local D has n_dis-1 >= 3 layers), got ${flags.n_dis}`,
    );
  }
  if (!["adalin", "in", "ln", "adain", "gn"].includes(flags.decoder_norm)) {
    throw new FlagError(
      `--decoder_norm: expected adalin, in, ln, adain or gn, got "${flags.decoder_norm}"`,
    );
  }
  if (!(BACKENDS as readonly string[]).includes(flags.backend)) {
    throw new FlagError(
      `--backend: unknown backend "${flags.backend}"; choose one of ${BACKENDS.join(", ")}`,
    );
  }
  return flags;
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
 * The end of every command's `catch`: a mistake in the user's input (a flag, a dataset, a weight
 * file; matched by error name, so this module needs none of their modules) prints one line and
 * exits with status 2; the wasm heap running out prints which backend to use instead and exits
 * with status 3; anything else is a bug and is thrown on.
 * @param e the caught error
 */
export function exitOnUserError(e: unknown): never {
  if (e instanceof Error && ["FlagError", "DatasetError", "WeightFileError"].includes(e.name)) {
    console.error(`error: ${e.message}`);
    Deno.exit(2);
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
  };
}
