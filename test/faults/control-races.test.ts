/**
 * Faults: control-plane calls on the main thread racing full-rate traffic on
 * the queue workers. Stopping and restarting queues and flapping the link
 * lose nothing; resetting one queue leaves the other direction whole; a
 * driver that resets the device mid-traffic and renegotiates (mergeable ->
 * small buffers, split -> packed rings) loses only the frames it abandoned
 * in its own transmit ring, and traffic resumes under the new features.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NET_DEFAULT_FEATURES, NetDriver, hasFeature, runPump, setupNetDriver } from '../../src/index.js';
import { rxBufferMode } from '../../src/net/recv-config.js';
import { F_RING_PACKED, NET_F_MRG_RXBUF, bit } from '../../src/spec/features.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { type NetPair, netPair, numberedFrame, until } from '../support/net-pair.js';
import { TEST_RING, withTestRing } from '../support/test-ring.js';

let pair: NetPair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

const seqOf = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset).getUint32(14, true);

/** A numbered stream from one driver to another, on the main thread; the receiver checks order. */
class Stream {
  sent = 0;
  /** Frames to send at most (set it to stop sending and drain). */
  limit = Number.POSITIVE_INFINITY;
  received: number[] = [];
  outOfOrder = 0;

  constructor(
    public tx: NetDriver,
    public rx: NetDriver,
  ) {}

  /** Send what fits, reap, receive. */
  step(): void {
    while (this.sent < this.limit && this.tx.send(numberedFrame(this.sent, 64 + (this.sent % 200)))) this.sent++;
    this.tx.flushTx();
    this.tx.reclaimTx();
    this.rx.receive((p) => {
      const f = new Uint8Array(p.length);
      p.copyTo(f);
      const seq = seqOf(f);
      const last = this.received.at(-1);
      if (last !== undefined && seq <= last) this.outOfOrder++;
      this.received.push(seq);
    });
  }

  /** Keep stepping (yielding to the event loop) until `pred` holds. */
  async until(pred: () => boolean, what: string): Promise<void> {
    await until(() => (this.step(), pred()), 20_000, what);
  }

  /** Sequence numbers sent and never received. */
  missing(): number[] {
    const got = new Set(this.received);
    const out: number[] = [];
    for (let s = 0; s < this.sent; s++) if (!got.has(s)) out.push(s);
    return out;
  }
}

describe('control-plane calls racing traffic', () => {
  it('stop / start of both data queues and link down / up, again and again under the pump: every frame arrives once and in order', async () => {
    let restarts = 0;
    let flaps = 0;
    const r = await runPump({
      frames: 400_000,
      queueSize: 256,
      ring: TEST_RING,
      spinUs: 10,
      tickMs: 50,
      during: async ({ a, b }) => {
        for (let k = 0; k < 30; k++) {
          const [dev, q] = k % 2 === 0 ? [a, netTxQueue(0)] : [b, netRxQueue(0)];
          if (!dev.queueRunning(q)) break; // the pump finished and closed
          const state = await dev.stopQueue(q);
          a.setLinkUp(k % 3 !== 0);
          b.setLinkUp(k % 3 !== 0);
          flaps++;
          dev.startQueue(q, state);
          restarts++;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        a.setLinkUp(true);
        b.setLinkUp(true);
      },
    });
    console.log(`pump under control calls: ${r.received} frames, ${restarts} queue restarts, ${flaps} link changes, lost ${r.lost}, sequence errors ${r.sequenceErrors}`);
    expect(restarts).toBeGreaterThan(0);
    expect(r.received).toBe(400_000);
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
  }, 60_000);

  it('a queue reset under full load leaves the other direction whole', async () => {
    pair = await netPair({ queueSize: 64 });
    const ab = new Stream(pair.da, pair.db);
    const ba = new Stream(pair.db, pair.da);
    await ba.until(() => (ab.step(), ba.received.length > 2000), 'traffic both ways');
    await pair.a.resetQueue(netTxQueue(0));
    expect(pair.a.queueRunning(netTxQueue(0))).toBe(false);
    const mark = ba.sent;
    await ba.until(() => (ab.step(), ba.received.length >= mark + 3000), 'b -> a after the reset');
    ba.limit = ba.sent;
    await ba.until(() => ba.received.length === ba.sent, 'b -> a drained');
    expect(ba.missing()).toEqual([]);
    expect(ba.outOfOrder).toBe(0);
    expect(pair.b.netStats().drops + pair.a.netStats().drops).toBe(0);
  }, 60_000);

  it.each([
    ['mergeable -> small receive buffers', withTestRing(NET_DEFAULT_FEATURES), withTestRing(NET_DEFAULT_FEATURES & ~bit(NET_F_MRG_RXBUF)), 'small'],
    ['split -> packed rings', NET_DEFAULT_FEATURES & ~bit(F_RING_PACKED), NET_DEFAULT_FEATURES | bit(F_RING_PACKED), 'mergeable'],
  ] as const)('device reset and renegotiation under full load (%s): only the abandoned transmit tail is lost, then traffic resumes', async (_name, from, features, mode) => {
    pair = await netPair({ queueSize: 64, features: from });
    const ab = new Stream(pair.da, pair.db);
    const ba = new Stream(pair.db, pair.da);
    await ab.until(() => (ba.step(), ab.received.length > 2000 && ba.received.length > 2000), 'traffic both ways');
    // a's driver resets the device with frames in its transmit ring and renegotiates.
    const abandoned = pair.da.pair.tx.pending;
    const sentBefore = ab.sent;
    const da = new NetDriver(await setupNetDriver(pair.a, { queueSize: 64, features, interrupt: pair.da.spec.interrupt }));
    da.fillRx();
    expect(hasFeature(da.features, F_RING_PACKED)).toBe(hasFeature(features, F_RING_PACKED));
    expect(rxBufferMode(da.features)).toBe(mode);
    pair.da = ab.tx = ba.rx = da;
    // Whatever left a before the reset arrives; what it abandoned may not.
    await ab.until(() => (ba.step(), ab.received.length >= sentBefore - abandoned && ab.sent > sentBefore + 2000 && ba.received.length > 4000), 'traffic after the reset');
    ab.limit = ab.sent;
    await ab.until(() => ab.received.at(-1) === ab.sent - 1, 'a -> b drained');
    for (const s of ab.missing()) expect(s >= sentBefore - abandoned && s < sentBefore, `frame ${s} lost outside the abandoned tail [${sentBefore - abandoned}, ${sentBefore})`).toBe(true);
    expect(ab.outOfOrder).toBe(0);
    expect(pair.a.netStats().drops + pair.b.netStats().drops).toBe(0);
  }, 60_000);
});
