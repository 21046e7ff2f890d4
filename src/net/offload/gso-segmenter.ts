import { copyRange, getU16, getU32, putU16, putU32 } from '../../wire/bytes.js';
import { checksumOf, copyAndSum, pseudoSumV4, pseudoSumV6, sumBytes } from '../../wire/checksum.js';
import { IPPROTO_FRAGMENT, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, IPV6_FRAG_HLEN, type PacketInfo, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET, UDP_HLEN } from '../../wire/packet.js';

/**
 * Receives each frame segment() builds. The bytes live in the engine's
 * scratch buffer and are overwritten by the next frame: copy them before
 * returning, and do not modify them.
 */
export type FrameSink = (u8: Uint8Array, at: number, len: number) => void;

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
/** TCP's CWR flag (the ECN case of TSO: only on the first segment). */
export const TCP_CWR = 0x80;
const IPV4_DF_AND_RESERVED = 0xc000;
const IPV4_MF = 0x2000;
/** A UDP checksum of 0 means "none" (RFC 768); the same sum is sent as 0xffff. */
const udpChecksumOf = (sum: number): number => checksumOf(sum) || 0xffff;

/**
 * The cutting half of OffloadEngine.segment(): builds each wire frame of a
 * GSO frame the engine checked and planned (`packet` holds its parsed
 * headers) in `scratch` and hands it to the sink, the way Linux's GSO does.
 * IPv4 header, TCP and UDP checksums are computed in full; nothing is
 * allocated.
 */
export class GsoSegmenter {
  constructor(
    /** The headers of the frame being cut (the engine's, filled by its check()). */
    private readonly packet: PacketInfo,
    /** Where each output frame is built. */
    readonly scratch: Uint8Array,
  ) {}

  /** Fill the IPv4 total length and header checksum of the packet at s[ip]. */
  private finishIpv4(ip: number, ihl: number, totalLen: number): void {
    const s = this.scratch;
    putU16(s, ip + 2, totalLen);
    putU16(s, ip + 10, 0);
    putU16(s, ip + 10, checksumOf(sumBytes(s, ip, ip + ihl, 0)));
  }

  /** TSO: n segments of `unit` payload bytes (the last shorter). */
  tcp(u8: Uint8Array, at: number, len: number, n: number, unit: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: th, l4Len, hdrLen } = this.packet;
    const v4 = this.packet.ipVersion === 4;
    const s = this.scratch;
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
      this.segmentIp(ip, l3Len, v4, (id + i) & 0xffff, segLen);
      putU16(s, th + TCP_CSUM_OFFSET, 0);
      let sum = v4 ? pseudoSumV4(s, ip, IPPROTO_TCP, segLen) : pseudoSumV6(s, ip, IPPROTO_TCP, segLen);
      sum = sumBytes(s, th, hdrLen, sum);
      sum = copyAndSum(u8, at + hdrLen + off, s, hdrLen, chunk, sum);
      putU16(s, th + TCP_CSUM_OFFSET, checksumOf(sum));
      emit(s, 0, hdrLen + chunk);
    }
  }

  /**
   * The IP header of a segment carrying `l4Len` bytes of TCP or UDP: IPv4 gets
   * its identification and total length (and header checksum), IPv6 its
   * payload length.
   */
  private segmentIp(ip: number, l3Len: number, v4: boolean, id: number, l4Len: number): void {
    if (v4) {
      putU16(this.scratch, ip + 4, id);
      this.finishIpv4(ip, l3Len, l3Len + l4Len);
    } else {
      putU16(this.scratch, ip + 4, l4Len);
    }
  }

  /** USO: n datagrams of `unit` payload bytes (the last shorter). */
  udp(u8: Uint8Array, at: number, len: number, n: number, unit: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: uh, hdrLen } = this.packet;
    const v4 = this.packet.ipVersion === 4;
    const s = this.scratch;
    const payload = len - hdrLen;
    copyRange(u8, at, s, 0, hdrLen);
    const id = v4 ? getU16(s, ip + 4) : 0;
    for (let i = 0, off = 0; i < n; i++, off += unit) {
      const chunk = Math.min(unit, payload - off);
      const dgramLen = UDP_HLEN + chunk;
      this.segmentIp(ip, l3Len, v4, (id + i) & 0xffff, dgramLen);
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
  wholeUdp(u8: Uint8Array, at: number, len: number, emit: FrameSink): void {
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

  /** UFO over IPv4: n fragments of `unit` bytes of the datagram (the last shorter). */
  fragmentUdpV4(u8: Uint8Array, at: number, len: number, n: number, unit: number, emit: FrameSink): void {
    const { l3Off: ip, l3Len, l4Off: uh } = this.packet;
    const s = this.scratch;
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

  /** UFO over IPv6: n fragments of `unit` bytes of the datagram, a fragment header with identification `id` inserted. */
  fragmentUdpV6(u8: Uint8Array, at: number, len: number, n: number, unit: number, emit: FrameSink, id: number): void {
    const { l3Off: ip, l4Off: fh } = this.packet;
    const s = this.scratch;
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
