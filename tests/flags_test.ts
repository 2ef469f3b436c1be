import { assertEquals, assertThrows } from "@std/assert";
import { FlagError, flagHelp, parseFlags } from "../train/flags.ts";

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
  const help = flagHelp({ ch: 32 });
  for (const name of ["--phase", "--light", "--cam_weight", "--n_dis", "--backend", "--resume"]) {
    assertEquals(help.includes(name), true, name);
  }
  assertEquals(help.includes("base channel width (default: 32)"), true);
});
