/**
 * `deno task doc:lint`: `deno doc --lint` over every entry point that `deno.json` exports (the
 * JSR package's public API: JSDoc on every export, explicit return types, no reference to a type
 * the package does not export), failing on any finding but one kind: a reference to a type of a
 * dependency (TensorFlow.js's `Tensor`, say). Deno reports those as references to private types
 * (denoland/deno#27364: a dependency's types are public in their own package; the fix that skips
 * them does not cover npm packages, whose declarations live in Deno's cache), so they are set
 * aside, and counted, when the type they name is declared nowhere in our own sources.
 *
 * @module
 */
const root = new URL("../", import.meta.url);
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
const entries = Object.values(config.exports as Record<string, string>).map((p) =>
  new URL(p, root).pathname
);
const { stdout, stderr } = await new Deno.Command(Deno.execPath(), {
  args: ["doc", "--lint", ...entries],
  stdout: "piped",
  stderr: "piped",
}).output();
// deno-lint-ignore no-control-regex
const colours = /\x1b\[[0-9;]*m/g;
const text = new TextDecoder().decode(stderr).replace(colours, "") +
  new TextDecoder().decode(stdout).replace(colours, "");
const blocks = text.split(/\n(?=error\[)/).filter((b) => b.startsWith("error["));
// Every type, interface, class, function and constant name our TypeScript sources declare.
const declared = new Set<string>();
const walk = (dir: URL) => {
  for (const e of Deno.readDirSync(dir)) {
    if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") {
      walk(new URL(`${e.name}/`, dir));
    } else if (e.isFile && e.name.endsWith(".ts")) {
      const src = Deno.readTextFileSync(new URL(e.name, dir));
      for (const m of src.matchAll(/\b(?:type|interface|class|function|const|enum)\s+(\w+)/g)) {
        declared.add(m[1]);
      }
    }
  }
};
walk(root);
const foreign = (b: string) => {
  const name = /^error\[private-type-ref\][^\n]*references private type '([\w.]+)'/.exec(b)?.[1];
  return name !== undefined && !declared.has(name.split(".")[0]);
};
const kept = blocks.filter((b) => !foreign(b));
for (const b of kept) console.error(b.trimEnd() + "\n");
const aside = blocks.length - kept.length;
console.log(
  `doc lint of ${entries.length} entry points: ${kept.length} finding(s)` +
    (aside ? `; ${aside} reference(s) to dependencies' types set aside (denoland/deno#27364)` : ""),
);
if (kept.length || (!blocks.length && /error:/.test(text) && !/Found \d+/.test(text))) {
  if (!blocks.length) console.error(text);
  Deno.exit(1);
}
