/**
 * A full disk, injected: preloaded (`deno run --preload tests/no_space.ts`) where the test cannot
 * mount a small file system. `UGATIT_NO_SPACE=<folder>:<bytes>` lets the process write that many
 * bytes in all to files under the folder; past them a write fails as a full disk's does (the
 * bytes that fit, then `ENOSPC`).
 *
 * @module
 */
const [folder, bytes] = (Deno.env.get("UGATIT_NO_SPACE") ?? "").split(/:(?=\d+$)/);
let left = Number(bytes);

if (folder && Number.isFinite(left)) {
  const open = Deno.open;
  const patched = async (path: string | URL, options?: Deno.OpenOptions) => {
    const file = await open(path, options);
    if (String(path).startsWith(folder) && (options?.write || options?.append)) {
      const write = file.write.bind(file);
      file.write = async (p: Uint8Array) => {
        if (left <= 0) {
          throw Object.assign(new Error("No space left on device (os error 28)"), {
            code: "ENOSPC",
          });
        }
        const n = await write(p.subarray(0, Math.min(p.length, left)));
        left -= n;
        return n;
      };
    }
    return file;
  };
  (Deno as unknown as { open: typeof patched }).open = patched;
}
