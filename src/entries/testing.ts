/**
 * `virtio-lab/testing`: tools for testing and measuring devices.
 * - The hostile driver: a driver that lies (HostileDriver, its cases, the
 *   fuzzer, guarded memory and the raw ring pen).
 * - Mini drivers and devices: independent, minimal split and packed ring
 *   sides written from the spec, with the guarded memory rigs they run in.
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
export { type PortChannelSpec, allocPortChannel } from '../port/port-channel.js';
export { allocNetChannel } from '../net/net-port.js';
// Minimal drivers and devices written from the spec alone (2.7, 2.8), to cross-check a ring side against.
export { MiniDevice } from '../testing/mini-device.js';
export { MiniDriver } from '../testing/mini-driver.js';
export { MiniPackedDevice } from '../testing/mini-packed-device.js';
export { MiniPackedDriver, type PackedRig, packedRig } from '../testing/mini-packed-driver.js';
export { type RingRig, ringRig } from '../testing/split-ring.js';
