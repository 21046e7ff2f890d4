/**
 * Frames as a Linux driver hands them to a virtio-net device with offloads,
 * and an independent reading of what the device put on the wire. Nothing here
 * shares code with src/net/offload: the checksum, the parser and the
 * reassembly are written again, plainly, on DataViews and arrays, so a bug in
 * the device code cannot hide behind the same bug here.
 */
import {
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_GSO_ECN,
  NET_HDR_GSO_NONE,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_GSO_UDP,
  NET_HDR_GSO_UDP_L4,
} from '../../src/spec/net.js';
import { NetHdr } from '../../src/net/offload/index.js';
import { tshark } from './tools.js';

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

/** What to build. Defaults: no VLAN tag, no options, ACK|PSH, seq 1000, id 0x1234. */
export interface FrameSpec {
  ip: 4 | 6;
  l4: 'tcp' | 'udp';
  payload: Uint8Array;
  /** Number of VLAN tags: the outer one 802.1ad when there are two. */
  vlan?: number;
  /** IPv4 option bytes (padded with EOL to a multiple of 4). */
  ipOptions?: number[];
  /** TCP option bytes (padded with EOL to a multiple of 4). */
  tcpOptions?: number[];
  tcpFlags?: number;
  seq?: number;
  ipId?: number;
  /** IPv4 DF bit (default set, as Linux TCP does). */
  df?: boolean;
}

/** A frame and where its headers are. */
export interface BuiltFrame {
  spec: FrameSpec;
  frame: Uint8Array;
  l3Off: number;
  l4Off: number;
  /** Bytes before the payload. */
  hdrLen: number;
}

const pad4 = (b: number[]): number[] => [...b, ...new Array((4 - (b.length % 4)) % 4).fill(0)];

/**
 * Build the frame a Linux guest sends with NEEDS_CSUM: every length field
 * filled for the whole (possibly oversized) packet, the IPv4 header checksum
 * valid, and the TCP/UDP checksum field seeded with the folded pseudo-header
 * sum, not complemented (what csum_tcpudp_magic's callers leave for the
 * device in the CHECKSUM_PARTIAL case).
 */
export function buildFrame(spec: FrameSpec): BuiltFrame {
  const tags = spec.vlan ?? 0;
  const ipOpts = spec.ip === 4 ? pad4(spec.ipOptions ?? []) : [];
  const tcpOpts = spec.l4 === 'tcp' ? pad4(spec.tcpOptions ?? []) : [];
  const l3Off = 14 + 4 * tags;
  const l3Len = spec.ip === 4 ? 20 + ipOpts.length : 40;
  const l4Off = l3Off + l3Len;
  const l4Hdr = spec.l4 === 'tcp' ? 20 + tcpOpts.length : 8;
  const hdrLen = l4Off + l4Hdr;
  const frame = new Uint8Array(hdrLen + spec.payload.length);
  const dv = new DataView(frame.buffer);
  frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  for (let t = 0; t < tags; t++) {
    dv.setUint16(12 + 4 * t, tags > 1 && t === 0 ? 0x88a8 : 0x8100);
    dv.setUint16(14 + 4 * t, 100 + t);
  }
  dv.setUint16(l3Off - 2, spec.ip === 4 ? 0x0800 : 0x86dd);
  const proto = spec.l4 === 'tcp' ? 6 : 17;
  const l4Total = l4Hdr + spec.payload.length;
  if (spec.ip === 4) {
    frame[l3Off] = 0x40 | (l3Len / 4);
    dv.setUint16(l3Off + 2, Math.min(0xffff, l3Len + l4Total));
    dv.setUint16(l3Off + 4, spec.ipId ?? 0x1234);
    dv.setUint16(l3Off + 6, spec.df === false ? 0 : 0x4000);
    frame[l3Off + 8] = 64;
    frame[l3Off + 9] = proto;
    frame.set([10, 0, 0, 1, 10, 0, 0, 2], l3Off + 12);
    frame.set(ipOpts, l3Off + 20);
    dv.setUint16(l3Off + 10, 0xffff - refSum([frame.subarray(l3Off, l4Off)]));
  } else {
    dv.setUint32(l3Off, 0x60012345);
    dv.setUint16(l3Off + 4, Math.min(0xffff, l4Total));
    frame[l3Off + 6] = proto;
    frame[l3Off + 7] = 64;
    frame.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], l3Off + 8);
    frame.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], l3Off + 24);
  }
  dv.setUint16(l4Off, 40000);
  dv.setUint16(l4Off + 2, spec.l4 === 'tcp' ? 41001 : 41002); // ports with no dissector: payload is noise
  if (spec.l4 === 'tcp') {
    dv.setUint32(l4Off + 4, (spec.seq ?? 1000) >>> 0);
    dv.setUint32(l4Off + 8, 777);
    frame[l4Off + 12] = (l4Hdr / 4) << 4;
    frame[l4Off + 13] = spec.tcpFlags ?? TCP_ACK | TCP_PSH;
    dv.setUint16(l4Off + 14, 65535);
    frame.set(tcpOpts, l4Off + 20);
  } else {
    dv.setUint16(l4Off + 4, Math.min(0xffff, l4Total));
  }
  frame.set(spec.payload, hdrLen);
  // The seed: pseudo-header sum, folded, as the device will find it.
  dv.setUint16(l4Off + (spec.l4 === 'tcp' ? 16 : 6), refSum([pseudoHeader(frame, l3Off, spec.ip, proto, l4Total)]));
  return { spec, frame, l3Off, l4Off, hdrLen };
}

