/**
 * Offloads end to end (5.1.6.2 transmit, 5.1.6.4 receive) through real queue
 * workers: a sender that negotiated CSUM and HOST_TSO4 / TSO6 / USO hands the
 * device partial checksums and GSO frames; the receiving device either does
 * the work for a driver without the matching GUEST_* feature (MTU-sized
 * segments, checksums complete, read back by Wireshark) or passes the frame
 * and its header through to a driver that has it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type FeatureSet, featureSet } from '../../src/index.js';
import { PcapWriter } from '../../src/backends/pcap-writer.js';
import { F_INDIRECT_DESC, NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_HOST_TSO4, NET_F_HOST_TSO6, NET_F_HOST_UFO, NET_F_HOST_USO, NET_F_MRG_RXBUF, bit } from '../../src/spec/features.js';
import { NET_HDR_F_DATA_VALID, NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_NONE, NET_HDR_GSO_TCPV4, NET_HDR_GSO_UDP } from '../../src/spec/net.js';
import { BASE_FEATURES, GSO_BUFFER, HdrTransfer, type NetRig, RX0, type RxItem, type TxItem, copyPacket, netRig, sameFrame, until } from '../support/net-rig.js';
import { type BuiltFrame, TCP_ACK, TCP_PSH, buildTcpFrame, buildUdpFrame, l4ChecksumOk, payloadOf, refParse, tsharkFields, verifySegments } from '../support/packets.js';
import { requireTools } from '../support/tools.js';

requireTools('tshark');

let rig: NetRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const dir = mkdtempSync(join(tmpdir(), 'virtio-lab-net-offloads-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SENDER: FeatureSet = BASE_FEATURES | featureSet(NET_F_CSUM, NET_F_HOST_TSO4, NET_F_HOST_TSO6, NET_F_HOST_USO, NET_F_HOST_UFO, NET_F_MRG_RXBUF);
const MTU = 1500;

/** A frame sent with offloads, and how it must arrive at a driver without guest offloads. */
interface Case {
  name: string;
  built: BuiltFrame;
  item: TxItem;
  /** Wire frames it becomes (1 for a NEEDS_CSUM-only frame). */
  segments: number;
}

function tcp(name: string, ip: 4 | 6, payload: number, mss?: number, extra: Partial<Parameters<typeof buildTcpFrame>[0]> = {}): Case {
  const { built, hdr } = buildTcpFrame({ ip, payload: payloadOf(payload, payload + ip), ...extra }, mss);
  const l3 = built.l4Off - built.l3Off;
  const unit = mss === undefined ? payload : Math.min(mss, MTU - l3 - (built.hdrLen - built.l4Off));
  return { name, built, item: { frame: built.frame, hdr }, segments: mss === undefined ? 1 : Math.ceil(payload / unit) };
}

function uso(name: string, ip: 4 | 6, payload: number, size: number): Case {
  const { built, hdr } = buildUdpFrame({ ip, payload: payloadOf(payload, 7 * payload + ip) }, { kind: 'uso', size });
  return { name, built, item: { frame: built.frame, hdr }, segments: Math.ceil(payload / size) };
}

function ufo(name: string, ip: 4 | 6, payload: number, size: number): Case {
  const { built, hdr } = buildUdpFrame({ ip, payload: payloadOf(payload, 5 * payload + ip) }, { kind: 'ufo', size });
  const room = MTU - (built.l4Off - built.l3Off);
  const unit = Math.min(size, ip === 4 ? room : room - 8) & ~7;
  const dgram = 8 + payload;
  return { name, built, item: { frame: built.frame, hdr }, segments: dgram <= room && dgram <= size ? 1 : Math.ceil(dgram / unit) };
}

function udp(name: string, ip: 4 | 6, payload: number): Case {
  const { built, hdr } = buildUdpFrame({ ip, payload: payloadOf(payload, 3 * payload + ip) });
  return { name, built, item: { frame: built.frame, hdr }, segments: 1 };
}

