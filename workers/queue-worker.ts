/**
 * Entry point of a queue thread: it serves the queues the control plane
 * starts on it (one, a pair, a device, or queues of several devices) until
 * its pool closes.
 */
import { workerData } from 'node:worker_threads';
import { QueueThread } from '../src/worker/queue-thread.js';
import type { QueueThreadData } from '../src/worker/queue-worker-data.js';
import { queueHandler } from './queue-handlers.js';

new QueueThread(workerData as QueueThreadData, queueHandler);
