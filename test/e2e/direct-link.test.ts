/**
 * Run-to-completion links: when NIC a's transmit queue and NIC b's receive
 * queue are served by one queue thread, the thread copies a's frames
 * straight into b's posted buffers (no channel record). Real queue threads,
 * real Atomics: frames arrive whole, in order and counted on both sides;
 * back-pressure loses nothing; the receiver may stop, restart or reset under
 * load; what the direct path does not do (offloads the receiver cannot take
 * as is) arrives exactly as through the channel.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type FeatureSet, Lab, NET_DEFAULT_FEATURES, QueueThreadPool, type ThreadMapping, featureSet } from '../../src/index.js';
import { F_RING_PACKED, NET_F_CSUM, NET_F_CTRL_RX, NET_F_CTRL_VQ, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_HOST_TSO4, NET_F_MQ, NET_F_MRG_RXBUF, bit } from '../../src/spec/features.js';
import { NetHdr } from '../../src/net/offload/net-hdr.js';
import { NET_HDR_F_DATA_VALID, netRxQueue } from '../../src/spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../src/spec/status.js';
import { flowOf, flowWorkload, seqOf } from '../support/flows.js';
import { Transfer, firstDifference, numberedFrame } from '../support/net-pair.js';
import { BASE_FEATURES, GSO_BUFFER, HdrTransfer, type NetRig, RX0, type RxItem, TX0, type TxItem, netRig, until } from '../support/net-rig.js';
import { buildTcpFrame, buildUdpFrame, payloadOf } from '../support/packets.js';

let rigs: NetRig[] = [];
let pools: QueueThreadPool[] = [];
afterEach(async () => {
  await Promise.all(rigs.map((r) => r.close()));
  await Promise.all(pools.map((p) => p.close()));
  rigs = [];
  pools = [];
});

function pool(threads: number): QueueThreadPool {
  const p = new QueueThreadPool({ threads, spinUs: 20 });
  pools.push(p);
  return p;
}

/** Two NICs whose queues all share one queue thread: both directions run to completion. */
async function oneThread(features: FeatureSet, options: { queueSizeB?: number; fillB?: boolean } = {}): Promise<NetRig> {
  const shared = pool(1);
  const threads: ThreadMapping = { pool: shared };
  const r = await netRig(
    { device: { threads }, driver: { features } },
    { device: { threads, ...(options.queueSizeB === undefined ? {} : { queueSize: options.queueSizeB }) }, driver: { features }, fill: options.fillB },
  );
  rigs.push(r);
  return r;
}

/** With the link idle again, `n` more frames a -> b: they arrive in order and every one goes direct. */
async function allDirect(r: NetRig, n = 200): Promise<void> {
  const before = r.b.queueStats(RX0).directFrames;
  const more = Array.from({ length: n }, (_, i) => numberedFrame(100_000 + i, 90));
  const t = new Transfer(r.da, r.db);
  await t.run(more);
  expect(firstDifference(t.received, more)).toBe(-1);
  expect(r.b.queueStats(RX0).directFrames - before).toBe(n);
}

const FORMATS: ReadonlyArray<readonly ['split' | 'packed', FeatureSet]> = [
  ['split', 0n],
  ['packed', bit(F_RING_PACKED)],
];

