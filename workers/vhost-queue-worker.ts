/**
 * Entry point of a vhost-user ring thread: the same loop and handlers as a
 * queue thread, over memory mapped from the front end (viewed by address:
 * an ArrayBuffer posted here would be a copy), interrupting through each
 * ring's call eventfd and sleeping in poll() on the kick eventfds of the
 * rings it serves. The thread belongs to its server's pool and serves the
 * rings of one session after another.
 */
import { workerData } from 'node:worker_threads';
import { viewMappedMemory } from '../src/vhost-user/front-end-memory.js';
import { KickPollWait } from '../src/vhost-user/kick-poll-wait.js';
import { setTimerSlackNs, signalEventfd, viewOf } from '../src/os/libc.js';
import type { VhostQueueWorkerData } from '../src/vhost-user/vhost-queue-data.js';
import { NOTIFY_PAGE_BYTES } from '../src/vhost-user/vring.js';
import { QueueThread } from '../src/worker/queue-thread.js';
import type { QueueThreadData } from '../src/worker/queue-worker-data.js';
import { queueHandler } from './queue-handlers.js';

const thread = workerData as QueueThreadData;
if (thread.wakeFd === undefined) throw new Error('a vhost-user ring thread needs its wake eventfd');
// The thread naps 20 us between looks while a front end keeps posting (queue-thread.ts, NAP_MS):
// the default 50 us timer slack would stretch each nap to ~70 us. 1 us is what a timed wait costs anyway.
setTimerSlackNs(1000);
const sleeper = new KickPollWait(new Int32Array(thread.words.buffer), thread.words.wake, thread.wakeFd);

new QueueThread(
  thread,
  queueHandler,
  (started) => {
    const data = started as VhostQueueWorkerData;
    const { callFd, queue } = data;
    const drops = new Int32Array(data.callDrops);
    // A call eventfd whose counter the front end parked near 2^64 would block the
    // write (and this thread for good): that interrupt is dropped and counted.
    const raise = (): void => {
      if (signalEventfd(callFd) !== 8) Atomics.add(drops, queue, 1);
    };
    const page = data.notifyPage === null ? undefined : { words: new Uint16Array(viewOf(data.notifyPage, NOTIFY_PAGE_BYTES)), kicks: new Int32Array(data.pageKicks), at: queue };
    return { memory: viewMappedMemory(data.mapped), raise, kick: { fd: data.kickFd, page } };
  },
  sleeper,
);
