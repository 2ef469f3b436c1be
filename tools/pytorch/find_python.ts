/**
 * Finds a Python that can import torch, for the PyTorch tools and the tests that use them.
 *
 * @module
 */

/**
 * A Python interpreter that can import torch (Debian's python3-torch lives under /usr/bin), or
 * undefined.
 * @returns the interpreter's path
 */
export async function findTorchPython(): Promise<string | undefined> {
  for (const python of ["/usr/bin/python3", "python3"]) {
    try {
      const { code } = await new Deno.Command(python, {
        args: ["-c", "import torch"],
        stderr: "null",
      })
        .output();
      if (code === 0) return python;
    } catch {
      // not installed
    }
  }
  return undefined;
}