describe.each(FORMATS)('run-to-completion link (%s rings)', (_format, ringBit) => {
  // As the pump negotiates (mergeable buffers, control queue with the receive filter in its default, promiscuous, mode),
  // and the rig's plain set (small buffers, no control queue).
  const featureSets: ReadonlyArray<readonly [string, FeatureSet]> = [
    ['default features', (NET_DEFAULT_FEATURES & ~bit(F_RING_PACKED)) | ringBit],
    ['small buffers', BASE_FEATURES | ringBit],
  ];

  for (const [name, features] of featureSets) {
    it(`${name}: frames of mixed sizes arrive whole and in order both ways, every one direct, counted on both sides`, async () => {
      const r = await oneThread(features);
      const frames = Array.from({ length: 3000 }, (_, i) => numberedFrame(i, 60 + ((i * 37) % 1455)));
      const ab = new Transfer(r.da, r.db);
      const ba = new Transfer(r.db, r.da);
      await Promise.all([ab.run(frames), ba.run(frames)]);
      expect(firstDifference(ab.received, frames)).toBe(-1);
      expect(firstDifference(ba.received, frames)).toBe(-1);
      const bytes = frames.reduce((n, f) => n + f.length, 0);
      for (const [tx, rx] of [
        [r.a, r.b],
        [r.b, r.a],
      ] as const) {
        await until(() => tx.queueStats(TX0).chains === frames.length, 5000, 'tx counters');
        expect(tx.queueStats(TX0).bytes).toBe(bytes);
        const s = rx.queueStats(RX0);
        expect(s.chains).toBe(frames.length);
        expect(s.bytes).toBe(bytes);
        expect(s.directFrames).toBe(frames.length);
        expect(tx.netStats().txPackets).toBe(frames.length);
        expect(rx.netStats().rxPackets).toBe(frames.length);
        expect(rx.netStats().drops).toBe(0);
      }
    });
  }

  it('back-pressure: a receiver with an 8-entry ring that takes one packet at a time loses nothing; the sender resumes on its refills', async () => {
    const r = await oneThread(BASE_FEATURES | ringBit, { queueSizeB: 8 });
    const frames = Array.from({ length: 2000 }, (_, i) => numberedFrame(i, 64 + (i % 300)));
    const got: Uint8Array[] = [];
    let sent = 0;
    await until(
      () => {
        while (sent < frames.length && r.da.send(frames[sent])) sent++;
        r.da.flushTx();
        r.da.reclaimTx();
        // One packet per look: the ring runs dry again and again while the sender has frames queued.
        r.db.receive((p) => {
          const f = new Uint8Array(p.length);
          p.copyTo(f);
          got.push(f);
        }, 1);
        return got.length === frames.length;
      },
      30_000,
      'every frame through an 8-entry receive ring',
    );
    expect(firstDifference(got, frames)).toBe(-1);
    const s = r.b.queueStats(RX0);
    expect(s.directFrames).toBe(frames.length);
    expect(s.dropsTooBig + s.dropsFiltered + s.dropsMalformed).toBe(0);
    expect(r.b.queueStats(RX0).sleeps + r.a.queueStats(TX0).sleeps).toBeGreaterThan(0);
  });

  it("the receive queue stopped and restarted from its base while the sender is busy: nothing lost or duplicated, and the link goes direct again", async () => {
    const r = await oneThread(BASE_FEATURES | ringBit);
    const frames = Array.from({ length: 3000 }, (_, i) => numberedFrame(i, 100));
    const t = new Transfer(r.da, r.db);
    for (const stopAt of [500, 1500, 2500]) {
      await until(() => (t.step(frames, stopAt + 200), t.received.length >= stopAt), 20_000, `${stopAt} frames`);
      const state = await r.b.stopQueue(RX0);
      // The sender goes on into the channel while the receiver is away.
      t.step(frames, stopAt + 400);
      r.b.startQueue(RX0, state);
    }
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
    expect(r.b.queueStats(RX0).chains).toBe(frames.length);
    await allDirect(r);
  });

  it('the receiving NIC reset under load: the sender keeps running, and after DRIVER_OK frames go direct again', async () => {
    const r = await oneThread(BASE_FEATURES | ringBit);
    const frames = Array.from({ length: 4000 }, (_, i) => numberedFrame(i, 80));
    const t = new Transfer(r.da, r.db);
    await until(() => (t.step(frames, 1000), t.received.length >= 300), 20_000, '300 frames');
    const db = await r.reopen('b');
    const before = r.b.queueStats(RX0).directFrames;
    expect(before).toBeGreaterThan(0);
    // Frames still queued at the reset may reach the new driver (in order) or be gone with the old one;
    // everything sent after it arrives, in order, after them.
    const after = frames.slice(1000);
    const t2 = new Transfer(r.da, db);
    const seq = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset).getUint32(14, true);
    await until(() => (t2.step(after), t2.received.length !== 0 && seq(t2.received[t2.received.length - 1]) === 3999), 20_000, 'the last frame');
    const early = t2.received.slice(0, t2.received.length - after.length).map(seq);
    expect(early.every((n, i) => n < 1000 && (i === 0 || n > early[i - 1]))).toBe(true);
    expect(firstDifference(t2.received.slice(early.length), after)).toBe(-1);
    expect(r.a.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    expect(r.a.queueRunning(TX0)).toBe(true);
    await allDirect(r);
  });
});

