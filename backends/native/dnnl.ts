/**
 * Direct convolutions on oneDNN (Debian/Ubuntu `libdnnl2`, the library PyTorch's CPU
 * convolutions run on) through Deno's FFI: forward, input gradient and filter gradient of an
 * NHWC/HWIO convolution, multi-threaded, reading and writing the caller's buffers (WebAssembly
 * memory included) in place. Weights go through the blocked layouts oneDNN's AVX2/AVX-512 kernels
 * want, reordered per call (they are small); activations stay NHWC.
 *
 * The oneDNN 2.x C API is used (its operation descriptors are plain structs, sized below).
 * Primitives are made once per geometry and kept. Where oneDNN has only its reference (slow)
 * implementation for a geometry, {@linkcode Dnnl.conv} says no and the caller lowers to GEMM.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { Gemm } from "./blas.ts";

type Ptr = Deno.PointerValue;

const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  dnnl_memory_desc_init_by_tag: {
    parameters: ["buffer", "i32", "buffer", "i32", "i32"],
    result: "i32",
  },
  dnnl_memory_desc_equal: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_convolution_forward_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "i32",
      "buffer",
      "buffer",
      "pointer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_convolution_backward_data_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_convolution_backward_weights_desc_init: {
    parameters: [
      "buffer",
      "i32",
      "buffer",
      "buffer",
      "pointer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  dnnl_binary_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_desc_query: {
    parameters: ["pointer", "i32", "i32", "buffer"],
    result: "i32",
  },
  dnnl_primitive_desc_query_md: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_primitive_execute: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "pointer", "pointer", "pointer"], result: "i32" },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "buffer"], result: "i32" },
  dnnl_sgemm: {
    parameters: [
      "u8",
      "u8",
      "i64",
      "i64",
      "i64",
      "f32",
      "buffer",
      "i64",
      "buffer",
      "i64",
      "f32",
      "buffer",
      "i64",
    ],
    result: "i32",
  },
} as const;

// Constants of oneDNN 2.x (`dnnl_types.h`).
const F32 = 3;
const TAG_ANY = 1;
const TAG_NHWC = 20;
const TAG_HWIO = 30;
const TAG_A = 2; // one dimension
const FORWARD_TRAINING = 64;
const CONVOLUTION_DIRECT = 1;
const ENGINE_CPU = 1;
const STREAM_DEFAULT = 1;
const QUERY_IMPL_INFO = 8;
const QUERY = { weights: 131, diffWeights: 132 } as const;
const ARG = {
  src: 1,
  src1: 2,
  dst: 17,
  weights: 33,
  diffSrc: 129,
  diffDst: 145,
  diffWeights: 161,
};
// dnnl_alg_kind_t of the binary primitive's operations.
const BINARY_ALG = { Add: 0x1fff0, Multiply: 0x1fff1, RealDiv: 0x1fff4, Sub: 0x1fff5 } as const;
/** An elementwise operation oneDNN's binary primitive runs for us. */
export type BinaryOp = keyof typeof BINARY_ALG;
const MEMORY_ALLOCATE = -1n; // DNNL_MEMORY_ALLOCATE: oneDNN owns the buffer
// oneDNN 2.x's descriptors are plain structs the library fills in: a memory descriptor is 696 bytes
// and a convolution descriptor 5,976 in 2.6 on x86-64; buffers a few times larger fit any 2.x's.
const MD_BYTES = 4096;
const CONV_DESC_BYTES = 32768;
const MAX_DIMS = 12;

/** Which of a convolution's three computations. */
export type ConvPass = "forward" | "input" | "filter";

/** A loaded oneDNN. */
export interface Dnnl {
  /** What was loaded, for the start-up line (e.g. `oneDNN 2.6.3`). */
  readonly description: string;
  /** The library file. */
  readonly path: string;
  /**
   * One pass of an NHWC convolution with HWIO filters: `forward` (a = x, b = filter, out = y),
   * `input` (a = dy, b = filter, out = dx), `filter` (a = x, b = dy, out = dw). The arrays are
   * views starting at each tensor's first element.
   * @returns false (nothing written) where oneDNN has no optimised kernel for this geometry
   */
  conv(
    pass: ConvPass,
    g: tf.backend_util.Conv2DInfo,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
  ): boolean;
  /**
   * `out = a op b` elementwise, multi-threaded, on row-major arrays of shape `dims` (at most 4
   * dimensions) where `b`'s shape `bDims` is `dims` with some dimensions 1 (broadcast).
   * @returns false (nothing written) where oneDNN has no optimised kernel for it
   */
  binary(
    op: BinaryOp,
    dims: number[],
    bDims: number[],
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
  ): boolean;
  /**
   * oneDNN's matrix multiply, on the same threads as its convolutions (a second thread pool,
   * OpenBLAS's, would contend with them for the cores).
   */
  readonly sgemm: Gemm;
}

