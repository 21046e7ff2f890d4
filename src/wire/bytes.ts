/** Big-endian (network order) field access on byte arrays, without DataViews. */

/** Read a big-endian u16. */
export const getU16 = (u8: Uint8Array, i: number): number => (u8[i] << 8) | u8[i + 1];

/** Write a big-endian u16. */
export function putU16(u8: Uint8Array, i: number, v: number): void {
  u8[i] = (v >>> 8) & 0xff;
  u8[i + 1] = v & 0xff;
}

/** Read a big-endian u32. */
export const getU32 = (u8: Uint8Array, i: number): number => ((u8[i] << 24) | (u8[i + 1] << 16) | (u8[i + 2] << 8) | u8[i + 3]) >>> 0;

/** Write a big-endian u32. */
export function putU32(u8: Uint8Array, i: number, v: number): void {
  u8[i] = (v >>> 24) & 0xff;
  u8[i + 1] = (v >>> 16) & 0xff;
  u8[i + 2] = (v >>> 8) & 0xff;
  u8[i + 3] = v & 0xff;
}

/**
 * Copy n bytes between two arrays with a plain loop: set() would need a
 * subarray view per call, an allocation on the per-segment path.
 */
export function copyRange(src: Uint8Array, srcIdx: number, dst: Uint8Array, dstIdx: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dstIdx + i] = src[srcIdx + i];
}
