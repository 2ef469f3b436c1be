/**
 * The one decision every op of ours makes: run our kernel, where the active backend registers one
 * (the CPU backends and webgpu, see `backends/`), or the op's composed fallback (tensorflow, webgl,
 * or a backend with our kernels turned off). Ops ask {@linkcode kernelHere}; nothing else looks up
 * kernels by name.
 *
 * @example
 * ```ts
 * import { kernelHere, setOpKernels } from "./kernel.ts";
 * import { LIN_NORM } from "./lin_norm.ts";
 * setOpKernels(false, [LIN_NORM]); // AdaLIN, ILN and IN composed from tfjs ops everywhere
 * console.log(kernelHere(LIN_NORM)); // false
 * setOpKernels(true);
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

const turnedOff = new Set<string>();
let allOff = false;

/**
 * Whether an op runs our kernel on the active backend.
 * @param name the op's (forward) kernel name, e.g. `UgatitReflectPad`
 * @returns true where the backend registers it and it is not turned off
 */
export function kernelHere(name: string): boolean {
  return !allOff && !turnedOff.has(name) && tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * Whether the active backend's tensors can be read back at once (the CPU backends), so that a
 * number derived from a step count can be computed on the host in double precision; on a device
 * (webgpu, webgl) it is computed there, in float32, from the tensor.
 * @returns true on the CPU backends
 */
export function readsAtOnce(): boolean {
  return !["webgpu", "webgl"].includes(tf.getBackend());
}

/**
 * Turns our kernels off (the ops then run their composed fallbacks everywhere) or back on, for
 * tests and comparisons.
 * @param on whether to use them
 * @param names the ops' kernel names; all of them when absent
 */
export function setOpKernels(on: boolean, names?: readonly string[]): void {
  if (!names) {
    allOff = !on;
    if (on) turnedOff.clear();
    return;
  }
  for (const n of names) on ? turnedOff.delete(n) : turnedOff.add(n);
}
