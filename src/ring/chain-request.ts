import { InvalidArgumentError } from '../errors.js';

/**
 * Checks both driver-side ring formats make on addChain(addrs, lens, nOut,
 * nIn): returns the chain's device-writable bytes (the last nIn lengths).
 * @throws InvalidArgumentError for an empty chain.
 */
export function chainWritableBytes(lens: ArrayLike<number>, nOut: number, nIn: number): number {
  const n = nOut + nIn;
  if (n === 0) throw new InvalidArgumentError('a chain needs at least one segment');
  let bytes = 0;
  for (let k = nOut; k < n; k++) bytes += lens[k];
  return bytes;
}

/** Whether a chain of `n` segments goes through one indirect table (tables configured, several segments, it fits one, and no longer than the queue). */
export const goesIndirect = (tables: { maxEntries: number } | undefined, n: number, size: number): boolean =>
  tables !== undefined && n > 1 && n <= tables.maxEntries && n <= size;

/**
 * No chain may be longer than the queue, indirect or not (2.7.5.3.1 /
 * 2.8.13.1): such a chain could never be added.
 * @throws InvalidArgumentError when `n` > `size`.
 */
export function checkChainFits(n: number, size: number): void {
  if (n > size) throw new InvalidArgumentError(`a chain of ${n} descriptors can never fit a queue of ${size}`);
}
