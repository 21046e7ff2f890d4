/**
 * Transmit offloads (virtio 1.2 5.1.6.2): checksum completion and GSO
 * segmentation checked by an independent parser and checksum, every error
 * code produced by the rule it names, and the wire frames read back by
 * Wireshark's dissectors.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PcapWriter } from '../src/backends/pcap-writer.js';
import { NetHdr, OFFLOAD_ERROR_CODES, OffloadEngine, type OffloadErrorCode } from '../src/net/offload/index.js';
import {
  NET_HDR_F_DATA_VALID,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_GSO_ECN,
  NET_HDR_GSO_NONE,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_GSO_UDP,
  NET_HDR_GSO_UDP_L4,
} from '../src/spec/net.js';
import {
  type BuiltFrame,
  type FrameSpec,
  TCP_ACK,
  TCP_CWR,
  TCP_ECE,
  TCP_FIN,
  TCP_PSH,
  buildFrame,
  buildTcpFrame,
  buildUdpFrame,
  l4ChecksumOk,
  offloadHdr,
  payloadOf,
  refParse,
  refSum,
  tsharkFields,
  verifySegments,
} from './support/packets.js';
import { requireTools } from './support/tools.js';

requireTools('tshark');

/** Run segment() and keep copies of what it emitted. */
function segmentAll(engine: OffloadEngine, hdr: NetHdr, frame: Uint8Array, mtu: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const n = engine.segment(hdr, frame, 0, frame.length, mtu, (u8, at, len) => out.push(u8.slice(at, at + len)));
  if (n < 0) throw new Error(`segment failed: ${engine.error}`);
  expect(n).toBe(out.length);
  expect(engine.segmentCount(hdr, frame, 0, frame.length, mtu)).toBe(n);
  return out;
}

/**
 * Rewrite the 16-bit word at frame[word] (an even distance from csumStart)
 * so that the sum the device folds over [csumStart, end), seed included,
 * is 0xffff: the completed checksum then computes to 0.
 */
function makeChecksumZero(frame: Uint8Array, csumStart: number, word: number): void {
  frame[word] = 0;
  frame[word + 1] = 0;
  const w = 0xffff - refSum([frame.subarray(csumStart)]);
  frame[word] = w >>> 8;
  frame[word + 1] = w & 0xff;
}

/** A TCP or UDP frame with NEEDS_CSUM whose checksum computes to 0. */
function zeroChecksumFrame(ip: 4 | 6, l4: 'tcp' | 'udp', vlan = 0): { b: BuiltFrame; hdr: NetHdr } {
  const b = buildFrame({ ip, l4, vlan, payload: payloadOf(64, ip + vlan) });
  makeChecksumZero(b.frame, b.l4Off, b.hdrLen);
  return { b, hdr: offloadHdr(b) };
}

const fieldOf = (frame: Uint8Array, hdr: NetHdr): number => (frame[hdr.csumStart + hdr.csumOffset] << 8) | frame[hdr.csumStart + hdr.csumOffset + 1];

describe('NetHdr', () => {
  it('reads and writes the 12 little-endian bytes of virtio_net_hdr (5.1.6)', () => {
    const wire = [0x01, 0x81, 0x36, 0x00, 0x0e, 0x05, 0x0a, 0x00, 0x10, 0x00, 0x02, 0x01];
    const buf = new Uint8Array(16).fill(0xee);
    buf.set(wire, 3);
    const h = new NetHdr().read(buf, 3);
    expect({ ...h }).toEqual({ flags: 1, gsoType: 0x81, hdrLen: 54, gsoSize: 0x050e, csumStart: 10, csumOffset: 16, numBuffers: 0x0102 });
    const out = new Uint8Array(14).fill(0xee);
    h.write(out, 1);
    expect([...out]).toEqual([0xee, ...wire, 0xee]);
    expect({ ...h.clear() }).toEqual({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, numBuffers: 0 });
  });

  it('throws (a caller bug) when the header does not fit the buffer', () => {
    expect(() => new NetHdr().read(new Uint8Array(11), 0)).toThrow(/does not fit/);
    expect(() => new NetHdr().write(new Uint8Array(20), 9)).toThrow(/does not fit/);
  });
});

