/**
 * Entry point of a queue thread that also runs a pump guest beside its
 * queues (the packet pump's 'guest' mapping): the stream's device queues
 * and its guest side take turns on one thread.
 */
import { workerData } from 'node:worker_threads';
import { pumpGuestTask } from '../src/lab/pump/pump-guest.js';
import type { PumpGuestData } from '../src/lab/pump/pump-protocol.js';
import { QueueThread } from '../src/worker/queue-thread.js';
import type { QueueThreadData } from '../src/worker/queue-worker-data.js';
import { queueHandler } from './queue-handlers.js';

new QueueThread(workerData as QueueThreadData, queueHandler, undefined, undefined, (data) => pumpGuestTask(data as PumpGuestData));
