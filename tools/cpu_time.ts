/**
 * The benchmarks' CPU-time figure: the CPU time of all of this process's threads. On a software
 * WebGPU adapter (lavapipe) the GPU's work runs in worker threads of this process, so an
 * iteration's CPU time counts that work too: the work the iteration made the machine do, beside
 * its wall time.
 *
 * @module
 */
import process from "node:process";

/**
 * Milliseconds of CPU time (user and system) this process has run, all threads (getrusage).
 * @returns milliseconds
 */
export function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
