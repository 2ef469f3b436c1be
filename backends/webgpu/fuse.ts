/**
 * Elementwise fusion of a trace (`trace.ts`) before it is planned (`plan.ts`): a chain of
 * elementwise dispatches (the tape's sums of gradients, activations, the arithmetic of the loss
 * terms) becomes one generated WGSL dispatch that computes the whole chain per element, reading
 * the chain's inputs and writing only its last value.
 *
 * A dispatch is folded into the one that reads its value when that value has no other reader (no
 * other dispatch, not a result of the call), has the reader's element count (so the reader reads
 * it in place, not broadcast), is written once, and does not come from constants alone (those run
 * once, when the plan is built). A fused dispatch binds each distinct input once, at most
 * `maxInputs` of them (the storage buffers one shader may bind, `storageBindingsOf`, less the
 * output); a producer that would pass that stays a dispatch of its own.
 *
 * Programs of ours (`kernels.ts`) take part too, as they describe themselves (`OwnWgsl`): one with
 * a thread per output element is folded into the chain that reads its value, computed where that
 * is read; one that reads an input only at its own index (Adam's gradient) takes the chain that
 * computes that input, regenerated with the chain in place of the read. A fused dispatch describes
 * itself as a program of ours too (its chain over inputs `x0`, `x1`, ...), so that `merge.ts` may
 * merge it with others.
 *
 * The arithmetic of each kernel is written as TensorFlow.js 4.22's WGSL computes it (or as ours
 * does), in float32, one operation at a time; what may differ is the compiler's contraction of a
 * product and a sum into one rounding, as between any two kernels: the replay tests hold fused
 * replays to the eager path's values.
 *
 * The values a trace names are written once (SSA), so reading a producer's inputs later, at its
 * reader's place, reads the same data; the plan's liveness follows the fused trace.
 *
 * @module
 */
import {
  deviceCompiler,
  f32Literal,
  inlineUniforms,
  programDispatch,
  renameArrays,
  storageBindingsOf,
} from "./merge.ts";
import { constantsOf } from "./plan.ts";
import type { OwnWgsl, Trace, TracedDispatch } from "./trace.ts";

/** Options of {@linkcode fuseElementwise}. */
export interface FuseOptions {
  /** The most inputs one fused dispatch may bind. */
  readonly maxInputs: number;
  /** The device's `maxComputeWorkgroupsPerDimension`. */
  readonly maxWorkgroups: number;
  /** Compiles a WGSL module (entry point `main`; layout from the shader). */
  readonly compile: (code: string) => GPUComputePipeline;
}

/** A fused trace and what the fusion did. */
export interface FusedTrace {
  /** The trace with its chains fused. */
  readonly trace: Trace;
  /** Dispatches folded into a later one (the trace has this many fewer). */
  readonly folded: number;
  /** The fused dispatches made. */
  readonly fused: number;
}

type Shape = readonly number[];

/** One element of a fused chain: a read of an input (broadcast to `out`) or an operation. */
type Node =
  | { readonly value: number; readonly shape: Shape; readonly out: Shape }
  | {
    readonly op: string;
    readonly attrs: Readonly<Record<string, number>>;
    readonly args: Node[];
    /** A program of ours that reads its inputs (leaves) anywhere. */
    readonly wgsl?: OwnWgsl;
  };

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** The kernel a fused dispatch is named by in profiles and dispatch counts. */
export const FUSED_KERNEL = "UgatitFusedElementwise";

/**
 * Fuses a trace's elementwise chains.
 * @param trace the recorded call, with its elementwise dispatches marked
 * @param options the device's binding and workgroup limits, and a compiler
 * @returns the fused trace (the same trace when nothing fuses)
 */
