import { afterEach, describe, expect, it } from 'vitest';
import { type FeatureSet, NET_DEFAULT_FEATURES, QueueWorkerError, VirtqueueError, type QueueErrorEvent } from '../../src/index.js';
import { F_EVENT_IDX, F_RING_PACKED, bit } from '../../src/spec/features.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK } from '../../src/spec/status.js';
import { type NetPair, Transfer, firstDifference, netPair, numberedFrame, until } from '../support/net-pair.js';

const RX = netRxQueue(0);
const TX = netTxQueue(0);

let pair: NetPair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

function nextError(dev: NetPair['a']): Promise<QueueErrorEvent> {
  return new Promise((resolve) => dev.once('queue-error', resolve));
}

/** Every test below runs on both ring formats; the split-only rules (2.7.x layouts) are marked. */
const FORMATS: ReadonlyArray<readonly ['split' | 'packed', FeatureSet]> = [
  ['split', 0n],
  ['packed', bit(F_RING_PACKED)],
];

describe.each(FORMATS)('virtio-net pair through real queue workers (%s rings)', (format, ringBit) => {
  const netPairOn = (options: Parameters<typeof netPair>[0] = {}): ReturnType<typeof netPair> =>
    netPair({ ...options, features: ((options.features ?? NET_DEFAULT_FEATURES) & ~bit(F_RING_PACKED)) | ringBit });
  // Rules about the split layout (used_event, the avail ring) are checked on split rings only;
  // packed-ring.* checks their packed counterparts.
  const splitOnly = (name: string, fn: () => Promise<void>): void => {
    if (format === 'split') it(name, fn);
  };

  it('first frame: a frame sent on NIC a arrives intact on NIC b', async () => {
    pair = await netPairOn();
    const frame = numberedFrame(1, 60);
    const t = new Transfer(pair.da, pair.db);
    await t.run([frame]);
    expect(t.received).toEqual([frame]);
    expect(pair.a.queueStats(TX).chains).toBe(1);
    expect(pair.b.queueStats(RX).bytes).toBe(60);
  });

  it('sendBatch publishes a batch with one index store; netStats sums the queues and the control queue', async () => {
    pair = await netPairOn({ queueSize: 64 });
    const frames = Array.from({ length: 40 }, (_, i) => numberedFrame(i, 100));
    expect(pair.da.sendBatch(frames)).toBe(40);
    const got: Uint8Array[] = [];
    await until(() => {
      pair!.db.receive((p) => {
        const f = new Uint8Array(p.length);
        p.copyTo(f);
        got.push(f);
      });
      return got.length === 40;
    }, 10_000, 'the batch');
    expect(firstDifference(got, frames)).toBe(-1);
    expect(await pair.db.ctrl!.setAllMulti(true)).toBe(true);
    await until(() => pair!.a.netStats().txPackets === 40, 5000, 'tx counters');
    const a = pair.a.netStats();
    const b = pair.b.netStats();
    expect(a.txBytes).toBe(4000);
    expect(b.rxPackets).toBe(40);
    expect(b.rxBytes).toBe(4000);
    expect(b.drops).toBe(0);
    expect(b.ctrl?.commands.rx).toBe(1);
    expect(b.ctrl?.acks.ok).toBeGreaterThanOrEqual(1);
  });

  it('moves thousands of frames of mixed sizes both ways with no loss, duplication or reordering', async () => {
    pair = await netPairOn({ queueSize: 128 });
    const frames = Array.from({ length: 4000 }, (_, i) => numberedFrame(i, 60 + ((i * 37) % 1455)));
    const ab = new Transfer(pair.da, pair.db);
    const ba = new Transfer(pair.db, pair.da);
    await until(() => {
      ab.step(frames);
      ba.step(frames);
      return ab.received.length === frames.length && ba.received.length === frames.length;
    }, 30_000, 'both directions');
    expect(firstDifference(ab.received, frames)).toBe(-1);
    expect(firstDifference(ba.received, frames)).toBe(-1);
  });

  splitOnly('2.7.10: with event idx the device interrupts only when used_event asks for it', async () => {
    pair = await netPairOn({ queueSize: 256 });
    const frames = Array.from({ length: 20000 }, (_, i) => numberedFrame(i, 64));
    const t = new Transfer(pair.da, pair.db);
    // The driver polls and never moves used_event: at most the first
    // publication (used_event 0 lies in [0, new)) and one 2^16 wrap interrupt.
    await t.run(frames);
    expect(pair.a.queueStats(TX).chains).toBe(frames.length);
    expect(pair.a.queueStats(TX).interrupts).toBeLessThanOrEqual(2);
    // Asking (used_event = last seen) brings exactly the next one.
    // Every frame arrived; wait for the device's last tx completions too.
    await until(() => (pair!.da.reclaimTx(), pair!.da.pair.tx.pending === 0), 5000, 'tx completions');
    const before = pair.a.queueStats(TX).interrupts;
    expect(pair.da.enableInterrupts()).toBe(false);
    const more = [...frames, numberedFrame(frames.length, 64)];
    await t.run(more);
    await until(() => pair!.a.queueStats(TX).interrupts === before + 1, 5000, 'the requested interrupt');
  });

  it('2.7.7 / 2.7.10: without VIRTIO_F_EVENT_IDX the flags suppress notifications and nothing is lost or hangs', async () => {
    pair = await netPairOn({ queueSize: 64, features: NET_DEFAULT_FEATURES & ~bit(F_EVENT_IDX) });
    expect(pair.a.negotiatedFeatures & bit(F_EVENT_IDX)).toBe(0n);
    const frames = Array.from({ length: 3000 }, (_, i) => numberedFrame(i, 60 + (i % 200)));
    const ab = new Transfer(pair.da, pair.db);
    const ba = new Transfer(pair.db, pair.da);
    await Promise.all([ab.run(frames), ba.run(frames)]);
    expect(firstDifference(ab.received, frames)).toBe(-1);
    expect(firstDifference(ba.received, frames)).toBe(-1);
  });

  for (const [name, q] of [['tx', TX], ['rx', RX]] as const) {
    it(`stopping the ${name} queue returns its base and a fresh worker resumes from it, losing and duplicating nothing`, async () => {
      pair = await netPairOn({ queueSize: 64 });
      const dev = q === TX ? pair.a : pair.b;
      const frames = Array.from({ length: 3000 }, (_, i) => numberedFrame(i, 100));
      const t = new Transfer(pair.da, pair.db);
      for (const stopAt of [500, 1500, 2500]) {
        await until(() => (t.step(frames, stopAt), t.received.length >= stopAt - 10), 20_000, `${stopAt} frames`);
        const state = await dev.stopQueue(q);
        expect(dev.queueRunning(q)).toBe(false);
        // Every chain the worker took was completed before it stopped.
        expect(state.nextUsed).toBe(state.nextAvail);
        // Traffic queued while the queue is stopped waits in the ring.
        t.step(frames, stopAt + 40);
        dev.startQueue(q, state);
      }
      await t.run(frames);
      expect(firstDifference(t.received, frames)).toBe(-1);
    });
  }

  it('GET_VRING_BASE / SET_VRING_BASE: restarting from the returned base resumes the queue', async () => {
    pair = await netPairOn();
    const frames = Array.from({ length: 600 }, (_, i) => numberedFrame(i, 80));
    const t = new Transfer(pair.da, pair.db);
    await until(() => (t.step(frames, 300), t.received.length === 300));
    const base = await pair.a.getVringBase(TX);
    // Split: the avail index. Packed: 300 one-descriptor chains into a 64-entry ring, index in bits 0-14, wrap counter in bit 15 (vhost).
    expect(base).toBe(format === 'split' ? 300 : (Math.floor(300 / 64) % 2 === 0 ? 0x8000 : 0) | (300 % 64));
    pair.a.setVringBase(TX, base);
    pair.a.startQueue(TX);
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
  });

  it('2.1.2: a killed queue worker sets DEVICE_NEEDS_RESET and raises a config interrupt; a reset brings the device back', async () => {
    // A thread per queue, so the kill takes only the tx queue (a shared thread takes every queue it serves: see below).
    pair = await netPairOn({ threads: 'per-queue' });
    const irq = pair.da.interruptWord;
    const before = Atomics.load(irq.i32, irq.index);
    const error = nextError(pair.a);
    await pair.a.killQueueWorker(TX);
    const e = await error;
    expect(e.queue).toBe(TX);
    expect(e.error).toBeInstanceOf(QueueWorkerError);
    expect(pair.a.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(Atomics.load(irq.i32, irq.index)).not.toBe(before);
    // The other queues keep working: b -> a still flows into a's rx queue.
    const back = new Transfer(pair.db, pair.da);
    await back.run([numberedFrame(7, 70)]);
    // The driver resets and starts over.
    const da = await pair.reopen('a');
    expect(pair.a.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    expect(pair.a.status & STATUS_DRIVER_OK).toBe(STATUS_DRIVER_OK);
    const frames = Array.from({ length: 200 }, (_, i) => numberedFrame(i, 90));
    const t = new Transfer(da, pair.db);
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
  });

  splitOnly('a chain that breaks the ring rules is counted by name, sets DEVICE_NEEDS_RESET, and leaves other queues running', async () => {
    pair = await netPairOn({ queueSize: 64 });
    const error = nextError(pair.a);
    // A hostile driver: an avail entry naming descriptor 999 in a 64-entry ring.
    const mem = pair.a.memory;
    const { avail } = pair.a.queueAddresses(TX);
    const idx = mem.readU16(avail + 2);
    mem.writeU16(avail + 4 + 2 * (idx % 64), 999);
    Atomics.store(new Uint16Array(mem.regions[0].buffer), (avail + mem.regions[0].bias + 2) / 2, idx + 1);
    const txWake = pair.a.wakeWords.tx[0];
    Atomics.add(new Int32Array(txWake.buffer), txWake.index, 1);
    Atomics.notify(new Int32Array(txWake.buffer), txWake.index);
    const e = await error;
    expect(e.error).toBeInstanceOf(VirtqueueError);
    expect(e.error.code).toBe('AVAIL_HEAD_OUT_OF_RANGE');
    expect((e.error as VirtqueueError).value).toBe(999);
    expect(pair.a.queueStats(TX).errorsByCode.AVAIL_HEAD_OUT_OF_RANGE).toBe(1);
    expect(pair.a.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    const back = new Transfer(pair.db, pair.da);
    const frames = Array.from({ length: 100 }, (_, i) => numberedFrame(i, 64));
    await back.run(frames);
    expect(firstDifference(back.received, frames)).toBe(-1);
  });

  it('2.6.1: resetting one queue ends its worker and restores its defaults; the other direction keeps flowing, and the queue comes back once set up again', async () => {
    pair = await netPairOn({ queueSize: 64 });
    const maxSize = pair.a.queueSize(TX);
    await pair.a.resetQueue(TX);
    expect(pair.a.queueRunning(TX)).toBe(false);
    expect(pair.a.queueEnabled(TX)).toBe(false);
    expect(pair.a.queueAddresses(TX)).toEqual({ desc: 0, avail: 0, used: 0 });
    expect(pair.a.queueVector(TX)).toBe(0xffff);
    expect(pair.a.queueSize(TX)).toBe(maxSize);
    const back = new Transfer(pair.db, pair.da);
    await back.run([numberedFrame(1, 64)]);
    // Re-program the queue with the rings it had (the driver's state is still valid at index 0).
    const spec = pair.da.spec.pairs[0].tx;
    pair.a.setQueueSize(TX, spec.size);
    pair.a.setQueueAddresses(TX, { desc: spec.desc, avail: spec.avail, used: spec.used });
    pair.a.enableQueue(TX);
    expect(pair.a.queueRunning(TX)).toBe(true);
    const frames = Array.from({ length: 50 }, (_, i) => numberedFrame(i, 64));
    const t = new Transfer(pair.da, pair.db);
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
  });

  it('close() ends every queue worker', async () => {
    pair = await netPairOn();
    expect(pair.a.queueRunning(TX) && pair.a.queueRunning(RX)).toBe(true);
    await pair.close();
    for (const dev of [pair.a, pair.b]) for (const q of [RX, TX]) expect(dev.queueRunning(q)).toBe(false);
    expect(pair.a.status).toBe(0);
    pair = undefined;
  });
});
