/**
 * The ops of ours that layers and the optimiser build on. Each is one contract: its kernel names
 * and attribute type, the composed fallback with its true gradient, and the seeded cases every
 * implementation must meet. Backends only register implementations (`backends/`); an op runs its
 * kernel where the active backend has one ({@linkcode kernelHere}) and its composed form
 * elsewhere.
 *
 * - `reflectionPad`: PyTorch's `ReflectionPad2d`, with the true gradient.
 * - `upsampleNearest2x`: nearest-neighbour upsampling by 2.
 * - `layerInstanceNorm`: the IN/LN mix of AdaLIN, ILN and instance norm.
 * - `powerIterationSigma`: spectral norm's power iteration and largest singular value.
 * - `adamUpdate`: the reference optimiser's whole per-tensor update.
 * - `activationGrad`: the gradients of ReLU and leaky ReLU in one pass.
 * - `lerp`: a step of a moving average, `a + (b - a) * w`.
 * - `dividePerPass`: stacked batches divided each by its own scalar (spectral norm's sigma).
 * - `meanSquaredError`: the least-squares GAN's loss term against a constant target.
 * - `reflectPadConv2d`: a convolution of the reflection-padded input, the padding read in place.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { reflectionPad, upsampleNearest2x } from "./mod.ts";
 * const x = tf.randomNormal([1, 4, 4, 2]) as tf.Tensor4D;
 * console.log(upsampleNearest2x(reflectionPad(x, 1)).shape); // [1, 12, 12, 2]
 * ```
 *
 * @module
 */
export * from "./kernel.ts";
export * from "./op_contract.ts";
export * from "./reflect_pad.ts";
export * from "./upsample_2x.ts";
export * from "./lin_norm.ts";
export * from "./spectral_sigma.ts";
export * from "./adam_update.ts";
export * from "./activation_grad.ts";
export * from "./lerp.ts";
export * from "./divide_per_pass.ts";
export * from "./mean_squared_error.ts";
export * from "./reflect_pad_conv.ts";