export function fuseElementwise(trace: Trace, options: FuseOptions): FusedTrace {
  const { values, dispatches } = trace;
  const writes = new Array<number>(values.length).fill(0);
  const reads = new Array<number>(values.length).fill(0);
  const producer = new Map<number, number>();
  for (const [i, d] of dispatches.entries()) {
    for (const v of d.outputs) {
      writes[v]++;
      producer.set(v, i);
    }
    for (const v of d.inputs) reads[v]++;
  }
  for (const v of [...trace.stateOut, ...trace.outputs]) reads[v]++;
  // Constants, as the plan finds them: what is computed from constants alone runs once.
  const { dispatches: constantDispatch } = constantsOf(trace);

  const chain = new Map<number, Node>(); // dispatch -> its chain, producers folded in
  const foldedInto = new Map<number, number>(); // dispatch -> the dispatch that computes it
  const leavesOf = (node: Node, into = new Set<number>()): Set<number> => {
    if ("value" in node) into.add(node.value);
    else for (const a of node.args) leavesOf(a, into);
    return into;
  };
  // The chain that computes `value`, where it can be folded into a reader of `n` elements that
  // binds `leaves` (updated): its only reader, written once, from inputs written once.
  const foldable = (value: number, leaves: Set<number>, n: number): Node | undefined => {
    const p = producer.get(value);
    if (
      p === undefined || !chain.has(p) || foldedInto.has(p) || reads[value] !== 1 ||
      writes[value] !== 1 || size(values[value].shape) !== n
    ) return undefined;
    const inner = chain.get(p)!;
    const innerLeaves = leavesOf(inner);
    if ([...innerLeaves].some((v) => writes[v] > 1)) return undefined;
    const union = new Set([...leaves, ...innerLeaves]);
    union.delete(value);
    if (union.size > options.maxInputs) return undefined;
    leaves.delete(value);
    for (const v of innerLeaves) leaves.add(v);
    return inner;
  };
  const finite = (xs: Readonly<Record<string, number>>) => Object.values(xs).every(Number.isFinite);
  // Programs of ours that take chains where they read an input only at their own index.
  const intoProgram = new Map<number, Map<number, Node>>(); // dispatch -> input slot -> chain
  for (const [i, d] of dispatches.entries()) {
    const { elementwise: ew, program } = d;
    if (constantDispatch[i] || d.outputs.length !== 1 || writes[d.outputs[0]] !== 1) continue;
    if (ew) {
      if (!finite(ew.attrs)) continue;
      const n = size(ew.outputShape);
      const args: Node[] = d.inputs.map((value, j) => ({
        value,
        shape: ew.inputShapes[j],
        out: ew.outputShape,
      }));
      const leaves = new Set(d.inputs);
      const folds: number[] = [];
      d.inputs.forEach((value, j) => {
        const inner = foldable(value, leaves, n);
        if (!inner) return;
        args[j] = inner;
        folds.push(producer.get(value)!);
      });
      chain.set(i, { op: ew.op, attrs: ew.attrs, args });
      for (const p of folds) foldedInto.set(p, i);
    } else if (
      // (A prelude that reads uniforms is the program's own: it cannot join a chain's.)
      program && !/uniforms\./.test(program.prelude) &&
      finite(program.uniforms)
    ) {
      if (program.perElement) {
        // It reads its inputs anywhere: they stay leaves, read in place.
        const args = d.inputs.map((value) => ({
          value,
          shape: values[value].shape,
          out: values[value].shape,
        }));
        chain.set(i, { op: "program", attrs: {}, args, wgsl: program });
        continue;
      }
      const leaves = new Set(d.inputs);
      const folds = new Map<number, Node>();
      program.inputs.forEach((name, j) => {
        if (!readOnlyAtIndex(program.body, name)) return;
        const inner = foldable(d.inputs[j], leaves, program.uniforms.threads);
        if (!inner) return;
        folds.set(j, inner);
        foldedInto.set(producer.get(d.inputs[j])!, i);
      });
      if (folds.size) intoProgram.set(i, folds);
    }
  }
  if (foldedInto.size === 0) return { trace, folded: 0, fused: 0 };

  // The dispatches that compute a chain: those that took producers and are not taken themselves.
  const hosts = new Set(
    [...foldedInto.values()].filter((i) => !foldedInto.has(i) && !intoProgram.has(i)),
  );
  const pipelines = new Map<string, GPUComputePipeline>();
  const compile = (code: string) => {
    let pipeline = pipelines.get(code);
    if (!pipeline) pipelines.set(code, pipeline = options.compile(code));
    return pipeline;
  };
  const out: TracedDispatch[] = [];
  for (const [i, d] of dispatches.entries()) {
    if (foldedInto.has(i)) continue;
    const folds = intoProgram.get(i);
    if (folds) {
      const inputs = [
        ...new Set(
          d.inputs.flatMap((v, j) => (folds.has(j) ? [...leavesOf(folds.get(j)!)] : [v])),
        ),
      ];
      const program = programWithChains(d.program!, d.inputs, folds, inputs);
      out.push(
        programDispatch(
          { kernel: d.kernel, outputs: d.outputs, inputs },
          "ugatit_fused_program",
          program,
          compile,
          options.maxWorkgroups,
        ),
      );
      continue;
    }
    if (!hosts.has(i)) {
      out.push(d);
      continue;
    }
    const node = chain.get(i)!;
    const inputs = [...leavesOf(node)];
    const program = chainProgram(node, inputs, size(d.elementwise!.outputShape));
    out.push(
      programDispatch(
        { kernel: FUSED_KERNEL, outputs: d.outputs, inputs },
        "ugatit_fused",
        program,
        compile,
        options.maxWorkgroups,
      ),
    );
  }
  return {
    trace: { ...trace, dispatches: out },
    folded: foldedInto.size,
    fused: hosts.size + intoProgram.size,
  };
}

