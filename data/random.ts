/**
 * A small seeded random generator (mulberry32) whose whole state is one 32-bit integer, so that
 * checkpoints can store it and a resumed run draws exactly what an uninterrupted one would.
 *
 * @module
 */

/** A random generator with explicit, serialisable state. */
export class Rng {
  /** The 32-bit state; saving and restoring it restores the sequence. */
  state: number;

  /** @param seed any integer */
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** @returns a float in [0, 1) */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /**
   * @param n exclusive bound
   * @returns an integer in [0, n)
   */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /**
   * A shuffled copy (Fisher-Yates).
   * @param items the items
   * @returns them in random order
   */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}
