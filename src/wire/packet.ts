import { getU16 } from './bytes.js';

/**
 * Why parsePacket() could not find a frame's headers (the offload engine
 * counts both among its OffloadErrorCode values).
 */
export type PacketErrorCode =
  /** Ethernet, IP or transport headers truncated or malformed. */
  | 'UNPARSEABLE_PACKET'
  /** IPv6 with extension headers: only a bare IPv6 header is parsed. */
  | 'IPV6_EXT_HEADER';

export const ETH_HLEN = 14;
export const ETH_P_IPV4 = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
/** 802.1Q customer tag and 802.1ad service tag: 4 bytes each, stackable (QinQ). */
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
/** UDP-Lite (RFC 3828): like UDP, a computed checksum of 0 is sent as 0xffff. */
export const IPPROTO_UDPLITE = 136;
export const IPV4_MIN_HLEN = 20;
export const IPV6_HLEN = 40;
export const IPV6_FRAG_HLEN = 8;
export const IPPROTO_FRAGMENT = 44;
export const TCP_MIN_HLEN = 20;
export const UDP_HLEN = 8;
/** Offset of the checksum field in a TCP and a UDP header. */
export const TCP_CSUM_OFFSET = 16;
export const UDP_CSUM_OFFSET = 6;

/** IPv6 next-header values that are extension headers (IANA registry), not transports. */
function isIpv6ExtHeader(nh: number): boolean {
  switch (nh) {
    case 0: // hop-by-hop options
    case 43: // routing
    case 44: // fragment
    case 50: // ESP
    case 51: // AH
    case 60: // destination options
    case 135: // mobility
    case 139: // HIP
    case 140: // shim6
    case 253: // experimental
    case 254:
      return true;
    default:
      return false;
  }
}

/**
 * Where the headers of one Ethernet frame are. Offsets count from the frame's
 * first byte. Reused: parsePacket overwrites every field.
 */
export class PacketInfo {
  /** 802.1Q / 802.1ad tags between the MAC addresses and the EtherType. */
  vlanTags = 0;
  /** The EtherType after any tags. */
  etherType = 0;
  /** 4 or 6; 0 when the frame is not IP. */
  ipVersion = 0;
  l3Off = 0;
  /** IPv4 header with options, or the fixed IPv6 header. */
  l3Len = 0;
  /** IPv4 protocol or IPv6 next header; -1 when not IP. */
  l4Proto = -1;
  /** An IPv4 fragment (MF set or a non-zero offset); past the first, l4Len is 0. */
  ipFragment = false;
  l4Off = 0;
  /** TCP header with options, the UDP header, or 0 for other transports. */
  l4Len = 0;

  /** Bytes of all headers up to the transport payload. */
  get hdrLen(): number {
    return this.l4Off + this.l4Len;
  }
}

/**
 * Offset from `at` of an Ethernet frame's ethertype after any 802.1Q /
 * 802.1ad tags, or -1 when the frame ends before it.
 */
export function etherTypeAt(u8: Uint8Array, at: number, len: number): number {
  if (len < ETH_HLEN) return -1;
  let off = ETH_HLEN - 2;
  let type = getU16(u8, at + off);
  while (type === ETH_P_8021Q || type === ETH_P_8021AD) {
    off += 4;
    if (off + 2 > len) return -1;
    type = getU16(u8, at + off);
  }
  return off;
}

/**
 * Parse the frame u8[at, at+len): Ethernet, any number of VLAN tags, IPv4
 * (with options) or IPv6 (no extension headers), TCP or UDP. Never reads
 * outside the frame. Returns undefined on success (a non-IP frame or another
 * transport is a success with ipVersion 0 or l4Len 0); else the error code.
 * IP length fields are not checked: a GSO frame's may be 0 (BIG TCP) and the
 * device rewrites them anyway.
 */
export function parsePacket(p: PacketInfo, u8: Uint8Array, at: number, len: number): PacketErrorCode | undefined {
  p.vlanTags = 0;
  p.ipVersion = 0;
  p.l3Len = 0;
  p.l4Proto = -1;
  p.ipFragment = false;
  p.l4Len = 0;
  let off = etherTypeAt(u8, at, len);
  if (off < 0) return 'UNPARSEABLE_PACKET';
  const type = getU16(u8, at + off);
  p.vlanTags = (off - (ETH_HLEN - 2)) / 4;
  off += 2;
  p.etherType = type;
  p.l3Off = off;
  p.l4Off = off;
  const ip = at + off;
  let fragOffset = 0;
  if (type === ETH_P_IPV4) {
    if (off + IPV4_MIN_HLEN > len || u8[ip] >> 4 !== 4) return 'UNPARSEABLE_PACKET';
    const ihl = (u8[ip] & 0x0f) * 4;
    if (ihl < IPV4_MIN_HLEN || off + ihl > len) return 'UNPARSEABLE_PACKET';
    p.ipVersion = 4;
    p.l3Len = ihl;
    p.l4Proto = u8[ip + 9];
    const frag = getU16(u8, ip + 6);
    p.ipFragment = (frag & 0x3fff) !== 0;
    fragOffset = frag & 0x1fff;
  } else if (type === ETH_P_IPV6) {
    if (off + IPV6_HLEN > len || u8[ip] >> 4 !== 6) return 'UNPARSEABLE_PACKET';
    p.ipVersion = 6;
    p.l3Len = IPV6_HLEN;
    p.l4Proto = u8[ip + 6];
    if (isIpv6ExtHeader(p.l4Proto)) return 'IPV6_EXT_HEADER';
  } else {
    return undefined;
  }
  off += p.l3Len;
  p.l4Off = off;
  // Only the first fragment carries the transport header.
  if (fragOffset !== 0) return undefined;
  if (p.l4Proto === IPPROTO_TCP) {
    if (off + TCP_MIN_HLEN > len) return 'UNPARSEABLE_PACKET';
    const doff = (u8[at + off + 12] >> 4) * 4;
    if (doff < TCP_MIN_HLEN || off + doff > len) return 'UNPARSEABLE_PACKET';
    p.l4Len = doff;
  } else if (p.l4Proto === IPPROTO_UDP) {
    if (off + UDP_HLEN > len) return 'UNPARSEABLE_PACKET';
    p.l4Len = UDP_HLEN;
  }
  return undefined;
}
