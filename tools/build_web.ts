/**
 * `deno task build:web` writes the translation page (`web/`, with its fine-tune panel) as plain
 * files anyone can host; `deno task demo` also serves them on localhost.
 *
 *     deno task build:web --model results/emoji_google2twitter/model/generator_A2B_B2A_f16.safetensors
 *     deno task demo --model my_generator.safetensors --port 8000
 *
 * Flags: `--out` (default `web/dist`, git-ignored), `--model` (a generator file from
 * `deno task export`, shipped as the page's model; without one the page asks for a file),
 * `--emoji N` (held-out emoji of the built-in data, spread over its test split by `pickIndices`:
 * N of Google's, the page's test pictures and the fine-tune panel's domain A by default, and the
 * same N of Twitter's, its domain B by default; default 24), `--serve` and `--port` (default
 * 8000). The folder holds `index.html`, `demo.js` (the page's code bundled with TensorFlow.js),
 * `finetune_worker.js` (the fine-tuning worker, bundled likewise), TensorFlow.js's WebAssembly
 * binaries, `site.json`, the emoji and the model.
 *
 * @module
 */
import { parseArgs } from "@std/cli";
import { userError } from "../cli/command.ts";
import { decodeDataset } from "../data/dataset.ts";
import { pickIndices } from "../data/pick.ts";
import { readGeneratorFile } from "../weights/generator_file.ts";

const root = new URL("../", import.meta.url).pathname;
const WASM = ["tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm"];
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  wasm: "application/wasm",
  png: "image/png",
  safetensors: "application/octet-stream",
};

/**
 * Writes the page's files.
 * @param out the folder
 * @param options the model file to ship (checked first) and how many test emoji
 * @returns the folder
 */
export async function buildWeb(
  out: string,
  { model, emoji = 24 }: { model?: string; emoji?: number } = {},
): Promise<string> {
  if (model) await readGeneratorFile(model); // a bad file is named now, not in the browser
  await Deno.mkdir(`${out}/emoji`, { recursive: true });
  for (const entry of ["demo", "finetune_worker"]) {
    const bundled = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--minify",
        "-o",
        `${out}/${entry}.js`,
        `${root}web/${entry}.ts`,
      ],
      stderr: "piped",
    }).output();
    if (!bundled.success) {
      throw new Error(`bundling web/${entry}.ts: ${new TextDecoder().decode(bundled.stderr)}`);
    }
  }
  await Deno.copyFile(`${root}web/index.html`, `${out}/index.html`);
  for (const w of WASM) {
    const src = new URL(import.meta.resolve(`npm:@tensorflow/tfjs-backend-wasm@4.22.0/dist/${w}`));
    await Deno.copyFile(src, `${out}/${w}`);
  }
  const site: { model?: string; emoji: string[]; emojiB: string[] } = { emoji: [], emojiB: [] };
  if (emoji > 0) {
    const data = await decodeDataset("emoji:google2twitter", () => {});
    if (data._tag === "Right") {
      // Aligned pairs: the same code points in both styles, at the same positions.
      await Deno.mkdir(`${out}/emoji/B`, { recursive: true });
      for (const i of pickIndices(data.right.testA.length, emoji)) {
        const f = data.right.testA[i];
        const name = f.split("/").pop()!;
        await Deno.copyFile(f, `${out}/emoji/${name}`);
        site.emoji.push(`emoji/${name}`);
        const b = data.right.testB[i];
        await Deno.copyFile(b, `${out}/emoji/B/${b.split("/").pop()}`);
        site.emojiB.push(`emoji/B/${b.split("/").pop()}`);
      }
    }
  }
  if (model) {
    await Deno.copyFile(model, `${out}/model.safetensors`);
    site.model = "model.safetensors";
  }
  await Deno.writeTextFile(`${out}/site.json`, JSON.stringify(site));
  return out;
}

/**
 * Serves a folder's files on localhost (GET only; nothing else on the machine is reachable).
 * @param dir the folder
 * @param port the port (0: any free one)
 * @returns the server and its address
 */
export function serveFolder(dir: string, port = 8000): { server: Deno.HttpServer; url: string } {
  let url = "";
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: ({ port }) => (url = `http://127.0.0.1:${port}/`),
  }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname).replace(/^\/+/, "") || "index.html";
    if (path.split("/").includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(`${dir}/${path}`);
      const type = TYPES[path.split(".").pop()!] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { server, url };
}

if (import.meta.main) {
  const args = parseArgs(Deno.args, {
    string: ["out", "model", "emoji", "port"],
    boolean: ["serve"],
  });
  try {
    const out = await buildWeb(typeof args.out === "string" ? args.out : `${root}web/dist`, {
      model: typeof args.model === "string" ? args.model : undefined,
      emoji: args.emoji === undefined ? 24 : Number(args.emoji),
    });
    console.log(
      `wrote the page to ${out}${
        args.model ? "" : " (no model: the page asks for a generator file)"
      }`,
    );
    if (args.serve) {
      const { url } = serveFolder(out, args.port === undefined ? 8000 : Number(args.port));
      await new Promise((r) => setTimeout(r, 50));
      console.log(`serving ${out} at ${url} (Ctrl-C to stop)`);
    }
  } catch (e) {
    userError(e as Error);
  }
}
