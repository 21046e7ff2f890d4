import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { QueueThreadPool, runPump } from '../../src/index.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';

describe('packet pump (guest thread + real queue workers)', () => {
  it.each(['split', 'packed'] as const)('moves 200k numbered frames with zero loss and none out of order (%s rings)', async (ring) => {
    const r = await runPump({ frames: 200_000, frameSize: 64, queueSize: 256, ring });
    expect(r.ring).toBe(ring);
    expect(r.received).toBe(200_000);
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
    expect(r.txQueues[0].chains).toBe(200_000);
    expect(r.rxQueues[0].bytes).toBe(200_000 * 64);
  });

  it.each([3, 100, 1000])('2.8.10.1 packed queue size need not be a power of two: packed rings of %i entries carry 50k frames through the queue workers, none lost or out of order', async (queueSize) => {
    const r = await runPump({ frames: 50_000, frameSize: 64, queueSize, ring: 'packed' });
    expect(r.received).toBe(50_000);
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
    expect(r.txQueues[0].chains).toBe(50_000);
  });

  it('warmupSeconds: the frames after the warm-up and their rate come as `steady`, a part of the whole run', async () => {
    const r = await runPump({ frames: 0, seconds: 1.2, guestSeconds: 1.2, warmupSeconds: 0.4, tickMs: 50, frameSize: 64, queueSize: 256 });
    expect(r.lost).toBe(0);
    const s = r.steady;
    expect(s).toBeDefined();
    expect(s!.frames).toBeGreaterThan(0);
    expect(s!.frames).toBeLessThan(r.received);
    // The mark comes at the first tick past 0.4 s (late on a loaded machine): the timed part is at most the 0.8 s left.
    expect(s!.seconds).toBeGreaterThan(0.1);
    expect(s!.seconds).toBeLessThanOrEqual(r.seconds - 0.4);
    expect(s!.pps).toBeCloseTo(s!.frames / s!.seconds, 6);
    expect(s!.gbps).toBeCloseTo((s!.pps * 64 * 8) / 1e9, 6);
  });

  it('without a warm-up there is no steady figure; a run that ends inside its warm-up has none either; a bad warm-up is refused by name', async () => {
    expect((await runPump({ frames: 20_000, frameSize: 64, queueSize: 256 })).steady).toBeUndefined();
    expect((await runPump({ frames: 20_000, frameSize: 64, queueSize: 256, warmupSeconds: 30 })).steady).toBeUndefined();
    await expect(runPump({ frames: 1000, warmupSeconds: -1 })).rejects.toThrow(/warm-up -1 must be a non-negative number of seconds/);
  });

  it("2.8.10: a pump guest run by its queue thread polls with interrupts off: a packed ring, whose drivers start with them on, raises none (threads 'guest')", async () => {
    const r = await runPump({ frames: 200_000, frameSize: 64, queueSize: 256, ring: 'packed', threads: 'guest' });
    expect(r.lost).toBe(0);
    // Before, every publish of used entries interrupted the polling guest: one per batch of 32.
    expect(r.rxQueues[0].interrupts + r.txQueues[0].interrupts).toBe(0);
  });

  it('4.1.4.3.2: split rings keep a power-of-two queue size: a pump of 100-entry split rings is refused, naming the size', async () => {
    await expect(runPump({ frames: 1000, frameSize: 64, queueSize: 100, ring: 'split' })).rejects.toThrow(/queue size 100 must be a power of two/);
  });

  it.each(['split', 'packed'] as const)('5.1.6.5.5: two queue pairs after VQ_PAIRS_SET carry two streams on their own queues, each once and in order (%s rings)', async (ring) => {
    const r = await runPump({ frames: 50_000, frameSize: 64, queueSize: 256, pairs: 2, ring });
    expect(r.received).toBe(100_000);
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
    expect(r.perPair).toEqual([50_000, 50_000]);
    // Flow steering put each stream on its own receive queue.
    expect(r.rxQueues.map((q) => q.chains)).toEqual([50_000, 50_000]);
  });

  it.each(['split', 'packed'] as const)("threads 'guest': each pair's guest runs on the thread serving its queues; 2 pairs move 200k frames with zero loss (%s rings)", async (ring) => {
    const r = await runPump({ frames: 100_000, frameSize: 64, queueSize: 256, ring, pairs: 2, threads: 'guest' });
    expect(r.threads).toBe('guest');
    expect(r.busyThreads).toBe(2);
    expect(r.received).toBe(200_000);
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
    expect(r.perPair).toEqual([100_000, 100_000]);
    expect(r.txQueues.map((q) => q.chains)).toEqual([100_000, 100_000]);
    expect(r.guestHeap).toHaveLength(2);
  });

  it("threads 'guest': stop / restart of both queues under load (on the thread that also runs the guest) loses nothing", async () => {
    const r = await runPump({
      frames: 0,
      seconds: 1.5,
      frameSize: 128,
      queueSize: 128,
      threads: 'guest',
      during: async ({ a, b }) => {
        for (let i = 0; i < 6; i++) {
          await sleep(15);
          const [dev, q] = i % 2 === 0 ? [a, netTxQueue(0)] : [b, netRxQueue(0)];
          dev.startQueue(q, await dev.stopQueue(q));
        }
      },
    });
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
    expect(r.received).toBe(r.sent);
    expect(r.received).toBeGreaterThan(0);
  });

  it("threads 'guest': a killed thread fails the pump with a named error instead of leaving it waiting", async () => {
    const run = runPump({
      frames: 0,
      seconds: 30,
      frameSize: 64,
      queueSize: 128,
      threads: 'guest',
      during: async ({ a }) => {
        await sleep(50);
        await a.killQueueWorker(netTxQueue(0));
      },
    });
    await expect(run).rejects.toThrow(/queue thread exited before its task finished/);
  });

  it('a queue thread whose entry point runs no tasks refuses one by name', async () => {
    const pool = new QueueThreadPool({ threads: 1 });
    try {
      await expect(pool.runTask(0, {})).rejects.toThrow(/runs no tasks/);
    } finally {
      await pool.close();
    }
  });

  it('stop / restart of both queues under full load answers within one batch and loses nothing', async () => {
    const stopTimes: number[] = [];
    // Traffic runs for 2.5 s; a stop that waited for it to end would take seconds.
    const r = await runPump({
      frames: 0,
      seconds: 2.5,
      frameSize: 128,
      queueSize: 128,
      during: async ({ a, b }) => {
        for (let i = 0; i < 6; i++) {
          await sleep(15);
          const [dev, q] = i % 2 === 0 ? [a, netTxQueue(0)] : [b, netRxQueue(0)];
          const t0 = performance.now();
          const state = await dev.stopQueue(q);
          stopTimes.push(performance.now() - t0);
          dev.startQueue(q, state);
        }
      },
    });
    expect(r.lost).toBe(0);
    expect(r.sequenceErrors).toBe(0);
    expect(r.received).toBe(r.sent);
    expect(r.received).toBeGreaterThan(0);
    expect(stopTimes).toHaveLength(6);
    for (const t of stopTimes) expect(t).toBeLessThan(1000);
  });
});
