/**
 * Bytes of hand-built frames for tests, written independently of src/ so a
 * bug there cannot hide behind the same bug here.
 */
export const mac = (s: string): number[] => s.split(':').map((h) => parseInt(h, 16));
export const ip4 = (s: string): number[] => s.split('.').map(Number);
export const be16 = (v: number): number[] => [(v >> 8) & 0xff, v & 0xff];
export const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];

/** RFC 1071, on plain arrays. */
export function inetChecksum(bytes: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) + (i + 1 < bytes.length ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}
