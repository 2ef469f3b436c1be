/**
 * The run folder that nothing can spoil: one training at a time (a lock naming its holder, a dead
 * holder's lock taken over), no silent overwrite of a run, `--resume` from the newest valid
 * checkpoint, and a full disk or a refused write said in one line with the last checkpoint kept
 * byte for byte.
 *
 * @module
 */
import { assert, assertEquals, assertRejects } from "@std/assert";
import { trainWithReport } from "../cli/train.ts";
import { runExport } from "../cli/export.ts";
import { runTranslate } from "../cli/translate.ts";
import { datasetName } from "../data/dataset.ts";
import { runEval } from "../eval/evaluate.ts";
import { WriteError } from "../files/write_file.ts";
import { LOCK_FILE, lockRunFolder, RunFolderError } from "../train/run_folder.ts";
import { runTraining } from "../train/runner.ts";
import { readSafetensors } from "../weights/safetensors.ts";
import { makeDataset, RUN_AS_TASK, tinyFlags } from "./helpers.ts";

const quiet = { out: () => {}, warn: () => {} };
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/** Every file under a folder (relative path) with the SHA-256 of its bytes. */
async function hashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (sub: string) => {
    for await (const e of Deno.readDir(`${dir}/${sub}`)) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory) await walk(rel);
      else {
        const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(`${dir}/${rel}`));
        out[rel] = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
          .join("");
      }
    }
  };
  await walk("");
  return out;
}

/** A checkpoint's tensors as arrays and its metadata, for comparing two runs. */
async function contents(path: string) {
  const { tensors, metadata } = await readSafetensors(path);
  return {
    tensors: Object.fromEntries(
      Object.entries(tensors).map(([k, v]) => [k, Array.from(v.data as Float32Array)]),
    ),
    step: metadata.step,
    rng: metadata.rng,
    streams: metadata.streams,
  };
}

/** The train command's arguments for the tiny model of {@linkcode tinyFlags}. */
function trainArgs(root: string, results: string, more: Record<string, string>): string[] {
  const values = {
    dataset: root,
    result_dir: results,
    backend: "wasm",
    img_size: "24",
    ch: "2",
    n_res: "1",
    n_dis: "4",
    seed: "5",
    ...more,
  };
  return ["--light", ...Object.entries(values).flatMap(([k, v]) => [`--${k}`, v])];
}

const TRAIN = new URL("../cli/train.ts", import.meta.url).pathname;

/** A stack trace's lines in a command's output (there must be none). */
const traceLines = (text: string) => text.split("\n").filter((l) => /^\s+at /.test(l));

