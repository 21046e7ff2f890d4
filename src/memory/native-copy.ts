import { addressOfBytes, copyAt } from '../os/libc.js';

/**
 * Copies between two different buffers by address: front-end memory mapped
 * into this process (vhost-user) and a lab channel in a SharedArrayBuffer.
 * A typed-array copy between two buffers needs a view of the source range
 * (`subarray`), an allocation per copy; memcpy at addresses computed once
 * per view needs none. Only memory that never moves qualifies: mappings
 * (registered when viewed) and SharedArrayBuffers, and only pairs with a
 * mapping in them, so copies that involve no front-end memory never load
 * the FFI.
 */

/** Address of each registered mapping's view (by its ArrayBuffer). */
const mapped = new WeakMap<ArrayBuffer, number>();
/** Addresses of SharedArrayBuffers seen in a pair with a mapping (per thread). */
const shared = new WeakMap<SharedArrayBuffer, number>();

/** Record that `buffer` views the mapped memory at `address` (never moved, unmapped only after every user stopped). */
export function registerMappedBuffer(buffer: ArrayBuffer, address: number): void {
  mapped.set(buffer, address);
}

function mappedAddress(u8: Uint8Array): number {
  const base = mapped.get(u8.buffer as ArrayBuffer);
  return base === undefined ? Number.NaN : base + u8.byteOffset;
}

function sharedAddress(u8: Uint8Array): number {
  const buffer = u8.buffer;
  if (!(buffer instanceof SharedArrayBuffer)) return Number.NaN;
  let base = shared.get(buffer);
  if (base === undefined) shared.set(buffer, (base = addressOfBytes(new Uint8Array(buffer))));
  return base + u8.byteOffset;
}

/**
 * The addresses of `src` and `dst` for copyAt, or NaN for both when the pair
 * must be copied with typed-array builtins: neither is mapped memory, or one
 * is memory that may move.
 */
export function pairAddresses(src: Uint8Array, dst: Uint8Array, out: Float64Array): void {
  let s = mappedAddress(src);
  let d = mappedAddress(dst);
  if (Number.isNaN(s) && Number.isNaN(d)) {
    out[0] = out[1] = Number.NaN;
    return;
  }
  if (Number.isNaN(s)) s = sharedAddress(src);
  if (Number.isNaN(d)) d = sharedAddress(dst);
  const ok = !Number.isNaN(s) && !Number.isNaN(d);
  out[0] = ok ? s : Number.NaN;
  out[1] = ok ? d : Number.NaN;
}

export { copyAt };
