/**
 * The thread model: queues of several devices on one queue thread, threads
 * kept across resets and queue restarts, and a thread's death reported to
 * every device it served and to no other. Real queue threads, real Atomics.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, QueueThreadPool, QueueWorkerError, type QueueErrorEvent, SharedArena, type ThreadMapping, VirtioNetDevice } from '../../src/index.js';
import { seededRandom } from '../../src/lab/soak/soak-random.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../src/spec/status.js';
import { type NetPair, Transfer, firstDifference, netPair, numberedFrame, until } from '../support/net-pair.js';

const RX = netRxQueue(0);
const TX = netTxQueue(0);

let pairs: NetPair[] = [];
let pools: QueueThreadPool[] = [];
afterEach(async () => {
  await Promise.all(pairs.map((p) => p.close()));
  await Promise.all(pools.map((p) => p.close()));
  pairs = [];
  pools = [];
});

function pool(threads: number): QueueThreadPool {
  const p = new QueueThreadPool({ threads, spinUs: 20 });
  pools.push(p);
  return p;
}

async function pairOn(options: Parameters<typeof netPair>[0]): Promise<NetPair> {
  const p = await netPair(options);
  pairs.push(p);
  return p;
}

/** Move `n` numbered frames each way through `p` and check they arrived whole and in order. */
async function bothWays(p: NetPair, round: number, n = 64): Promise<void> {
  const frames = Array.from({ length: n }, (_, i) => numberedFrame(round * 1000 + i, 60 + (i % 200)));
  for (const [tx, rx] of [
    [p.da, p.db],
    [p.db, p.da],
  ] as const) {
    const t = new Transfer(tx, rx);
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
  }
}

describe('queue threads', () => {
  it('one thread serves the queues of two NICs: both directions flow, every data doorbell is its wake word', async () => {
    const shared = pool(1);
    const p = await pairOn({ threads: { pool: shared } });
    await bothWays(p, 1, 500);
    expect(shared.load).toEqual([4]);
    expect(shared.spawned).toBe(1);
    const wake = shared.wakeWord(0);
    for (const d of [p.a, p.b]) for (const q of [RX, TX]) expect(d.doorbell(q)).toEqual(wake);
    // The control queue is served inline: its doorbell stays the device's own.
    expect(p.a.doorbell(2).buffer).toBe(p.a.notify.spec.buffer);
  });

  it('two NIC pairs on one thread move frames at the same time, in order', async () => {
    const shared = pool(1);
    const [p, q] = [await pairOn({ threads: { pool: shared } }), await pairOn({ threads: { pool: shared } })];
    await Promise.all([bothWays(p, 2, 400), bothWays(q, 3, 400)]);
    expect(shared.load).toEqual([8]);
  });

  it('device resets and queue stop / restarts keep the thread: 200 random ones under traffic on a shared thread', async () => {
    const shared = pool(1);
    const p = await pairOn({ threads: { pool: shared } });
    const rand = seededRandom(14);
    for (let round = 0; round < 200; round++) {
      const r = rand();
      const nic = rand() < 0.5 ? 'a' : 'b';
      if (r < 0.4) await p.reopen(nic);
      else {
        const q = rand() < 0.5 ? RX : TX;
        p[nic].startQueue(q, await p[nic].stopQueue(q));
      }
      await bothWays(p, round, 8);
    }
    expect(shared.spawned).toBe(1);
    expect(shared.load).toEqual([4]);
  }, 120_000);

  it('10 000 stops and restarts of one queue on a kept thread: every control call is answered, nothing lost or duplicated', async () => {
    const p = await pairOn({ threads: 'per-device' });
    const frames = Array.from({ length: 5000 }, (_, i) => numberedFrame(i, 64));
    const t = new Transfer(p.da, p.db);
    const t0 = Date.now();
    for (let k = 0; k < 10_000; k++) {
      p.a.startQueue(TX, await p.a.stopQueue(TX));
      if (k % 2 === 0) t.step(frames, Math.min(frames.length, t.sent + 1));
    }
    await t.run(frames);
    expect(firstDifference(t.received, frames)).toBe(-1);
    console.log(`10000 stop/restart cycles on one kept thread in ${Date.now() - t0} ms`);
  }, 180_000);

  it('2.1.2: a killed shared thread sets DEVICE_NEEDS_RESET on every device it served and on no other; a reset brings them back on a new thread', async () => {
    const shared = pool(2);
    const p = await pairOn({ threads: { pool: shared, thread: () => 0 } });
    const q = await pairOn({ threads: { pool: shared, thread: () => 1 } });
    await bothWays(p, 1);
    await bothWays(q, 1);
    const errors: Array<QueueErrorEvent & { nic: string }> = [];
    for (const [nic, d] of [['pa', p.a], ['pb', p.b], ['qa', q.a], ['qb', q.b]] as const) d.on('queue-error', (e: QueueErrorEvent) => errors.push({ ...e, nic }));
    await p.a.killQueueWorker(TX);
    await until(() => errors.length === 4, 5000, 'every queue of the killed thread reported');
    expect(errors.map((e) => `${e.nic}:${e.queue}`).sort()).toEqual([`pa:${RX}`, `pa:${TX}`, `pb:${RX}`, `pb:${TX}`]);
    for (const e of errors) expect(e.error).toBeInstanceOf(QueueWorkerError);
    for (const d of [p.a, p.b]) expect(d.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    for (const d of [q.a, q.b]) expect(d.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    expect(p.da.needsReset && p.db.needsReset).toBe(true);
    // The other thread's NICs never noticed.
    await bothWays(q, 2);
    expect(shared.load).toEqual([undefined, 4]);
    await p.reopen('a');
    await p.reopen('b');
    await bothWays(p, 3);
    expect(shared.load).toEqual([4, 4]);
    expect(shared.spawned).toBe(3);
  });

  it('threads mapping: per-queue, per-pair, per-device and { workers } give the thread counts they name; a bad mapping is a named error', async () => {
    const arena = new SharedArena(64 << 20);
    const nic = (threads: ThreadMapping): VirtioNetDevice =>
      new VirtioNetDevice(arena.guestMemory(4 << 20), { queuePairs: 2, threads });
    const words = (d: VirtioNetDevice): number => new Set([0, 1, 2, 3].map((q) => d.doorbell(q).index)).size;
    const made = [nic('per-queue'), nic('per-pair'), nic('per-device'), nic({ workers: 3 })];
    expect(made.map(words)).toEqual([4, 2, 1, 3]);
    expect(made.map((d) => d.threadMapping)).toEqual(['per-queue', 'per-pair', 'per-device', '3 workers']);
    await Promise.all(made.map((d) => d.close()));
    expect(() => nic({ workers: 0 })).toThrow(InvalidArgumentError);
    expect(() => nic('per-socket' as never)).toThrow(/per-queue/);
    const p = pool(2);
    expect(() => nic({ pool: p, thread: () => 2 })).toThrow(/threads 0 to 1/);
  });
});
