import { VirtioLabError } from '../errors.js';
import { NetRxQueue } from '../net/net-rx-queue.js';
import { NetTxQueue } from '../net/net-tx-queue.js';
import { VsockRxQueue } from '../vsock/vsock-rx-queue.js';
import { VsockTxQueue } from '../vsock/vsock-tx-queue.js';
import type { HandlerFactory } from './queue-handler.js';

/** The handler kinds a device model may name for a worker queue. */
const QUEUE_HANDLERS: Readonly<Record<string, HandlerFactory>> = {
  'net-rx': (ctx) => new NetRxQueue(ctx),
  'net-tx': (ctx) => new NetTxQueue(ctx),
  'vsock-rx': (ctx) => new VsockRxQueue(ctx),
  'vsock-tx': (ctx) => new VsockTxQueue(ctx),
};

/** The handler factory registered under `kind`. */
export function queueHandler(kind: string): HandlerFactory {
  const factory = QUEUE_HANDLERS[kind];
  if (factory === undefined) throw new VirtioLabError('UNKNOWN_QUEUE_KIND', `no queue handler named "${kind}"`);
  return factory;
}
