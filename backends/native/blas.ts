/**
 * A native single-precision matrix multiply (`cblas_sgemm`) through Deno's FFI: OpenBLAS where it
 * is installed (Debian/Ubuntu `libopenblas0-pthread`, Homebrew `openblas`), Apple's Accelerate on
 * macOS. It runs multi-threaded on the caller's buffers, WebAssembly memory included, so the
 * wasm backend's tensors go to it without a copy.
 *
 * @module
 */

/**
 * `C = alpha * op(A) op(B) + beta * C`, row-major; `op(A)` is `m x k`, `op(B)` `k x n`. The arrays
 * are views that start at the first element of each matrix.
 */
export type Gemm = (
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/** A loaded BLAS. */
export interface Blas {
  /** What was loaded, for the start-up line (e.g. `OpenBLAS 0.3.21 (2 threads)`). */
  readonly description: string;
  /** The library file. */
  readonly path: string;
  /** The matrix multiply. */
  readonly sgemm: Gemm;
}

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
} as const;
const OPENBLAS_INFO = {
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
} as const;

// CBLAS enums.
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/** Where we look, in order; `UGATIT_BLAS` (a path) goes first when set. */
export function blasCandidates(): string[] {
  const env = (() => {
    try {
      return Deno.env.get("UGATIT_BLAS");
    } catch {
      return undefined;
    }
  })();
  const byOs: Record<string, string[]> = {
    linux: [
      "libopenblas.so.0",
      "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
      "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
      "libopenblas.so",
    ],
    darwin: [
      "/System/Library/Frameworks/Accelerate.framework/Accelerate",
      "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
      "/usr/local/opt/openblas/lib/libopenblas.dylib",
    ],
    windows: ["libopenblas.dll", "openblas.dll"],
  };
  return [...(env ? [env] : []), ...(byOs[Deno.build.os] ?? [])];
}

let cached: Blas | string | undefined;

/**
 * Opens the first BLAS found (once per process).
 * @returns the BLAS, or why there is none (one line: not installed, or no `--allow-ffi`)
 */
export function loadBlas(): Blas | string {
  if (cached !== undefined) return cached;
  const tried: string[] = [];
  for (const path of blasCandidates()) {
    try {
      const lib = Deno.dlopen(path, { ...SYMBOLS, ...OPENBLAS_INFO });
      const s = lib.symbols;
      let description = /Accelerate/.test(path) ? "Accelerate" : "BLAS";
      if (s.openblas_get_config) {
        const config = Deno.UnsafePointerView.getCString(s.openblas_get_config()!);
        description = `${config.split(" ").slice(0, 2).join(" ")} (${
          s.openblas_get_num_threads!()
        } threads)`;
      }
      const gemm = s.cblas_sgemm;
      const sgemm: Gemm = (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
        if (m === 0 || n === 0) return;
        gemm(
          ROW_MAJOR,
          ta ? TRANS : NO_TRANS,
          tb ? TRANS : NO_TRANS,
          m,
          n,
          k,
          alpha,
          a,
          lda,
          b,
          ldb,
          beta,
          c,
          ldc,
        );
      };
      return cached = { description, path, sgemm };
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        return cached = "the native BLAS needs FFI permission (run with --allow-ffi)";
      }
      tried.push(path);
    }
  }
  return cached = `no OpenBLAS found (tried ${tried.join(", ")}; on Debian/Ubuntu: ` +
    "apt-get install libopenblas0-pthread)";
}
