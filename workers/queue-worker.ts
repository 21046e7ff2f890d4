/**
 * Entry point of a queue worker thread: one per running virtqueue. It builds
 * the queue's handler from workerData and runs the loop until stopped.
 */
import { workerData } from 'node:worker_threads';
import { queueHandler } from '../src/worker/queue-handlers.js';
import { QueueRuntime } from '../src/worker/queue-runtime.js';
import type { QueueWorkerData } from '../src/worker/queue-worker-data.js';

const data = workerData as QueueWorkerData;
new QueueRuntime(data, queueHandler(data.kind)).start();