/** Where we look, in order; `UGATIT_DNNL` (a path, or `off`) goes first when set. */
export function dnnlCandidates(): string[] {
  let env: string | undefined;
  try {
    env = Deno.env.get("UGATIT_DNNL");
  } catch {
    // no env permission: the default names only
  }
  const byOs: Record<string, string[]> = {
    linux: ["libdnnl.so.2", "/usr/lib/x86_64-linux-gnu/libdnnl.so.2"],
    darwin: ["/opt/homebrew/opt/onednn/lib/libdnnl.2.dylib", "/usr/local/lib/libdnnl.2.dylib"],
    windows: ["dnnl.dll"],
  };
  return [...(env ? [env] : []), ...(byOs[Deno.build.os] ?? [])];
}

/**
 * A convolution pass's geometry as a string, for caches.
 * @param pass which computation
 * @param g the geometry
 * @returns the key
 */
export function convKey(pass: ConvPass, g: tf.backend_util.Conv2DInfo): string {
  const p = g.padInfo;
  return [
    pass,
    g.batchSize,
    g.inHeight,
    g.inWidth,
    g.inChannels,
    g.outChannels,
    g.filterHeight,
    g.filterWidth,
    g.strideHeight,
    g.strideWidth,
    p.top,
    p.left,
    p.bottom,
    p.right,
  ].join();
}

let cached: Dnnl | string | undefined;

/**
 * Opens oneDNN (once per process).
 * @returns the library, or why there is none (one line)
 */
export function loadDnnl(): Dnnl | string {
  if (cached !== undefined) return cached;
  const tried: string[] = [];
  const candidates = dnnlCandidates();
  if (candidates[0] === "off") return cached = "oneDNN is switched off (UGATIT_DNNL=off)";
  for (const path of candidates) {
    let lib;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        return cached = "oneDNN needs FFI permission (run with --allow-ffi)";
      }
      tried.push(path);
      continue;
    }
    const v = new Deno.UnsafePointerView(lib.symbols.dnnl_version()!);
    const [major, minor, patch] = [v.getInt32(0), v.getInt32(4), v.getInt32(8)];
    if (major !== 2) {
      lib.close();
      return cached = `oneDNN ${major}.${minor} at ${path} is not supported (needs 2.x)`;
    }
    try {
      return cached = openDnnl(lib.symbols, `oneDNN ${major}.${minor}.${patch}`, path);
    } catch (e) {
      lib.close();
      return cached = `oneDNN at ${path} failed to start: ${(e as Error).message}`;
    }
  }
  return cached = `no oneDNN found (tried ${tried.join(", ")}; on Debian/Ubuntu: ` +
    "apt-get install libdnnl2)";
}

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

// One primitive with the memory objects its arguments are bound to.
interface Step {
  prim: Ptr;
  args: Uint8Array; // dnnl_exec_arg_t[]: {int arg; dnnl_memory_t memory}, 16 bytes each
}

// What a geometry's pass runs: optional weight reorder in, the convolution, optional reorder out.
interface Plan {
  user: Ptr[]; // memory objects of a, b, out, their handles set per call
  steps: Step[];
}

