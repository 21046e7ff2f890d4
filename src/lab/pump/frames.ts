import { InvalidArgumentError } from '../../errors.js';
import { parseMac } from '../../net/mac.js';

/** One entry of a frame size mix: `weight` frames of `size` bytes in every cycle. */
export interface SizeWeight {
  size: number;
  weight: number;
}

/** Ethertype of pump and load frames: IEEE 802 local experimental. */
export const PUMP_ETHERTYPE = 0x88b5;
/** Where the sequence number (u32 LE) lies in a plain frame: right after the Ethernet header. */
export const PLAIN_SEQ_AT = 14;
/** Where it lies in a TSO frame: after Ethernet (14), IPv4 (20) and TCP (20) headers. */
export const GSO_SEQ_AT = 54;
/** Bytes after the sequence number that carry a send timestamp (u32 lo, u32 hi: ns since the stream began). */
export const STAMP_BYTES = 8;
/** TCP payload bytes per segment of a TSO frame (an MTU of 1500 less 52 bytes of IPv4 + TCP with timestamps). */
export const GSO_MSS = 1448;
/** Smallest and largest plain frame; a GSO frame is at most an IPv4 datagram (65535 B) behind 14 bytes of Ethernet. */
export const MIN_FRAME = 18;
export const MAX_PLAIN_FRAME = 9000;
export const MAX_GSO_FRAME = 14 + 65535;

/**
 * Parse a frame size mix: "64" (one size) or "64:7,576:4,1500:1" (size:weight,
 * the simple IMIX). Sizes are Ethernet frame lengths without FCS.
 */
export function parseSizeMix(text: string): SizeWeight[] {
  const mix = text.split(',').map((part) => {
    const [s, w = '1'] = part.trim().split(':');
    const size = Number(s);
    const weight = Number(w);
    if (!Number.isInteger(size) || size < MIN_FRAME || size > MAX_PLAIN_FRAME) throw new InvalidArgumentError(`frame size ${s} must be an integer in [${MIN_FRAME}, ${MAX_PLAIN_FRAME}]`);
    if (!Number.isInteger(weight) || weight < 1 || weight > 1000) throw new InvalidArgumentError(`weight ${w} of size ${size} must be an integer in [1, 1000]`);
    return { size, weight };
  });
  if (mix.length === 0) throw new InvalidArgumentError('empty frame size mix');
  return mix;
}

/**
 * One cycle of frame sizes in which each size appears `weight` times, spread
 * out (smooth weighted round robin, as nginx balances upstreams): 64:2,1500:1
 * gives [64, 1500, 64], not [64, 64, 1500]. Frame n has size cycle[n % length].
 */
export function sizeSchedule(mix: readonly SizeWeight[]): number[] {
  const total = mix.reduce((n, m) => n + m.weight, 0);
  const current = mix.map(() => 0);
  const out: number[] = [];
  for (let n = 0; n < total; n++) {
    let best = 0;
    for (let i = 0; i < mix.length; i++) {
      current[i] += mix[i].weight;
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    out.push(mix[best].size);
  }
  return out;
}

/** Mean frame size of a mix (bytes per frame, for Gbit/s). */
export function meanFrameSize(mix: readonly SizeWeight[]): number {
  const total = mix.reduce((n, m) => n + m.weight, 0);
  return mix.reduce((n, m) => n + m.size * m.weight, 0) / total;
}

/**
 * Where each distinct size's frame template lies in a stream's template
 * area (each on 64 bytes, in the order the sizes first appear), and the
 * area's bytes.
 */
export function templateLayout(sizes: readonly number[]): { offsets: Map<number, number>; bytes: number } {
  const offsets = new Map<number, number>();
  let bytes = 0;
  for (const size of sizes) {
    if (offsets.has(size)) continue;
    offsets.set(size, bytes);
    bytes += Math.ceil(size / 64) * 64;
  }
  return { offsets, bytes };
}

/**
 * A frame of `size` bytes from `src` to `dst`: the pump's ethertype and a
 * byte pattern, or with `gso` an IPv4 / TCP segment train (a TSO frame the
 * sender hands over whole with a virtio_net_hdr asking for TCPV4
 * segmentation and a checksum). The sequence number goes at PLAIN_SEQ_AT or
 * GSO_SEQ_AT, written per frame.
 */
export function frameTemplate(size: number, dst: string, src: string, gso: boolean): Uint8Array {
  const f = new Uint8Array(size);
  for (let i = 0; i < size; i++) f[i] = i & 0xff;
  f.set(parseMac(dst), 0);
  f.set(parseMac(src), 6);
  if (!gso) {
    f[12] = PUMP_ETHERTYPE >>> 8;
    f[13] = PUMP_ETHERTYPE & 0xff;
    return f;
  }
  if (size < GSO_SEQ_AT + STAMP_BYTES + 4 || size > MAX_GSO_FRAME) throw new InvalidArgumentError(`GSO frame size ${size} must be in [${GSO_SEQ_AT + 12}, ${MAX_GSO_FRAME}]`);
  f[12] = 0x08; // IPv4
  f[13] = 0x00;
  const ip = 14;
  f.fill(0, ip, GSO_SEQ_AT);
  f[ip] = 0x45; // version 4, 20-byte header
  const total = size - ip;
  f[ip + 2] = total >>> 8;
  f[ip + 3] = total & 0xff;
  f[ip + 6] = 0x40; // don't fragment
  f[ip + 8] = 64; // ttl
  f[ip + 9] = 6; // TCP
  f.set([10, 0, 0, 1, 10, 0, 0, 2], ip + 12);
  let sum = 0;
  for (let i = ip; i < ip + 20; i += 2) sum += (f[i] << 8) | f[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const csum = ~sum & 0xffff;
  f[ip + 10] = csum >>> 8;
  f[ip + 11] = csum & 0xff;
  const tcp = ip + 20;
  f.set([0x9c, 0x40, 0x13, 0x89], tcp); // ports 40000 -> 5001
  f[tcp + 12] = 0x50; // 20-byte header
  f[tcp + 13] = 0x18; // PSH, ACK
  f[tcp + 14] = 0xff; // window
  f[tcp + 15] = 0xff;
  return f;
}
