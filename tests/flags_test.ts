import { assertEquals, assertThrows } from "@std/assert";
import { CARD_FLAGS } from "../cli/card.ts";
import { FlagError, flagHelp, parseFlags as parse } from "../cli/flags.ts";
import { TRAIN_FLAGS } from "../cli/train.ts";
import { TRANSLATE_FLAGS } from "../cli/translate.ts";
import { EXPORT_FLAGS } from "../cli/export.ts";
import { EVAL_FLAGS } from "../cli/eval.ts";
import { REPORT_FLAGS } from "../cli/report.ts";
import { ABLATE_FLAGS } from "../cli/ablate.ts";

// The train command's flags: the reference's.
const parseFlags = (args: string[], defaults = {}) => parse(TRAIN_FLAGS, args, defaults);

Deno.test("parseFlags() gives the reference's defaults", () => {
  const f = parseFlags([]);
  assertEquals(
    [f.iteration, f.batch_size, f.lr, f.cam_weight, f.ch, f.n_res, f.n_dis, f.img_size],
    [
      1_000_000,
      1,
      1e-4,
      1000,
      64,
      4,
      6,
      256,
    ],
  );
  assertEquals([f.light, f.decay_flag, f.resume, f.backend], [false, true, false, "auto"]);
});

Deno.test("parseFlags() reads floats, bare and valued booleans, and laptop defaults", () => {
  const f = parseFlags([
    "--light",
    "--decay_flag",
    "False",
    "--cycle_weight",
    "2.5",
    "--img_size=64",
  ], {
    ch: 32,
  });
  assertEquals([f.light, f.decay_flag, f.cycle_weight, f.img_size, f.ch], [
    true,
    false,
    2.5,
    64,
    32,
  ]);
  assertEquals(parseFlags(["--light", "true"]).light, true);
  assertEquals(parseFlags(["--light=false"], { light: true }).light, false);
  assertEquals(parseFlags(["in.png", "--light"])._, ["in.png"]);
});

Deno.test("parseFlags() names the flag that is unknown or malformed", () => {
  assertThrows(() => parseFlags(["--chh", "3"]), FlagError, "unknown flag --chh");
  assertThrows(
    () => parseFlags(["--ch", "wide"]),
    FlagError,
    '--ch: expected a number, got "wide"',
  );
  assertThrows(() => parseFlags(["--ch", "3.5"]), FlagError, "--ch: expected a whole number");
  assertThrows(() => parseFlags(["--light=maybe"]), FlagError, "--light: expected true or false");
  assertThrows(() => parseFlags(["--n_dis", "3"]), FlagError, "--n_dis: must be at least 4");
  assertThrows(
    () => parseFlags(["--backend", "tpu"]),
    FlagError,
    '--backend: unknown backend "tpu"',
  );
  assertThrows(
    () => parseFlags(["--ch", "8", "--ch", "9"]),
    FlagError,
    "--ch: given more than once",
  );
});

Deno.test("flagHelp() lists every flag with its default", () => {
  const help = flagHelp(TRAIN_FLAGS, { ch: 32 });
  for (const name of ["--phase", "--light", "--cam_weight", "--n_dis", "--backend", "--resume"]) {
    assertEquals(help.includes(name), true, name);
  }
  assertEquals(help.includes("base channel width (default: 32)"), true);
});

Deno.test("each command takes the shared model group and its own flags, and refuses the others", () => {
  const groups = {
    train: TRAIN_FLAGS,
    translate: TRANSLATE_FLAGS,
    export: EXPORT_FLAGS,
    eval: EVAL_FLAGS,
    report: REPORT_FLAGS,
    ablate: ABLATE_FLAGS,
    card: CARD_FLAGS,
  };
  const names = (g: object) => new Set(Object.keys(g));
  const shared = ["light", "ch", "n_res", "n_dis", "img_size", "img_ch", "decoder_norm", "gen_cam"];
  for (const [command, group] of Object.entries(groups)) {
    for (const flag of [...shared, "dis_cam", "dataset", "result_dir"]) {
      assertEquals(names(group).has(flag), true, `${command} --${flag}`);
    }
  }
  // Each --help lists only the command's flags: translate has no training flags, and so on.
  const help = (g: typeof groups[keyof typeof groups]) =>
    new Set([...flagHelp(g).matchAll(/--(\w+)/g)].map((m) => m[1]));
  assertEquals(help(TRANSLATE_FLAGS).has("lr"), false);
  assertEquals(help(TRANSLATE_FLAGS).has("direction"), true);
  assertEquals(help(REPORT_FLAGS).has("backend"), false);
  assertEquals(help(EXPORT_FLAGS).has("half"), true);
  assertEquals(help(EXPORT_FLAGS).has("features"), false);
  assertEquals(help(EVAL_FLAGS).has("features"), true);
  assertEquals(help(TRAIN_FLAGS).has("half"), false);
  assertEquals(help(ABLATE_FLAGS).has("variants"), true);
  // A flag of another command is unknown here, by name.
  assertThrows(() => parse(TRANSLATE_FLAGS, ["--lr", "1"]), FlagError, "unknown flag --lr");
  assertThrows(
    () => parse(EXPORT_FLAGS, ["--features", "x"]),
    FlagError,
    "unknown flag --features",
  );
  assertThrows(() => parse(REPORT_FLAGS, ["--half"]), FlagError, "unknown flag --half");
  assertEquals(parse(EXPORT_FLAGS, ["--half", "--direction", "A2B"]).half, true);
  assertEquals(parse(ABLATE_FLAGS, ["--variants", "full,in"]).variants, "full,in");
  // The pictures' counts: at least one (none, for translate's --pick: the whole split).
  assertThrows(
    () => parse(ABLATE_FLAGS, ["--seeds", "0"]),
    FlagError,
    "--seeds: must be at least 1",
  );
  assertThrows(
    () => parse(ABLATE_FLAGS, ["--figure_rows", "0"]),
    FlagError,
    "--figure_rows: must be at least 1",
  );
  assertThrows(() => parse(CARD_FLAGS, ["--pairs", "0"]), FlagError, "--pairs: must be at least 1");
  assertThrows(() => parse(TRANSLATE_FLAGS, ["--pick=-1"]), FlagError, "--pick: must not be");
  assertEquals(parse(TRANSLATE_FLAGS, ["--pick", "0"]).pick, 0);
  assertEquals(help(CARD_FLAGS).has("pairs") && help(CARD_FLAGS).has("model"), true);
  assertEquals(help(CARD_FLAGS).has("lr"), false);
});
