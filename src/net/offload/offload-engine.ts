import { InvalidArgumentError } from '../../errors.js';
import {
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_GSO_ECN,
  NET_HDR_GSO_NONE,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_GSO_UDP,
  NET_HDR_GSO_UDP_L4,
  NET_MAX_TX_FRAME,
} from '../../spec/net.js';
import { copyRange, putU16 } from '../../wire/bytes.js';
import { checksumOf, sumBytes } from '../../wire/checksum.js';
import {
  ETH_HLEN,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPPROTO_UDPLITE,
  IPV6_FRAG_HLEN,
  IPV6_HLEN,
  PacketInfo,
  TCP_CSUM_OFFSET,
  UDP_CSUM_OFFSET,
  parsePacket,
} from '../../wire/packet.js';
import { type FrameSink, GsoSegmenter, TCP_CWR } from './gso-segmenter.js';
import type { NetHdr } from './net-hdr.js';
import type { OffloadErrorCode } from './offload-error.js';

export type { FrameSink };

/** IP length fields are 16 bits: IPv4 counts its header, IPv6 does not. */
const IPV4_MAX_PACKET = 0xffff;
const IPV6_MAX_PACKET = 0xffff + IPV6_HLEN;

/**
 * The device side of virtio-net's transmit offloads (5.1.6.2): completing a
 * partial checksum (NEEDS_CSUM) and cutting a GSO frame into wire frames the
 * way Linux's GSO does (TSO, USO, UFO). Checks never look at negotiated
 * features: the caller refuses offloads the driver was not offered. Bad guest
 * data is reported through `error`, never thrown; one engine per queue, with
 * every buffer allocated up front so the per-packet path allocates nothing.
 */
export class OffloadEngine {
  /** Error code of the last failing call, or undefined. */
  error: OffloadErrorCode | undefined = undefined;
  /** Headers of the last GSO frame check() parsed. */
  readonly packet = new PacketInfo();
  /** Headers of a frame whose completed checksum came out 0 (see zeroChecksumField). */
  private readonly zeroSumPacket = new PacketInfo();
  private readonly maxFrame: number;
  /** Builds the output frames in its scratch: at most the input frame plus an IPv6 fragment header. */
  private readonly segmenter: GsoSegmenter;
  /** Payload bytes per segment (per fragment for UFO), set by plan(). */
  private unit = 0;
  /** Identification of the last IPv6 fragmented datagram segment() numbered itself. */
  private fragId = 0;

  constructor(maxFrame: number = NET_MAX_TX_FRAME) {
    if (!Number.isInteger(maxFrame) || maxFrame < ETH_HLEN) {
      throw new InvalidArgumentError(`maxFrame ${maxFrame} is not a frame size`);
    }
    this.maxFrame = maxFrame;
    this.segmenter = new GsoSegmenter(this.packet, new Uint8Array(maxFrame + IPV6_FRAG_HLEN));
  }

