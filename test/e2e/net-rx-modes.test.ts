/**
 * Receive buffer modes (5.1.6.3.1, Linux virtnet_probe) through real queue
 * workers: for each mode a driver can choose, frames of 60 and 1514 bytes
 * and, where the negotiated features let the device deliver them whole, GSO
 * frames up to 64 KiB arrive byte-exact and in order. Where they do not, the
 * device cuts them into MTU-sized segments first.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type FeatureSet, featureSet } from '../../src/index.js';
import { rxBufferMode } from '../../src/net/recv-config.js';
import { F_INDIRECT_DESC, NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_HOST_TSO4, NET_F_MRG_RXBUF, NET_F_MTU, bit } from '../../src/spec/features.js';
import { NET_HDR_F_DATA_VALID, NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_TCPV4 } from '../../src/spec/net.js';
import type { RxBufferMode } from '../../src/virtskb/mode.js';
import { numberedFrame } from '../support/net-pair.js';
import { BASE_FEATURES, GSO_BUFFER, HdrTransfer, type NetRig, RX0, type RxItem, type TxItem, netRig, sameFrame } from '../support/net-rig.js';
import { buildTcpFrame, payloadOf, verifySegments } from '../support/packets.js';

let rig: NetRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const SENDER: FeatureSet = BASE_FEATURES | featureSet(NET_F_CSUM, NET_F_HOST_TSO4, NET_F_MRG_RXBUF);
const GSO = featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4);

interface ModeCase {
  name: string;
  features: FeatureSet;
  /** What Linux would choose: MRG_RXBUF -> mergeable; any guest GSO or MTU > 1500 -> big; else small. */
  mode: RxBufferMode;
  indirect: boolean;
  /** The receiver takes TCPv4 GSO frames whole. */
  takesGso: boolean;
  mtu?: number;
}

const CASES: ModeCase[] = [
  { name: 'small (no MRG_RXBUF, no guest GSO)', features: BASE_FEATURES, mode: 'small', indirect: false, takesGso: false },
  { name: 'big (GUEST_TSO4 + GUEST_CSUM), indirect', features: BASE_FEATURES | GSO, mode: 'big', indirect: true, takesGso: true },
  { name: 'big (GUEST_TSO4 + GUEST_CSUM), no INDIRECT_DESC', features: (BASE_FEATURES & ~bit(F_INDIRECT_DESC)) | GSO, mode: 'big', indirect: false, takesGso: true },
  { name: 'mergeable (MRG_RXBUF + GUEST_TSO4)', features: BASE_FEATURES | GSO | bit(NET_F_MRG_RXBUF), mode: 'mergeable', indirect: false, takesGso: true },
  { name: 'mergeable (MRG_RXBUF, no guest GSO)', features: BASE_FEATURES | bit(NET_F_MRG_RXBUF), mode: 'mergeable', indirect: false, takesGso: false },
  { name: 'big (MTU 9000, no guest GSO)', features: BASE_FEATURES, mode: 'big', indirect: true, takesGso: false, mtu: 9000 },
];

/** The frames of one run: plain ones of 60 and 1514 (or the jumbo MTU) bytes, TCPv4 GSO frames of 64 KiB and 20 KB. */
function workload(mtu: number): Array<TxItem & { gso?: ReturnType<typeof buildTcpFrame> }> {
  const items: Array<TxItem & { gso?: ReturnType<typeof buildTcpFrame> }> = [];
  for (let i = 0; i < 36; i++) {
    switch (i % 6) {
      case 0:
      case 3:
        items.push({ frame: numberedFrame(i, 60) });
        break;
      case 1:
      case 4:
        items.push({ frame: numberedFrame(i, mtu > 1500 ? mtu + 14 : 1514) });
        break;
      default: {
        // 65495 payload bytes: the largest IPv4 packet (65535), a 65549-byte frame.
        const g = buildTcpFrame({ ip: 4, payload: payloadOf(i % 6 === 2 ? 65495 : 20000, i + 1), seq: i * 100_000, ipId: i * 50 }, 1448);
        items.push({ frame: g.built.frame, hdr: g.hdr, gso: g });
      }
    }
  }
  return items;
}

const matrix: Array<Record<string, string | number>> = [];
afterAll(() => {
  // The matrix each run produced (vitest prints it with the test output).
  console.table(matrix);
});

