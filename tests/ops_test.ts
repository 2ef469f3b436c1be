/**
 * Every op's contract (`ops/`) on every backend that registers an implementation of it: each
 * seeded case's values and gradients with the backend's kernel equal those of the op's composed
 * fallback on the same backend. The CPU backends (cpu, wasm, and with the native libraries native
 * and native-cpu) and webgpu (any adapter; CI: lavapipe) implement every op but those whose
 * contract names its backends; a backend that is absent here is named as skipped.
 */
import * as tf from "@tensorflow/tfjs";
import { assert } from "@std/assert";
import { type BackendName, selectBackend, webgpuUnavailable } from "../backends/mod.ts";
import { webgpuInternals } from "../backends/webgpu/trace.ts";
import { loadNativeLibraries } from "../backends/native/native_kernels.ts";
import { activationGradContract } from "../ops/activation_grad.ts";
import { dividePerPassContract } from "../ops/divide_per_pass.ts";
import { meanSquaredErrorContract } from "../ops/mean_squared_error.ts";
import { reflectPadConvContract } from "../ops/reflect_pad_conv.ts";
import { adamUpdateContract } from "../ops/adam_update.ts";
import { lerpContract } from "../ops/lerp.ts";
import { kernelHere, setOpKernels } from "../ops/kernel.ts";
import { linNormContract } from "../ops/lin_norm.ts";
import type { OpContract } from "../ops/op_contract.ts";
import { reflectPadContract } from "../ops/reflect_pad.ts";
import { spectralSigmaContract } from "../ops/spectral_sigma.ts";
import { upsample2xContract } from "../ops/upsample_2x.ts";
import { assertClose } from "./helpers.ts";

const CONTRACTS: Record<string, OpContract> = {
  reflectionPad: reflectPadContract,
  upsampleNearest2x: upsample2xContract,
  layerInstanceNorm: linNormContract,
  powerIterationSigma: spectralSigmaContract,
  adamUpdate: adamUpdateContract,
  activationGrad: activationGradContract,
  dividePerPass: dividePerPassContract,
  meanSquaredError: meanSquaredErrorContract,
  reflectPadConv2d: reflectPadConvContract,
  lerp: lerpContract,
};

const native = loadNativeLibraries();
const gpu = await webgpuUnavailable();
const absent: Partial<Record<BackendName, string | undefined>> = {
  native: typeof native === "string" ? native : undefined,
  "native-cpu": typeof native === "string" ? native : undefined,
  webgpu: gpu,
};

// Runs a case and reads its outputs back.
async function outputs(
  run: () => Record<string, tf.Tensor>,
): Promise<Record<string, Float32Array>> {
  const out = run();
  const arrays: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) arrays[k] = (await t.data()) as Float32Array;
  tf.dispose(Object.values(out));
  return arrays;
}

for (const backend of ["cpu", "wasm", "native", "native-cpu", "webgpu"] as const) {
  const why = absent[backend];
  if (why) console.log(`SKIPPED: op contracts on ${backend} (${why})`);
  Deno.test({
    name:
      `every op's kernel on ${backend} meets its contract: the composed fallback's values and gradients`,
    ignore: why !== undefined,
    fn: async (t) => {
      await selectBackend(backend);
      for (const [op, contract] of Object.entries(CONTRACTS)) {
        if (contract.backends && !contract.backends.includes(backend)) continue;
        await t.step(op, async () => {
          for (const kernel of contract.kernels) {
            assert(tf.getKernel(kernel, tf.getBackend()), `${backend} registers ${kernel}`);
          }
          assert(kernelHere(contract.kernels[0]), `${op} runs our kernel on ${backend}`);
          for (const c of contract.cases) {
            // On webgpu a shader that does not compile leaves its output unwritten, silently:
            // the device's validation errors are caught here and named.
            const device = backend === "webgpu" ? webgpuInternals()!.device : undefined;
            device?.pushErrorScope("validation");
            const ours = await outputs(c.run);
            const invalid = await device?.popErrorScope();
            assert(!invalid, `${op} ${c.name}: the device says ${invalid?.message}`);
            setOpKernels(false, contract.kernels);
            try {
              assert(!kernelHere(contract.kernels[0]));
              const composed = await outputs(c.run);
              for (const k of Object.keys(composed)) {
                await assertClose(ours[k], composed[k], c.tolerance, `${op} ${c.name}: ${k}`);
              }
            } finally {
              setOpKernels(true, contract.kernels);
            }
          }
        });
      }
    },
  });
}
