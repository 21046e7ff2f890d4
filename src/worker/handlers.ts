import { NetRxQueue } from '../net/net-rx-queue.js';
import { NetTxQueue } from '../net/net-tx-queue.js';
import type { HandlerFactory } from './queue-handler.js';

/** Queue handlers by the kind a device model names for a queue. */
export const QUEUE_HANDLERS: Readonly<Record<string, HandlerFactory>> = {
  'net-rx': (ctx) => new NetRxQueue(ctx),
  'net-tx': (ctx) => new NetTxQueue(ctx),
};
