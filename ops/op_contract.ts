/**
 * What each op of ours promises, as data the tests run: seeded cases whose outputs (values and
 * gradients) must be the same whether the op runs a backend's kernel or its composed fallback.
 * Every backend that registers an implementation is held to every case (`tests/ops_test.ts`).
 *
 * @example
 * ```ts
 * import { reflectPadContract } from "./reflect_pad.ts";
 * console.log(reflectPadContract.kernels, reflectPadContract.cases.map((c) => c.name));
 * ```
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";

/** One seeded case of an op's contract. */
export interface OpCase {
  /** What it exercises, e.g. `[2, 7, 5, 3] pad 3`. */
  readonly name: string;
  /**
   * Runs the op (through its public function) on seeded inputs.
   * @returns the outputs compared, by name: values and gradients (the caller disposes them)
   */
  run(): Record<string, tf.Tensor>;
  /** The largest relative error allowed between a kernel's outputs and the composed ones. */
  readonly tolerance: number;
}

/** An op's contract: its kernel names and the cases every implementation must meet. */
export interface OpContract {
  /** The kernels a backend registers to implement the op (forward, then gradient). */
  readonly kernels: readonly string[];
  /**
   * The backends that implement it, where not all do (every backend falls back to the composed
   * form where it has no kernel).
   */
  readonly backends?: readonly string[];
  /** The cases. */
  readonly cases: readonly OpCase[];
}
