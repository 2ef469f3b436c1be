/**
 * `deno task gpu:pack [--out .gpu-kit] [--fast]`: makes the device kit, one folder to copy to a
 * machine that has an NVIDIA GPU and its driver but no Deno, no Node and no network:
 *
 * - `deno.xz`: this Deno binary, xz-compressed (`--fast`: lightly, for tests);
 * - `bench.js`: `tools/bench.ts` bundled with TensorFlow.js and its WebGPU backend (no npm
 *   download at run time, no sharp), with `pytorch/` beside it for the PyTorch peer;
 * - `dispatch.js`: `tools/bench_dispatch.ts` bundled (what a dispatch costs the GPU);
 * - `libvulkan1_*.deb`: Debian's Vulkan loader, and the libglvnd packages NVIDIA's Vulkan driver
 *   needs (`apt-get download`), for machines without them;
 * - `run.sh`: unpacks, points Vulkan at the NVIDIA driver, prints the adapter and benchmarks
 *   (`tools/gpu/run.sh`).
 *
 * Then: `bash .gpu-kit/run.sh` there. The folder is git-ignored and stays under 60 MiB.
 *
 * @module
 */
import { parseArgs } from "@std/cli";

const MAX_BYTES = 60 * 2 ** 20;
const root = new URL("../../", import.meta.url).pathname;
const args = parseArgs(Deno.args, { string: ["out"], boolean: ["fast"] });
const out: string = typeof args.out === "string" ? args.out : `${root}.gpu-kit`;
const deno = Deno.execPath();

async function run(cmd: string, cmdArgs: string[], what: string): Promise<Uint8Array> {
  let result;
  try {
    result = await new Deno.Command(cmd, { args: cmdArgs, stderr: "piped", stdout: "piped" })
      .output();
  } catch (e) {
    throw new Error(`${what}: cannot run ${cmd} (${(e as Error).message})`);
  }
  if (!result.success) {
    const err = new TextDecoder().decode(result.stderr).trim().split("\n").slice(-3).join(" ");
    throw new Error(`${what}: ${cmd} failed: ${err}`);
  }
  return result.stdout;
}

try {
  await Deno.mkdir(`${out}/pytorch`, { recursive: true });

  // Deno, compressed once per version (the slow part; --fast for tests).
  const version = new TextDecoder().decode(await run(deno, ["--version"], "deno")).split("\n")[0];
  const stamp = `${version} ${args.fast ? "fast" : "xz -9"}`;
  const old = await Deno.readTextFile(`${out}/deno.version`).catch(() => "");
  if (old !== stamp) {
    const xz = await run("xz", [args.fast ? "-0" : "-9", "-T0", "-c", deno], "compressing deno");
    await Deno.writeFile(`${out}/deno.xz.tmp`, xz);
    await Deno.rename(`${out}/deno.xz.tmp`, `${out}/deno.xz`);
    await Deno.writeTextFile(`${out}/deno.version`, stamp);
  }

  // The benchmark as one file, and the PyTorch peer beside it (found relative to the bundle).
  await run(
    deno,
    ["bundle", "--quiet", "--platform", "deno", "-o", `${out}/bench.js`, `${root}tools/bench.ts`],
    "bundling tools/bench.ts",
  );
  await run(
    deno,
    [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "-o",
      `${out}/dispatch.js`,
      `${root}tools/bench_dispatch.ts`,
    ],
    "bundling tools/bench_dispatch.ts",
  );
  for (const f of ["bench_step.py", "ugatit_torch.py"]) {
    await Deno.copyFile(`${root}tools/pytorch/${f}`, `${out}/pytorch/${f}`);
  }
  await Deno.copyFile(`${root}tools/gpu/run.sh`, `${out}/run.sh`);

  // Debian's Vulkan loader, and the GL dispatch libraries (libglvnd) that NVIDIA's Vulkan driver,
  // libGLX_nvidia.so.0, needs: without them the loader finds no driver ("Could not get
  // 'vkCreateInstance'"), as seen on a lent H200.
  const DEBS = [
    "libvulkan1",
    "libglvnd0",
    "libglx0",
    "libegl1",
    "libgl1",
    "libopengl0",
    "libgles2",
  ];
  const have = [...Deno.readDirSync(out)].map((e) => e.name);
  const wanted = DEBS.filter((d) => !have.some((n) => n.startsWith(`${d}_`) && n.endsWith(".deb")));
  if (wanted.length) {
    const lists = await Deno.makeTempDir();
    const apt = [
      "-oAPT::Architecture=amd64",
      "-oAPT::Architectures=amd64",
      `-oDir::State::Lists=${lists}`,
      "-oDir::Cache=" + lists,
    ];
    await Deno.mkdir(`${lists}/partial`, { recursive: true });
    await run(
      "apt-get",
      [...apt, "update", "-q"],
      "apt-get update (for the Vulkan and GL loaders)",
    );
    const here = Deno.cwd();
    Deno.chdir(out);
    try {
      await run("apt-get", [...apt, "download", ...wanted], `apt-get download ${wanted.join(" ")}`);
    } finally {
      Deno.chdir(here);
    }
  }

  let bytes = 0;
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) walk(`${dir}/${e.name}`);
      else bytes += Deno.statSync(`${dir}/${e.name}`).size;
    }
  };
  walk(out);
  const mib = (bytes / 2 ** 20).toFixed(1);
  if (bytes > MAX_BYTES) {
    throw new Error(`the kit in ${out} is ${mib} MiB, over its 60 MiB budget`);
  }
  console.log(`device kit in ${out} (${mib} MiB); on the GPU machine: bash ${out}/run.sh`);
} catch (e) {
  console.error(`gpu:pack: ${(e as Error).message}`);
  Deno.exit(1);
}
