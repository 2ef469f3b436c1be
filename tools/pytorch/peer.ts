/**
 * The PyTorch peer of the benchmarks: `bench_step.py --serve`, kept running and asked for a round
 * of timed runs at a time, so that ours and the peer's alternate and meet the same slow spells of
 * a shared machine.
 *
 * @module
 */
import { findTorchPython } from "./find_python.ts";

/** What the peer answers for a round. */
export interface PeerRound {
  /** Each run's time. */
  readonly times_ms: number[];
  /** The peer process's peak resident set so far. */
  readonly peak_rss_mb: number;
  /** PyTorch's version, device and threads. */
  readonly backend: string;
  /** PyTorch's peak allocated CUDA memory. */
  readonly peak_gpu_mb?: number;
}

/** A running peer. */
export interface Peer {
  /** Runs `n` times; their times (ms) and the peer's peak RSS. */
  run(n: number): Promise<PeerRound>;
  /** Ends the peer. */
  close(): Promise<void>;
}

/**
 * Starts the peer, or says why not (no PyTorch) and returns undefined.
 * @param args bench_step.py's arguments (model flags, `--device`, `--forward`)
 * @param device `cpu` or `cuda`
 * @returns the peer, which has run once to warm up
 */
export async function startTorchPeer(
  args: readonly string[],
  device = "cpu",
): Promise<Peer | undefined> {
  const python = await findTorchPython(device);
  if (!python) {
    console.log(
      device === "cuda"
        ? "no PyTorch with CUDA here: benchmarking ours alone"
        : "PyTorch is not installed here (apt-get install python3-torch): benchmarking ours alone",
    );
    return undefined;
  }
  const script = new URL("./bench_step.py", import.meta.url).pathname;
  const child = new Deno.Command(python, {
    args: [script, "--serve", "--device", device, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("PyTorch peer stopped (its error is above)");
      buffered += value;
    }
    const at = buffered.indexOf("\n");
    const line = buffered.slice(0, at);
    buffered = buffered.slice(at + 1);
    return line;
  };
  return {
    async run(n) {
      await writer.write(new TextEncoder().encode(`${n}\n`));
      return JSON.parse(await nextLine());
    },
    async close() {
      await writer.close();
      await child.status;
    },
  };
}
