/**
 * Which examples a picture shows. Every picture of the toolkit that shows a few images of a split
 * (the run's sample pictures, the report, the translate grids, the model card's grid, the ablation
 * figure, the web page's test emoji) draws them with {@linkcode pickSpread}: the list is cut into
 * `n` equal consecutive stretches and one item is drawn at random from each, with a fixed seed.
 * The picks are spread over the whole list, not its first items by name (which for the emoji data
 * are keycaps and flags: the code points sort by kind), and they are the same on every call, in
 * every run and for every variant, so that pictures over time and side by side compare like with
 * like. An aligned pair of lists of one length (the emoji data's test A and B) gets the same
 * positions, so its pairs stay pairs.
 *
 * @example
 * ```ts
 * import { pickIndices, pickSpread } from "./pick.ts";
 * const names = Array.from({ length: 100 }, (_, i) => `emoji_${i}.png`);
 * console.log(pickIndices(100, 4)); // one index from each of 0-24, 25-49, 50-74 and 75-99
 * console.log(pickSpread(names, 4).length); // 4, the same four on every call
 * ```
 *
 * @module
 */
import { Rng } from "./random.ts";

/** The seed of every pick unless one is given: one set of pictures for every run. */
export const PICK_SEED = 25;

/**
 * The positions of `n` picks among `length` items: one drawn at random from each of `n` equal
 * consecutive stretches (stretch `i` is `[floor(i * length / n), floor((i + 1) * length / n))`),
 * with a generator seeded by `seed`. All positions when `n >= length`.
 * @param length how many items there are
 * @param n how many to pick
 * @param seed the generator's seed (default {@linkcode PICK_SEED})
 * @returns `min(n, length)` distinct positions, ascending
 */
export function pickIndices(length: number, n: number, seed: number = PICK_SEED): number[] {
  if (n >= length) return Array.from({ length: Math.max(0, length) }, (_, i) => i);
  const rng = new Rng(seed);
  return Array.from({ length: Math.max(0, n) }, (_, i) => {
    const start = Math.floor((i * length) / n);
    const end = Math.floor(((i + 1) * length) / n);
    return start + rng.int(end - start);
  });
}

/**
 * `n` items of a list spread over all of it ({@linkcode pickIndices}), in the list's order.
 * @param items the list (e.g. a test split's files, sorted by name)
 * @param n how many to pick
 * @param seed the generator's seed (default {@linkcode PICK_SEED})
 * @returns the picked items (all of them when `n >= items.length`)
 */
export function pickSpread<T>(items: readonly T[], n: number, seed: number = PICK_SEED): T[] {
  return pickIndices(items.length, n, seed).map((i) => items[i]);
}