/** The virtio_net_hdr a Linux driver would send with this frame. */
export function offloadHdr(b: BuiltFrame, gsoType: number = NET_HDR_GSO_NONE, gsoSize = 0): NetHdr {
  const h = new NetHdr();
  h.flags = NET_HDR_F_NEEDS_CSUM;
  h.gsoType = gsoType;
  h.gsoSize = gsoType === NET_HDR_GSO_NONE ? 0 : gsoSize;
  h.hdrLen = b.hdrLen;
  h.csumStart = b.l4Off;
  h.csumOffset = b.spec.l4 === 'tcp' ? 16 : 6;
  return h;
}

/** A TCP frame and its header; TSO when gsoSize is given (ECN bit when CWR is set). */
export function buildTcpFrame(spec: Omit<FrameSpec, 'l4'>, gsoSize?: number): { built: BuiltFrame; hdr: NetHdr } {
  const built = buildFrame({ ...spec, l4: 'tcp' });
  let type = NET_HDR_GSO_NONE;
  if (gsoSize !== undefined) {
    type = spec.ip === 4 ? NET_HDR_GSO_TCPV4 : NET_HDR_GSO_TCPV6;
    if ((spec.tcpFlags ?? 0) & TCP_CWR) type |= NET_HDR_GSO_ECN;
  }
  return { built, hdr: offloadHdr(built, type, gsoSize ?? 0) };
}

/** A UDP frame and its header; `gso` picks USO (UDP_L4) or UFO (UDP). */
export function buildUdpFrame(spec: Omit<FrameSpec, 'l4'>, gso?: { kind: 'uso' | 'ufo'; size: number }): { built: BuiltFrame; hdr: NetHdr } {
  const built = buildFrame({ ...spec, l4: 'udp' });
  const type = gso === undefined ? NET_HDR_GSO_NONE : gso.kind === 'uso' ? NET_HDR_GSO_UDP_L4 : NET_HDR_GSO_UDP;
  return { built, hdr: offloadHdr(built, type, gso?.size ?? 0) };
}

/** Deterministic payload bytes. */
export function payloadOf(n: number, seed = 1): Uint8Array {
  const p = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}

// --- reference checksum -------------------------------------------------

/**
 * Ones'-complement sum (RFC 1071) of the concatenation of `parts`, folded
 * after every word: deliberately not the device's algorithm.
 */
export function refSum(parts: Uint8Array[]): number {
  const all: number[] = [];
  for (const p of parts) for (const b of p) all.push(b);
  if (all.length % 2 === 1) all.push(0);
  const dv = new DataView(Uint8Array.from(all).buffer);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) {
    sum += dv.getUint16(i);
    if (sum > 0xffff) sum -= 0xffff;
  }
  return sum;
}