function cases(): Case[] {
  return [
    tcp('TSO4 64 KiB', 4, 65495, 1448, { seq: 0xfffff000 }),
    tcp('TSO4 with IP + TCP options, VLAN', 4, 30000, 1448, { vlan: 1, ipOptions: [0x94, 4, 0, 0], tcpOptions: [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8] }),
    tcp('TSO6 40 KB', 6, 40000, 1440),
    uso('USO4 20 KB', 4, 20000, 1400),
    uso('USO6 12 KB', 6, 12000, 1200),
    ufo('UFO4 9000 B', 4, 9000, 1480),
    ufo('UFO6 7000 B', 6, 7000, 1480),
    tcp('NEEDS_CSUM TCPv4', 4, 900),
    tcp('NEEDS_CSUM TCPv6', 6, 1200),
    udp('NEEDS_CSUM UDPv4', 4, 333),
    udp('NEEDS_CSUM UDPv6', 6, 1000),
    tcp('TSO4 that fits one segment', 4, 1000, 1448, { tcpFlags: TCP_ACK | TCP_PSH }),
  ];
}

describe('5.1.6.2 / 5.1.6.4 offloads through real workers', () => {
  it('a receiver without GUEST_* gets MTU-sized segments with valid checksums (tshark) and flags 0; segments are counted', async () => {
    rig = await netRig({ driver: { features: SENDER, bufferSize: GSO_BUFFER } }, { driver: { features: BASE_FEATURES | bit(NET_F_MRG_RXBUF) } });
    const list = cases();
    const expected = list.reduce((n, c) => n + c.segments, 0);
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run(
      list.map((c) => c.item),
      expected,
    );
    await t.drain(50);
    expect(t.received.length).toBe(expected);

    let k = 0;
    let gsoSegments = 0;
    for (const c of list) {
      const got: RxItem[] = t.received.slice(k, k + c.segments);
      k += c.segments;
      for (const g of got) {
        // 5.1.6.4.1: without GUEST_CSUM the device gives flags 0 and a checksummed packet.
        expect(g.flags, c.name).toBe(0);
        expect(g.gsoType, c.name).toBe(NET_HDR_GSO_NONE);
        expect(refParse(g.frame).ipPacketLen + refParse(g.frame).l3Off, c.name).toBe(g.frame.length);
        expect(g.frame.length - refParse(g.frame).l3Off, c.name).toBeLessThanOrEqual(MTU);
      }
      if (c.item.hdr!.gsoType !== NET_HDR_GSO_NONE) {
        verifySegments(c.built, c.item.hdr!.gsoType, c.item.hdr!.gsoSize, MTU, got.map((g) => g.frame));
        gsoSegments += c.segments;
      } else {
        const r = refParse(got[0].frame);
        expect(l4ChecksumOk(got[0].frame, r.l3Off, r.ip, r.proto, got[0].frame.subarray(r.dataOff)), c.name).toBe(true);
        // Only the checksum field differs from what was sent.
        const field = c.built.l4Off + c.item.hdr!.csumOffset;
        const want = c.built.frame.slice();
        want[field] = got[0].frame[field];
        want[field + 1] = got[0].frame[field + 1];
        expect(sameFrame(got[0].frame, want), c.name).toBeUndefined();
      }
    }
    expect(rig.b.queueStats(RX0).segments).toBe(gsoSegments);
    expect(rig.b.queueStats(RX0).dropsBadHeader).toBe(0);

    // Wireshark's dissectors agree: every IPv4 header, TCP and UDP checksum good, nothing malformed.
    const file = join(dir, 'received.pcap');
    const pcap = PcapWriter.open(file);
    t.received.forEach((g, i) => pcap.write(g.frame, 0, g.frame.length, 1_700_000_000_000_000 + i));
    pcap.close();
    const rows = tsharkFields(file, ['frame.len', 'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', '_ws.malformed']);
    expect(rows.length).toBe(expected);
    expect(rows.map((r) => Number(r[0]))).toEqual(t.received.map((g) => g.frame.length));
    const v4 = t.received.filter((g) => refParse(g.frame).ip === 4).length;
    const tcpCount = t.received.filter((g) => refParse(g.frame).proto === 6).length;
    expect(rows.filter((r) => r[1] !== '').map((r) => r[1])).toEqual(new Array(v4).fill('1'));
    expect(rows.filter((r) => r[2] !== '').map((r) => r[2])).toEqual(new Array(tcpCount).fill('1'));
    // UDP is checked once per datagram: a UFO datagram's fragments are reassembled first.
    const udpDatagrams = list.reduce((n, c) => n + (c.built.spec.l4 !== 'udp' ? 0 : c.item.hdr!.gsoType === NET_HDR_GSO_UDP ? 1 : c.segments), 0);
    expect(rows.filter((r) => r[3] !== '').map((r) => r[3])).toEqual(new Array(udpDatagrams).fill('1'));
    expect(rows.filter((r) => r[4] !== '')).toEqual([]);
  });

  it('a receiver with GUEST_CSUM + GUEST_TSO4 gets TSO4 frames whole with gso_type, gso_size and NEEDS_CSUM intact; NEEDS_CSUM passes through; TSO6 is segmented with DATA_VALID', async () => {
    rig = await netRig({ driver: { features: SENDER, bufferSize: GSO_BUFFER } }, { driver: { features: BASE_FEATURES | featureSet(NET_F_MRG_RXBUF, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4) } });
    const list = cases();
    // Only TCPv4 GSO is negotiated: everything else GSO is cut, NEEDS_CSUM-only frames pass as they are.
    const whole = (c: Case): boolean => c.item.hdr!.gsoType === NET_HDR_GSO_TCPV4 || c.item.hdr!.gsoType === NET_HDR_GSO_NONE;
    const expected = list.reduce((n, c) => n + (whole(c) ? 1 : c.segments), 0);
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run(
      list.map((c) => c.item),
      expected,
    );
    let k = 0;
    let cut = 0;
    for (const c of list) {
      const h = c.item.hdr!;
      if (whole(c)) {
        const g = t.received[k++];
        expect(sameFrame(g.frame, c.built.frame), c.name).toBeUndefined();
        expect({ flags: g.flags, gsoType: g.gsoType, gsoSize: g.gsoSize, hdrLen: g.hdrLen, csumStart: g.csumStart, csumOffset: g.csumOffset }, c.name).toEqual({
          flags: NET_HDR_F_NEEDS_CSUM,
          gsoType: h.gsoType,
          gsoSize: h.gsoSize,
          hdrLen: h.hdrLen,
          csumStart: h.csumStart,
          csumOffset: h.csumOffset,
        });
        continue;
      }
      const got = t.received.slice(k, k + c.segments);
      k += c.segments;
      cut += c.segments;
      verifySegments(c.built, h.gsoType, h.gsoSize, MTU, got.map((g) => g.frame));
      // With GUEST_CSUM the device may vouch for the checksums it computed (5.1.6.4.1).
      for (const g of got) expect([g.flags, g.gsoType], c.name).toEqual([NET_HDR_F_DATA_VALID, NET_HDR_GSO_NONE]);
    }
    expect(k).toBe(expected);
    expect(rig.b.queueStats(RX0).segments).toBe(cut);
  });

  it('a NEEDS_CSUM-only frame: checksum completed and flags 0 for a receiver without GUEST_CSUM, passed with NEEDS_CSUM to one with it', async () => {
    for (const guestCsum of [false, true]) {
      rig = await netRig({ driver: { features: SENDER } }, { driver: { features: guestCsum ? BASE_FEATURES | bit(NET_F_GUEST_CSUM) : BASE_FEATURES } });
      const c = udp('UDPv4', 4, 500);
      const t = new HdrTransfer(rig.da, rig.db);
      await t.run([c.item]);
      const g = t.received[0];
      const r = refParse(g.frame);
      const valid = l4ChecksumOk(g.frame, r.l3Off, 4, 17, g.frame.subarray(r.dataOff));
      if (guestCsum) {
        expect([g.flags, g.csumStart, g.csumOffset, valid]).toEqual([NET_HDR_F_NEEDS_CSUM, c.item.hdr!.csumStart, c.item.hdr!.csumOffset, false]);
        expect(sameFrame(g.frame, c.built.frame)).toBeUndefined();
      } else {
        expect([g.flags, valid]).toEqual([0, true]);
      }
      expect(rig.b.queueStats(RX0).segments).toBe(0);
      await rig.close();
      rig = undefined;
    }
  });

  it('a GSO frame with more segments than the receiver can ever post buffers for (big mode, no INDIRECT_DESC) still arrives whole, segment by segment', async () => {
    // Big chains of 18 descriptors in a 64-entry ring: at most 3 posted at a time.
    rig = await netRig(
      { driver: { features: SENDER, bufferSize: GSO_BUFFER } },
      { driver: { features: (BASE_FEATURES & ~bit(F_INDIRECT_DESC)) | featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4) } },
    );
    expect(rig.db.pair.recv.layout.mode).toBe('big');
    expect(rig.db.pair.recv.buffers).toBe(3);
    const list = [tcp('TSO6 60 KB', 6, 60000, 1440), tcp('TSO4 64 KiB', 4, 65495, 1448), uso('USO4 30 KB', 4, 30000, 1000)];
    const expected = list[0].segments + 1 + list[2].segments;
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run(
      list.map((c) => c.item),
      expected,
    );
    verifySegments(list[0].built, list[0].item.hdr!.gsoType, 1440, MTU, t.received.slice(0, list[0].segments).map((g) => g.frame));
    expect(sameFrame(t.received[list[0].segments].frame, list[1].built.frame)).toBeUndefined();
    verifySegments(list[2].built, list[2].item.hdr!.gsoType, 1000, MTU, t.received.slice(list[0].segments + 1).map((g) => g.frame));
    expect(rig.b.queueStats(RX0).segments).toBe(list[0].segments + list[2].segments);
    expect(rig.b.queueStats(RX0).dropsTooBig).toBe(0);
  });

  it.each([
    ['TSO6 60 KB', (): Case => tcp('TSO6 60 KB', 6, 60000, 1440)],
    ['UFO6 30 KB (fragments keep one identification)', (): Case => ufo('UFO6 30 KB', 6, 30000, 1480)],
  ])('a queue stopped and restarted half way through segmenting a frame resumes after the segments it placed: none lost, none twice: %s', async (_name, make) => {
    rig = await netRig(
      { driver: { features: SENDER, bufferSize: GSO_BUFFER } },
      { driver: { features: (BASE_FEATURES & ~bit(F_INDIRECT_DESC)) | featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4) } },
    );
    const { b, da, db } = rig;
    const c = make();
    const got: RxItem[] = [];
    const take = (): number => db.pair.receive((p) => got.push(copyPacket(p, 0)));
    expect(da.pair.send(c.item.frame, c.item.hdr)).toBe(true);
    da.flushTx();
    // Three chains posted: three segments placed, then the frame waits for buffers.
    await until(() => db.pair.rx.usedAvailable() === 3, 10_000, 'the first 3 segments');
    expect(take()).toBe(3);
    await until(() => db.pair.rx.usedAvailable() === 3, 10_000, 'the next 3 segments');
    const state = await b.stopQueue(RX0);
    b.startQueue(RX0, state);
    const t = new HdrTransfer(da, db);
    await t.run([], c.segments - 3);
    await t.drain(50);
    const all = [...got, ...t.received];
    expect(all.length).toBe(c.segments);
    verifySegments(c.built, c.item.hdr!.gsoType, c.item.hdr!.gsoSize, MTU, all.map((g) => g.frame));
    expect(b.queueStats(RX0).segments).toBe(c.segments);
  });

  it('UFO over IPv4 and IPv6 cut across buffer stalls: every fragment arrives once, the IPv6 ones under one identification, and traffic goes on', async () => {
    rig = await netRig(
      { driver: { features: SENDER, bufferSize: GSO_BUFFER } },
      { driver: { features: (BASE_FEATURES & ~bit(F_INDIRECT_DESC)) | featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4) } },
    );
    // Three big chains posted at a time: each datagram stalls several times.
    const v6 = ufo('UFO6 30 KB', 6, 30000, 1480);
    const v4 = ufo('UFO4 30 KB', 4, 30000, 1480);
    const after = tcp('TSO4 after', 4, 1000, 1448);
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run([v6.item, v4.item, after.item], v6.segments + v4.segments + 1);
    await t.drain(50);
    expect(t.received.length).toBe(v6.segments + v4.segments + 1);
    verifySegments(v6.built, v6.item.hdr!.gsoType, 1480, MTU, t.received.slice(0, v6.segments).map((g) => g.frame));
    verifySegments(v4.built, v4.item.hdr!.gsoType, 1480, MTU, t.received.slice(v6.segments, v6.segments + v4.segments).map((g) => g.frame));
    expect(sameFrame(t.received[v6.segments + v4.segments].frame, after.built.frame)).toBeUndefined();
    expect(rig.b.queueStats(RX0).dropsBadHeader).toBe(0);
  });

  it('IPv6 UFO datagrams one after another get different fragment identifications', async () => {
    rig = await netRig({ driver: { features: SENDER, bufferSize: GSO_BUFFER } }, { driver: { features: BASE_FEATURES | bit(NET_F_MRG_RXBUF) } });
    const list = [ufo('UFO6 a', 6, 4000, 1480), ufo('UFO6 b', 6, 4000, 1480), ufo('UFO6 c', 6, 4000, 1480)];
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run(
      list.map((c) => c.item),
      list.reduce((n, c) => n + c.segments, 0),
    );
    const ids = new Set(t.received.map((g) => refParse(g.frame).fragId));
    expect(ids.size).toBe(list.length);
  });
});