Deno.test("lockRunFolder() refuses a held folder naming its holder, and takes over a dead one's lock", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lock = await lockRunFolder(dir, () => {});
    const holder = JSON.parse(await Deno.readTextFile(`${dir}/${LOCK_FILE}`));
    assertEquals(holder.pid, Deno.pid);
    assertEquals(holder.host, Deno.hostname());
    assert(!Number.isNaN(Date.parse(holder.started)), holder.started);
    const refused = await assertRejects(() => lockRunFolder(dir, () => {}), RunFolderError);
    assert(
      refused.message.startsWith(
        `${dir} is in use by process ${Deno.pid} on ${holder.host} (started ${holder.started})`,
      ),
      refused.message,
    );
    await lock.release();
    assertEquals(await exists(`${dir}/${LOCK_FILE}`), false);

    // A lock file nobody holds: its process ended without releasing it.
    const dead = { pid: 999999, host: "elsewhere", started: "2020-01-01T00:00:00.000Z" };
    await Deno.writeTextFile(`${dir}/${LOCK_FILE}`, JSON.stringify(dead));
    const lines: string[] = [];
    const taken = await lockRunFolder(dir, (l) => lines.push(l));
    assertEquals(lines, [
      `taking over the lock of ${dir} from process 999999 on elsewhere ` +
      "(started 2020-01-01T00:00:00.000Z): that process has ended without releasing it",
    ]);
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/${LOCK_FILE}`)).pid, Deno.pid);
    await taken.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second training in a live run's folder stops at once naming the first; after kill -9 --resume takes the lock over", async () => {
  const root = await makeDataset({ train: 2, test: 1, size: 28 });
  const results = await Deno.makeTempDir();
  const dir = `${results}/${datasetName(root)}`;
  const args = trainArgs(root, results, {
    iteration: "100000",
    print_freq: "1000",
    save_freq: "1",
  });
  const first = new Deno.Command(Deno.execPath(), {
    args: [...RUN_AS_TASK, TRAIN, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const logged = async () =>
      (await Deno.readTextFile(`${dir}/log.jsonl`).catch(() => "")).split("\n").filter(Boolean)
        .length;
    for (let waited = 0; (await logged()) < 2; waited += 100) {
      if (waited > 90_000) throw new Error("the first training made no progress in 90 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const started = new Deno.Command(Deno.execPath(), {
      args: [...RUN_AS_TASK, TRAIN, ...args, "--resume"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => started.kill("SIGKILL"), 60_000);
    const second = await started.output();
    clearTimeout(timer);
    assert(second.signal === null, "the second training did not stop within a minute");
    const err = decode(second.stderr).trim();
    assertEquals(second.code, 2, err);
    assertEquals(err.split("\n").length, 1, err);
    assert(
      err.startsWith(
        `error: ${dir} is in use by process ${first.pid} on ${Deno.hostname()} (started 20`,
      ),
      err,
    );
    assertEquals(decode(second.stdout), ""); // stopped before anything else

    first.kill("SIGKILL");
    await first.status;
    await first.stderr.cancel();
    assert(await exists(`${dir}/${LOCK_FILE}`), "a killed process leaves its lock file");
    const ckpt = await readSafetensors(`${dir}/model/latest.safetensors`);
    const step = Number(ckpt.metadata.step);
    const warnings: string[] = [];
    const flags = tinyFlags(root, results, { iteration: String(step + 1), save_freq: "1" }, [
      "--resume",
    ]);
    const run = await trainWithReport(flags, { out: () => {}, warn: (l) => warnings.push(l) });
    assertEquals([run.status, run.step], ["done", step + 1]);
    assert(
      warnings.some((w) =>
        w.startsWith(`taking over the lock of ${dir} from process ${first.pid} on `) &&
        w.endsWith("that process has ended without releasing it")
      ),
      warnings.join("\n"),
    );
    assertEquals(await exists(`${dir}/${LOCK_FILE}`), false, "released at the end");
  } finally {
    try {
      first.kill("SIGKILL");
      await first.status;
    } catch { /* already ended */ }
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("--resume without latest.safetensors, or with it cut short and the newest ckpt_* broken, goes on from the newest whole checkpoint and equals an uninterrupted run", async () => {
  const root = await makeDataset({ train: 3, test: 2, size: 28 });
  const straight = await Deno.makeTempDir();
  const name = datasetName(root);
  const tiny = (results: string, extra: string[] = []) =>
    tinyFlags(root, results, { iteration: "4", save_freq: "1" }, extra);
  try {
    const full = await trainWithReport(tiny(straight), quiet);
    assertEquals([full.step, full.status], [4, "done"]);
    const want = await contents(`${straight}/${name}/model/latest.safetensors`);

    for (const harm of ["deleted", "truncated"] as const) {
      const results = await Deno.makeTempDir();
      const model = `${results}/${name}/model`;
      try {
        const control = { stop: false };
        const first = await trainWithReport(tiny(results), {
          ...quiet,
          progress: (line) => (control.stop = line.includes(" 3/4 ")),
        }, control);
        assertEquals([first.step, first.status], [3, "interrupted"]);
        let broken: Uint8Array | undefined;
        if (harm === "deleted") await Deno.remove(`${model}/latest.safetensors`);
        else {
          const latest = await Deno.readFile(`${model}/latest.safetensors`);
          await Deno.writeFile(
            `${model}/latest.safetensors`,
            latest.subarray(0, latest.length / 2),
          );
          // and the newest kept checkpoint's header made nonsense
          broken = await Deno.readFile(`${model}/ckpt_0000003.safetensors`);
          broken.set(new Uint8Array(8).fill(0xff));
          await Deno.writeFile(`${model}/ckpt_0000003.safetensors`, broken);
        }
        const lines: string[] = [];
        const log = (l: string) => lines.push(l);
        const rest = await trainWithReport(tiny(results, ["--resume"]), { out: log, warn: log });
        assertEquals([rest.step, rest.status], [4, "done"]);
        const from = harm === "deleted" ? 3 : 2;
        const why = harm === "deleted"
          ? "(latest.safetensors is missing)"
          : "(latest.safetensors is broken: tensor ";
        assert(
          lines.some((l) =>
            l.startsWith(
              `resuming ${results}/${name} at iteration ${from} from model/ckpt_000000${from}` +
                `.safetensors ${why}`,
            )
          ),
          lines.join("\n"),
        );
        if (broken) {
          assert(
            lines.some((l) =>
              l.startsWith(
                `--resume: skipping ${model}/ckpt_0000003.safetensors (header length `,
              ) &&
              l.endsWith(
                "kept as ckpt_0000003.safetensors.broken, since the run will write " +
                  "ckpt_0000003.safetensors again",
              )
            ),
            lines.join("\n"),
          );
          assertEquals(await Deno.readFile(`${model}/ckpt_0000003.safetensors.broken`), broken);
        }
        assertEquals(await contents(`${model}/latest.safetensors`), want);
        const logged = (await Deno.readTextFile(`${results}/${name}/log.jsonl`)).trim().split("\n")
          .map((l) => JSON.parse(l).iteration);
        assertEquals(logged, [1, 2, 3, 4]);
      } finally {
        await Deno.remove(results, { recursive: true });
      }
    }
  } finally {
    for (const d of [root, straight]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("training without --resume in a folder that holds a run is refused and changes no file; --overwrite starts over", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  const dir = `${results}/${datasetName(root)}`;
  try {
    await trainWithReport(tinyFlags(root, results, { iteration: "4", save_freq: "2" }), quiet);
    await runEval(tinyFlags(root, results, { backend: "wasm" }), quiet);
    const before = await hashes(dir);
    assert("eval.json" in before && "report.html" in before && "log.jsonl" in before);

    const again = await assertRejects(
      () => trainWithReport(tinyFlags(root, results, { iteration: "4" }), quiet),
      RunFolderError,
    );
    assertEquals(
      again.message,
      `${dir} already holds a run (its newest checkpoint is model/latest.safetensors, ` +
        "iteration 4); continue it with --resume, keep it and choose another --result_dir, or " +
        "start over with --overwrite (removes its checkpoints, log, pictures and evaluations)",
    );
    await assertRejects(
      () => trainWithReport(tinyFlags(root, results, {}, ["--resume", "--overwrite"]), quiet),
      RunFolderError,
      "--resume and --overwrite: give one of them",
    );
    assertEquals(await hashes(dir), before);

    // --resume in a folder whose checkpoints are all broken: refused, every file as it was.
    const broken = await Deno.makeTempDir();
    try {
      const run = `${broken}/${datasetName(root)}`;
      await Deno.mkdir(`${run}/model`, { recursive: true });
      await Deno.writeTextFile(`${run}/model/latest.safetensors`, "not a checkpoint");
      await Deno.writeTextFile(`${run}/log.jsonl`, '{"iteration":1}\n');
      const kept = await hashes(run);
      const none = await assertRejects(
        () => trainWithReport(tinyFlags(root, broken, {}, ["--resume"]), quiet),
        RunFolderError,
      );
      assert(
        none.message.startsWith(
          `--resume: nothing to resume from in ${run}: model/latest.safetensors: header length `,
        ) && none.message.endsWith(
          "every file is left as it is; start over with --overwrite, " +
            "or choose another --result_dir",
        ),
        none.message,
      );
      assertEquals(await hashes(run), kept);
    } finally {
      await Deno.remove(broken, { recursive: true });
    }

    const lines: string[] = [];
    const over = await trainWithReport(
      tinyFlags(root, results, { iteration: "2", save_freq: "1" }, ["--overwrite"]),
      { out: () => {}, warn: (l) => lines.push(l) },
    );
    assertEquals([over.status, over.step], ["done", 2]);
    assert(
      lines.includes(
        `--overwrite: starting over in ${dir}; removed the previous run's 3 checkpoints, log, ` +
          "6 pictures, 1 evaluation, report (to iteration 4)",
      ),
      lines.join("\n"),
    );
    const now = await hashes(dir);
    assertEquals(
      Object.keys(now).filter((k) => k.startsWith("model/")).sort(),
      [
        "model/ckpt_0000001.safetensors",
        "model/ckpt_0000002.safetensors",
        "model/latest.safetensors",
      ],
    );
    assert(!("eval.json" in now) && !("eval_0000004.json" in now));
    const logged = (await Deno.readTextFile(`${dir}/log.jsonl`)).trim().split("\n");
    assertEquals(logged.map((l) => JSON.parse(l).iteration), [1, 2]);
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

// Whether this machine lets a test mount a small tmpfs in a mount namespace of its own.
async function canMountTmpfs(): Promise<string | undefined> {
  const dir = await Deno.makeTempDir();
  try {
    const { code, stderr } = await new Deno.Command("unshare", {
      args: [
        "--user",
        "--map-root-user",
        "--mount",
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64k",
        "tmpfs",
        dir,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    return code === 0 ? undefined : decode(stderr).trim() || `exit status ${code}`;
  } catch (e) {
    return (e as Error).message;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a run that runs out of space says so in one line, keeps its last checkpoint byte for byte and resumes from it", async (t) => {
  const root = await makeDataset({ train: 3, test: 2, size: 28 });
  const [straight, before] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const name = datasetName(root);
  const tiny = (results: string, extra: string[] = []) =>
    tinyFlags(root, results, { iteration: "4", save_freq: "1" }, extra);
  try {
    await trainWithReport(tiny(straight), quiet);
    const control = { stop: false };
    await trainWithReport(tiny(before), {
      ...quiet,
      progress: (line) => (control.stop = line.includes(" 2/4 ")),
    }, control);
    const kept = await hashes(`${before}/${name}/model`);
    assertEquals(Object.keys(kept).sort(), [
      "ckpt_0000001.safetensors",
      "ckpt_0000002.safetensors",
      "latest.safetensors",
    ]);

    // Room for the lock, the log line, iteration 3's pictures and report, and half a checkpoint.
    const page = (n: number) => Math.ceil(n / 4096) * 4096 + 4096;
    const size = (p: string) => Deno.statSync(`${before}/${name}/${p}`).size;
    const room = 3 * 4096 + 2 * page(1.2 * size("img/A2B_0000002.png")) +
      page(1.2 * size("report.html")) + Math.floor(size("model/latest.safetensors") / 2);
    const args = trainArgs(root, "$M", { iteration: "4", print_freq: "1000", save_freq: "1" });
    const train = `${Deno.execPath()} ${RUN_AS_TASK.join(" ")}`;
    const resume = `${TRAIN} ${args.join(" ")} --resume`;
    const noSpace = new URL("./no_space.ts", import.meta.url).pathname;

    // The copied run folder resumed where `room` bytes are free: on a tmpfs of its own (then made
    // read-only for one more try), or with every write past `room` bytes failing as a full disk's.
    const scripts = {
      tmpfs: (out: string) =>
        `set -e; M=${out}/mnt; mkdir -p "$M"
         mount -t tmpfs -o size=16m tmpfs "$M"
         cp -a ${before}/. "$M"/
         cat /dev/zero > "$M/filler" 2>/dev/null || true
         truncate -s $(( $(stat -c %s "$M/filler") - ${room} )) "$M/filler"
         set +e; ${train} ${resume} > ${out}/stdout 2> ${out}/stderr; echo $? > ${out}/code
         rm "$M/filler"; mount -o remount,ro "$M"
         ${train} ${resume} > /dev/null 2> ${out}/stderr_ro; echo $? > ${out}/code_ro
         cp -a "$M"/. ${out}/after/`,
      injected: (out: string) =>
        `M=${out}/mnt; mkdir -p "$M"; cp -a ${before}/. "$M"/
         UGATIT_NO_SPACE="$M:${room}" ${train} --preload ${noSpace} ${resume} ` +
        `> ${out}/stdout 2> ${out}/stderr; echo $? > ${out}/code
         cp -a "$M"/. ${out}/after/`,
    };
    const cannot = await canMountTmpfs();
    for (const mode of ["tmpfs", "injected"] as const) {
      await t.step(`${mode === "tmpfs" ? "a tmpfs" : "an injected writer failure"}`, async () => {
        if (mode === "tmpfs" && cannot) {
          console.log(`  SKIPPED: no tmpfs can be mounted here (${cannot})`);
          return;
        }
        const out = await Deno.makeTempDir();
        try {
          const [cmd, ...cmdArgs] = mode === "tmpfs"
            ? ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", scripts.tmpfs(out)]
            : ["sh", "-c", scripts.injected(out)];
          const done = await new Deno.Command(cmd, { args: cmdArgs }).output();
          assertEquals(done.code, 0, decode(done.stderr));

          const err = (await Deno.readTextFile(`${out}/stderr`)).trim();
          const run = `${out}/mnt/${name}`;
          assertEquals(Number(await Deno.readTextFile(`${out}/code`)), 2, err);
          assertEquals(traceLines(err), [], err);
          assertEquals(
            err.split("\n").at(-1),
            `error: cannot write ${run}/model/ckpt_0000003.safetensors (the checkpoint of ` +
              "iteration 3): no space left on the device (ENOSPC); the last good checkpoint is " +
              `${run}/model/latest.safetensors (iteration 2); once it can be written, --resume ` +
              "goes on",
          );
          // Other lines are warnings of the report, which is not the run's to stop for.
          for (const line of err.split("\n").slice(0, -1)) {
            assert(line.startsWith("report.html not updated: cannot write "), line);
          }
          if (mode === "tmpfs") {
            const ro = (await Deno.readTextFile(`${out}/stderr_ro`)).trim();
            assertEquals(Number(await Deno.readTextFile(`${out}/code_ro`)), 2, ro);
            assertEquals(
              ro,
              `error: cannot write ${run}/${LOCK_FILE} (the run folder's lock): the file system ` +
                "is read-only (EROFS)",
            );
          }
          const after = `${out}/after/${name}`;
          assertEquals(
            await hashes(`${after}/model`),
            kept,
            "the checkpoints as they were, and no temporary file left",
          );
          const pictures = Object.keys(await hashes(`${after}/img`));
          assertEquals(pictures.filter((n) => n.endsWith(".tmp")), []);

          const rest = await trainWithReport(tiny(`${out}/after`, ["--resume"]), quiet);
          assertEquals([rest.status, rest.step], ["done", 4]);
          assertEquals(
            await contents(`${after}/model/latest.safetensors`),
            await contents(`${straight}/${name}/model/latest.safetensors`),
          );
        } finally {
          await Deno.remove(out, { recursive: true });
        }
      });
    }
  } finally {
    for (const d of [root, straight, before]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("a run whose folder is removed under it stops in one line saying no checkpoint is left", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  const dir = `${results}/${datasetName(root)}`;
  try {
    const flags = tinyFlags(root, results, { iteration: "4", save_freq: "1", print_freq: "2" });
    const gone = await assertRejects(
      () =>
        runTraining(flags, {
          io: quiet,
          hooks: {
            afterCheckpoint: (_, step) =>
              step === 1 ? Deno.remove(dir, { recursive: true }) : Promise.resolve(),
          },
        }),
      WriteError,
    );
    assertEquals(
      gone.message,
      `cannot write ${dir}/img/A2B_0000002.png (the sample picture of iteration 2): its folder ` +
        `does not exist (ENOENT); no checkpoint is left (${dir}/model/latest.safetensors is ` +
        "gone); once it can be written, --resume goes on",
    );
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("translate, export and eval say in one line which file they could not write", async () => {
  const root = await makeDataset({ train: 2, test: 2, size: 28 });
  const results = await Deno.makeTempDir();
  const dir = `${results}/${datasetName(root)}`;
  try {
    await trainWithReport(tinyFlags(root, results, { iteration: "1" }), quiet);
    const out = `${results}/no/such/folder/g.safetensors`;
    await assertRejects(
      () => runExport(tinyFlags(root, results, { out }), quiet),
      WriteError,
      `cannot write ${out} (the exported generators): its folder does not exist (ENOENT)`,
    );
    // A file where the translations' folder would go.
    await Deno.writeTextFile(`${dir}/translate`, "in the way");
    const t = await assertRejects(
      () => runTranslate(tinyFlags(root, results, { backend: "wasm" }), quiet),
      WriteError,
    );
    assert(t.message.startsWith(`cannot write ${dir}/translate (the translations' folder): `));
    // A folder where the evaluation's file would go.
    await Deno.mkdir(`${dir}/eval_0000001.json`);
    await assertRejects(
      () => runEval(tinyFlags(root, results, { backend: "wasm" }), quiet),
      WriteError,
      `cannot write ${dir}/eval_0000001.json (the evaluation of iteration 1): a folder stands ` +
        "where the file should be (EISDIR)",
    );
    const left = Object.keys(await hashes(results)).filter((n) => n.endsWith(".tmp"));
    assertEquals(left, []);

    // The command: one line, exit status 2, no stack trace.
    const cli = await new Deno.Command(Deno.execPath(), {
      args: [
        ...RUN_AS_TASK,
        new URL("../cli/export.ts", import.meta.url).pathname,
        ...["--dataset", root, "--result_dir", results, "--out", out],
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = decode(cli.stderr).trim();
    assertEquals([cli.code, err], [
      2,
      `error: cannot write ${out} (the exported generators): its folder does not exist (ENOENT)`,
    ]);
  } finally {
    for (const d of [root, results]) await Deno.remove(d, { recursive: true });
  }
});