/** WGSL for the flat index into a tensor of `shape` broadcast to `out`, from the output's `i`. */
export function broadcastIndex(shape: Shape, out: Shape): string {
  const n = size(shape);
  if (n === size(out)) return "i";
  if (n === 1) return "0u";
  const s = [...new Array(out.length - shape.length).fill(1), ...shape];
  const outStride = out.map((_, d) => size(out.slice(d + 1)));
  const inStride = s.map((_, d) => size(s.slice(d + 1)));
  // The input is the output's trailing dimensions: it repeats every n elements.
  const first = s.findIndex((e) => e !== 1);
  if (s.slice(first).every((e, k) => e === out[first + k])) return `(i % ${n}u)`;
  const terms: string[] = [];
  for (let d = 0; d < out.length; d++) {
    if (s[d] === 1) continue;
    if (s[d] !== out[d]) throw new Error(`fuse: [${shape}] does not broadcast to [${out}]`);
    terms.push(`((i / ${outStride[d]}u) % ${out[d]}u) * ${inStride[d]}u`);
  }
  return `(${terms.join(" + ")})`;
}

/** The WGSL of one operation over its arguments' expressions. */
function opCode(op: string, attrs: Readonly<Record<string, number>>, a: string[]): string {
  const [x, y] = a;
  switch (op) {
    case "Add":
      return `${x} + ${y}`;
    case "AddN":
      return a.join(" + ");
    case "Sub":
      return `${x} - ${y}`;
    case "Multiply":
      return `${x} * ${y}`;
    case "RealDiv":
      return `${x} / ${y}`;
    case "Neg":
      return `-${x}`;
    case "Abs":
      return `abs(${x})`;
    case "Square":
      return `${x} * ${x}`;
    case "Exp":
      return `exp(${x})`;
    case "Log1p":
      return `select(log(1.0 + ${x}), ${x}, is_nan(${x}))`;
    case "Tanh":
      return `tanh_tfjs(${x})`;
    case "Relu":
      return `select(${x}, 0.0, ${x} < 0.0)`;
    case "LeakyRelu":
      return `select(${x}, ${f32Literal(attrs.alpha)} * ${x}, ${x} < 0.0)`;
    case "Step":
      return `select(select(${f32Literal(attrs.alpha)}, 1.0, ${x} > 0.0), ${x}, is_nan(${x}))`;
    case "ClipByValue":
      return `select(clamp(${x}, ${f32Literal(attrs.clipValueMin)}, ${
        f32Literal(attrs.clipValueMax)
      }), ` +
        `${x}, is_nan(${x}))`;
    case "UgatitActivationGrad": // inputs dy, x: dy * (1 where x > 0, else alpha; NaN x: ReLU NaN)
      return attrs.alpha === 0
        ? `${x} * select(select(0.0, params.nan, !(${y} <= 0.0)), 1.0, ${y} > 0.0)`
        : `${x} * select(${f32Literal(attrs.alpha)}, 1.0, ${y} > 0.0)`;
  }
  throw new Error(`fuse: no arithmetic for ${op}`);
}

// Functions the arithmetic of the chains calls (NaN itself is `params.nan`, a uniform of the
// shader: a NaN in a constant expression does not compile).
const HELPERS = `
fn is_nan(v : f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn tanh_tfjs(v : f32) -> f32 {
  let e2x = exp(-2.0 * abs(v));
  return sign(v) * (1.0 - e2x) / (1.0 + e2x);
}`;

/** The names a fused program reads its bindings by: `x0`, `x1`, ... */
const inputNames = (inputs: readonly number[]) => inputs.map((_, k) => `x${k}`);

/** A chain's statements over the flat index `i` (u32), its value's name, what they call. */
interface Emitted {
  readonly lines: string[];
  readonly result: string;
  readonly functions: string[];
  readonly preludes: Set<string>;
}