describe('checksum completion (NEEDS_CSUM, 5.1.6.2)', () => {
  const engine = new OffloadEngine();
  for (const ip of [4, 6] as const) {
    for (const l4 of ['tcp', 'udp'] as const) {
      for (const vlan of [0, 1, 2]) {
        for (const n of [0, 1, 333, 1400]) {
          it(`completes ${l4.toUpperCase()}/IPv${ip}, ${vlan} VLAN tag(s), ${n} payload bytes`, () => {
            const b = buildFrame({ ip, l4, vlan, payload: payloadOf(n, n + vlan), ipOptions: ip === 4 && n === 333 ? [0x94, 4, 0, 0] : undefined });
            const hdr = offloadHdr(b);
            const before = b.frame.slice();
            // The seed alone is not a valid checksum.
            const r = refParse(b.frame);
            expect(l4ChecksumOk(b.frame, r.l3Off, ip, r.proto, b.frame.subarray(b.l4Off))).toBe(false);
            expect(engine.completeChecksum(hdr, b.frame, 0, b.frame.length)).toBe(true);
            expect(engine.error).toBeUndefined();
            expect(l4ChecksumOk(b.frame, r.l3Off, ip, r.proto, b.frame.subarray(b.l4Off))).toBe(true);
            // Only the checksum field changed.
            const field = b.l4Off + hdr.csumOffset;
            for (let i = 0; i < before.length; i++) if (i !== field && i !== field + 1) expect(b.frame[i]).toBe(before[i]);
          });
        }
      }
    }
  }

  it('completes a frame placed at an offset in a larger buffer, touching nothing outside it', () => {
    const b = buildFrame({ ip: 4, l4: 'udp', vlan: 1, payload: payloadOf(101) });
    const buf = new Uint8Array(b.frame.length + 64).fill(0xa5);
    buf.set(b.frame, 32);
    expect(engine.completeChecksum(offloadHdr(b), buf, 32, b.frame.length)).toBe(true);
    const f = buf.slice(32, 32 + b.frame.length);
    expect(l4ChecksumOk(f, b.l3Off, 4, 17, f.subarray(b.l4Off))).toBe(true);
    expect(buf.subarray(0, 32).every((x) => x === 0xa5)).toBe(true);
    expect(buf.subarray(32 + b.frame.length).every((x) => x === 0xa5)).toBe(true);
  });

  it('leaves a frame without NEEDS_CSUM alone (other flag bits are ignored, 5.1.6.2.2)', () => {
    const b = buildFrame({ ip: 6, l4: 'tcp', payload: payloadOf(50) });
    const hdr = offloadHdr(b);
    hdr.flags = NET_HDR_F_DATA_VALID | 0xf0;
    const before = b.frame.slice();
    expect(engine.completeChecksum(hdr, b.frame, 0, b.frame.length)).toBe(true);
    expect(b.frame).toEqual(before);
    expect(engine.check(hdr, b.frame, 0, b.frame.length)).toBe(true);
  });

  it('needs no parse: any csum_start/csum_offset inside the frame works (e.g. ICMP)', () => {
    const data = payloadOf(61);
    data[0] = 8;
    data[2] = 0;
    data[3] = 0;
    const frame = new Uint8Array(14 + data.length);
    frame.set(data, 14);
    const hdr = new NetHdr();
    hdr.flags = NET_HDR_F_NEEDS_CSUM;
    hdr.csumStart = 14;
    hdr.csumOffset = 2;
    expect(engine.completeChecksum(hdr, frame, 0, frame.length)).toBe(true);
    let sum = 0;
    for (let i = 14; i < frame.length; i += 2) sum += (frame[i] << 8) | (frame[i + 1] ?? 0);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    expect(sum).toBe(0xffff);
  });
});

