/**
 * Multi-queue (5.1.6.5.5, 5.1.2) through real queue workers: a driver that
 * negotiates MQ sends VQ_PAIRS_SET, senders then steer flows over the
 * receiver's active queues (a flow stays on one queue, in order, nothing
 * lost); a driver without MQ uses pair 0 only and finds the control queue at
 * index 2.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type FeatureSet, featureSet } from '../../src/index.js';
import { NET_F_CTRL_RX, NET_F_CTRL_VQ, NET_F_MQ, bit } from '../../src/spec/features.js';
import { NET_OK, NET_ERR, netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { BASE_FEATURES, HdrTransfer, type NetRig, netRig } from '../support/net-rig.js';
import { flowOf, flowWorkload, seqOf } from '../support/flows.js';

let rig: NetRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const MQ: FeatureSet = BASE_FEATURES | featureSet(NET_F_CTRL_VQ, NET_F_CTRL_RX, NET_F_MQ);

describe('5.1.6.5.5 multi-queue through real workers', () => {
  for (const pairs of [2, 4]) {
    it(`${pairs} queue pairs: VQ_PAIRS_SET ${pairs} is sent, flows spread over several rx queues, each flow in order on one queue, nothing lost`, async () => {
      rig = await netRig({ device: { queuePairs: pairs }, driver: { features: MQ } }, { device: { queuePairs: pairs }, driver: { features: MQ } });
      const { a, b, da, db } = rig;
      for (const [dev, drv] of [[a, da], [b, db]] as const) {
        expect(drv.spec.activePairs).toBe(pairs);
        expect(drv.pairs.length).toBe(pairs);
        expect(Atomics.load(new Int32Array(dev.activePairs.buffer), dev.activePairs.index)).toBe(pairs);
        // The control queue is the last one (2 * max_virtqueue_pairs) and carried the one command.
        expect(dev.queueStats(2 * pairs).chains).toBe(1);
        // The driver's own control queue goes on after setup's VQ_PAIRS_SET.
        expect(await drv.ctrl!.setPromisc(true)).toBe(true);
        expect(dev.queueStats(2 * pairs).chains).toBe(2);
      }
      const flows = 16;
      const perFlow = 60;
      const items = flowWorkload(flows, perFlow, pairs);
      const t = new HdrTransfer(da, db);
      await t.run(items, items.length, 30_000);
      await t.drain(50);
      expect(t.received.length).toBe(items.length);

      // Every flow: all its frames, in order, on one receive queue.
      const queueOfFlow = new Map<number, Set<number>>();
      const next = new Array<number>(flows).fill(0);
      for (const r of t.received) {
        const f = flowOf(r.frame);
        expect(seqOf(r.frame), `flow ${f}`).toBe(next[f]++);
        if (!queueOfFlow.has(f)) queueOfFlow.set(f, new Set());
        queueOfFlow.get(f)!.add(r.pair);
      }
      expect(next).toEqual(new Array(flows).fill(perFlow));
      for (const [f, qs] of queueOfFlow) expect(qs.size, `flow ${f} queues`).toBe(1);

      // The device's per-queue counters agree, and more than one receive queue carried traffic.
      const chains = Array.from({ length: pairs }, (_, p) => b.queueStats(netRxQueue(p)).chains);
      expect(chains.reduce((x, y) => x + y, 0)).toBe(items.length);
      expect(chains.filter((n) => n > 0).length).toBeGreaterThan(1);
      for (let p = 0; p < pairs; p++) expect(chains[p]).toBe(t.received.filter((r) => r.pair === p).length);
      const sent = Array.from({ length: pairs }, (_, p) => a.queueStats(netTxQueue(p)).chains);
      expect(sent).toEqual(Array.from({ length: pairs }, (_, p) => items.filter((it) => it.pair === p).length));
    });
  }

  it('VQ_PAIRS_SET 2 on a 4-pair device: senders steer over the first 2 receive queues only (5.1.6.5.5.2)', async () => {
    rig = await netRig({ device: { queuePairs: 4 }, driver: { features: MQ } }, { device: { queuePairs: 4 }, driver: { features: MQ, queuePairs: 2 } });
    const { b, da, db } = rig;
    expect(db.spec.activePairs).toBe(2);
    expect(Atomics.load(new Int32Array(b.activePairs.buffer), b.activePairs.index)).toBe(2);
    const items = flowWorkload(16, 20, 4);
    const t = new HdrTransfer(da, db);
    await t.run(items);
    const chains = Array.from({ length: 4 }, (_, p) => b.queueStats(netRxQueue(p)).chains);
    expect(chains[0] + chains[1]).toBe(items.length);
    expect(chains.slice(2)).toEqual([0, 0]);
    expect(chains[0] > 0 && chains[1] > 0).toBe(true);
  });

  it('5.1.2: without MQ negotiated only pair 0 is used and the control queue is queue 2', async () => {
    rig = await netRig(
      { device: { queuePairs: 4 }, driver: { features: MQ } },
      { device: { queuePairs: 4 }, driver: { features: (MQ & ~bit(NET_F_MQ)) | bit(NET_F_CTRL_VQ) } },
    );
    const { b, da, db } = rig;
    expect(db.pairs.length).toBe(1);
    expect(db.spec.activePairs).toBe(1);
    // Queue 2 is the control queue, set up where the driver put it; no other queue beyond pair 0 is.
    expect(b.queueEnabled(2)).toBe(true);
    expect(b.queueAddresses(2).desc).toBe(db.spec.ctrl!.queue.desc);
    for (let q = 3; q < b.numQueues; q++) expect(b.queueEnabled(q), `queue ${q}`).toBe(false);
    // It answers as the control queue: CTRL_RX commands work, VQ_PAIRS_SET is refused without MQ.
    expect(await db.ctrl!.setPromisc(true)).toBe(true);
    expect(await db.ctrl!.command(4, 0, Uint8Array.of(2, 0))).toBe(NET_ERR);
    expect(await db.ctrl!.command(0, 0, Uint8Array.of(1))).toBe(NET_OK);
    expect(b.queueStats(2).chains).toBe(3);
    // A 4-pair sender steers everything to b's only receive queue.
    const items = flowWorkload(16, 20, 4);
    const t = new HdrTransfer(da, db);
    await t.run(items);
    expect(t.received.every((r) => r.pair === 0)).toBe(true);
    expect(b.queueStats(netRxQueue(0)).chains).toBe(items.length);
    // (Queue 2 = netRxQueue(1) is the control queue here: its 3 chains are the commands above.)
    for (const p of [2, 3]) expect(b.queueStats(netRxQueue(p)).chains).toBe(0);
    expect(b.queueStats(2).chains).toBe(3);
    // Per sender queue, order holds.
    for (let f = 0; f < 16; f++) {
      const seqs = t.received.filter((r) => flowOf(r.frame) === f).map((r) => seqOf(r.frame));
      expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i));
    }
  });
});
