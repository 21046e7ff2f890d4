import type { QueueThreadWords } from '../worker/queue-worker-data.js';
import type { QueueThreadHandle } from './queue-thread-handle.js';

/**
 * Idle queue threads kept by the process when their pool closes, for the
 * next pool that needs a thread. A new thread is a new V8 isolate: tens of
 * milliseconds of CPU to boot, then thousands of packets in the
 * interpreter while its code warms up and compiles again. A kept thread
 * brings its compiled code along. At most this many are kept; the rest end.
 */
export const KEPT_QUEUE_THREADS = 4;

/** A thread that serves no queue, with the words it sleeps on and how it was made to poll. */
export interface KeptQueueThread {
  handle: QueueThreadHandle;
  words: QueueThreadWords;
  polling: QueueThreadPolling;
}

/** How a thread polls and sleeps (QueueThreadPoolOptions): a pool takes only a kept thread that polls as its own would. */
export interface QueueThreadPolling {
  spinUs: number;
  idlePollMs: number;
}

const kept: KeptQueueThread[] = [];

/**
 * Keep `t` for a later pool: true if it was taken (alive, serving no
 * queue, room left), false if the caller must end it. A kept thread is
 * unref'd (it serves nothing), so it never keeps the process alive.
 */
export function keepQueueThread(t: KeptQueueThread): boolean {
  if (kept.length >= KEPT_QUEUE_THREADS || !t.handle.alive || t.handle.queueCount !== 0) return false;
  kept.push(t);
  return true;
}

/** A kept thread made to poll as `polling` says, most recently kept first, or undefined; it is the caller's from now on. */
export function takeQueueThread(polling: QueueThreadPolling): KeptQueueThread | undefined {
  for (let i = kept.length - 1; i >= 0; i--) {
    const t = kept[i];
    if (!t.handle.alive) {
      kept.splice(i, 1);
      continue;
    }
    if (t.polling.spinUs === polling.spinUs && t.polling.idlePollMs === polling.idlePollMs) return kept.splice(i, 1)[0];
  }
  return undefined;
}

/** End every kept thread (the next pools start theirs afresh). */
export async function closeKeptQueueThreads(): Promise<void> {
  await Promise.all(kept.splice(0).map((t) => t.handle.close()));
}