describe('segmentation', () => {
  const engine = new OffloadEngine();

  it('TCPv4 TSO with IP and TCP options: 10000 bytes at gso_size 1448 into 7 segments', () => {
    const { built, hdr } = buildTcpFrame(
      { ip: 4, payload: payloadOf(10000), ipOptions: [0x94, 4, 0, 0], tcpOptions: [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8], tcpFlags: TCP_ACK | TCP_PSH | TCP_FIN, seq: 0xfffff000, ipId: 0xfffe },
      1448,
    );
    const frames = segmentAll(engine, hdr, built.frame, 1500);
    expect(frames.length).toBe(7);
    verifySegments(built, hdr.gsoType, 1448, 1500, frames);
    // Sequence numbers and IP ids wrap.
    const ids = frames.map((f) => refParse(f).ipId);
    expect(ids.slice(0, 3)).toEqual([0xfffe, 0xffff, 0]);
    const l4 = refParse(frames[6]).dataOff;
    // 1500 - 24 - 32 leaves 1444 bytes per segment, under gso_size.
    expect(new DataView(frames[6].buffer).getUint32(l4 + 4)).toBe((0xfffff000 + 6 * 1444) >>> 0);
    expect(frames[5][l4 + 13]).toBe(TCP_ACK);
    expect(frames[6][l4 + 13]).toBe(TCP_ACK | TCP_PSH | TCP_FIN);
  });

  it('TCPv6 TSO behind two VLAN tags', () => {
    const { built, hdr } = buildTcpFrame({ ip: 6, vlan: 2, payload: payloadOf(30001, 7) }, 8940);
    const frames = segmentAll(engine, hdr, built.frame, 9000);
    expect(frames.length).toBe(4);
    verifySegments(built, hdr.gsoType, 8940, 9000, frames);
  });

  it('TCPv4 TSO with the ECN bit: CWR only on the first segment, ECE on all', () => {
    const { built, hdr } = buildTcpFrame({ ip: 4, payload: payloadOf(5000), tcpFlags: TCP_ACK | TCP_CWR | TCP_ECE }, 1000);
    expect(hdr.gsoType).toBe(NET_HDR_GSO_TCPV4 | NET_HDR_GSO_ECN);
    const frames = segmentAll(engine, hdr, built.frame, 1500);
    verifySegments(built, hdr.gsoType, 1000, 1500, frames);
    const flags = frames.map((f) => f[refParse(f).dataOff + 13]);
    expect(flags).toEqual([TCP_ACK | TCP_CWR | TCP_ECE, ...new Array(4).fill(TCP_ACK | TCP_ECE)]);
  });

  it('clamps gso_size to what the MTU leaves after the headers', () => {
    const { built, hdr } = buildTcpFrame({ ip: 4, vlan: 1, payload: payloadOf(4000) }, 60000);
    const frames = segmentAll(engine, hdr, built.frame, 576);
    expect(frames.map((f) => refParse(f).ipPacketLen)).toEqual([...new Array(7).fill(576), 4000 - 7 * 536 + 40]);
    verifySegments(built, hdr.gsoType, 60000, 576, frames);
  });

  it('a GSO frame with payload under gso_size (or none at all) is one segment', () => {
    for (const n of [0, 1, 1440]) {
      const { built, hdr } = buildTcpFrame({ ip: 6, payload: payloadOf(n), tcpFlags: TCP_ACK | TCP_FIN }, 1448);
      const frames = segmentAll(engine, hdr, built.frame, 1500);
      expect(frames.length).toBe(1);
      verifySegments(built, hdr.gsoType, 1448, 1500, frames);
    }
  });

  for (const ip of [4, 6] as const) {
    it(`UDP_L4 (USO) over IPv${ip}: each segment its own datagram`, () => {
      const { built, hdr } = buildUdpFrame({ ip, vlan: ip === 6 ? 1 : 0, payload: payloadOf(12345, ip) }, { kind: 'uso', size: 1200 });
      const frames = segmentAll(engine, hdr, built.frame, 1500);
      expect(frames.length).toBe(11);
      verifySegments(built, hdr.gsoType, 1200, 1500, frames);
    });

    it(`UDP (UFO) over IPv${ip}: one datagram in fragments`, () => {
      const { built, hdr } = buildUdpFrame({ ip, vlan: 1, payload: payloadOf(20000, 9 + ip), ipId: 0x4242 }, { kind: 'ufo', size: 1480 });
      const frames = segmentAll(engine, hdr, built.frame, 1500);
      verifySegments(built, hdr.gsoType, 1480, 1500, frames);
      const refs = frames.map(refParse);
      const unit = ip === 4 ? 1480 : 1448;
      expect(frames.length).toBe(Math.ceil(20008 / unit));
      expect(refs.map((r) => r.fragOffset)).toEqual(refs.map((_, i) => i * unit));
      if (ip === 4) expect(new Set(refs.map((r) => r.ipId))).toEqual(new Set([0x4242]));
      else expect(refs.every((r) => r.fragId === refs[0].fragId && r.proto === 17)).toBe(true);
    });

    it(`UDP (UFO) over IPv${ip}: a datagram that fits goes out whole`, () => {
      const { built, hdr } = buildUdpFrame({ ip, payload: payloadOf(700) }, { kind: 'ufo', size: 1480 });
      const frames = segmentAll(engine, hdr, built.frame, 1500);
      expect(frames.length).toBe(1);
      expect(refParse(frames[0]).fragment).toBe(false);
      verifySegments(built, hdr.gsoType, 1480, 1500, frames);
    });
  }

  it('UFO rounds fragments down to 8-byte units, and only copied IPv4 options follow the first fragment', () => {
    // Router Alert (copied) then Record Route (not copied), as RFC 791 defines them.
    const ipOptions = [0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 1];
    const { built, hdr } = buildUdpFrame({ ip: 4, payload: payloadOf(3000), ipOptions, df: false }, { kind: 'ufo', size: 1000 });
    const frames = segmentAll(engine, hdr, built.frame, 1003);
    const refs = frames.map(refParse);
    // 1003 - 32 header bytes = 971, min with gso_size 1000, down to 968.
    expect(refs.map((r) => r.fragOffset)).toEqual([0, 968, 1936, 2904]);
    verifySegments(built, hdr.gsoType, 1000, 1003, frames);
    expect([...frames[0].subarray(34, 46)]).toEqual(ipOptions);
    expect([...frames[1].subarray(34, 46)]).toEqual([0x94, 4, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
  });

  it('a frame without GSO is emitted once, its checksum completed', () => {
    const { built, hdr } = buildUdpFrame({ ip: 6, vlan: 1, payload: payloadOf(99) });
    const frames = segmentAll(engine, hdr, built.frame, 1500);
    expect(frames.length).toBe(1);
    const r = refParse(frames[0]);
    expect(l4ChecksumOk(frames[0], r.l3Off, 6, 17, frames[0].subarray(r.dataOff))).toBe(true);
    // The input is not modified.
    expect(l4ChecksumOk(built.frame, r.l3Off, 6, 17, built.frame.subarray(r.dataOff))).toBe(false);
  });

  it('takes the header length from the packet, not from hdr_len (a hint, as in Linux)', () => {
    const { built, hdr } = buildTcpFrame({ ip: 4, payload: payloadOf(3000), tcpOptions: [1, 1, 1, 1] }, 1000);
    for (const hint of [0, 10, built.frame.length]) {
      hdr.hdrLen = hint;
      verifySegments(built, hdr.gsoType, 1000, 1500, segmentAll(engine, hdr, built.frame, 1500));
    }
  });

  it('reads frames at an offset inside a larger buffer', () => {
    const { built, hdr } = buildUdpFrame({ ip: 4, payload: payloadOf(5000) }, { kind: 'uso', size: 1400 });
    const buf = new Uint8Array(built.frame.length + 100);
    buf.set(built.frame, 50);
    const out: Uint8Array[] = [];
    expect(engine.segment(hdr, buf, 50, built.frame.length, 1500, (u8, at, len) => out.push(u8.slice(at, at + len)))).toBe(4);
    verifySegments(built, hdr.gsoType, 1400, 1500, out);
  });
});

/** A bad frame and header for one rule, and the call that must refuse them. */
interface BadCase {
  rule: string;
  make(): { hdr: NetHdr; frame: Uint8Array; engine?: OffloadEngine; mtu?: number };
}

const tso = (spec: Partial<FrameSpec> = {}, gso = 1000): { built: BuiltFrame; hdr: NetHdr } =>
  buildTcpFrame({ ip: 4, payload: payloadOf(3000), ...spec }, gso);

/** Typed as a Record over the codes, so a new code without a test does not compile. */
const BAD: Record<OffloadErrorCode, BadCase[]> = {
  BAD_CSUM_START: [
    {
      rule: 'csum_start leaves no room for the 16-bit checksum field',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 4, payload: payloadOf(10) });
        hdr.csumStart = built.frame.length - 1;
        hdr.csumOffset = 0;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'GSO csum_start is not the transport header',
      make: () => {
        const { built, hdr } = tso();
        hdr.csumStart -= 4;
        hdr.csumOffset += 4;
        return { hdr, frame: built.frame };
      },
    },
  ],
  BAD_CSUM_OFFSET: [
    {
      rule: 'csum_start + csum_offset + 2 is past the frame',
      make: () => {
        const { built, hdr } = buildTcpFrame({ ip: 6, payload: payloadOf(10) });
        hdr.csumOffset = built.frame.length - hdr.csumStart - 1;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'csum_offset is odd',
      make: () => {
        const { built, hdr } = buildTcpFrame({ ip: 6, payload: payloadOf(10) });
        hdr.csumOffset = 15;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'GSO csum_offset is not the TCP/UDP checksum field',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 4, payload: payloadOf(3000) }, { kind: 'uso', size: 1000 });
        hdr.csumOffset = 16;
        return { hdr, frame: built.frame };
      },
    },
  ],
  BAD_GSO_TYPE: [
    {
      rule: 'gso_type is not a known type',
      make: () => {
        const { built, hdr } = tso();
        hdr.gsoType = 2;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'GSO_ECN without a TCP type',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 4, payload: payloadOf(3000) }, { kind: 'uso', size: 1000 });
        hdr.gsoType |= NET_HDR_GSO_ECN;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'GSO_ECN alone',
      make: () => {
        const { built, hdr } = tso();
        hdr.gsoType = NET_HDR_GSO_ECN;
        return { hdr, frame: built.frame };
      },
    },
  ],
  BAD_GSO_SIZE: [
    {
      rule: 'gso_size is 0 on a GSO frame',
      make: () => {
        const { built, hdr } = tso({}, 0);
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'UFO gso_size is below one 8-byte fragment unit',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 6, payload: payloadOf(100) }, { kind: 'ufo', size: 7 });
        return { hdr, frame: built.frame };
      },
    },
  ],
  BAD_HDR_LEN: [
    {
      rule: 'hdr_len is past the end of the frame',
      make: () => {
        const { built, hdr } = tso();
        hdr.hdrLen = built.frame.length + 1;
        return { hdr, frame: built.frame };
      },
    },
  ],
  GSO_WITHOUT_CSUM: [
    {
      rule: 'a GSO frame without NEEDS_CSUM',
      make: () => {
        const { built, hdr } = tso();
        hdr.flags = 0;
        return { hdr, frame: built.frame };
      },
    },
  ],
  UNPARSEABLE_PACKET: [
    {
      rule: 'TCP data offset points past the frame',
      make: () => {
        const { built, hdr } = tso({ payload: new Uint8Array(0) });
        built.frame[built.l4Off + 12] = 0xf0;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'IPv4 header length below 20',
      make: () => {
        const { built, hdr } = tso();
        built.frame[14] = 0x44;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'IP version does not match the EtherType',
      make: () => {
        const { built, hdr } = buildTcpFrame({ ip: 6, payload: payloadOf(3000) }, 1000);
        built.frame[14] = 0x40;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'VLAN tags run past the frame',
      make: () => {
        const frame = new Uint8Array(20);
        frame.set([0x81, 0x00, 0, 1, 0x81, 0x00], 12);
        const hdr = new NetHdr();
        hdr.flags = NET_HDR_F_NEEDS_CSUM;
        hdr.gsoType = NET_HDR_GSO_UDP_L4;
        hdr.gsoSize = 100;
        return { hdr, frame };
      },
    },
  ],
  IPV6_EXT_HEADER: [
    {
      rule: 'IPv6 with a hop-by-hop extension header',
      make: () => {
        const { built, hdr } = buildTcpFrame({ ip: 6, payload: payloadOf(3000) }, 1000);
        built.frame[14 + 6] = 0;
        return { hdr, frame: built.frame };
      },
    },
  ],
  GSO_PROTOCOL_MISMATCH: [
    {
      rule: 'TCPV4 on an IPv6 packet',
      make: () => {
        const { built, hdr } = buildTcpFrame({ ip: 6, payload: payloadOf(3000) }, 1000);
        hdr.gsoType = NET_HDR_GSO_TCPV4;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'UDP_L4 on a TCP segment',
      make: () => {
        const { built, hdr } = tso();
        hdr.gsoType = NET_HDR_GSO_UDP_L4;
        hdr.csumOffset = 6;
        return { hdr, frame: built.frame };
      },
    },
    {
      rule: 'GSO on a frame that is not IP',
      make: () => {
        const frame = new Uint8Array(200);
        frame.set([0x08, 0x06], 12);
        const hdr = new NetHdr();
        hdr.flags = NET_HDR_F_NEEDS_CSUM;
        hdr.gsoType = NET_HDR_GSO_TCPV6;
        hdr.gsoSize = 100;
        hdr.csumStart = 54;
        hdr.csumOffset = 16;
        return { hdr, frame };
      },
    },
  ],
  GSO_IP_FRAGMENT: [
    {
      rule: 'a GSO frame that is already an IPv4 fragment',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 4, payload: payloadOf(3000), df: false }, { kind: 'ufo', size: 1480 });
        built.frame[14 + 6] |= 0x20;
        return { hdr, frame: built.frame };
      },
    },
  ],
  ECN_WITHOUT_GSO_ECN: [
    {
      rule: 'a TSO frame with CWR set but no GSO_ECN bit',
      make: () => {
        const { built, hdr } = tso({ ip: 6, tcpFlags: TCP_ACK | TCP_CWR });
        hdr.gsoType = NET_HDR_GSO_TCPV6;
        return { hdr, frame: built.frame };
      },
    },
  ],
  FRAME_TOO_LONG: [
    {
      rule: 'a frame longer than the engine was built for',
      make: () => {
        const { built, hdr } = buildTcpFrame({ ip: 4, payload: payloadOf(1000) });
        return { hdr, frame: built.frame, engine: new OffloadEngine(built.frame.length - 1) };
      },
    },
    {
      rule: 'a UFO datagram longer than the UDP length field can say',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 6, payload: payloadOf(65530) }, { kind: 'ufo', size: 1448 });
        return { hdr, frame: built.frame, engine: new OffloadEngine(70000) };
      },
    },
  ],
  MTU_TOO_SMALL: [
    {
      rule: 'the MTU leaves no payload after the TCP/IP headers',
      make: () => {
        const { built, hdr } = tso();
        return { hdr, frame: built.frame, mtu: 40 };
      },
    },
    {
      rule: 'the MTU leaves less than one 8-byte fragment unit for UFO',
      make: () => {
        const { built, hdr } = buildUdpFrame({ ip: 6, payload: payloadOf(100) }, { kind: 'ufo', size: 64 });
        return { hdr, frame: built.frame, mtu: 40 + 8 + 7 };
      },
    },
  ],
};

