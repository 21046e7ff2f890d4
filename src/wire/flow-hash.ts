import { ETH_P_IPV4, ETH_P_IPV6, etherTypeAt } from './packet.js';

/**
 * A flow hash over an Ethernet frame: IPv4 / IPv6 addresses, the protocol,
 * and TCP / UDP ports when the packet is not a fragment; the two MAC
 * addresses for anything else. Frames of one flow always hash alike, so
 * steering by it keeps each flow on one receive queue, in order.
 */
export function flowHash(u8: Uint8Array, at: number, len: number): number {
  const end = at + len;
  const typeAt = etherTypeAt(u8, at, len);
  const type = typeAt < 0 ? 0 : (u8[at + typeAt] << 8) | u8[at + typeAt + 1];
  const p = at + typeAt + 2;
  let h = 0x811c9dc5;
  if (type === ETH_P_IPV4 && p + 20 <= end) {
    const ihl = (u8[p] & 0x0f) * 4;
    const proto = u8[p + 9];
    h = mix(h, u8, p + 12, 8);
    h = mix(h, u8, p + 9, 1);
    const fragment = ((u8[p + 6] & 0x3f) | u8[p + 7]) !== 0;
    if (!fragment && (proto === 6 || proto === 17) && p + ihl + 4 <= end) h = mix(h, u8, p + ihl, 4);
  } else if (type === ETH_P_IPV6 && p + 40 <= end) {
    const next = u8[p + 6];
    h = mix(h, u8, p + 8, 32);
    h = mix(h, u8, p + 6, 1);
    if ((next === 6 || next === 17) && p + 44 <= end) h = mix(h, u8, p + 40, 4);
  } else if (at + 12 <= end) {
    h = mix(h, u8, at, 12);
  }
  return avalanche(h);
}

/**
 * Final mix (MurmurHash3's fmix32): FNV-1a alone leaves the low bits
 * depending only on the low bits of each byte, and steering takes the hash
 * modulo a small power of two.
 */
function avalanche(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over u8[from, from + n). */
function mix(h: number, u8: Uint8Array, from: number, n: number): number {
  for (let i = from; i < from + n; i++) h = Math.imul(h ^ u8[i], 0x01000193);
  return h;
}