it('one direction direct, the other through a channel to another thread: both arrive whole and in order', async () => {
  // Thread 0 serves a.tx and b.rx (direct); b.tx runs on thread 1 and a.rx on thread 2 (a channel between threads).
  const shared = pool(3);
  const r = await netRig(
    { device: { threads: { pool: shared, thread: (q) => (q === TX0 ? 0 : 2) } }, driver: { features: NET_DEFAULT_FEATURES } },
    { device: { threads: { pool: shared, thread: (q) => (q === RX0 ? 0 : 1) } }, driver: { features: NET_DEFAULT_FEATURES } },
  );
  rigs.push(r);
  const frames = Array.from({ length: 3000 }, (_, i) => numberedFrame(i, 60 + ((i * 53) % 1400)));
  const ab = new Transfer(r.da, r.db);
  const ba = new Transfer(r.db, r.da);
  await Promise.all([ab.run(frames), ba.run(frames)]);
  expect(firstDifference(ab.received, frames)).toBe(-1);
  expect(firstDifference(ba.received, frames)).toBe(-1);
  expect(r.b.queueStats(RX0).directFrames).toBe(frames.length);
  expect(r.a.queueStats(RX0).directFrames).toBe(0);
  expect(r.a.queueStats(RX0).chains).toBe(frames.length);
});

describe('offloads on a run-to-completion link arrive exactly as through the channel', () => {
  const SENDER: FeatureSet = BASE_FEATURES | featureSet(NET_F_CSUM, NET_F_HOST_TSO4, NET_F_MRG_RXBUF);
  const RECEIVERS: ReadonlyArray<readonly [string, FeatureSet]> = [
    ['a receiver without guest offloads (checksums completed, GSO frames cut)', BASE_FEATURES | featureSet(NET_F_MRG_RXBUF)],
    ['a receiver with GUEST_CSUM and GUEST_TSO4 (taken as they are)', BASE_FEATURES | featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_MRG_RXBUF)],
  ];

  /** Plain frames, partial checksums and TSO frames, interleaved, so the link changes path mid-stream. */
  function items(): TxItem[] {
    return Array.from({ length: 60 }, (_, i): TxItem => {
      switch (i % 4) {
        case 0:
          return { frame: numberedFrame(i, 100 + i) };
        case 1: {
          const { built, hdr } = buildTcpFrame({ ip: 4, payload: payloadOf(300 + i, 2 * i) });
          return { frame: built.frame, hdr };
        }
        case 2: {
          const { built, hdr } = buildTcpFrame({ ip: 4, payload: payloadOf(6000 + 10 * i, 3 * i) }, 1000);
          return { frame: built.frame, hdr };
        }
        default:
          return { frame: buildUdpFrame({ ip: 4, payload: payloadOf(200 + i, i) }).built.frame };
      }
    });
  }

  /** Packets the receiver gets: one per frame, or one per segment where it cannot take TSO (mss 1000 fits the MTU). */
  function packets(list: readonly TxItem[], takesTso: boolean): number {
    return list.reduce((n, it) => n + (takesTso || it.hdr === undefined || it.hdr.gsoSize === 0 ? 1 : Math.ceil((it.frame.length - it.hdr.hdrLen) / it.hdr.gsoSize)), 0);
  }

  async function deliver(threads: 'direct' | 'per-queue', receiver: FeatureSet): Promise<{ got: RxItem[]; direct: number }> {
    const mapping: ThreadMapping = threads === 'direct' ? { pool: pool(1) } : 'per-queue';
    const r = await netRig({ device: { threads: mapping }, driver: { features: SENDER, bufferSize: GSO_BUFFER } }, { device: { threads: mapping, queueSize: 256 }, driver: { features: receiver } });
    rigs.push(r);
    const list = items();
    const t = new HdrTransfer(r.da, r.db);
    await t.run(list, packets(list, (receiver & bit(NET_F_GUEST_TSO4)) !== 0n));
    // Nothing more may come.
    await t.drain(100);
    return { got: t.received, direct: r.b.queueStats(RX0).directFrames };
  }

  for (const [name, receiver] of RECEIVERS) {
    it(name, async () => {
      const direct = await deliver('direct', receiver);
      const channel = await deliver('per-queue', receiver);
      expect(channel.direct).toBe(0);
      // Frames go direct up to the first one that needs the channel in each batch (GSO frames always do; partial
      // checksums unless the receiver has GUEST_CSUM); the rest of the batch follows it there, keeping the order.
      expect(direct.direct).toBeGreaterThan(0);
      expect(direct.got.length).toBe(channel.got.length);
      for (let i = 0; i < channel.got.length; i++) {
        const { frame: fd, ...hd } = direct.got[i];
        const { frame: fc, ...hc } = channel.got[i];
        expect(hd, `packet ${i}`).toEqual(hc);
        expect(Buffer.from(fd).equals(Buffer.from(fc)), `packet ${i} bytes`).toBe(true);
      }
    });
  }
});