describe('5.1.6.3.1 receive buffer modes x features through real workers', () => {
  for (const c of CASES) {
    it(`${c.name}: the driver chooses ${c.mode} buffers and every frame arrives byte-exact, in order`, async () => {
      const mtu = c.mtu ?? 1500;
      rig = await netRig(
        { device: { mtu }, driver: { features: SENDER, bufferSize: GSO_BUFFER } },
        { device: { mtu }, driver: { features: c.features } },
      );
      const { da, db, b } = rig;
      // Linux's rule, stated independently of src/virtskb/mode.ts ...
      expect(db.pair.recv.layout.mode).toBe(c.mode);
      // ... and the library's rxBufferMode agrees for the negotiated set.
      expect(rxBufferMode(db.features, (db.features & bit(NET_F_MTU)) !== 0n ? mtu : 1500)).toBe(c.mode);
      expect(db.spec.pairs[0].rxIndirect !== undefined).toBe(c.indirect);

      const items = workload(mtu);
      const segCount = (it: (typeof items)[number]): number => (it.gso === undefined || c.takesGso ? 1 : Math.ceil((it.frame.length - it.gso.built.hdrLen) / 1448));
      const expected = items.reduce((n, it) => n + segCount(it), 0);
      const t = new HdrTransfer(da, db);
      await t.run(items, expected, 30_000);
      expect(t.received.length).toBe(expected);

      let k = 0;
      let gsoWhole = 0;
      let segmented = 0;
      let maxBuffers = 1;
      for (const [i, it] of items.entries()) {
        if (it.gso !== undefined && !c.takesGso) {
          const n = segCount(it);
          const segs: RxItem[] = t.received.slice(k, k + n);
          verifySegments(it.gso.built, NET_HDR_GSO_TCPV4, 1448, mtu, segs.map((s) => s.frame));
          // 5.1.6.4.1: a checksummed packet; DATA_VALID only with GUEST_CSUM.
          for (const s of segs) expect(s.flags & ~NET_HDR_F_DATA_VALID).toBe(0);
          for (const s of segs) expect(s.gsoType).toBe(0);
          segmented += n;
          k += n;
          continue;
        }
        const got = t.received[k++];
        expect(sameFrame(got.frame, it.frame), `item ${i} (${it.frame.length} bytes)`).toBeUndefined();
        maxBuffers = Math.max(maxBuffers, got.numBuffers);
        if (it.gso !== undefined) {
          gsoWhole++;
          expect({ flags: got.flags, gsoType: got.gsoType, gsoSize: got.gsoSize, hdrLen: got.hdrLen, csumStart: got.csumStart, csumOffset: got.csumOffset }).toEqual({
            flags: NET_HDR_F_NEEDS_CSUM,
            gsoType: NET_HDR_GSO_TCPV4,
            gsoSize: 1448,
            hdrLen: it.hdr!.hdrLen,
            csumStart: it.hdr!.csumStart,
            csumOffset: it.hdr!.csumOffset,
          });
        } else {
          expect(got.flags).toBe(0);
          expect(got.gsoType).toBe(0);
        }
      }
      expect(k).toBe(expected);
      // num_buffers is 1 unless buffers are mergeable (5.1.6.4); a 64 KiB frame spans 17 pages.
      if (c.mode === 'mergeable' && c.takesGso) expect(maxBuffers).toBe(17);
      else if (c.mode !== 'mergeable') expect(maxBuffers).toBe(1);
      expect(b.queueStats(RX0).segments).toBe(segmented);
      expect(b.queueStats(RX0).dropsTooBig).toBe(0);
      matrix.push({
        case: c.name,
        mode: db.pair.recv.layout.mode,
        indirect: String(c.indirect),
        plain: items.filter((x) => x.gso === undefined).length,
        'gso whole': gsoWhole,
        'gso segments': segmented,
        'max num_buffers': maxBuffers,
      });
    });
  }

  it('5.1.6.3.1: without VIRTIO_NET_F_MTU the driver sizes small buffers for 1500; a jumbo frame is dropped and counted, never truncated', async () => {
    rig = await netRig(
      { device: { mtu: 9000 }, driver: { features: SENDER, bufferSize: 9100 } },
      { device: { mtu: 9000 }, driver: { features: BASE_FEATURES & ~bit(NET_F_MTU) } },
    );
    expect(rig.db.pair.recv.layout.mode).toBe('small');
    const items: TxItem[] = [{ frame: numberedFrame(1, 1514) }, { frame: numberedFrame(2, 9014) }, { frame: numberedFrame(3, 60) }];
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run(items, 2);
    await t.drain();
    expect(t.received.map((r) => r.frame.length)).toEqual([1514, 60]);
    expect(rig.b.queueStats(RX0).dropsTooBig).toBe(1);
  });

  it('5.1.4.1: without VIRTIO_NET_F_MTU the driver uses a 1500 MTU, so the device cuts GSO frames for 1500, not for its config MTU', async () => {
    rig = await netRig(
      { device: { mtu: 9000 }, driver: { features: SENDER, bufferSize: GSO_BUFFER } },
      { device: { mtu: 9000 }, driver: { features: BASE_FEATURES & ~bit(NET_F_MTU) } },
    );
    expect(rig.db.pair.recv.layout.mode).toBe('small');
    // gso_size 8000 suits the sender's 9000 MTU; the receiver's driver takes 1500.
    const g = buildTcpFrame({ ip: 4, payload: payloadOf(30_000, 3) }, 8000);
    const n = Math.ceil(30_000 / 1460);
    const t = new HdrTransfer(rig.da, rig.db);
    await t.run([{ frame: g.built.frame, hdr: g.hdr }], n);
    await t.drain(50);
    verifySegments(g.built, NET_HDR_GSO_TCPV4, 8000, 1500, t.received.map((r) => r.frame));
    expect(rig.b.queueStats(RX0).dropsTooBig).toBe(0);
  });
});