function emitChain(node: Node, inputs: readonly number[], prefix: string): Emitted {
  const lines: string[] = [];
  const functions: string[] = [];
  const preludes = new Set<string>();
  let temp = 0;
  const emit = (m: Node): string => {
    if ("value" in m) return `x${inputs.indexOf(m.value)}[${broadcastIndex(m.shape, m.out)}]`;
    if (m.wgsl) {
      const name = `${prefix}${temp++}`;
      functions.push(perElementFunction(name, m.wgsl, m.args, inputs));
      preludes.add(m.wgsl.prelude);
      lines.push(`  let ${name} = ${name}_at(i32(i));`);
      return name;
    }
    const args = m.args.map(emit);
    const name = `${prefix}${temp++}`;
    lines.push(`  let ${name} = ${opCode(m.op, m.attrs, args)};`);
    return name;
  };
  const result = emit(node);
  return { lines, result, functions, preludes };
}

/**
 * A fused chain as a program of ours: one thread per output element.
 * @param node the chain
 * @param inputs the values it reads, in binding order
 * @param n the element count
 * @returns the program
 */
function chainProgram(node: Node, inputs: number[], n: number): OwnWgsl {
  const chain = emitChain(node, inputs, "t");
  return {
    inputs: inputNames(inputs),
    uniforms: { threads: n },
    floats: [],
    prelude: [HELPERS, ...chain.preludes, ...chain.functions].join("\n"),
    body: ["  let i = u32(index);", ...chain.lines, `  result[index] = ${chain.result};`].join(
      "\n",
    ),
    perElement: true,
  };
}

/**
 * A program of ours regenerated with chains folded in: where it read a folded input at `index`,
 * it computes the chain there.
 * @param program the program
 * @param values the values it read, by input slot
 * @param folds the chains, by input slot
 * @param inputs the values the regenerated program reads, in binding order
 * @returns the program
 */
function programWithChains(
  program: OwnWgsl,
  values: readonly number[],
  folds: ReadonlyMap<number, Node>,
  inputs: readonly number[],
): OwnWgsl {
  const functions: string[] = [];
  const preludes = new Set<string>([HELPERS, program.prelude]);
  const bindings = new Map<string, string>();
  let body = program.body;
  program.inputs.forEach((name, j) => {
    const chain = folds.get(j);
    if (!chain) {
      bindings.set(name, `x${inputs.indexOf(values[j])}`);
      return;
    }
    const emitted = emitChain(chain, inputs, `c${j}_`);
    emitted.functions.forEach((f) => functions.push(f));
    emitted.preludes.forEach((p) => preludes.add(p));
    functions.push(
      [
        `fn c${j}_value(i : u32) -> f32 {`,
        ...emitted.lines,
        `  return ${emitted.result};`,
        "}",
      ].join("\n"),
    );
    body = body.replace(new RegExp(`\\b${name}\\[index\\]`, "g"), `c${j}_value(u32(index))`);
  });
  return {
    ...program,
    inputs: inputNames(inputs),
    prelude: [...preludes, ...functions].join("\n"),
    body: renameArrays(body, bindings),
  };
}

/** Whether a program's body reads input `name` only at its own `index`. */
function readOnlyAtIndex(body: string, name: string): boolean {
  const count = (re: RegExp) => body.match(re)?.length ?? 0;
  const all = count(new RegExp(`\\b${name}\\[`, "g"));
  return all > 0 && all === count(new RegExp(`\\b${name}\\[index\\]`, "g"));
}

/**
 * A program of ours as a function of the output index, `<name>_at(index)`: its uniforms inlined
 * as constants, its inputs the fused program's, its write a return.
 */
function perElementFunction(
  name: string,
  wgsl: OwnWgsl,
  args: readonly Node[],
  inputs: readonly number[],
): string {
  const bindings = new Map<string, string>();
  wgsl.inputs.forEach((input, j) => {
    const leaf = args[j];
    if (!("value" in leaf)) throw new Error("fuse: a program of ours reads a fused value");
    bindings.set(input, `x${inputs.indexOf(leaf.value)}`);
  });
  const body = renameArrays(wgsl.body.replace(/\bresult\[index\] = /, "return "), bindings);
  return [`fn ${name}_at(index : i32) -> f32 {`, inlineUniforms(body, wgsl), "}"].join("\n");
}

/**
 * {@linkcode fuseElementwise} with a device's limits and compiler (`deviceCompiler`).
 * @param trace the recorded call
 * @param device the device the plan will run on
 * @returns the fused trace
 */
export function fuseOnDevice(trace: Trace, device: GPUDevice): FusedTrace {
  return fuseElementwise(trace, {
    maxInputs: storageBindingsOf(device) - 1,
    maxWorkgroups: Number(device.limits.maxComputeWorkgroupsPerDimension ?? 65535),
    compile: deviceCompiler(device),
  });
}
