/**
 * `virtio-lab/testing`: tools for testing and measuring devices.
 * - The hostile driver: a driver that lies (HostileDriver, its cases, the
 *   fuzzer, guarded memory and the raw ring pen).
 * - The data path in one thread: the net queue handlers (NetTxQueue,
 *   NetRxQueue) run without a queue thread over a port channel, with the
 *   counters they write, to profile or step them.
 */
export * from '../hostile/index.js';
export { NetTxQueue, type NetTxParams } from '../net/net-tx-queue.js';
export { NetRxQueue, type NetRxParams } from '../net/net-rx-queue.js';
export { netRecvConfig } from '../net/recv-config.js';
export { TX_HEADER_AT } from '../net/net-pair-driver.js';
export { NET_QUEUE_COUNTERS } from '../net/net-counters.js';
export { type CounterSchema, StatsBlock } from '../stats/queue-stats.js';
export type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';
export { type PortChannelSpec, allocPortChannel } from '../backends/port-channel.js';
