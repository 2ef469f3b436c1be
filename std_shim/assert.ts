/**
 * Stand-in for `jsr:@std/assert` (jsr.io is unreachable on our build machines). Same names and
 * signatures as the std functions we use, built on `node:assert`. To switch back, point
 * `@std/assert` in deno.json at `jsr:@std/assert@1`.
 *
 * @module
 */
import nodeAssert from "node:assert";

/** Error thrown by every assertion here (std's name for it). */
export class AssertionError extends Error {
  /** @param message what failed */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

function wrap(fn: () => void, msg?: string): void {
  try {
    fn();
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    throw new AssertionError(msg ? `${msg}: ${detail}` : detail);
  }
}

/**
 * Asserts that `expr` is truthy.
 * @param expr value to test
 * @param msg optional message
 */
export function assert(expr: unknown, msg = "Assertion failed"): asserts expr {
  if (!expr) throw new AssertionError(msg);
}

/**
 * Asserts deep equality.
 * @param actual value under test
 * @param expected expected value
 * @param msg optional message
 */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  wrap(() => nodeAssert.deepStrictEqual(actual, expected), msg);
}

/**
 * Asserts deep inequality.
 * @param actual value under test
 * @param expected value it must differ from
 * @param msg optional message
 */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  wrap(() => nodeAssert.notDeepStrictEqual(actual, expected), msg);
}

/**
 * Asserts `Object.is` equality.
 * @param actual value under test
 * @param expected expected value
 * @param msg optional message
 */
export function assertStrictEquals<T>(actual: unknown, expected: T, msg?: string): void {
  wrap(() => nodeAssert.strictEqual(actual, expected), msg);
}

/**
 * Asserts that two numbers differ by at most `tolerance` (std's default: 1e-7 of `expected`).
 * @param actual value under test
 * @param expected expected value
 * @param tolerance largest allowed absolute difference
 * @param msg optional message
 */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  tolerance?: number,
  msg?: string,
): void {
  const tol = tolerance ?? Math.abs(expected) * 1e-7;
  if (Object.is(actual, expected)) return;
  const delta = Math.abs(expected - actual);
  if (!(delta <= tol)) {
    throw new AssertionError(
      `${
        msg ? msg + ": " : ""
      }expected ${actual} to be close to ${expected}: delta ${delta} > ${tol}`,
    );
  }
}

/**
 * Asserts that `actual > expected`.
 * @param actual value under test
 * @param expected bound
 * @param msg optional message
 */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual > expected)) throw new AssertionError(msg ?? `expected ${actual} > ${expected}`);
}

/**
 * Asserts that `actual < expected`.
 * @param actual value under test
 * @param expected bound
 * @param msg optional message
 */
export function assertLess<T>(actual: T, expected: T, msg?: string): void {
  if (!(actual < expected)) throw new AssertionError(msg ?? `expected ${actual} < ${expected}`);
}

/**
 * Asserts that `actual` contains `expected`.
 * @param actual text under test
 * @param expected the part it must contain
 * @param msg optional message
 */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (!actual.includes(expected)) {
    throw new AssertionError(msg ?? `expected actual: "${actual}" to contain: "${expected}"`);
  }
}

/**
 * Asserts that `fn` throws; returns the error. With `ErrorClass` and `msgIncludes` it also checks
 * the error's class and that its message contains the text.
 * @param fn function expected to throw
 * @param ErrorClass expected class (optional)
 * @param msgIncludes text the message must contain (optional)
 * @returns the thrown error
 */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass?: new (...args: any[]) => E,
  msgIncludes?: string,
): E {
  try {
    fn();
  } catch (e) {
    checkError(e, ErrorClass, msgIncludes);
    return e as E;
  }
  throw new AssertionError("Expected function to throw.");
}

/**
 * Asserts that `fn` rejects; returns the error. Checks as {@linkcode assertThrows}.
 * @param fn async function expected to reject
 * @param ErrorClass expected class (optional)
 * @param msgIncludes text the message must contain (optional)
 * @returns the rejection reason
 */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass?: new (...args: any[]) => E,
  msgIncludes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    checkError(e, ErrorClass, msgIncludes);
    return e as E;
  }
  throw new AssertionError("Expected function to reject.");
}

function checkError(
  e: unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass?: new (...args: any[]) => unknown,
  msgIncludes?: string,
): void {
  if (ErrorClass && !(e instanceof ErrorClass)) {
    throw new AssertionError(`Expected error to be instance of "${ErrorClass.name}", got ${e}`);
  }
  const message = e instanceof Error ? e.message : String(e);
  if (msgIncludes !== undefined && !message.includes(msgIncludes)) {
    throw new AssertionError(
      `Expected error message to include "${msgIncludes}", got "${message}"`,
    );
  }
}
