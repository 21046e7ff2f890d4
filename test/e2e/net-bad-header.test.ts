/**
 * 5.1.6.2.1 / 5.1.6.2.2: a transmitted frame whose virtio_net_hdr asks for
 * something the driver may not ask for is dropped by the device (its chain
 * completed with length 0), counted under dropsBadHeader and by reason, and
 * the frames after it still flow, through real queue workers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type BadHeaderReason, type FeatureSet, featureSet } from '../../src/index.js';
import { BAD_HEADER_REASONS } from '../../src/net/net-counters.js';
import { NetHdr } from '../../src/net/offload/net-hdr.js';
import { NET_F_CSUM, NET_F_HOST_TSO4 } from '../../src/spec/features.js';
import { NET_HDR_F_DATA_VALID, NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_ECN, NET_HDR_GSO_TCPV4, NET_HDR_GSO_TCPV6 } from '../../src/spec/net.js';
import { numberedFrame } from '../support/net-pair.js';
import { BASE_FEATURES, GSO_BUFFER, HdrTransfer, type NetRig, RX0, TX0, type TxItem, netRig, sameFrame } from '../support/net-rig.js';
import { buildTcpFrame, payloadOf } from '../support/packets.js';

let rig: NetRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const CSUM_TSO4: FeatureSet = BASE_FEATURES | featureSet(NET_F_CSUM, NET_F_HOST_TSO4);

function hdr(fields: Partial<NetHdr>): NetHdr {
  return Object.assign(new NetHdr(), fields);
}

/** A TSO4 frame (NEEDS_CSUM, gso_size 1448) with some header fields changed. */
function tso4(change: Partial<NetHdr> = {}): TxItem {
  const { built, hdr: h } = buildTcpFrame({ ip: 4, payload: payloadOf(5000, 9) }, 1448);
  return { frame: built.frame, hdr: Object.assign(h, change) };
}

interface BadCase {
  reason: BadHeaderReason;
  rule: string;
  sender: FeatureSet;
  item: () => TxItem;
}

const CASES: BadCase[] = [
  { reason: 'txFlags', rule: 'DATA_VALID set on transmit', sender: CSUM_TSO4, item: () => ({ frame: numberedFrame(900, 200), hdr: hdr({ flags: NET_HDR_F_DATA_VALID }) }) },
  {
    reason: 'csumNotNegotiated',
    rule: 'NEEDS_CSUM without VIRTIO_NET_F_CSUM',
    sender: BASE_FEATURES,
    item: () => ({ frame: numberedFrame(901, 200), hdr: hdr({ flags: NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 }) }),
  },
  {
    reason: 'csumRange',
    rule: 'csum_start + csum_offset + 2 beyond the frame',
    sender: CSUM_TSO4,
    item: () => ({ frame: numberedFrame(902, 200), hdr: hdr({ flags: NET_HDR_F_NEEDS_CSUM, csumStart: 190, csumOffset: 10 }) }),
  },
  { reason: 'gsoNotNegotiated', rule: 'TCPV6 GSO without HOST_TSO6', sender: CSUM_TSO4, item: () => tso4({ gsoType: NET_HDR_GSO_TCPV6 }) },
  { reason: 'gsoNotNegotiated', rule: 'the GSO ECN bit without HOST_ECN', sender: CSUM_TSO4, item: () => tso4({ gsoType: NET_HDR_GSO_TCPV4 | NET_HDR_GSO_ECN }) },
  { reason: 'gsoNotNegotiated', rule: 'TCPV4 GSO without any HOST_* feature', sender: BASE_FEATURES, item: () => tso4({ flags: 0 }) },
  { reason: 'gsoWithoutCsum', rule: 'GSO without NEEDS_CSUM', sender: CSUM_TSO4, item: () => tso4({ flags: 0 }) },
  { reason: 'gsoSize', rule: 'gso_size 0', sender: CSUM_TSO4, item: () => tso4({ gsoSize: 0 }) },
  { reason: 'hdrLen', rule: 'hdr_len beyond the frame', sender: CSUM_TSO4, item: () => tso4({ hdrLen: 6000 }) },
  { reason: 'overMtu', rule: 'a 1519-byte frame (MTU 1500 + 18) without GSO', sender: CSUM_TSO4, item: () => ({ frame: numberedFrame(903, 1519) }) },
];

