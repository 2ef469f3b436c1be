/**
 * Assembles `backends/wasm/simd.wat` (our WebAssembly SIMD kernels) into
 * `backends/wasm/simd_wasm.ts`, the module's bytes as base64, so that it loads everywhere a
 * TypeScript file does (Deno, JSR, browsers) with nothing to build at run time. Run after editing the `.wat`:
 *
 *     deno task build:simd
 *
 * A test checks that the committed bytes are what the `.wat` assembles to.
 *
 * @module
 */
import wabtInit from "wabt";

const WAT = new URL("../backends/wasm/simd.wat", import.meta.url);
const OUT = new URL("../backends/wasm/simd_wasm.ts", import.meta.url);

/**
 * Assembles the `.wat` with WABT.
 * @returns the module's bytes
 */
export async function assembleSimd(): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const module = wabt.parseWat("simd.wat", await Deno.readTextFile(WAT), { simd: true });
  try {
    module.validate();
    return module.toBinary({ write_debug_names: false }).buffer;
  } finally {
    module.destroy();
  }
}

/**
 * The generated TypeScript file for some module bytes.
 * @param bytes the module
 * @returns the file's text
 */
export function simdSource(bytes: Uint8Array): string {
  const base64 = btoa(String.fromCharCode(...bytes));
  const lines = base64.match(/.{1,96}/g)!.map((l) => `  "${l}",`).join("\n");
  return "// Generated from simd.wat by `deno task build:simd` (tools/build_simd.ts); do not edit.\n\n" +
    "/** The SIMD kernels' WebAssembly module, base64. */\n" +
    `export const SIMD_WASM_BASE64 = [\n${lines}\n].join("");\n`;
}

if (import.meta.main) {
  const bytes = await assembleSimd();
  await Deno.writeTextFile(OUT, simdSource(bytes));
  console.log(`wrote ${OUT.pathname}: ${bytes.length} bytes of WebAssembly`);
}
