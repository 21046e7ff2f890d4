/**
 * virtio-lab: virtio-net and virtio-vsock device models for Node.js.
 *
 * The public API, all from this one entry point:
 * - spec numbers (feature bits, status bits, layouts),
 * - guest memory (regions, arena, allocator),
 * - split virtqueues (device and driver sides, chains, chain readers/writers),
 * - notifications (notify area, doorbells, adaptive waits),
 * - the control plane (VirtioDevice, PciCommonConfig, PciDriver),
 * - virtio-net (VirtioNetDevice, NetDriver) and links between NICs,
 * - virtio-vsock (VirtioVsockDevice, the virtio_vsock_hdr codec),
 * - the packet pump, the load generator (runLoad: size mix, paced rate, HDR latency percentiles) and the placement probe.
 */
export * from './spec/index.js';
export * from './errors.js';
export * from './memory/index.js';
export * from './ring/index.js';
export * from './notify/index.js';
export * from './stats/index.js';
export * from './transport/index.js';
export * from './virtskb/index.js';
export * from './net/index.js';
export * from './vsock/index.js';
export * from './backends/index.js';
export * from './lab/index.js';
export * from './hostile/index.js';
export * from './lab/tftp-server.js';
export * from './vhost-user/index.js';
