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
import { queueHandler } from '../src/worker/queue-handlers.js';
import { QueueThread } from '../src/worker/queue-thread.js';
import type { QueueThreadData } from '../src/worker/queue-worker-data.js';

new QueueThread(workerData as QueueThreadData, queueHandler, (data) => {
  const { mapped, callFd } = data as VhostQueueWorkerData;
  return { memory: viewMappedMemory(mapped), raise: () => signalEventfd(callFd) };
});