  /**
   * Validate hdr against the frame u8[at, at+len). With NEEDS_CSUM the
   * checksum field must lie inside the frame; a GSO frame must also parse,
   * match its gso_type, and point csum_start / csum_offset at its TCP or UDP
   * checksum (Linux takes csum_start as the transport header). hdr_len is only
   * a hint, as in Linux: it must not exceed the frame, and the real header
   * length comes from the parse. Returns true when usable; else sets `error`.
   */
  check(hdr: NetHdr, u8: Uint8Array, at: number, len: number): boolean {
    this.error = undefined;
    frameInBounds(u8, at, len);
    if (len > this.maxFrame) return this.fail('FRAME_TOO_LONG');
    const ecn = (hdr.gsoType & NET_HDR_GSO_ECN) !== 0;
    const base = hdr.gsoType & ~NET_HDR_GSO_ECN;
    const tcp = base === NET_HDR_GSO_TCPV4 || base === NET_HDR_GSO_TCPV6;
    const udp = base === NET_HDR_GSO_UDP || base === NET_HDR_GSO_UDP_L4;
    // ECN describes a TCP segment's CWR (5.1.6.2); Linux also refuses it alone.
    if ((base !== NET_HDR_GSO_NONE && !tcp && !udp) || (ecn && !tcp)) return this.fail('BAD_GSO_TYPE');
    if (hdr.hdrLen > len) return this.fail('BAD_HDR_LEN');
    const needsCsum = (hdr.flags & NET_HDR_F_NEEDS_CSUM) !== 0;
    if (needsCsum && !this.checkCsumField(hdr, len)) return false;
    if (base === NET_HDR_GSO_NONE) return true;

    // 5.1.6.2.1: with any gso_type the driver also sets NEEDS_CSUM and gso_size
    // (the MSS); UFO cuts in 8-byte fragment units.
    if (!needsCsum) return this.fail('GSO_WITHOUT_CSUM');
    if (hdr.gsoSize === 0 || (base === NET_HDR_GSO_UDP && hdr.gsoSize < 8)) return this.fail('BAD_GSO_SIZE');
    const p = this.packet;
    const bad = parsePacket(p, u8, at, len);
    if (bad !== undefined) return this.fail(bad);
    if (
      p.ipVersion === 0 ||
      p.l4Proto !== (tcp ? IPPROTO_TCP : IPPROTO_UDP) ||
      (base === NET_HDR_GSO_TCPV4 && p.ipVersion !== 4) ||
      (base === NET_HDR_GSO_TCPV6 && p.ipVersion !== 6)
    ) {
      return this.fail('GSO_PROTOCOL_MISMATCH');
    }
    if (p.ipFragment) return this.fail('GSO_IP_FRAGMENT');
    if (hdr.csumStart !== p.l4Off) return this.fail('BAD_CSUM_START');
    if (hdr.csumOffset !== (tcp ? TCP_CSUM_OFFSET : UDP_CSUM_OFFSET)) return this.fail('BAD_CSUM_OFFSET');
    // 5.1.6.2.1: a TSO frame with CWR set must say so with GSO_ECN.
    if (tcp && !ecn && (u8[at + p.l4Off + 13] & TCP_CWR) !== 0) return this.fail('ECN_WITHOUT_GSO_ECN');
    if (base === NET_HDR_GSO_UDP && len - p.l4Off > 0xffff) return this.fail('FRAME_TOO_LONG');
    return true;
  }

  /**
   * NEEDS_CSUM: fold the checksum of bytes [csumStart, len) into the 16-bit
   * field at csumStart+csumOffset, in place. The driver seeded the field with
   * the pseudo-header sum, as Linux does (5.1.6.2), so the device needs to know
   * nothing of the protocol, except when the result is 0: see
   * zeroChecksumField. Without NEEDS_CSUM this does nothing and returns true.
   */
  completeChecksum(hdr: NetHdr, u8: Uint8Array, at: number, len: number): boolean {
    this.error = undefined;
    frameInBounds(u8, at, len);
    if ((hdr.flags & NET_HDR_F_NEEDS_CSUM) === 0) return true;
    if (!this.checkCsumField(hdr, len)) return false;
    const start = at + hdr.csumStart;
    const csum = checksumOf(sumBytes(u8, start, at + len, 0));
    putU16(u8, start + hdr.csumOffset, csum !== 0 ? csum : this.zeroChecksumField(hdr, u8, at, len));
    return true;
  }

  /**
   * The field value for a computed checksum of 0. The arithmetic gives 0x0000
   * (RFC 1624), which TCP and ICMPv6 send as is (Wireshark flags 0xffff there);
   * only UDP (and UDP-Lite) send 0xffff, since 0 means "no checksum" to them
   * (RFC 768, RFC 3828). The protocol comes from parsing the frame, done only
   * on this rare path; when csum_start is not a transport header the parse
   * finds (IPv6 extension headers, a tunnel), UDP's field offset decides.
   */
  private zeroChecksumField(hdr: NetHdr, u8: Uint8Array, at: number, len: number): number {
    const p = this.zeroSumPacket;
    if (parsePacket(p, u8, at, len) === undefined && p.ipVersion !== 0 && p.l4Off === hdr.csumStart) {
      return p.l4Proto === IPPROTO_UDP || p.l4Proto === IPPROTO_UDPLITE ? 0xffff : 0;
    }
    return hdr.csumOffset === UDP_CSUM_OFFSET ? 0xffff : 0;
  }

  /**
   * How many wire frames segment() would emit for this frame with this MTU
   * (the largest IP packet), or -1 with `error` set. A frame without GSO
   * counts as one.
   */
  segmentCount(hdr: NetHdr, u8: Uint8Array, at: number, len: number, mtu: number): number {
    if (!this.check(hdr, u8, at, len)) return -1;
    return this.plan(hdr, len, mtu);
  }

