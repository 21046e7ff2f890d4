/**
 * The handler registry of the queue threads: the one place that names the
 * devices' queue handlers (the shared worker layer knows none of them).
 * Each device layer declares its kinds and their parameters; the registry
 * must give a factory for every kind, typed by its parameters.
 */
import type { NetQueueKinds } from '../src/net/net-device.js';
import { NetRxQueue } from '../src/net/net-rx-queue.js';
import { NetTxQueue } from '../src/net/net-tx-queue.js';
import type { VsockQueueKinds } from '../src/vsock/vsock-device.js';
import { VsockRxQueue } from '../src/vsock/vsock-rx-queue.js';
import { VsockTxQueue } from '../src/vsock/vsock-tx-queue.js';
import { type HandlerRegistry, handlerLookup } from '../src/worker/queue-handler.js';

/** Every handler kind a queue thread runs, with its parameters. */
export type QueueKinds = NetQueueKinds & VsockQueueKinds;

const QUEUE_HANDLERS: HandlerRegistry<QueueKinds> = {
  'net-rx': (ctx) => new NetRxQueue(ctx),
  'net-tx': (ctx) => new NetTxQueue(ctx),
  'vsock-rx': (ctx) => new VsockRxQueue(ctx),
  'vsock-tx': (ctx) => new VsockTxQueue(ctx),
};

/** The factory registered under `kind` (UNKNOWN_QUEUE_KIND when none is). */
export const queueHandler = handlerLookup(QUEUE_HANDLERS);
