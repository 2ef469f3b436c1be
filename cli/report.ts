/**
 * `deno task report`: writes a run's `report.html` (`eval/report.ts`) from what its folder holds:
 * the log, the pictures, the latest checkpoint's settings and the evaluations.
 *
 * @module
 */
import { datasetName } from "../data/dataset.ts";
import { writeReport } from "../eval/report.ts";
import { runCommand } from "./command.ts";
import { type FlagGroup, LAPTOP_DEFAULTS, MODEL_FLAGS, RUN_FLAGS } from "./flags.ts";

/** Every flag of `deno task report`. */
export const REPORT_FLAGS = { ...MODEL_FLAGS, ...RUN_FLAGS } as const satisfies FlagGroup;

if (import.meta.main) {
  await runCommand({
    usage: "deno task report [--dataset D] [--result_dir R]",
    about: "Writes <R>/<D>/report.html.",
    flags: REPORT_FLAGS,
    defaults: LAPTOP_DEFAULTS,
    run: async (flags) => {
      console.log(
        `wrote ${await writeReport(`${flags.result_dir}/${datasetName(flags.dataset)}`)}`,
      );
    },
  });
}
