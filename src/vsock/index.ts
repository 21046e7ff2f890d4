/**
 * virtio-vsock (section 5.10): the device (VirtioVsockDevice, its rx / tx
 * queue workers and inline event queue), the virtio_vsock_hdr codec, the
 * connection layer both sides share (VsockStack and its sockets), the guest
 * driver (VsockDriver), the in-process host side (VsockHost) and the
 * Firecracker-style Unix-socket muxer (VsockUnixMuxer).
 */
export * from './vsock-header.js';
export { VSOCK_DROP_REASONS, VSOCK_QUEUE_COUNTERS, type VsockDropReason, type VsockQueueStats } from './vsock-counters.js';
export * from './vsock-device.js';
export * from './vsock-rx-queue.js';
export * from './vsock-tx-queue.js';
export * from './vsock-event-queue.js';
export * from './stack/index.js';
export { VsockDriver, VSOCK_DRIVER_FEATURES, type VsockDriverOptions, type VsockDriverStats } from './vsock-driver.js';
export { VsockHost, type VsockHostOptions } from './vsock-host.js';
export * from './muxer/unix-muxer.js';
export * from './muxer/muxer-types.js';
export * from './muxer/connect-line.js';
