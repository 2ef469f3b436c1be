/**
 * Losses: the DSL (`named`, `weighted`, `sum`, `mirror`, `evaluate`) and the four U-GAT-IT
 * objectives declared with it.
 *
 * @example
 * ```ts
 * import { DEFAULT_WEIGHTS, generatorObjective } from "./mod.ts";
 * console.log(generatorObjective(DEFAULT_WEIGHTS).map((t) => `${t.weight} * ${t.name}`));
 * // ["1 * adv_A", "10 * cycle_A", "10 * identity_A", "1000 * cam_A", "1 * adv_B", ...]
 * ```
 *
 * @module
 */
export * from "./dsl.ts";
export * from "./objectives.ts";
