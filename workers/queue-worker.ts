/**
 * Entry point of a queue worker thread: one per running virtqueue. It builds
 * the queue's handler from workerData and runs the loop until stopped. The
 * handler kinds a device model may name are listed here.
 */
import { workerData } from 'node:worker_threads';
import { VirtioLabError } from '../src/errors.js';
import { NetRxQueue } from '../src/net/net-rx-queue.js';
import { NetTxQueue } from '../src/net/net-tx-queue.js';
import { VsockRxQueue } from '../src/vsock/vsock-rx-queue.js';
import { VsockTxQueue } from '../src/vsock/vsock-tx-queue.js';
import type { HandlerFactory } from '../src/worker/queue-handler.js';
import { QueueRuntime } from '../src/worker/queue-runtime.js';
import type { QueueWorkerData } from '../src/worker/queue-worker-data.js';

const QUEUE_HANDLERS: Readonly<Record<string, HandlerFactory>> = {
  'net-rx': (ctx) => new NetRxQueue(ctx),
  'net-tx': (ctx) => new NetTxQueue(ctx),
  'vsock-rx': (ctx) => new VsockRxQueue(ctx),
  'vsock-tx': (ctx) => new VsockTxQueue(ctx),
};

const data = workerData as QueueWorkerData;
const factory = QUEUE_HANDLERS[data.kind];
if (factory === undefined) throw new VirtioLabError('UNKNOWN_QUEUE_KIND', `no queue handler named "${data.kind}"`);
new QueueRuntime(data, factory).start();
