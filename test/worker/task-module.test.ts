/**
 * QueueThreadPoolOptions.taskModule: a module of the user's own runs as a
 * task on the queue thread that serves the queues it drives (the receiving
 * guest beside its device's queues), a task that throws ends alone, and
 * misuse is refused by name.
 */
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { ring } from '../../src/entries/ring.js';
import { InvalidArgumentError, NetDriver, QueueThreadPool, SharedArena, VirtioNetDevice, connectNics, setupNetDriver } from '../../src/index.js';
import { netRxQueue } from '../../src/spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../src/spec/status.js';
import { numberedFrame, until } from '../support/net-pair.js';

const RECEIVE_TASK = new URL('../support/receive-task.mjs', import.meta.url);

/** Two NICs on a direct link, every queue of both on the one thread of a pool that runs tasks from `taskModule`. */
async function withTaskRig(taskModule: URL, body: (r: { pool: QueueThreadPool; a: VirtioNetDevice; b: VirtioNetDevice; da: NetDriver; wake(): void }) => Promise<void>): Promise<void> {
  const pool = new QueueThreadPool({ threads: 1, spinUs: 20, taskModule });
  const arena = new SharedArena(16 << 20);
  const a = new VirtioNetDevice(arena.guestMemory(4 << 20), { queueSize: 64, threads: { pool } });
  const b = new VirtioNetDevice(arena.guestMemory(4 << 20), { queueSize: 64, threads: { pool } });
  try {
    connectNics(arena, a, b, { capacity: 1 << 18 });
    const da = new NetDriver(await setupNetDriver(a));
    const w = pool.wakeWord(0);
    await body({ pool, a, b, da, wake: () => ring(new Int32Array(w.buffer), w.index) });
  } finally {
    await Promise.all([a.close(), b.close()]);
    await pool.close();
  }
}

describe("queue thread tasks from a module of the user's own (taskModule)", () => {
  it('a receiving guest runs on the queue thread that serves both NICs: 600 frames sent from this thread arrive in order', async () => {
    await withTaskRig(RECEIVE_TASK, async ({ pool, b, da, wake }) => {
      const words = new SharedArrayBuffer(8);
      const w = new Int32Array(words);
      const done = pool.runTask(0, { spec: await setupNetDriver(b), words });
      let sent = 0;
      while (sent < 600) {
        da.reclaimTx();
        while (sent < 600 && da.send(numberedFrame(sent, 60))) sent++;
        da.flushTx();
        await until(() => Atomics.load(w, 0) >= sent - 32, 10_000, `the task to receive up to frame ${sent}`);
      }
      await until(() => Atomics.load(w, 0) === 600, 10_000, 'all 600 frames at the task');
      Atomics.store(w, 1, 1);
      wake();
      const report = (await done) as { received: number; outOfOrder: number; threadId: number };
      expect(report.received).toBe(600);
      expect(report.outOfOrder).toBe(0);
      expect(report.threadId).not.toBe(threadId);
      // The queue thread moved them straight into b's buffers (a run-to-completion link), not through a channel.
      expect(b.queueStats(netRxQueue(0)).directFrames).toBe(600);
    });
  });

  it('a task that throws fails its runTask() with the error; the thread goes on serving its queues, and takes the next task', async () => {
    await withTaskRig(new URL('../support/throwing-task.mjs', import.meta.url), async ({ pool, a, b, da, wake }) => {
      const db = new NetDriver(await setupNetDriver(b));
      db.fillRx();
      const words = new SharedArrayBuffer(8);
      const failed = pool.runTask(0, { words });
      Atomics.store(new Int32Array(words), 0, 1);
      wake();
      await expect(failed).rejects.toThrow(/the task on this queue thread threw \(the thread goes on\): RangeError: the guest code broke/);
      // The thread still serves both NICs: frames a -> b arrive, and neither device needs a reset.
      let got = 0;
      for (let i = 0; i < 20; i++) da.send(numberedFrame(i, 60));
      da.flushTx();
      await until(() => (got += db.receive(() => {})) >= 20, 10_000, '20 frames a -> b after the task failed');
      expect((a.status | b.status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
      // And it runs the next task.
      const again = pool.runTask(0, { words });
      wake();
      await expect(again).rejects.toThrow(/the guest code broke/);
    });
  });

  it.each([
    ['a file URL', new URL('../support/no-task.mjs', import.meta.url)],
    ['a path from the working directory', relative(process.cwd(), fileURLToPath(new URL('../support/no-task.mjs', import.meta.url)))],
  ])('a module (named by %s) with no default export that is a function ends the thread, and runTask() says why', async (_, taskModule) => {
    const pool = new QueueThreadPool({ threads: 1, taskModule });
    try {
      await expect(pool.runTask(0, {})).rejects.toThrow(/no-task\.mjs has no default export that is a function/);
    } finally {
      await pool.close();
    }
  });

  it('misuse is refused by name: a task module with another entry point, with vhost-user or kept threads, or empty', () => {
    expect(() => new QueueThreadPool({ taskModule: RECEIVE_TASK, entry: 'pump-queue-worker' })).toThrow(/taskModule or an entry, not both/);
    expect(() => new QueueThreadPool({ taskModule: RECEIVE_TASK, vhostUser: true })).toThrow(InvalidArgumentError);
    expect(() => new QueueThreadPool({ taskModule: RECEIVE_TASK, keepThreads: true })).toThrow(InvalidArgumentError);
    expect(() => new QueueThreadPool({ taskModule: '' })).toThrow(/taskModule must be a file URL or a path/);
  });
});
