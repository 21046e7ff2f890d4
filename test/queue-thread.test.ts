/**
 * The queue thread loop, run in this thread with handlers written for the
 * test: bad guest data found while arming (arm() looks at the ring, as
 * available() does) fails that queue only, exactly like bad data found by
 * poll(), and never escapes the loop (which would end the thread and every
 * queue of every device on it).
 */
import { MessageChannel } from 'node:worker_threads';
import { afterEach, expect, it } from 'vitest';
import { VirtqueueError } from '../src/index.js';
import { NotifyArea } from '../src/notify/notify-area.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../src/spec/status.js';
import { NO_DEVICE_COUNTERS, StatsBlock } from '../src/stats/queue-stats.js';
import { SharedArena } from '../src/memory/arena.js';
import type { QueueState } from '../src/ring/queue-state.js';
import type { HandlerFactory } from '../src/worker/queue-handler.js';
import { QueueThread } from '../src/worker/queue-thread.js';
import type { QueueWorkerData } from '../src/worker/queue-worker-data.js';

const channels: MessageChannel[] = [];
afterEach(() => {
  for (const c of channels.splice(0)) {
    c.port1.close();
    c.port2.close();
  }
});

/** One queue's data for a thread in this thread, served by a handler of the test's own (kind `kind`). */
function oneQueue(kind: string): { notify: NotifyArea; stats: StatsBlock; state: QueueState; data: QueueWorkerData } {
  const memory = new SharedArena(1 << 20).guestMemory(64 << 10);
  const notify = NotifyArea.create(1, 2);
  const stats = StatsBlock.create(1, NO_DEVICE_COUNTERS);
  const state: QueueState = { size: 16, desc: 0x1000, avail: 0x2000, used: 0x3000, nextAvail: 0, nextUsed: 0, eventIdx: true, indirect: false, packed: false, inOrder: false };
  const data: QueueWorkerData = {
    kind,
    queue: 0,
    memory: memory.specs(),
    state,
    notify: notify.spec,
    stats: stats.buffer,
    counters: stats.schema,
    interrupt: null,
    configInterrupt: { buffer: notify.spec.buffer, index: notify.vectorWord(0) },
    params: undefined,
  };
  return { notify, stats, state, data };
}

/** A queue thread loop in this thread (it sleeps by blocking it), every queue served by `handler`. */
function threadHere(handler: HandlerFactory, idlePollMs: number): QueueThread {
  const channel = new MessageChannel();
  channels.push(channel);
  const words = new SharedArrayBuffer(128);
  return new QueueThread({ words: { buffer: words, wake: 0, control: 16 }, spinUs: 0, idlePollMs, control: channel.port2 }, () => handler);
}

it('a VirtqueueError thrown by arm() fails that queue (counted, DEVICE_NEEDS_RESET, config interrupt) and the loop goes on', async () => {
  const { notify, stats, state, data } = oneQueue('lying');
  let arms = 0;
  const lying: HandlerFactory = () => ({
    poll: () => 0,
    arm: () => {
      arms++;
      throw new VirtqueueError('AVAIL_INDEX_JUMP', 'driver moved avail.idx to 49537, 49537 past the device\'s 0 (queue size 16)', 49537);
    },
    disarm: () => undefined,
    quiesce: () => undefined,
  });
  const thread = threadHere(lying, 0);
  const irqBefore = Atomics.load(notify.i32, notify.vectorWord(0));
  thread.start(1, data);
  // The loop runs on the next turn of the event loop; the failed queue leaves it with nothing to serve.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  expect(arms).toBe(1);
  expect(stats.snapshot(0).errorsByCode).toEqual({ AVAIL_INDEX_JUMP: 1 });
  expect(Atomics.load(notify.i32, notify.statusWord) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  expect(Atomics.load(notify.i32, notify.vectorWord(0))).not.toBe(irqBefore);
  // The control plane can still stop it: the state it started from comes back.
  expect(thread.stop(1)).toEqual(state);
  expect(thread.stop(1)).toBeUndefined();
});

it('idlePollMs: a sleeping thread that had work looks at its queues every idlePollMs (counted as idleLooks), and a look that finds work ends the sleep', async () => {
  const { stats, data } = oneQueue('scripted');
  // Poll 1 finds work (a thread looks only after it had some), poll 2 nothing: it sleeps. Looks 3 and 4
  // find nothing, look 5 finds work; poll 6 nothing: it sleeps again, and look 7 finds bad data.
  const events: string[] = [];
  let polls = 0;
  const scripted: HandlerFactory = () => ({
    poll: () => {
      polls++;
      events.push(`poll ${polls}`);
      if (polls === 7) throw new VirtqueueError('AVAIL_INDEX_JUMP', 'the test ends the queue', 0);
      return polls === 1 || polls === 5 ? 1 : 0;
    },
    arm: () => {
      events.push('arm');
      return false;
    },
    disarm: () => {
      events.push('disarm');
    },
    quiesce: () => undefined,
  });
  const every = 5;
  const thread = threadHere(scripted, every);
  thread.start(1, data);
  const t0 = performance.now();
  // The loop runs (and sleeps, blocking this thread) on the next turn of the event loop.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  const elapsed = performance.now() - t0;
  expect(events).toEqual(['poll 1', 'poll 2', 'arm', 'poll 3', 'poll 4', 'poll 5', 'disarm', 'poll 6', 'arm', 'poll 7']);
  // Four naps of `every` ms: three before the look that found work, one before the look that failed the queue.
  expect(elapsed).toBeGreaterThanOrEqual(4 * every - 1);
  expect(elapsed).toBeLessThan(1000);
  const counts = stats.snapshot(0);
  expect(counts.sleeps).toBe(2);
  expect(counts.idleLooks).toBe(4);
  expect(counts.errorsByCode).toEqual({ AVAIL_INDEX_JUMP: 1 });
});
