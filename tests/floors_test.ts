/**
 * The house's floors, read off the module graph (`deno info --json`): no module imports one of a
 * higher floor, no module imports one of another room on its own floor, and no import circle.
 * The floors, from the ground up:
 *
 * 0. `tree/` (parameter records), `decoded/` (the `Either` of user input), `files/` (whole-file
 *    writes and the one line of a failed one), `std_shim/`
 * 1. `ops/`: our ops, each a contract with its composed fallback
 * 2. `layers/`, which use the ops, and `backends/`, which implement them (neither sees the other)
 * 3. `losses/`, `optim/`
 * 4. `weights/`, `data/`
 * 5. `mod.ts` (the package), `train/` (the step, checkpoints, the runner)
 * 6. `eval/` (metrics, the evaluation, the report)
 * 7. `cli/` (the commands), `web/` (the page, which imports no command)
 * 8. `tools/`, `examples/`
 *
 * Every TypeScript module of those rooms must be in the graph, so that none escapes the check.
 */
import { assertEquals } from "@std/assert";

const FLOORS: readonly (readonly string[])[] = [
  ["tree", "decoded", "files", "std_shim"],
  ["ops"],
  ["layers", "backends"],
  ["losses", "optim"],
  ["weights", "data"],
  ["mod.ts", "train"],
  ["eval"],
  ["cli", "web"],
  ["tools", "examples"],
];
const ROOMS = FLOORS.flat();
const floorOf = (room: string) => FLOORS.findIndex((f) => f.includes(room));

/** Module paths (relative to the repository) and what each imports (code and types). */
type Graph = Record<string, string[]>;

/** The room of a module: its top folder, or the root file itself. */
const roomOf = (path: string) => (path.includes("/") ? path.split("/")[0] : path);

/**
 * Every import that runs down no floor: to a higher floor, or sideways to another room.
 * @param graph the modules and their imports
 * @returns one line per offending import
 */
export function floorViolations(graph: Graph): string[] {
  const out: string[] = [];
  for (const [from, imports] of Object.entries(graph)) {
    const a = roomOf(from);
    for (const to of imports) {
      const b = roomOf(to);
      if (a === b) continue;
      const [fa, fb] = [floorOf(a), floorOf(b)];
      if (fa < 0 || fb < 0) out.push(`${from} -> ${to}: ${fa < 0 ? a : b} is on no floor`);
      else if (fb >= fa) {
        out.push(
          `${from} (floor ${fa}) -> ${to} (floor ${fb}${fb === fa ? ", another room" : ""})`,
        );
      }
    }
  }
  return out;
}

/**
 * The import circles of a graph (its strongly connected components with more than one module,
 * or a module importing itself), each as its modules in order.
 * @param graph the modules and their imports
 * @returns the circles
 */
export function importCycles(graph: Graph): string[][] {
  // Tarjan's algorithm.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph[v] ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph[v] ?? []).includes(v)) out.push(scc.reverse());
    }
  };
  for (const v of Object.keys(graph)) if (!index.has(v)) visit(v);
  return out;
}

const root = new URL("../", import.meta.url);

// Every TypeScript module of the rooms (tests and fixtures are not part of the house).
function modulesOnDisk(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(new URL(dir, root))) {
      const path = `${dir}${e.name}`;
      if (e.isDirectory && !e.name.startsWith(".") && !["node_modules", "dist"].includes(e.name)) {
        walk(`${path}/`);
      } else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
    }
  };
  for (const room of ROOMS) {
    if (room.endsWith(".ts")) out.push(room);
    else walk(`${room}/`);
  }
  return out;
}

// The module graph of every module on disk, from one `deno info --json` of a root importing all.
async function moduleGraph(paths: string[]): Promise<Graph> {
  const dir = await Deno.makeTempDir();
  try {
    const entry = `${dir}/all.ts`;
    await Deno.writeTextFile(
      entry,
      paths.map((p) => `import "${new URL(p, root).href}";\n`).join(""),
    );
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", new URL("deno.json", root).pathname, entry],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(code, 0, new TextDecoder().decode(stderr));
    const info = JSON.parse(new TextDecoder().decode(stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
      }[];
    };
    const local = (s: string | undefined) =>
      s?.startsWith(root.href) ? s.slice(root.href.length) : undefined;
    const graph: Graph = {};
    for (const m of info.modules) {
      const from = local(m.specifier);
      if (!from) continue;
      graph[from] = [
        ...new Set(
          (m.dependencies ?? []).flatMap((
            d,
          ) => [local(d.code?.specifier), local(d.type?.specifier)])
            .filter((s): s is string => s !== undefined),
        ),
      ];
    }
    return graph;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the floor check finds an arrow up, a sideways import and a circle in a made-up graph", () => {
  const graph: Graph = {
    "layers/conv.ts": ["ops/reflect_pad.ts", "backends/cpu/js_kernels.ts"],
    "train/runner.ts": ["eval/report.ts", "train/step.ts"],
    "eval/report.ts": ["train/runner.ts"],
    "ops/reflect_pad.ts": ["tree/tree.ts"],
    "train/step.ts": ["train/step.ts"],
  };
  assertEquals(floorViolations(graph), [
    "layers/conv.ts (floor 2) -> backends/cpu/js_kernels.ts (floor 2, another room)",
    "train/runner.ts (floor 5) -> eval/report.ts (floor 6)",
  ]);
  assertEquals(importCycles(graph).map((c) => c.sort()), [
    ["train/step.ts"],
    ["eval/report.ts", "train/runner.ts"],
  ]);
});

Deno.test("every import runs down the floors, and none runs in a circle", async () => {
  const onDisk = modulesOnDisk();
  const graph = await moduleGraph(onDisk);
  assertEquals(onDisk.filter((p) => !(p in graph)), [], "modules missing from the graph");
  assertEquals(floorViolations(graph), []);
  assertEquals(importCycles(graph), []);
});