describe('bad headers: each refused with its code, nothing emitted', () => {
  it('every code has a rule below', () => {
    expect(Object.keys(BAD).sort()).toEqual([...OFFLOAD_ERROR_CODES].sort());
  });

  for (const code of OFFLOAD_ERROR_CODES) {
    for (const c of BAD[code]) {
      it(`${code}: ${c.rule}`, () => {
        const { hdr, frame, engine = new OffloadEngine(), mtu = 1500 } = c.make();
        const emitted: number[] = [];
        const n = engine.segment(hdr, frame, 0, frame.length, mtu, (_u8, _at, len) => emitted.push(len));
        expect(engine.error).toBe(code);
        expect(n).toBe(-1);
        expect(emitted).toEqual([]);
        expect(engine.segmentCount(hdr, frame, 0, frame.length, mtu)).toBe(-1);
        expect(engine.error).toBe(code);
        if (code !== 'MTU_TOO_SMALL') {
          expect(engine.check(hdr, frame, 0, frame.length)).toBe(false);
          expect(engine.error).toBe(code);
        }
      });
    }
  }

  it('a good call after a bad one clears `error`', () => {
    const engine = new OffloadEngine();
    const { built, hdr } = tso();
    hdr.flags = 0;
    expect(engine.check(hdr, built.frame, 0, built.frame.length)).toBe(false);
    hdr.flags = NET_HDR_F_NEEDS_CSUM;
    expect(engine.check(hdr, built.frame, 0, built.frame.length)).toBe(true);
    expect(engine.error).toBeUndefined();
  });

  it('a frame range outside the buffer is a caller bug and throws', () => {
    const engine = new OffloadEngine();
    const hdr = new NetHdr();
    expect(() => engine.check(hdr, new Uint8Array(10), 5, 6)).toThrow(/outside/);
    expect(() => engine.completeChecksum(hdr, new Uint8Array(10), -1, 2)).toThrow(/outside/);
  });
});

