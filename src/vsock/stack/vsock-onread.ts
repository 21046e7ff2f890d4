import { InvalidArgumentError } from '../../errors.js';

/**
 * A reader-supplied receive buffer for a stream socket, as `net.Socket`'s
 * `onread` option: received bytes are copied into `buffer` (at most its
 * length per call) and `callback(nread, buf)` runs with the socket as
 * `this`; no Buffer is made per chunk and no 'data' is emitted. The bytes
 * count as consumed (fwd_cnt advances, virtio 1.2 section 5.10.6.3) when
 * the callback is called: `buf` is valid only during the call, the next
 * chunk overwrites it.
 *
 * Returning `false` pauses the socket as Node's does: no further callback
 * until `resume()` or `read()` is called; what arrives meanwhile waits in the
 * socket (within the credit it gave, so the peer stops when that is full).
 * 'end' is emitted after the last callback once the peer shut down sending.
 */
export interface VsockOnread {
  /**
   * The buffer to fill (length > 0), or a function returning the one to fill
   * for each chunk (called before each copy; a result that is not a non-empty
   * Uint8Array destroys the socket with InvalidArgumentError).
   */
  buffer: Uint8Array | (() => Uint8Array);
  /** Called for each chunk: `nread` bytes at the start of `buf`. Return false to pause. */
  callback: (this: unknown, nread: number, buf: Uint8Array) => boolean | void;
}

/**
 * Check an `onread` option of `where` (connect, listen): undefined stays
 * undefined; anything else must be `{ buffer, callback }` with `buffer` a
 * non-empty Uint8Array or a function and `callback` a function.
 * @throws InvalidArgumentError naming what was wrong and the value seen.
 */
export function checkOnread(where: string, onread: unknown): VsockOnread | undefined {
  if (onread === undefined) return undefined;
  if (onread === null || typeof onread !== 'object') throw new InvalidArgumentError(`${where}: onread must be { buffer, callback }, got ${describe(onread)}`);
  const { buffer, callback } = onread as { buffer?: unknown; callback?: unknown };
  if (typeof buffer !== 'function') checkOnreadBuffer(`${where}: onread.buffer`, buffer);
  if (typeof callback !== 'function') throw new InvalidArgumentError(`${where}: onread.callback must be a function, got ${describe(callback)}`);
  return onread as VsockOnread;
}

/**
 * `buf` as a buffer to read into: a Uint8Array of length > 0.
 * @throws InvalidArgumentError naming `what` and the value seen.
 */
export function checkOnreadBuffer(what: string, buf: unknown): Uint8Array {
  if (!(buf instanceof Uint8Array)) throw new InvalidArgumentError(`${what} must be a Uint8Array or a function returning one, got ${describe(buf)}`);
  if (buf.length === 0) throw new InvalidArgumentError(`${what} has length 0: it must hold at least one byte`);
  return buf;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return `a ${v.constructor?.name ?? 'object'}`;
  if (typeof v === 'function') return 'a function';
  return `${typeof v} ${String(v)}`;
}
