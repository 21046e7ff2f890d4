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
import { copyRange, getU16, getU32, putU16, putU32 } from '../../wire/bytes.js';
import { checksumOf, copyAndSum, pseudoSumV4, pseudoSumV6, sumBytes } from '../../wire/checksum.js';
import type { NetHdr } from './net-hdr.js';
import type { OffloadErrorCode } from './offload-error.js';
import {
  ETH_HLEN,
  IPPROTO_FRAGMENT,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPPROTO_UDPLITE,
  IPV4_MIN_HLEN,
  IPV6_FRAG_HLEN,
  IPV6_HLEN,
  PacketInfo,
  TCP_CSUM_OFFSET,
  UDP_CSUM_OFFSET,
  UDP_HLEN,
  parsePacket,
} from '../../wire/packet.js';

/**
 * Receives each frame segment() builds. The bytes live in the engine's
 * scratch buffer and are overwritten by the next frame: copy them before
 * returning, and do not modify them.
 */
export type FrameSink = (u8: Uint8Array, at: number, len: number) => void;

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const IPV4_DF_AND_RESERVED = 0xc000;
const IPV4_MF = 0x2000;
/** IP length fields are 16 bits: IPv4 counts its header, IPv6 does not. */
const IPV4_MAX_PACKET = 0xffff;
const IPV6_MAX_PACKET = 0xffff + IPV6_HLEN;
/** A UDP checksum of 0 means "none" (RFC 768); the same sum is sent as 0xffff. */
const udpChecksumOf = (sum: number): number => checksumOf(sum) || 0xffff;

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
  /** Output frames are built here: at most the input frame plus an IPv6 fragment header. */
  private readonly scratch: Uint8Array;
  /** Payload bytes per segment (per fragment for UFO), set by plan(). */
  private unit = 0;
  /** Identification of the last IPv6 fragmented datagram segment() numbered itself. */
  private fragId = 0;

  constructor(maxFrame: number = NET_MAX_TX_FRAME) {
    if (!Number.isInteger(maxFrame) || maxFrame < ETH_HLEN) {
      throw new InvalidArgumentError(`maxFrame ${maxFrame} is not a frame size`);
    }
    this.maxFrame = maxFrame;
    this.scratch = new Uint8Array(maxFrame + IPV6_FRAG_HLEN);
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
    switch (hdr.gsoType & ~NET_HDR_GSO_ECN) {
      case NET_HDR_GSO_NONE:
        copyRange(u8, at, this.scratch, 0, len);
        this.completeChecksum(hdr, this.scratch, 0, len);
        emit(this.scratch, 0, len);
        return 1;
      case NET_HDR_GSO_TCPV4:
      case NET_HDR_GSO_TCPV6:
        this.segmentTcp(u8, at, len, n, emit);
        return n;
      case NET_HDR_GSO_UDP_L4:
        this.segmentUdp(u8, at, len, n, emit);
        return n;
      default:
        if (n === 1) this.wholeUdp(u8, at, len, emit);
        else if (this.packet.ipVersion === 4) this.fragmentUdpV4(u8, at, len, n, emit);
        else this.fragmentUdpV6(u8, at, len, n, emit, fragmentId ?? (this.fragId = (this.fragId + 1) >>> 0));
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

  /** Fill the IPv4 total length and header checksum of the packet at s[ip]. */
  private finishIpv4(ip: number, ihl: number, totalLen: number): void {
    const s = this.scratch;
    putU16(s, ip + 2, totalLen);
    putU16(s, ip + 10, 0);
    putU16(s, ip + 10, checksumOf(sumBytes(s, ip, ip + ihl, 0)));
  }

  private segmentTcp(u8: Uint8Array, at: number, len: number, n: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: th, l4Len, hdrLen } = this.packet;
    const v4 = this.packet.ipVersion === 4;
    const s = this.scratch;
    const unit = this.unit;
    const payload = len - hdrLen;
    copyRange(u8, at, s, 0, hdrLen);
    const seq = getU32(s, th + 4);
    const flags = s[th + 13];
    const id = v4 ? getU16(s, ip + 4) : 0;
    for (let i = 0, off = 0; i < n; i++, off += unit) {
      const chunk = Math.min(unit, payload - off);
      const segLen = l4Len + chunk;
      let f = flags;
      if (i !== 0) f &= ~TCP_CWR;
      if (i !== n - 1) f &= ~(TCP_FIN | TCP_PSH);
      s[th + 13] = f;
      putU32(s, th + 4, (seq + off) >>> 0);
      if (v4) {
        putU16(s, ip + 4, (id + i) & 0xffff);
        this.finishIpv4(ip, l3Len, l3Len + segLen);
      } else {
        putU16(s, ip + 4, segLen);
      }
      putU16(s, th + TCP_CSUM_OFFSET, 0);
      let sum = v4 ? pseudoSumV4(s, ip, IPPROTO_TCP, segLen) : pseudoSumV6(s, ip, IPPROTO_TCP, segLen);
      sum = sumBytes(s, th, hdrLen, sum);
      sum = copyAndSum(u8, at + hdrLen + off, s, hdrLen, chunk, sum);
      putU16(s, th + TCP_CSUM_OFFSET, checksumOf(sum));
      emit(s, 0, hdrLen + chunk);
    }
  }

  private segmentUdp(u8: Uint8Array, at: number, len: number, n: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: uh, hdrLen } = this.packet;
    const v4 = this.packet.ipVersion === 4;
    const s = this.scratch;
    const unit = this.unit;
    const payload = len - hdrLen;
    copyRange(u8, at, s, 0, hdrLen);
    const id = v4 ? getU16(s, ip + 4) : 0;
    for (let i = 0, off = 0; i < n; i++, off += unit) {
      const chunk = Math.min(unit, payload - off);
      const dgramLen = UDP_HLEN + chunk;
      if (v4) {
        putU16(s, ip + 4, (id + i) & 0xffff);
        this.finishIpv4(ip, l3Len, l3Len + dgramLen);
      } else {
        putU16(s, ip + 4, dgramLen);
      }
      putU16(s, uh + 4, dgramLen);
      putU16(s, uh + UDP_CSUM_OFFSET, 0);
      let sum = v4 ? pseudoSumV4(s, ip, IPPROTO_UDP, dgramLen) : pseudoSumV6(s, ip, IPPROTO_UDP, dgramLen);
      sum = sumBytes(s, uh, hdrLen, sum);
      sum = copyAndSum(u8, at + hdrLen + off, s, hdrLen, chunk, sum);
      putU16(s, uh + UDP_CSUM_OFFSET, udpChecksumOf(sum));
      emit(s, 0, hdrLen + chunk);
    }
  }

  /** The checksum of the whole UFO datagram in u8, its length field taken as `dgramLen`. */
  private udpDatagramChecksum(u8: Uint8Array, at: number, len: number, dgramLen: number): number {
    const { l3Off, l4Off } = this.packet;
    const ip = at + l3Off;
    const uh = at + l4Off;
    let sum = this.packet.ipVersion === 4 ? pseudoSumV4(u8, ip, IPPROTO_UDP, dgramLen) : pseudoSumV6(u8, ip, IPPROTO_UDP, dgramLen);
    sum += getU16(u8, uh) + getU16(u8, uh + 2) + dgramLen;
    return udpChecksumOf(sumBytes(u8, uh + UDP_HLEN, at + len, sum));
  }

  /** A UFO datagram that fits in one packet: sent whole, lengths and checksums filled. */
  private wholeUdp(u8: Uint8Array, at: number, len: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: uh } = this.packet;
    const s = this.scratch;
    const dgramLen = len - uh;
    copyRange(u8, at, s, 0, len);
    putU16(s, uh + 4, dgramLen);
    putU16(s, uh + UDP_CSUM_OFFSET, this.udpDatagramChecksum(u8, at, len, dgramLen));
    if (this.packet.ipVersion === 4) this.finishIpv4(ip, l3Len, l3Len + dgramLen);
    else putU16(s, ip + 4, dgramLen);
    emit(s, 0, len);
  }

  private fragmentUdpV4(u8: Uint8Array, at: number, len: number, n: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: uh } = this.packet;
    const s = this.scratch;
    const unit = this.unit;
    const dgramLen = len - uh;
    const csum = this.udpDatagramChecksum(u8, at, len, dgramLen);
    copyRange(u8, at, s, 0, uh);
    const keep = getU16(s, ip + 6) & IPV4_DF_AND_RESERVED;
    for (let i = 0, off = 0; i < n; i++, off += unit) {
      const chunk = Math.min(unit, dgramLen - off);
      if (i === 1) clearUncopiedOptions(s, ip + IPV4_MIN_HLEN, ip + l3Len);
      putU16(s, ip + 6, keep | (i === n - 1 ? 0 : IPV4_MF) | (off >>> 3));
      this.finishIpv4(ip, l3Len, l3Len + chunk);
      copyRange(u8, at + uh + off, s, uh, chunk);
      if (i === 0) {
        putU16(s, uh + 4, dgramLen);
        putU16(s, uh + UDP_CSUM_OFFSET, csum);
      }
      emit(s, 0, uh + chunk);
    }
  }

  private fragmentUdpV6(u8: Uint8Array, at: number, len: number, n: number, emit: FrameSink, id: number): void {
    const { l3Off: ip, l4Off: fh } = this.packet;
    const s = this.scratch;
    const unit = this.unit;
    const data = fh + IPV6_FRAG_HLEN;
    const dgramLen = len - fh;
    const csum = this.udpDatagramChecksum(u8, at, len, dgramLen);
    copyRange(u8, at, s, 0, fh);
    s[ip + 6] = IPPROTO_FRAGMENT;
    // RFC 8200 4.5: next header, reserved, offset (8-byte units) and M flag, identification.
    s[fh] = IPPROTO_UDP;
    s[fh + 1] = 0;
    putU32(s, fh + 4, id);
    for (let i = 0, off = 0; i < n; i++, off += unit) {
      const chunk = Math.min(unit, dgramLen - off);
      putU16(s, ip + 4, IPV6_FRAG_HLEN + chunk);
      putU16(s, fh + 2, off | (i === n - 1 ? 0 : 1));
      copyRange(u8, at + fh + off, s, data, chunk);
      if (i === 0) {
        putU16(s, data + 4, dgramLen);
        putU16(s, data + UDP_CSUM_OFFSET, csum);
      }
      emit(s, 0, data + chunk);
    }
  }
}

/**
 * Fragments after the first carry only the IPv4 options whose copied flag is
 * set (RFC 791); like Linux, the others become NOPs so the header keeps its
 * length. A malformed option ends the walk, leaving the rest as sent.
 */
function clearUncopiedOptions(s: Uint8Array, from: number, to: number): void {
  let i = from;
  while (i < to) {
    const type = s[i];
    if (type === 0) return; // end of option list
    if (type === 1) {
      i++;
      continue;
    }
    const olen = i + 1 < to ? s[i + 1] : 0;
    if (olen < 2 || i + olen > to) return;
    if ((type & 0x80) === 0) s.fill(1, i, i + olen);
    i += olen;
  }
}

/** at/len come from the caller, not the guest: a bad range is a bug and throws. */
function frameInBounds(u8: Uint8Array, at: number, len: number): void {
  if (!Number.isInteger(at) || !Number.isInteger(len) || at < 0 || len < 0 || at + len > u8.length) {
    throw new InvalidArgumentError(`frame [${at}, ${at}+${len}) is outside a ${u8.length}-byte buffer`);
  }
}