function openDnnl(s: Symbols, description: string, path: string): Dnnl {
  const check = (what: string, status: number) => {
    if (status !== 0) throw new Error(`${what} returned status ${status}`);
  };
  const out = () => new BigUint64Array(1);
  const ptr = (slot: BigUint64Array) => Deno.UnsafePointer.create(slot[0]);
  const engineSlot = out();
  check("dnnl_engine_create", s.dnnl_engine_create(engineSlot, ENGINE_CPU, 0n));
  const engine = ptr(engineSlot);
  const streamSlot = out();
  check("dnnl_stream_create", s.dnnl_stream_create(streamSlot, engine, STREAM_DEFAULT));
  const stream = ptr(streamSlot);

  const desc = (dims: number[], tag: number) => {
    const md = new Uint8Array(MD_BYTES);
    const d = new BigInt64Array(MAX_DIMS);
    dims.forEach((x, i) => d[i] = BigInt(x));
    check(
      "dnnl_memory_desc_init_by_tag",
      s.dnnl_memory_desc_init_by_tag(md, dims.length, d, F32, tag),
    );
    return md;
  };
  const pair = (a: number, b: number) => new BigInt64Array([BigInt(a), BigInt(b)]);
  const primitiveDesc = (opDesc: Uint8Array, hint: Ptr): Ptr | undefined => {
    const slot = out();
    if (s.dnnl_primitive_desc_create(slot, opDesc, null, engine, hint) !== 0) return undefined;
    return ptr(slot);
  };
  const implementation = (pd: Ptr) => {
    const slot = out();
    check("dnnl_primitive_desc_query", s.dnnl_primitive_desc_query(pd, QUERY_IMPL_INFO, 0, slot));
    return Deno.UnsafePointerView.getCString(ptr(slot)!);
  };
  const primitive = (pd: Ptr) => {
    const slot = out();
    check("dnnl_primitive_create", s.dnnl_primitive_create(slot, pd));
    return ptr(slot);
  };
  const memory = (md: Ptr, handle: bigint) => {
    const slot = out();
    check(
      "dnnl_memory_create",
      s.dnnl_memory_create(slot, md, engine, Deno.UnsafePointer.create(handle)),
    );
    return ptr(slot);
  };
  const step = (prim: Ptr, args: [number, Ptr][]): Step => {
    const bytes = new Uint8Array(16 * args.length);
    const view = new DataView(bytes.buffer);
    args.forEach(([arg, mem], i) => {
      view.setInt32(16 * i, arg, true);
      view.setBigUint64(16 * i + 8, BigInt(Deno.UnsafePointer.value(mem)), true);
    });
    return { prim, args: bytes };
  };
  const reorder = (from: Ptr, to: Ptr) => {
    const slot = out();
    check(
      "dnnl_reorder_primitive_desc_create",
      s.dnnl_reorder_primitive_desc_create(slot, from, engine, to, engine, null),
    );
    return primitive(ptr(slot));
  };
  const of = (md: Uint8Array) => Deno.UnsafePointer.of(md);

  // Plans by pass and geometry; null: oneDNN has only its reference kernel there.
  const plans = new Map<string, Plan | null>();

  function plan(pass: ConvPass, g: tf.backend_util.Conv2DInfo): Plan | null {
    const { batchSize: n, inChannels: ci, outChannels: co } = g;
    const p = g.padInfo;
    const src = desc([n, ci, g.inHeight, g.inWidth], TAG_NHWC);
    const dst = desc([n, co, g.outHeight, g.outWidth], TAG_NHWC);
    const wDims = [co, ci, g.filterHeight, g.filterWidth];
    const wUser = desc(wDims, TAG_HWIO);
    const wAny = desc(wDims, TAG_ANY);
    const strides = pair(g.strideHeight, g.strideWidth);
    const padL = pair(p.top, p.left);
    const padR = pair(p.bottom, p.right);
    const forward = new Uint8Array(CONV_DESC_BYTES);
    check(
      "dnnl_convolution_forward_desc_init",
      s.dnnl_convolution_forward_desc_init(
        forward,
        FORWARD_TRAINING,
        CONVOLUTION_DIRECT,
        src,
        wAny,
        null,
        dst,
        strides,
        padL,
        padR,
      ),
    );
    const forwardPd = primitiveDesc(forward, null);
    if (!forwardPd) return null;
    let pd = forwardPd;
    if (pass !== "forward") {
      const op = new Uint8Array(CONV_DESC_BYTES);
      check(
        `dnnl_convolution_backward_${pass === "input" ? "data" : "weights"}_desc_init`,
        pass === "input"
          ? s.dnnl_convolution_backward_data_desc_init(
            op,
            CONVOLUTION_DIRECT,
            src,
            wAny,
            dst,
            strides,
            padL,
            padR,
          )
          : s.dnnl_convolution_backward_weights_desc_init(
            op,
            CONVOLUTION_DIRECT,
            src,
            wAny,
            null,
            dst,
            strides,
            padL,
            padR,
          ),
      );
      const backwardPd = primitiveDesc(op, forwardPd);
      if (!backwardPd) return null;
      pd = backwardPd;
    }
    if (/\bref\b/.test(implementation(pd))) return null;

    // The user's tensors: a, b, out (handles set per call).
    const [aMd, bMd, outMd] = pass === "forward"
      ? [src, wUser, dst]
      : pass === "input"
      ? [dst, wUser, src]
      : [src, dst, wUser];
    const user = [aMd, bMd, outMd].map((md) => memory(of(md), 0n));
    const weightsMd = s.dnnl_primitive_desc_query_md(
      pd,
      pass === "filter" ? QUERY.diffWeights : QUERY.weights,
      0,
    );
    const blocked = s.dnnl_memory_desc_equal(weightsMd, of(wUser)) === 0;
    const weights = blocked ? memory(weightsMd, MEMORY_ALLOCATE) : undefined;
    const conv = primitive(pd);
    const steps: Step[] = [];
    if (pass === "forward" || pass === "input") {
      if (weights) {
        steps.push(step(reorder(of(wUser), weightsMd), [[ARG.src, user[1]], [ARG.dst, weights]]));
      }
      steps.push(
        step(
          conv,
          pass === "forward"
            ? [[ARG.src, user[0]], [ARG.weights, weights ?? user[1]], [ARG.dst, user[2]]]
            : [[ARG.diffDst, user[0]], [ARG.weights, weights ?? user[1]], [ARG.diffSrc, user[2]]],
        ),
      );
    } else {
      steps.push(
        step(conv, [[ARG.src, user[0]], [ARG.diffDst, user[1]], [
          ARG.diffWeights,
          weights ?? user[2],
        ]]),
      );
      if (weights) {
        steps.push(step(reorder(weightsMd, of(wUser)), [[ARG.src, weights], [ARG.dst, user[2]]]));
      }
    }
    return { user, steps };
  }

  // Binds a plan's memory objects to the arrays and runs its steps to the end.
  const run = (plan: Plan, arrays: Float32Array[]) => {
    plan.user.forEach((mem, i) =>
      check("dnnl_memory_set_data_handle", s.dnnl_memory_set_data_handle(mem, arrays[i]))
    );
    for (const { prim, args } of plan.steps) {
      check(
        "dnnl_primitive_execute",
        s.dnnl_primitive_execute(prim, stream, args.length / 16, args),
      );
    }
    check("dnnl_stream_wait", s.dnnl_stream_wait(stream));
  };

  const conv: Dnnl["conv"] = (pass, g, a, b, result) => {
    const key = convKey(pass, g);
    let entry = plans.get(key);
    if (entry === undefined) plans.set(key, entry = plan(pass, g));
    // JavaScript keeps arrays of up to 64 bytes inside its heap, where they may move between
    // calls; such tensors are not worth a native call anyway.
    if (!entry || a.byteLength <= 64 || b.byteLength <= 64 || result.byteLength <= 64) return false;
    run(entry, [a, b, result]);
    return true;
  };

  // Binary primitives by operation and shapes; null: oneDNN has only its reference kernel there.
  const binaries = new Map<string, { plan: Plan; small: Float32Array } | null>();
  const binaryPlan = (op: BinaryOp, dims: number[], bDims: number[]) => {
    const tag = TAG_A + dims.length - 1; // a, ab, abc, abcd: row-major
    const [src0, src1, dst] = [desc(dims, tag), desc(bDims, tag), desc(dims, tag)];
    const opDesc = new Uint8Array(CONV_DESC_BYTES);
    if (s.dnnl_binary_desc_init(opDesc, BINARY_ALG[op], src0, src1, dst) !== 0) return null;
    const pd = primitiveDesc(opDesc, null);
    if (!pd || /\bref\b/.test(implementation(pd))) return null;
    const user = [src0, src1, dst].map((md) => memory(of(md), 0n));
    const prim = primitive(pd);
    const plan: Plan = {
      user,
      steps: [step(prim, [[ARG.src, user[0]], [ARG.src1, user[1]], [ARG.dst, user[2]]])],
    };
    // A small b (a scalar, a few channels) goes through an array of our own, large enough to
    // live outside the JavaScript heap, where small arrays may move between calls.
    return { plan, small: new Float32Array(32) };
  };
  const binary: Dnnl["binary"] = (op, dims, bDims, a, b, result) => {
    if (dims.length > 4 || a.byteLength <= 64 || result.byteLength <= 64) return false;
    const key = `${op},${dims},${bDims}`;
    let entry = binaries.get(key);
    if (entry === undefined) binaries.set(key, entry = binaryPlan(op, dims, bDims));
    if (!entry) return false;
    let bIn = b;
    if (b.byteLength <= 64) {
      entry.small.set(b);
      bIn = entry.small;
    }
    run(entry.plan, [a, bIn, result]);
    return true;
  };

  const [N, T] = ["N".charCodeAt(0), "T".charCodeAt(0)];
  const sgemm: Gemm = (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
    if (m === 0 || n === 0) return;
    check(
      "dnnl_sgemm",
      s.dnnl_sgemm(
        ta ? T : N,
        tb ? T : N,
        BigInt(m),
        BigInt(n),
        BigInt(k),
        alpha,
        a,
        BigInt(lda),
        b,
        BigInt(ldb),
        beta,
        c,
        BigInt(ldc),
      ),
    );
  };
  return { description, path, conv, binary, sgemm };
}
