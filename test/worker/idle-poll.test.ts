/**
 * idlePollMs with real queue threads: an idle thread looks at its queues
 * while it sleeps (counted per queue as idleLooks) and frames sent after an
 * idle spell arrive as always; with the default (0) it never looks; bad
 * values are refused by name. (A kept thread goes only to a pool that polls
 * as it does: test/vsock/e2e/vsock-link.test.ts, with the other kept-thread rules.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, Lab, QueueThreadPool, SharedArena, VirtioNetDevice } from '../../src/index.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { type NetPair, firstDifference, netPair, numberedFrame, until } from '../support/net-pair.js';

/** Send `count` numbered frames a -> b and wait until b has received them all, whole and in order. */
async function carry(p: NetPair, first: number, count: number): Promise<void> {
  const frames = Array.from({ length: count }, (_, i) => numberedFrame(first + i, 60));
  for (const f of frames) expect(p.da.send(f)).toBe(true);
  p.da.flushTx();
  const got: Uint8Array[] = [];
  await until(
    () => {
      p.db.receive((pkt) => {
        const f = new Uint8Array(pkt.length);
        pkt.copyTo(f);
        got.push(f);
      });
      return got.length >= count;
    },
    10_000,
    `${count} frames at b`,
  );
  p.da.reclaimTx();
  expect(firstDifference(got, frames)).toBe(-1);
}

/** Resolves once `read()` has not changed for `quietMs`; throws after `ms`. */
async function whenStill(read: () => string, quietMs: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  let last = read();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > end) throw new Error(`still changing after ${ms} ms: ${last}`);
    await sleep(10);
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

describe('idle queue threads (idlePollMs)', () => {
  it('a thread with idlePollMs 2 looks at every queue it serves while idle, for one second after its last work, and frames after idle spells arrive; one with 0 never looks', async () => {
    const polling = new QueueThreadPool({ threads: 1, spinUs: 20, idlePollMs: 2 });
    const sleeping = new QueueThreadPool({ threads: 1, spinUs: 20 });
    const looks = (p: NetPair): number[] => [netTxQueue(0), netRxQueue(0)].flatMap((q) => [p.a.queueStats(q).idleLooks, p.b.queueStats(q).idleLooks]);
    const p = await netPair({ threads: { pool: polling } });
    const q = await netPair({ threads: { pool: sleeping } });
    try {
      let seq = 0;
      for (let spell = 0; spell < 3; spell++) {
        await carry(p, seq, 8);
        await carry(q, seq, 8);
        seq += 8;
        const before = looks(p);
        await sleep(100);
        const after = looks(p);
        // 100 ms idle at one look per 2 ms: about 50 per queue; a loaded machine may delay some.
        for (const [i, n] of after.entries()) expect(n - before[i]).toBeGreaterThanOrEqual(5);
      }
      await carry(p, seq, 8);
      // The looks last a second's worth of intervals after the last work (500 at 2 ms; on a
      // loaded machine the waits run long, so wait until they stop), then none come.
      const start = looks(p);
      await whenStill(() => looks(p).join(), 400, 10_000);
      const stopped = looks(p);
      for (const [i, n] of stopped.entries()) {
        expect(n - start[i]).toBeGreaterThan(0);
        expect(n - start[i]).toBeLessThanOrEqual(2 * 500);
      }
      await sleep(300);
      expect(looks(p)).toEqual(stopped);
      await carry(p, seq + 8, 8);
      expect(looks(q)).toEqual([0, 0, 0, 0]);
      expect(polling.idlePollMs).toBe(2);
      expect(sleeping.idlePollMs).toBe(0);
    } finally {
      await Promise.all([p.close(), q.close()]);
      await Promise.all([polling.close(), sleeping.close()]);
    }
  });

  it('refuses an idlePollMs that is negative, not a number or over 1000 ms, by name', () => {
    for (const bad of [-1, Number.NaN, 1001]) {
      expect(() => new QueueThreadPool({ idlePollMs: bad })).toThrow(new InvalidArgumentError(`queue thread pool idlePollMs ${bad} must be 0 (off) or a number of milliseconds up to 1000`));
      expect(() => new Lab({ idlePollMs: bad })).toThrow(new InvalidArgumentError(`lab idlePollMs ${bad} must be 0 (off) or a number of milliseconds up to 1000`));
      expect(() => new VirtioNetDevice(new SharedArena(1 << 20).guestMemory(1 << 16), { idlePollMs: bad, threads: 'per-device' })).toThrow(InvalidArgumentError);
    }
  });
});
