/**
 * Entry point of a queue worker thread: one per running virtqueue. It builds
 * the queue's handler from workerData and runs the loop until stopped.
 */
import { workerData } from 'node:worker_threads';
import { VirtioLabError } from '../src/errors.js';
import { QUEUE_HANDLERS } from '../src/worker/handlers.js';
import { QueueRuntime } from '../src/worker/queue-runtime.js';
import type { QueueWorkerData } from '../src/worker/queue-worker-data.js';

const data = workerData as QueueWorkerData;
const factory = QUEUE_HANDLERS[data.kind];
if (factory === undefined) throw new VirtioLabError('UNKNOWN_QUEUE_KIND', `no queue handler named "${data.kind}"`);
new QueueRuntime(data, factory).start();