describe('5.1.6.2.1: bad transmit headers are dropped, counted by reason, and traffic goes on', () => {
  for (const c of CASES) {
    it(`${c.reason}: ${c.rule}`, async () => {
      rig = await netRig({ driver: { features: c.sender, bufferSize: GSO_BUFFER } }, {});
      const good = [numberedFrame(1, 60), numberedFrame(2, 1514), numberedFrame(3, 61)];
      const t = new HdrTransfer(rig.da, rig.db);
      await t.run([{ frame: good[0] }, c.item(), { frame: good[1] }, c.item(), { frame: good[2] }], 3);
      await t.drain(50);
      expect(t.received.length).toBe(3);
      t.received.forEach((r, i) => expect(sameFrame(r.frame, good[i])).toBeUndefined());
      const s = rig.a.queueStats(TX0);
      expect(s.dropsBadHeader).toBe(2);
      expect(s.badHeaderByReason).toEqual({ [c.reason]: 2 });
      // Every chain came back: dropped ones with used length 0 (the driver just reclaims them).
      expect(s.chains).toBe(5);
      expect(rig.b.queueStats(RX0).chains).toBe(3);
    });
  }

  it('offloadFailed: a GSO frame the receiving device cannot segment (not TCP/IP) is dropped at the receiver, counted there, and traffic goes on', async () => {
    rig = await netRig({ driver: { features: CSUM_TSO4, bufferSize: GSO_BUFFER } }, {});
    // Fine as far as the transmit rules go (negotiated, NEEDS_CSUM, sizes in range), but no IPv4/TCP inside.
    const bogus: TxItem = {
      frame: numberedFrame(7, 3000),
      hdr: hdr({ flags: NET_HDR_F_NEEDS_CSUM, gsoType: NET_HDR_GSO_TCPV4, gsoSize: 1448, hdrLen: 54, csumStart: 34, csumOffset: 16 }),
    };
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run([{ frame: numberedFrame(1, 60) }, bogus, { frame: numberedFrame(2, 60) }], 2);
    await t.drain(50);
    expect(t.received.map((r) => r.frame.length)).toEqual([60, 60]);
    expect(rig.a.queueStats(TX0).dropsBadHeader).toBe(0);
    const rx = rig.b.queueStats(RX0);
    expect(rx.dropsBadHeader).toBe(1);
    expect(rx.badHeaderByReason).toEqual({ offloadFailed: 1 });
  });

  it('every reason a driver can cause has a case here', () => {
    const covered = new Set<string>([...CASES.map((c) => c.reason), 'offloadFailed']);
    expect([...BAD_HEADER_REASONS].filter((r) => !covered.has(r))).toEqual([]);
  });

  it('a dropped frame whose record would have wrapped the port channel leaves the channel intact (no stale or repeated frame)', async () => {
    // Channel of 8 KiB: eight 1000-byte frames (1016-byte records) end 64 bytes before the end.
    rig = await netRig({ driver: { features: CSUM_TSO4 } }, {}, { capacity: 8192, maxFrame: 2048 });
    const t = new HdrTransfer(rig.da, rig.db);
    const first = Array.from({ length: 8 }, (_, i) => ({ frame: numberedFrame(i, 1000) }));
    await t.run(first);
    // Alone in its batch: its record does not fit before the end, so reserving it wraps.
    const bad: TxItem = { frame: numberedFrame(99, 100), hdr: hdr({ flags: NET_HDR_F_DATA_VALID }) };
    const t2 = new HdrTransfer(rig.da, rig.db);
    await t2.run([bad], 0);
    await t2.drain(100);
    expect(t2.received.map((r) => r.frame.length)).toEqual([]);
    const after = Array.from({ length: 20 }, (_, i) => ({ frame: numberedFrame(100 + i, 100 + 50 * i) }));
    const t3 = new HdrTransfer(rig.da, rig.db);
    await t3.run(after);
    await t3.drain(50);
    expect(t3.received.length).toBe(after.length);
    t3.received.forEach((r, i) => expect(sameFrame(r.frame, after[i].frame), `frame ${i}`).toBeUndefined());
    expect(rig.a.queueStats(TX0).badHeaderByReason).toEqual({ txFlags: 1 });
  });
});
