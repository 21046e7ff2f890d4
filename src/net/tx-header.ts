import {
  type FeatureSet,
  NET_F_CSUM,
  NET_F_HOST_ECN,
  NET_F_HOST_TSO4,
  NET_F_HOST_TSO6,
  NET_F_HOST_UFO,
  NET_F_HOST_USO,
  featureMask,
} from '../spec/features.js';
import {
  NET_HDR_CSUM_OFFSET,
  NET_HDR_CSUM_START,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_FLAGS,
  NET_HDR_GSO_ECN,
  NET_HDR_GSO_NONE,
  NET_HDR_GSO_SIZE,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_GSO_TYPE,
  NET_HDR_GSO_UDP,
  NET_HDR_GSO_UDP_L4,
  NET_HDR_HDR_LEN,
  NET_HDR_SIZE,
} from '../spec/net.js';
import type { DescriptorChain } from '../ring/chain.js';
import { BAD_HEADER_REASONS, type BadHeaderReason } from './net-counters.js';

/** Offloads a driver may ask for on transmit, as bits of one number (no bigint per packet). */
export const TX_CSUM = 1;
export const TX_TSO4 = 2;
export const TX_TSO6 = 4;
export const TX_UFO = 8;
export const TX_USO = 16;
export const TX_ECN = 32;

/** The transmit offloads the negotiated features allow (5.1.3, HOST_* and CSUM). */
export function txOffloads(features: FeatureSet): number {
  return featureMask(features, [
    [NET_F_CSUM, TX_CSUM],
    [NET_F_HOST_TSO4, TX_TSO4],
    [NET_F_HOST_TSO6, TX_TSO6],
    [NET_F_HOST_UFO, TX_UFO],
    [NET_F_HOST_USO, TX_USO],
    [NET_F_HOST_ECN, TX_ECN],
  ]);
}

const reason = (r: BadHeaderReason): number => BAD_HEADER_REASONS.indexOf(r);
const TX_FLAGS = reason('txFlags');
const CSUM_NOT_NEGOTIATED = reason('csumNotNegotiated');
const CSUM_RANGE = reason('csumRange');
const GSO_NOT_NEGOTIATED = reason('gsoNotNegotiated');
const GSO_WITHOUT_CSUM = reason('gsoWithoutCsum');
const GSO_SIZE = reason('gsoSize');
const HDR_LEN = reason('hdrLen');
const OVER_MTU = reason('overMtu');

const u16 = (u8: Uint8Array, i: number): number => u8[i] | (u8[i + 1] << 8);

/**
 * Check a transmitted frame's virtio_net_hdr (at u8[hdr]) against what was
 * negotiated (5.1.6.2.1: the driver sets only NEEDS_CSUM, only offloads the
 * device offered, and NEEDS_CSUM with any GSO). Returns -1 when the header
 * is usable, else the index of the reason in BAD_HEADER_REASONS.
 * `maxPlainFrame` bounds a frame sent without GSO (MTU + Ethernet header).
 */
export function txHeaderProblem(u8: Uint8Array, hdr: number, len: number, offloads: number, maxPlainFrame: number): number {
  const flags = u8[hdr + NET_HDR_FLAGS];
  const gso = u8[hdr + NET_HDR_GSO_TYPE];
  if ((flags & ~NET_HDR_F_NEEDS_CSUM) !== 0) return TX_FLAGS;
  if (flags !== 0) {
    if ((offloads & TX_CSUM) === 0) return CSUM_NOT_NEGOTIATED;
    if (u16(u8, hdr + NET_HDR_CSUM_START) + u16(u8, hdr + NET_HDR_CSUM_OFFSET) + 2 > len) return CSUM_RANGE;
  }
  if (gso === NET_HDR_GSO_NONE) return len > maxPlainFrame ? OVER_MTU : -1;
  const need = gsoOffload(gso & ~NET_HDR_GSO_ECN) | ((gso & NET_HDR_GSO_ECN) !== 0 ? TX_ECN : 0);
  if (need === 0 || (offloads & need) !== need) return GSO_NOT_NEGOTIATED;
  if (flags === 0) return GSO_WITHOUT_CSUM;
  if (u16(u8, hdr + NET_HDR_GSO_SIZE) === 0) return GSO_SIZE;
  if (u16(u8, hdr + NET_HDR_HDR_LEN) > len) return HDR_LEN;
  return -1;
}

/** The offload bit a gso_type needs, 0 for an unknown type. */
function gsoOffload(type: number): number {
  switch (type) {
    case NET_HDR_GSO_TCPV4:
      return TX_TSO4;
    case NET_HDR_GSO_TCPV6:
      return TX_TSO6;
    case NET_HDR_GSO_UDP:
      return TX_UFO;
    case NET_HDR_GSO_UDP_L4:
      return TX_USO;
    default:
      return 0;
  }
}

/**
 * Copy a chain's 12-byte virtio_net_hdr, when its first descriptor holds it
 * at a 4-aligned address, into dst32[at..at + 3) as three word loads and
 * stores, num_buffers zeroed (it means something on receive only, 5.1.6;
 * little-endian: the high half of the last word). Returns false (nothing
 * written) for any other layout, which the caller copies byte-wise.
 */
export function copyTxHeaderWords(chain: DescriptorChain, hdrSize: number, dst32: Uint32Array, at: number): boolean {
  const first = chain.segIdx[0];
  if (hdrSize !== NET_HDR_SIZE || (first & 3) !== 0 || chain.readable === 0 || chain.segLen[0] < NET_HDR_SIZE) return false;
  const src32 = chain.segRegion[0].u32;
  const w = first >>> 2;
  dst32[at] = src32[w];
  dst32[at + 1] = src32[w + 1];
  dst32[at + 2] = src32[w + 2] & 0xffff;
  return true;
}
