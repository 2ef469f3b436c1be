/**
 * `deno task eval`: evaluates a run's checkpoint (its latest, `--checkpoint file`, or with
 * `--checkpoint all` every kept one, the points of the report's evaluation curve) on the test
 * split, both directions (`eval/evaluate.ts`), and writes `eval_<iteration>.json` and the run
 * report.
 *
 * @module
 */
import { runEval } from "../eval/evaluate.ts";
import { CONSOLE, runCommand } from "./command.ts";
import {
  BACKEND_FLAG,
  type FlagGroup,
  type Flags,
  LAPTOP_DEFAULTS,
  MODEL_FLAGS,
  RUN_FLAGS,
  SEED_FLAG,
  USE_EMA_FLAG,
} from "./flags.ts";

/** The evaluation's own flags (the ablations take them too). */
export const EVAL_OWN_FLAGS = {
  features: {
    kind: "string",
    default: "builtin",
    help:
      "KID/FID features: builtin, or a TensorFlow.js graph model.json path or URL (Inception-v3)",
  },
  ...USE_EMA_FLAG,
} as const satisfies FlagGroup;

/** Every flag of `deno task eval`. */
export const EVAL_FLAGS = {
  ...MODEL_FLAGS,
  ...RUN_FLAGS,
  ...BACKEND_FLAG,
  ...SEED_FLAG,
  checkpoint: {
    kind: "string",
    default: "",
    help: "checkpoint (default: the run's latest; all: every kept one)",
  },
  ...EVAL_OWN_FLAGS,
} as const satisfies FlagGroup;

/** The flags `deno task eval` decodes. */
export type EvalFlags = Flags<typeof EVAL_FLAGS>;

if (import.meta.main) {
  await runCommand({
    usage: "deno task eval [flags]",
    about:
      "Evaluates a run's checkpoint (default: its latest; --checkpoint all: every kept one,\n" +
      "the points of the report's evaluation curve) on the test split.",
    flags: EVAL_FLAGS,
    defaults: LAPTOP_DEFAULTS,
    run: (flags) => runEval(flags, CONSOLE),
  });
}