  /**
   * Cut a GSO frame into wire frames whose IP packets are at most `mtu`
   * bytes, each built in scratch and passed to `emit`:
   * - TCPV4 / TCPV6 (TSO): gso_size payload bytes per segment, IPv4 ids
   *   counting up, sequence numbers advancing, FIN and PSH only on the last
   *   segment and CWR only on the first (the GSO_ECN case);
   * - UDP_L4 (USO): each segment its own UDP datagram, IPv4 ids counting up;
   * - UDP (UFO): one UDP datagram cut into IPv4 fragments (one id, offsets in
   *   8-byte units, only copied options after the first) or IPv6 fragments
   *   (a fragment header is inserted); a datagram that fits is not fragmented.
   * gso_size is clamped to what the MTU allows. IPv4 header, TCP and UDP
   * checksums are computed in full. A frame without GSO is emitted as is,
   * its checksum completed if NEEDS_CSUM asks for it (its size is not checked
   * against the MTU). IPv6 fragments carry `fragmentId` as identification,
   * or, without it, one the engine counts up per datagram (a caller that
   * must emit the same fragments again passes the same id). Returns the
   * number emitted, or -1 with `error` set (then nothing was emitted).
   */
  segment(hdr: NetHdr, u8: Uint8Array, at: number, len: number, mtu: number, emit: FrameSink, fragmentId?: number): number {
    if (!this.check(hdr, u8, at, len)) return -1;
    const n = this.plan(hdr, len, mtu);
    if (n < 0) return -1;
    const g = this.segmenter;
    switch (hdr.gsoType & ~NET_HDR_GSO_ECN) {
      case NET_HDR_GSO_NONE:
        copyRange(u8, at, g.scratch, 0, len);
        this.completeChecksum(hdr, g.scratch, 0, len);
        emit(g.scratch, 0, len);
        return 1;
      case NET_HDR_GSO_TCPV4:
      case NET_HDR_GSO_TCPV6:
        g.tcp(u8, at, len, n, this.unit, emit);
        return n;
      case NET_HDR_GSO_UDP_L4:
        g.udp(u8, at, len, n, this.unit, emit);
        return n;
      default:
        if (n === 1) g.wholeUdp(u8, at, len, emit);
        else if (this.packet.ipVersion === 4) g.fragmentUdpV4(u8, at, len, n, this.unit, emit);
        else g.fragmentUdpV6(u8, at, len, n, this.unit, emit, fragmentId ?? (this.fragId = (this.fragId + 1) >>> 0));
        return n;
    }
  }

  private fail(code: OffloadErrorCode): false {
    this.error = code;
    return false;
  }

  private checkCsumField(hdr: NetHdr, len: number): boolean {
    if (hdr.csumStart + 2 > len) return this.fail('BAD_CSUM_START');
    // An odd offset would straddle the 16-bit words the sum is made of.
    if ((hdr.csumOffset & 1) !== 0 || hdr.csumStart + hdr.csumOffset + 2 > len) return this.fail('BAD_CSUM_OFFSET');
    return true;
  }

  /** Set `unit` for a frame check() accepted and return the segment count, or -1. */
  private plan(hdr: NetHdr, len: number, mtu: number): number {
    const base = hdr.gsoType & ~NET_HDR_GSO_ECN;
    if (base === NET_HDR_GSO_NONE) return 1;
    const p = this.packet;
    const ipMax = Math.min(Math.floor(mtu) || 0, p.ipVersion === 4 ? IPV4_MAX_PACKET : IPV6_MAX_PACKET);
    if (base === NET_HDR_GSO_UDP) {
      // UFO cuts the IP payload (UDP header included); gso_size is a fragment's data.
      const data = len - p.l4Off;
      const room = ipMax - p.l3Len;
      if (data <= room && data <= hdr.gsoSize) {
        this.unit = data;
        return 1;
      }
      const unit = Math.min(hdr.gsoSize, p.ipVersion === 4 ? room : room - IPV6_FRAG_HLEN) & ~7;
      if (unit < 8) return this.failCount('MTU_TOO_SMALL');
      this.unit = unit;
      return Math.ceil(data / unit);
    }
    const unit = Math.min(hdr.gsoSize, ipMax - p.l3Len - p.l4Len);
    if (unit < 1) return this.failCount('MTU_TOO_SMALL');
    this.unit = unit;
    const payload = len - p.hdrLen;
    return payload === 0 ? 1 : Math.ceil(payload / unit);
  }

  private failCount(code: OffloadErrorCode): number {
    this.error = code;
    return -1;
  }
}

/** at/len come from the caller, not the guest: a bad range is a bug and throws. */
function frameInBounds(u8: Uint8Array, at: number, len: number): void {
  if (!Number.isInteger(at) || !Number.isInteger(len) || at < 0 || len < 0 || at + len > u8.length) {
    throw new InvalidArgumentError(`frame [${at}, ${at}+${len}) is outside a ${u8.length}-byte buffer`);
  }
}
