/**
 * The internet checksum (RFC 1071) as a running sum of big-endian 16-bit
 * words. Sums are plain numbers and are folded only at the end: 2^37 words of
 * 0xffff would be needed to lose precision, far beyond any frame.
 */

/**
 * Add u8[from, to) to `sum` as big-endian words starting at `from` (an odd
 * last byte is the high half of a zero-padded word). `from` must sit at an
 * even distance from where the checksummed range begins.
 */
export function sumBytes(u8: Uint8Array, from: number, to: number, sum: number): number {
  let i = from;
  const pairs = to - 1;
  for (; i < pairs; i += 2) sum += (u8[i] << 8) | u8[i + 1];
  if (i < to) sum += u8[i] << 8;
  return sum;
}

/**
 * Copy `n` bytes from src[srcIdx] to dst[dstIdx] and add them to `sum` as
 * sumBytes would over the destination: one pass over the payload instead of
 * two, and no subarray views.
 */
export function copyAndSum(src: Uint8Array, srcIdx: number, dst: Uint8Array, dstIdx: number, n: number, sum: number): number {
  const pairs = srcIdx + n - 1;
  let s = srcIdx;
  let d = dstIdx;
  for (; s < pairs; s += 2, d += 2) {
    const hi = src[s];
    const lo = src[s + 1];
    dst[d] = hi;
    dst[d + 1] = lo;
    sum += (hi << 8) | lo;
  }
  if (s < srcIdx + n) {
    const hi = src[s];
    dst[d] = hi;
    sum += hi << 8;
  }
  return sum;
}

/** Fold a running sum to 16 bits with end-around carry. */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value for a running sum that covered the field as zero. */
export const checksumOf = (sum: number): number => ~foldSum(sum) & 0xffff;

/**
 * Sum of the IPv4 pseudo header (RFC 793 / 768): addresses of the header at
 * u8[ip], protocol and the transport length.
 */
export function pseudoSumV4(u8: Uint8Array, ip: number, proto: number, l4Len: number): number {
  return sumBytes(u8, ip + 12, ip + 20, proto + l4Len);
}

/**
 * Sum of the IPv6 pseudo header (RFC 8200 8.1): addresses of the header at
 * u8[ip], the upper-layer length (32 bits) and next header.
 */
export function pseudoSumV6(u8: Uint8Array, ip: number, nextHeader: number, l4Len: number): number {
  return sumBytes(u8, ip + 8, ip + 40, nextHeader + (l4Len >>> 16) + (l4Len & 0xffff));
}
