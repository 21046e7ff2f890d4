export * from './config-space.js';
export * from './device-model.js';
export * from './virtio-device.js';
export * from './pci-common-config.js';
export * from './pci-driver.js';
export { QueueThreadPool, type QueueThreadPoolOptions, MAX_POOL_THREADS } from './queue-thread-pool.js';
export { type ThreadMapping, defaultThreadMapping } from './thread-mapping.js';
