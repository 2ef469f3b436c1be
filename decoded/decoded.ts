/**
 * User input (flags, weight files, checkpoints, dataset folders) is decoded at the edges into an
 * fp-ts `Either`: `Right` with the value, or `Left` with an error whose message names the flag,
 * file, tensor or folder. The commands fold a `Left` into their one-line message; `orThrow` gives
 * the throwing conveniences the public API keeps for those who prefer them.
 *
 * @example
 * ```ts
 * import * as E from "fp-ts/Either";
 * import { orThrow } from "./decoded.ts";
 * console.log(orThrow(E.right(3))); // 3
 * ```
 *
 * @module
 */
import * as E from "fp-ts/Either";

/** What a decoder of user input returns: the value, or the error that names what is wrong. */
export type Decoded<A, Err extends Error = Error> = E.Either<Err, A>;

/**
 * The value of a `Right`; a `Left`'s error is thrown.
 * @param decoded a decoder's result
 * @returns its value
 * @throws the `Left`'s error
 */
export function orThrow<A, Err extends Error>(decoded: Decoded<A, Err>): A {
  if (E.isLeft(decoded)) throw decoded.left;
  return decoded.right;
}