/** Pseudo header bytes (RFC 793 / RFC 8200 8.1) for the IP header at frame[l3Off]. */
export function pseudoHeader(frame: Uint8Array, l3Off: number, ip: 4 | 6, proto: number, l4Len: number): Uint8Array {
  if (ip === 4) {
    const b = new Uint8Array(12);
    b.set(frame.subarray(l3Off + 12, l3Off + 20), 0);
    b[9] = proto;
    new DataView(b.buffer).setUint16(10, l4Len);
    return b;
  }
  const b = new Uint8Array(40);
  b.set(frame.subarray(l3Off + 8, l3Off + 40), 0);
  new DataView(b.buffer).setUint32(32, l4Len);
  b[39] = proto;
  return b;
}

// --- reference parser ---------------------------------------------------

/** One wire frame as read by the reference parser. */
export interface RefPacket {
  vlanTags: number[];
  ip: 4 | 6;
  l3Off: number;
  ipHdrLen: number;
  /** IPv4 total length, or IPv6 payload length + 40. */
  ipPacketLen: number;
  ipId: number;
  df: boolean;
  mf: boolean;
  /** Fragment offset in bytes (0 when not a fragment). */
  fragOffset: number;
  fragment: boolean;
  /** IPv6 fragment identification. */
  fragId: number;
  ipHeaderChecksumOk: boolean;
  /** Upper-layer protocol (after any IPv6 fragment header). */
  proto: number;
  /** Where the upper-layer bytes start (the transport header of a first fragment). */
  dataOff: number;
}

export function refParse(frame: Uint8Array): RefPacket {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let off = 12;
  const vlanTags: number[] = [];
  let type = dv.getUint16(off);
  while (type === 0x8100 || type === 0x88a8) {
    vlanTags.push(type, dv.getUint16(off + 2));
    off += 4;
    type = dv.getUint16(off);
  }
  const l3Off = off + 2;
  if (type === 0x0800) {
    const ihl = (frame[l3Off] & 15) * 4;
    const fragWord = dv.getUint16(l3Off + 6);
    const fragOffset = (fragWord & 0x1fff) * 8;
    const mf = (fragWord & 0x2000) !== 0;
    return {
      vlanTags,
      ip: 4,
      l3Off,
      ipHdrLen: ihl,
      ipPacketLen: dv.getUint16(l3Off + 2),
      ipId: dv.getUint16(l3Off + 4),
      df: (fragWord & 0x4000) !== 0,
      mf,
      fragOffset,
      fragment: mf || fragOffset !== 0,
      fragId: 0,
      ipHeaderChecksumOk: refSum([frame.subarray(l3Off, l3Off + ihl)]) === 0xffff,
      proto: frame[l3Off + 9],
      dataOff: l3Off + ihl,
    };
  }
  if (type !== 0x86dd) throw new Error(`not IP: EtherType 0x${type.toString(16)}`);
  const nh = frame[l3Off + 6];
  const base = {
    vlanTags,
    ip: 6 as const,
    l3Off,
    ipHdrLen: 40,
    ipPacketLen: dv.getUint16(l3Off + 4) + 40,
    ipId: 0,
    df: false,
    ipHeaderChecksumOk: true,
  };
  if (nh === 44) {
    const fw = dv.getUint16(l3Off + 42);
    return {
      ...base,
      mf: (fw & 1) !== 0,
      fragOffset: fw & 0xfff8,
      fragment: true,
      fragId: dv.getUint32(l3Off + 44),
      proto: frame[l3Off + 40],
      dataOff: l3Off + 48,
    };
  }
  return { ...base, mf: false, fragOffset: 0, fragment: false, fragId: 0, proto: nh, dataOff: l3Off + 40 };
}

/** Whether the TCP/UDP checksum of a transport segment (header + data) is right. */
export function l4ChecksumOk(frame: Uint8Array, l3Off: number, ip: 4 | 6, proto: number, l4: Uint8Array): boolean {
  const field = proto === 6 ? 16 : 6;
  // UDP: 0 means "no checksum"; the device always computes one.
  if (proto === 17 && l4[field] === 0 && l4[field + 1] === 0) return false;
  return refSum([pseudoHeader(frame, l3Off, ip, proto, l4.length), l4]) === 0xffff;
}

// --- checking what segment() emitted --------------------------------------

function fail(msg: string): never {
  throw new Error(msg);
}

function sameBytes(a: Uint8Array, b: Uint8Array, what: string): void {
  if (a.length !== b.length) fail(`${what}: ${a.length} bytes, expected ${b.length}`);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) fail(`${what}: byte ${i} is ${a[i]}, expected ${b[i]}`);
}