it('multi-queue: flows steered across both receive queues, some direct (same thread) and some through channels, each flow in order on one queue', async () => {
  const MQ: FeatureSet = BASE_FEATURES | featureSet(NET_F_CTRL_VQ, NET_F_CTRL_RX, NET_F_MQ);
  // Thread p serves pair p of both NICs: a.tx(p) -> b.rx(p) is direct, a.tx(p) -> b.rx(1 - p) a channel.
  const shared = pool(2);
  const threads: ThreadMapping = { pool: shared, thread: (q) => Math.min(q >>> 1, 1) };
  const r = await netRig({ device: { queuePairs: 2, threads }, driver: { features: MQ } }, { device: { queuePairs: 2, threads }, driver: { features: MQ } });
  rigs.push(r);
  const flows = 16;
  const perFlow = 60;
  const items = flowWorkload(flows, perFlow, 2);
  const t = new HdrTransfer(r.da, r.db);
  await t.run(items, items.length, 30_000);
  await t.drain(50);
  expect(t.received.length).toBe(items.length);
  const queueOfFlow = new Map<number, Set<number>>();
  const next = new Array<number>(flows).fill(0);
  for (const got of t.received) {
    const f = flowOf(got.frame);
    expect(seqOf(got.frame), `flow ${f}`).toBe(next[f]++);
    queueOfFlow.set(f, (queueOfFlow.get(f) ?? new Set<number>()).add(got.pair));
  }
  for (const [f, qs] of queueOfFlow) expect(qs.size, `flow ${f} queues`).toBe(1);
  const rx = [0, 1].map((p) => r.b.queueStats(netRxQueue(p)));
  expect(rx[0].chains + rx[1].chains).toBe(items.length);
  const direct = rx[0].directFrames + rx[1].directFrames;
  expect(direct).toBeGreaterThan(0);
  expect(direct).toBeLessThan(items.length);
});

it('a Lab whose NICs share a queue thread: lab.stats() counts every frame on both sides, and every one went direct', async () => {
  const lab = new Lab({ queueSize: 128, threads: { pool: pool(1) } }).nic('a', { mac: '52:54:00:00:0e:01' }).nic('b', { mac: '52:54:00:00:0e:02' }).link('a', 'b');
  try {
    await lab.start();
    const frames = Array.from({ length: 600 }, (_, i) => numberedFrame(i, 64 + (i % 100)));
    const t = new Transfer(lab.driver('a'), lab.driver('b'));
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
    await until(() => lab.stats().nics.a.queues[0].tx.chains === frames.length, 5000, 'tx counters');
    const { a, b } = lab.stats().nics;
    expect(a.queues[0].tx.bytes).toBe(b.queues[0].rx.bytes);
    expect(b.queues[0].rx.chains).toBe(frames.length);
    expect(b.queues[0].rx.directFrames).toBe(frames.length);
  } finally {
    await lab.close();
  }
});

it('5.1.6.2.1: a header the sender may not send is dropped and counted by reason on a direct link too; the frames around it arrive in order, direct', async () => {
  const r = await oneThread(BASE_FEATURES | featureSet(NET_F_CSUM));
  const bad = new NetHdr();
  bad.flags = NET_HDR_F_DATA_VALID;
  const items: TxItem[] = Array.from({ length: 90 }, (_, i) => (i % 10 === 5 ? { frame: numberedFrame(i, 200), hdr: bad } : { frame: numberedFrame(i, 120) }));
  const good = items.filter((it) => it.hdr === undefined);
  const t = new HdrTransfer(r.da, r.db);
  await t.run(items, good.length);
  await t.drain(50);
  expect(firstDifference(t.received.map((p) => p.frame), good.map((it) => it.frame))).toBe(-1);
  const tx = r.a.queueStats(TX0);
  expect(tx.dropsBadHeader).toBe(items.length - good.length);
  expect(tx.badHeaderByReason).toEqual({ txFlags: items.length - good.length });
  expect(r.b.queueStats(RX0).directFrames).toBe(good.length);
});
