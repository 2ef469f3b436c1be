/**
 * The benchmarks' memory figure: this process's peak resident set.
 *
 * @module
 */

/**
 * The process's peak resident set in MB (Linux: VmHWM); elsewhere the current one.
 * @returns megabytes
 */
export function peakRssMb(): number {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"))?.[1];
    if (kb) return Math.round(Number(kb) / 1024);
  } catch {
    // not Linux
  }
  return Math.round(Deno.memoryUsage().rss / 2 ** 20);
}
