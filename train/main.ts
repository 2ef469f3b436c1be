/**
 * `deno task train`: trains U-GAT-IT with the reference's flags. With no flags it trains on the
 * built-in emoji task (Google to Twitter) with a configuration sized for a laptop CPU; the
 * paper's configuration is `--light false --img_size 256 --ch 64 --n_dis 6 --iteration 1000000
 * --cycle_weight 10 --identity_weight 10 --ema 0 --print_freq 1000 --save_freq 100000`. `--phase
 * test` translates the test split with the latest checkpoint (as `deno task translate`).
 *
 * @module
 */
import { exitOnUserError, FlagError, flagHelp, flagsOrExit, LAPTOP_DEFAULTS } from "./flags.ts";
import { runTraining } from "./runner.ts";
import { runTranslate } from "./translate.ts";

if (import.meta.main) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(
      `usage: deno task train [flags]\n\nTrains U-GAT-IT (defaults sized for a laptop CPU).\n\n${
        flagHelp(LAPTOP_DEFAULTS)
      }`,
    );
    Deno.exit(0);
  }
  try {
    const flags = flagsOrExit(Deno.args, LAPTOP_DEFAULTS);
    if (flags.phase === "test") {
      await runTranslate(flags, { out: console.log, warn: console.warn });
      Deno.exit(0);
    }
    if (flags.phase !== "train") {
      throw new FlagError(`--phase: expected train or test, got "${flags.phase}"`);
    }
    const control = { stop: false };
    const onInterrupt = () => {
      if (control.stop) Deno.exit(130); // a second Ctrl-C does not wait for the checkpoint
      control.stop = true;
      console.error(
        "\nstopping after this iteration and saving a checkpoint (Ctrl-C again to quit now)",
      );
    };
    Deno.addSignalListener("SIGINT", onInterrupt);
    const terminal = Deno.stdout.isTerminal();
    const enc = new TextEncoder();
    const result = await runTraining(flags, {
      out: (line) => console.log(terminal ? `\r\x1b[K${line}` : line),
      warn: (line) => console.error(terminal ? `\r\x1b[K${line}` : line),
      progress: terminal
        ? (line) => Deno.stdout.writeSync(enc.encode(`\r\x1b[K${line.slice(0, 160)}`))
        : undefined,
    }, control);
    Deno.removeSignalListener("SIGINT", onInterrupt);
    Deno.exit(result.status === "diverged" || result.status === "device_lost" ? 1 : 0);
  } catch (e) {
    exitOnUserError(e);
  }
}
