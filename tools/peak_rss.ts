/**
 * The benchmarks' memory figure: this process's peak resident set.
 *
 * @module
 */
import process from "node:process";

/**
 * The process's peak resident set in MB (getrusage's maxrss; Deno denies /proc/self to a
 * process without every permission), else the current one.
 * @returns megabytes
 */
export function peakRssMb(): number {
  const kb = process.resourceUsage?.().maxRSS;
  if (kb) return Math.round(kb / 1024);
  return Math.round(Deno.memoryUsage().rss / 2 ** 20);
}