const cat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

/**
 * Check the frames segment() emitted for `b` against everything the GSO kind
 * promises; throws an Error naming the first thing wrong.
 */
export function verifySegments(b: BuiltFrame, gsoType: number, gsoSize: number, mtu: number, frames: Uint8Array[]): void {
  const base = gsoType & ~NET_HDR_GSO_ECN;
  const { spec, frame: orig, l3Off, l4Off, hdrLen } = b;
  const payload = orig.subarray(hdrLen);
  const ipMax = Math.min(mtu, spec.ip === 4 ? 0xffff : 0xffff + 40);
  if (frames.length === 0) fail('no frames');
  const l2 = orig.subarray(0, l3Off);
  const refs = frames.map((f, i) => {
    sameBytes(f.subarray(0, l3Off), l2, `frame ${i} Ethernet header`);
    const r = refParse(f);
    if (r.ip !== spec.ip) fail(`frame ${i}: IPv${r.ip}`);
    if (r.ipPacketLen !== f.length - r.l3Off) fail(`frame ${i}: IP length ${r.ipPacketLen}, frame carries ${f.length - r.l3Off}`);
    if (r.ipPacketLen > ipMax) fail(`frame ${i}: IP packet ${r.ipPacketLen} > mtu ${mtu}`);
    if (!r.ipHeaderChecksumOk) fail(`frame ${i}: bad IPv4 header checksum`);
    if (spec.ip === 4) {
      const opts = orig.subarray(l3Off + 20, l4Off);
      if (!(r.fragment && r.fragOffset !== 0)) sameBytes(f.subarray(l3Off + 20, r.dataOff), opts, `frame ${i} IPv4 options`);
    }
    return r;
  });

  if (base === NET_HDR_GSO_TCPV4 || base === NET_HDR_GSO_TCPV6) {
    const l4Hdr = hdrLen - l4Off;
    const mss = Math.min(gsoSize, ipMax - (l4Off - l3Off) - l4Hdr);
    const want = Math.max(1, Math.ceil(payload.length / mss));
    if (frames.length !== want) fail(`${frames.length} TCP segments, expected ${want}`);
    const dvo = new DataView(orig.buffer, orig.byteOffset);
    const seq0 = dvo.getUint32(l4Off + 4);
    const flags0 = orig[l4Off + 13];
    const id0 = spec.ip === 4 ? dvo.getUint16(l3Off + 4) : 0;
    const pieces: Uint8Array[] = [];
    frames.forEach((f, i) => {
      const r = refs[i];
      const dv = new DataView(f.buffer, f.byteOffset);
      if (r.proto !== 6 || r.fragment) fail(`segment ${i}: not a whole TCP segment`);
      const l4 = f.subarray(r.dataOff);
      if (!l4ChecksumOk(f, r.l3Off, spec.ip, 6, l4)) fail(`segment ${i}: bad TCP checksum`);
      if (spec.ip === 4 && r.ipId !== ((id0 + i) & 0xffff)) fail(`segment ${i}: IP id ${r.ipId}, expected ${(id0 + i) & 0xffff}`);
      if (dv.getUint32(r.dataOff + 4) !== ((seq0 + i * mss) >>> 0)) fail(`segment ${i}: seq ${dv.getUint32(r.dataOff + 4)}`);
      let flags = flags0;
      if (i > 0) flags &= ~TCP_CWR;
      if (i < frames.length - 1) flags &= ~(TCP_FIN | TCP_PSH);
      if (f[r.dataOff + 13] !== flags) fail(`segment ${i}: flags 0x${f[r.dataOff + 13].toString(16)}, expected 0x${flags.toString(16)}`);
      // Ports, ack, window, options: as sent.
      sameBytes(f.subarray(r.dataOff, r.dataOff + 4), orig.subarray(l4Off, l4Off + 4), `segment ${i} ports`);
      sameBytes(f.subarray(r.dataOff + 8, r.dataOff + 12), orig.subarray(l4Off + 8, l4Off + 12), `segment ${i} ack`);
      sameBytes(f.subarray(r.dataOff + 20, r.dataOff + l4Hdr), orig.subarray(l4Off + 20, hdrLen), `segment ${i} TCP options`);
      const piece = f.subarray(r.dataOff + l4Hdr);
      if (i < frames.length - 1 && piece.length !== mss) fail(`segment ${i}: ${piece.length} payload bytes, expected ${mss}`);
      pieces.push(piece);
    });
    sameBytes(cat(pieces), payload, 'reassembled TCP payload');
    return;
  }

  if (base === NET_HDR_GSO_UDP_L4) {
    const unit = Math.min(gsoSize, ipMax - (l4Off - l3Off) - 8);
    const want = Math.max(1, Math.ceil(payload.length / unit));
    if (frames.length !== want) fail(`${frames.length} UDP datagrams, expected ${want}`);
    const id0 = spec.ip === 4 ? new DataView(orig.buffer, orig.byteOffset).getUint16(l3Off + 4) : 0;
    const pieces: Uint8Array[] = [];
    frames.forEach((f, i) => {
      const r = refs[i];
      if (r.proto !== 17 || r.fragment) fail(`datagram ${i}: not a whole UDP datagram`);
      const l4 = f.subarray(r.dataOff);
      if (new DataView(f.buffer, f.byteOffset).getUint16(r.dataOff + 4) !== l4.length) fail(`datagram ${i}: bad UDP length`);
      if (!l4ChecksumOk(f, r.l3Off, spec.ip, 17, l4)) fail(`datagram ${i}: bad UDP checksum`);
      if (spec.ip === 4 && r.ipId !== ((id0 + i) & 0xffff)) fail(`datagram ${i}: IP id ${r.ipId}`);
      if (i < frames.length - 1 && l4.length - 8 !== unit) fail(`datagram ${i}: ${l4.length - 8} payload bytes, expected ${unit}`);
      pieces.push(l4.subarray(8));
    });
    sameBytes(cat(pieces), payload, 'reassembled USO payload');
    return;
  }

  if (base === NET_HDR_GSO_UDP) {
    const dgram = orig.subarray(l4Off);
    const room = ipMax - (l4Off - l3Off);
    const whole = dgram.length <= room && dgram.length <= gsoSize;
    const unit = whole ? dgram.length : Math.min(gsoSize, spec.ip === 4 ? room : room - 8) & ~7;
    const want = whole ? 1 : Math.ceil(dgram.length / unit);
    if (frames.length !== want) fail(`${frames.length} UFO fragments, expected ${want}`);
    const pieces: Uint8Array[] = [];
    let fragId = -1;
    let ipId = -1;
    frames.forEach((f, i) => {
      const r = refs[i];
      if (r.proto !== 17) fail(`fragment ${i}: protocol ${r.proto}`);
      if (whole) {
        if (r.fragment) fail('an unfragmented UFO datagram came out as a fragment');
      } else {
        if (!r.fragment || r.fragOffset !== i * unit || r.mf !== (i < frames.length - 1)) fail(`fragment ${i}: offset ${r.fragOffset} mf ${r.mf}`);
        if (spec.ip === 4) {
          if (i === 0) ipId = r.ipId;
          else if (r.ipId !== ipId) fail(`fragment ${i}: IP id changed`);
        } else if (i === 0) fragId = r.fragId;
        else if (r.fragId !== fragId) fail(`fragment ${i}: fragment id changed`);
      }
      pieces.push(f.subarray(r.dataOff));
    });
    const re = cat(pieces);
    const dv = new DataView(re.buffer);
    if (re.length !== dgram.length) fail(`reassembled UFO datagram is ${re.length} bytes, expected ${dgram.length}`);
    if (dv.getUint16(4) !== re.length) fail('reassembled UFO datagram: bad UDP length');
    sameBytes(re.subarray(0, 4), dgram.subarray(0, 4), 'UFO ports');
    sameBytes(re.subarray(8), dgram.subarray(8), 'reassembled UFO payload');
    if (!l4ChecksumOk(frames[0], refs[0].l3Off, spec.ip, 17, re)) fail('reassembled UFO datagram: bad UDP checksum');
    return;
  }
  fail(`gso type ${gsoType} is not segmented`);
}

// --- tshark ----------------------------------------------------------------

/** Per frame, the given tshark fields (tab-separated, empty when absent). */
export function tsharkFields(file: string, fields: string[], extra: string[] = []): string[][] {
  const args = ['-r', file, '-n', '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', ...extra, '-T', 'fields', '-E', 'separator=/t'];
  for (const f of fields) args.push('-e', f);
  const out = tshark(args);
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}
