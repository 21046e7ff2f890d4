/**
 * Entry point of a vhost-user ring's thread: the same loop and handlers as a
 * queue thread, over memory mapped from the front end (viewed by address:
 * an ArrayBuffer posted here would be a copy), interrupting through the
 * ring's call eventfd.
 */
import { workerData } from 'node:worker_threads';
import { viewMappedMemory } from '../src/vhost-user/front-end-memory.js';
import { signalEventfd } from '../src/vhost-user/libc.js';
import type { VhostQueueWorkerData } from '../src/vhost-user/vhost-queue-data.js';
import { QueueThread } from '../src/worker/queue-thread.js';
import type { QueueThreadData } from '../src/worker/queue-worker-data.js';
import { queueHandler } from './queue-handlers.js';

new QueueThread(workerData as QueueThreadData, queueHandler, (started) => {
  const data = started as VhostQueueWorkerData;
  const { callFd, queue } = data;
  const drops = new Int32Array(data.callDrops);
  // A call eventfd whose counter the front end parked near 2^64 would block the
  // write (and this thread for good): that interrupt is dropped and counted.
  const raise = (): void => {
    if (signalEventfd(callFd) !== 8) Atomics.add(drops, queue, 1);
  };
  return { memory: viewMappedMemory(data.mapped), raise };
});
