/**
 * The device kit (`tools/gpu/`): `pack` makes the folder, and its `run.sh` unpacks Deno and the
 * Vulkan loader, prints the adapter and runs the bundled benchmarks on webgpu (a training step,
 * and what a dispatch costs), here on lavapipe, with no npm cache (an empty DENO_DIR) and no
 * PyTorch with CUDA (it says it benchmarks ours alone). Says that it skipped where there is no
 * WebGPU adapter or no xz.
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { webgpuUnavailable } from "../backends/mod.ts";

const unavailable = await webgpuUnavailable();
const xz = await new Deno.Command("xz", { args: ["--version"], stdout: "null" }).output().then(
  (r) => r.success,
  () => false,
);

async function sh(cmd: string, args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  assert(r.success, `${cmd} ${args.join(" ")} failed:\n${text.slice(-2000)}`);
  return text;
}

Deno.test("the device kit packs, unpacks and benchmarks on webgpu without npm or Deno installed", async () => {
  if (unavailable || !xz) {
    console.log(`  SKIPPED: ${unavailable ?? "xz is not installed (apt-get install xz-utils)"}`);
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    const kit = `${dir}/kit`;
    const packed = await sh(Deno.execPath(), [
      "run",
      "-A",
      new URL("../tools/gpu/pack.ts", import.meta.url).pathname,
      "--fast",
      "--out",
      kit,
    ]);
    assertStringIncludes(packed, "device kit in");
    const files = [...Deno.readDirSync(kit)].map((e) => e.name).sort();
    for (const f of ["bench.js", "dispatch.js", "deno.xz", "pytorch", "run.sh"]) {
      assert(files.includes(f), f);
    }
    for (const deb of ["libvulkan1", "libglvnd0", "libglx0"]) {
      assert(
        files.some((f) => f.startsWith(`${deb}_`) && f.endsWith(".deb")),
        `no ${deb}: ${files}`,
      );
    }

    // A machine without Deno: the kit's own binary, an empty module cache, no npm.
    // The carried Vulkan loader, as on a machine without one.
    const env = {
      UGATIT_KIT_TMP: `${dir}/work`,
      UGATIT_KIT_OWN_LOADER: "1",
      PATH: "/usr/bin:/bin:/usr/sbin:/sbin",
    };
    const adapter = await sh("bash", [`${kit}/run.sh`, "adapter"], env);
    assertStringIncludes(adapter, "(carried)");
    assertStringIncludes(adapter, "webgpu adapter:");
    const out = await sh("bash", [
      `${kit}/run.sh`,
      "bench",
      ...["--light", "--img_size", "32", "--ch", "8", "--n_res", "2", "--n_dis", "4"],
      ...["--warmup", "1", "--steps", "1"],
    ], env);
    const rows = out.split("\n").filter((l) => l.startsWith('{"impl"')).map((l) => JSON.parse(l));
    assertEquals(rows[0]?.impl, "ugatit", out.slice(-2000));
    assertEquals(rows[0].backend, "webgpu");
    assert(rows[0].dispatches > 0, "dispatches counted");
    const floor = await sh(
      "bash",
      [`${kit}/run.sh`, "dispatch", "--n", "64", "--count", "16"],
      env,
    );
    const line = floor.split("\n").find((l) => l.startsWith('{"adapter"'));
    assert(line, floor.slice(-2000));
    const [row] = JSON.parse(line).us_per_dispatch;
    for (const k of ["same", "chain", "parts_alone", "parts_merged"]) assert(row[k] > 0, k);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