describe('a completed checksum that computes to 0 (RFC 1624, RFC 768)', () => {
  const engine = new OffloadEngine();
  for (const ip of [4, 6] as const) {
    for (const vlan of [0, 1]) {
      it(`TCP/IPv${ip} with ${vlan} VLAN tag(s) gets 0x0000, and it verifies`, () => {
        const { b, hdr } = zeroChecksumFrame(ip, 'tcp', vlan);
        expect(engine.completeChecksum(hdr, b.frame, 0, b.frame.length)).toBe(true);
        expect(fieldOf(b.frame, hdr)).toBe(0x0000);
        expect(l4ChecksumOk(b.frame, b.l3Off, ip, 6, b.frame.subarray(b.l4Off))).toBe(true);
      });

      it(`UDP/IPv${ip} with ${vlan} VLAN tag(s) gets 0xffff (0 would mean "no checksum")`, () => {
        const { b, hdr } = zeroChecksumFrame(ip, 'udp', vlan);
        expect(engine.completeChecksum(hdr, b.frame, 0, b.frame.length)).toBe(true);
        expect(fieldOf(b.frame, hdr)).toBe(0xffff);
        expect(l4ChecksumOk(b.frame, b.l3Off, ip, 17, b.frame.subarray(b.l4Off))).toBe(true);
      });
    }
  }

  it('ICMPv6 follows TCP: 0x0000', () => {
    // Ethernet + IPv6 (next header 58) + an echo request; the engine sums only
    // from csum_start, so the IPv6 addresses need not match a pseudo header.
    const b = buildFrame({ ip: 6, l4: 'udp', payload: payloadOf(40) });
    b.frame[b.l3Off + 6] = 58;
    b.frame.set([128, 0, 0, 0], b.l4Off);
    makeChecksumZero(b.frame, b.l4Off, b.l4Off + 4);
    const hdr = new NetHdr();
    hdr.flags = NET_HDR_F_NEEDS_CSUM;
    hdr.csumStart = b.l4Off;
    hdr.csumOffset = 2;
    expect(engine.completeChecksum(hdr, b.frame, 0, b.frame.length)).toBe(true);
    expect(fieldOf(b.frame, hdr)).toBe(0x0000);
  });

  it("a frame the engine cannot parse: UDP's field offset (6) gets 0xffff, any other 0x0000", () => {
    for (const [offset, want] of [[6, 0xffff], [16, 0x0000], [2, 0x0000]] as const) {
      const frame = payloadOf(80, offset);
      frame[12] = 0x88; // EtherType 0x88b5 (local experimental): not IP
      frame[13] = 0xb5;
      frame[14 + offset] = 0;
      frame[15 + offset] = 0;
      makeChecksumZero(frame, 14, offset === 16 ? 14 : 30);
      const hdr = new NetHdr();
      hdr.flags = NET_HDR_F_NEEDS_CSUM;
      hdr.csumStart = 14;
      hdr.csumOffset = offset;
      expect(engine.completeChecksum(hdr, frame, 0, frame.length)).toBe(true);
      expect(fieldOf(frame, hdr), `csum_offset ${offset}`).toBe(want);
    }
  });

  it('tshark reads the TCP 0x0000 and the UDP 0xffff as good checksums', () => {
    const dir = mkdtempSync(join(tmpdir(), 'virtio-lab-csum0-'));
    try {
      const file = join(dir, 'zero.pcap');
      const pcap = PcapWriter.open(file);
      let t = 1_700_000_000_000_000;
      for (const ip of [4, 6] as const) {
        for (const l4 of ['tcp', 'udp'] as const) {
          const { b, hdr } = zeroChecksumFrame(ip, l4);
          // segment() completes a frame without GSO in its scratch buffer.
          const n = engine.segment(hdr, b.frame, 0, b.frame.length, 1500, (u8, at, len) => pcap.write(u8, at, len, t++));
          expect(n, engine.error).toBe(1);
        }
      }
      pcap.close();
      const rows = tsharkFields(file, ['tcp.checksum', 'tcp.checksum.status', 'udp.checksum', 'udp.checksum.status']);
      // Checksum status: 0 bad, 1 good, 2 unverified.
      expect(rows).toEqual([
        ['0x0000', '1', '', ''],
        ['', '', '0xffff', '1'],
        ['0x0000', '1', '', ''],
        ['', '', '0xffff', '1'],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tshark reads the segmented frames', () => {
  const dir = mkdtempSync(join(tmpdir(), 'virtio-lab-offload-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('every frame parses, every IPv4 / TCP / UDP checksum is good, counts and lengths match', () => {
    const engine = new OffloadEngine();
    const file = join(dir, 'offload.pcap');
    const pcap = PcapWriter.open(file);
    const lens: number[] = [];
    let ipv4Frames = 0;
    let tcpSegments = 0;
    let udpDatagrams = 0;
    let ipId = 1;
    const emit = (u8: Uint8Array, at: number, len: number): void => {
      pcap.write(u8, at, len, 1_700_000_000_000_000 + lens.length);
      lens.push(len);
      if (refParse(u8.subarray(at, at + len)).ip === 4) ipv4Frames++;
    };
    const cases: Array<{ built: BuiltFrame; hdr: NetHdr; mtu: number }> = [];
    for (const ip of [4, 6] as const) {
      for (const vlan of [0, 1]) {
        const spec = { ip, vlan, ipOptions: ip === 4 && vlan === 1 ? [0x94, 4, 0, 0] : undefined };
        cases.push({ ...buildTcpFrame({ ...spec, payload: payloadOf(9001, ip + vlan), ipId: (ipId += 100) }, 1448), mtu: 1500 });
        cases.push({ ...buildTcpFrame({ ...spec, payload: payloadOf(4000), tcpFlags: TCP_ACK | TCP_CWR | TCP_ECE, ipId: (ipId += 100) }, 1000), mtu: 1500 });
        cases.push({ ...buildUdpFrame({ ...spec, payload: payloadOf(7777, 3), ipId: (ipId += 100) }, { kind: 'uso', size: 1400 }), mtu: 1500 });
        cases.push({ ...buildUdpFrame({ ...spec, payload: payloadOf(7777, 4), ipId: (ipId += 100) }, { kind: 'ufo', size: 1480 }), mtu: 1500 });
        cases.push({ ...buildUdpFrame({ ...spec, payload: payloadOf(333, 5), ipId: (ipId += 100) }), mtu: 1500 });
        cases.push({ ...buildTcpFrame({ ...spec, payload: payloadOf(334, 6), ipId: (ipId += 100) }), mtu: 1500 });
      }
    }
    for (const { built, hdr, mtu } of cases) {
      const n = engine.segment(hdr, built.frame, 0, built.frame.length, mtu, emit);
      expect(n, engine.error).toBeGreaterThan(0);
      const type = hdr.gsoType & ~NET_HDR_GSO_ECN;
      if (type === NET_HDR_GSO_TCPV4 || type === NET_HDR_GSO_TCPV6 || (type === NET_HDR_GSO_NONE && built.spec.l4 === 'tcp')) tcpSegments += n;
      else if (type === NET_HDR_GSO_UDP) udpDatagrams += 1;
      else udpDatagrams += n;
    }
    pcap.close();
    expect(pcap.frames).toBe(lens.length);

    const rows = tsharkFields(file, ['frame.len', 'frame.cap_len', 'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', '_ws.malformed']);
    expect(rows.length).toBe(lens.length);
    expect(rows.map((r) => Number(r[0]))).toEqual(lens);
    expect(rows.map((r) => Number(r[1]))).toEqual(lens);
    // Checksum status: 0 bad, 1 good, 2 unverified.
    expect(rows.filter((r) => r[2] !== '').map((r) => r[2])).toEqual(new Array(ipv4Frames).fill('1'));
    expect(rows.filter((r) => r[3] !== '').map((r) => r[3])).toEqual(new Array(tcpSegments).fill('1'));
    expect(rows.filter((r) => r[4] !== '').map((r) => r[4])).toEqual(new Array(udpDatagrams).fill('1'));
    expect(rows.filter((r) => r[5] !== '')).toEqual([]);
    const bad = tsharkFields(file, ['frame.number'], ['-Y', 'ip.checksum.status==0 || tcp.checksum.status==0 || udp.checksum.status==0 || _ws.malformed']);
    expect(bad).toEqual([]);
  });
});
