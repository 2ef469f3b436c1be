/**
 * Finds a Python that can import torch, for the PyTorch tools and the tests that use them.
 *
 * @module
 */

/**
 * A Python interpreter that can import torch (Debian's python3-torch lives under /usr/bin), or
 * undefined.
 * @param device `cuda`: one whose torch sees a CUDA device
 * @returns the interpreter's path
 */
export async function findTorchPython(device = "cpu"): Promise<string | undefined> {
  const check = device === "cuda"
    ? "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    : "import torch";
  for (const python of ["/usr/bin/python3", "python3"]) {
    try {
      const { code } = await new Deno.Command(python, {
        args: ["-c", check],
        stderr: "null",
      })
        .output();
      if (code === 0) return python;
    } catch (e) {
      // Not installed; but a run without --allow-run must not read as "no PyTorch".
      if (e instanceof Deno.errors.NotCapable) throw e;
    }
  }
  return undefined;
}
