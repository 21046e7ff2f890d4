/**
 * virtio-lab: virtio-net and virtio-vsock device models for Node.js.
 *
 * The main entry holds what a lab user needs: guest memory, the devices and
 * their drivers, links and switches, the vsock host side, the lab (topology,
 * traffic, pump, load, soak) and the errors. The rest is in subpaths:
 * - `virtio-lab/spec`: the spec's numbers (feature bits, status bits, layouts, header fields);
 * - `virtio-lab/ring`: split and packed virtqueues (both sides) and the receive-buffer module;
 * - `virtio-lab/testing`: the hostile driver and fuzzer, and the data path's queue handlers run in-process;
 * - `virtio-lab/vhost-user`: the vhost-user back end.
 */

// Errors: every one a VirtioLabError with a code; messages name the value seen.
export {
  DeviceNeedsResetError,
  DeviceStatusError,
  FeatureNegotiationError,
  GuestMemoryError,
  InvalidArgumentError,
  QueueStateError,
  QueueWorkerError,
  VirtioLabError,
  VirtqueueError,
  type VirtqueueErrorCode,
} from './errors.js';

// Guest memory and features.
export { GuestAllocator } from './memory/allocator.js';
export { SharedArena } from './memory/arena.js';
export { GuestMemory, type MemoryRegionSpec } from './memory/guest-memory.js';
export { type FeatureSet, featureSet, hasFeature } from './spec/features.js';

// The control plane every device shares, and the threads its queues run on.
export { type QueueErrorEvent, VirtioDevice, type VirtioDeviceOptions } from './transport/virtio-device.js';
export { QueueThreadPool, type QueueThreadPoolOptions } from './transport/queue-thread-pool.js';
export type { ThreadMapping } from './transport/thread-mapping.js';
export { PciCommonConfig } from './transport/pci-common-config.js';
export { type DriverQueueOptions, PciDriver } from './transport/pci-driver.js';
export type { QueueStats } from './stats/queue-stats.js';

// virtio-net: the device, its drivers, MAC helpers.
export { NET_DEVICE_FEATURES, type NetDeviceOptions, type NetDeviceStats, VirtioNetDevice } from './net/net-device.js';
export type { BadHeaderReason, NetQueueStats } from './net/net-counters.js';
export { NET_DEFAULT_FEATURES, NetDriver, type NetDriverOptions, type NetDriverSpec, type NetPairSpec, newInterruptWord, setupNetDriver } from './net/net-driver.js';
export { NetPairDriver, type NetPairStats } from './net/net-pair-driver.js';
export { NetRxPacket } from './net/net-rx-packet.js';
export { formatMac, parseMac, randomMac } from './net/mac.js';

// Links, switches, impairments, captures and sockets between NICs.
export { type Link, type LinkOptions, connectLoopback, connectNics } from './backends/link.js';
export { NetSwitch, type NetSwitchOptions, type SwitchPortOptions } from './backends/switch.js';
export type { PortStats, SwitchStats } from './backends/switch-stats.js';
export { BackendWorkerError } from './backends/switch-host.js';
export { Relay, type RelayOptions } from './backends/relay.js';
export type { ImpairmentSpec } from './backends/impairment.js';
export { type CaptureOptions, WireCapture } from './backends/capture.js';
export { SocketLink, type SocketLinkOptions, SocketLinkProtocolError, type SocketLinkStats, type StreamAddress } from './backends/socket-link.js';
export { TapPort, type TapPortOptions } from './backends/tap-port.js';
export { type VxlanStats, VxlanUplink } from './backends/vxlan-uplink.js';
export type { VxlanUplinkOptions } from './backends/vxlan-options.js';

// virtio-vsock: the device, the guest driver, the host side and its sockets.
export { VirtioVsockDevice, type VsockDeviceOptions, type VsockDeviceStats, type VsockTransportResetEvent } from './vsock/vsock-device.js';
export type { VsockDropReason, VsockQueueStats } from './vsock/vsock-counters.js';
export { VsockDriver, type VsockDriverOptions, type VsockDriverStats } from './vsock/vsock-driver.js';
export { VsockHost, type VsockHostOptions } from './vsock/vsock-host.js';
export { VsockSocket } from './vsock/stack/vsock-socket.js';
export { type SeqpacketMessage, VsockSeqpacketSocket } from './vsock/stack/vsock-seqpacket-socket.js';
export { type VsockAcceptInfo, type VsockListenOptions, VsockServer } from './vsock/stack/vsock-server.js';
export type { VsockOnread } from './vsock/stack/vsock-onread.js';
export type { VsockStackStats } from './vsock/stack/stack-stats.js';
export { VsockError, type VsockErrorCode } from './vsock/stack/vsock-error.js';
export { VsockMuxerError, type VsockMuxerErrorCode, type VsockUnixMuxerOptions, type VsockUnixMuxerStats } from './vsock/muxer/muxer-types.js';
export { VsockUnixMuxer } from './vsock/muxer/unix-muxer.js';

// The lab: a topology of NICs, switches and links, brought up and driven.
export { Lab } from './lab/runtime/lab.js';
export type {
  LabLinkStats,
  LabNicOptions,
  LabNicStats,
  LabOptions,
  LabStartOptions,
  LabState,
  LabStats,
  LabSwitchStats,
  LabTapOptions,
  LabVhostUserOptions,
  LabVhostUserStats,
} from './lab/runtime/lab-types.js';
export type { LabNetnsOptions, LabNetnsStats } from './lab/runtime/lab-netns.js';
export { TopologyError, type TopologyProblem } from './errors.js';
export type { LabTopology } from './lab/topology/topology-types.js';
export { loadTopology, parseTopology } from './lab/topology/parse-topology.js';
export { buildLab } from './lab/topology/build-lab.js';
export { type LabRunOptions, type LabRunReport, formatLabReport, runTopology } from './lab/topology/run-topology.js';
export { type FlowResult, type TrafficFlow, type TrafficOptions, type TrafficResult, runTraffic } from './lab/runtime/lab-traffic.js';
export { IpHost, type IpHostOptions, type PingResult } from './lab/hosts/ip-host.js';
export { DhcpServer, type DhcpServerOptions } from './lab/hosts/dhcp-server.js';
export { TftpServer, type TftpServerOptions } from './lab/hosts/tftp-server.js';

// Measuring: the pump, the load generator, the soak, core placement.
export { type PumpOptions, type PumpResult, type PumpThreads, runPump } from './lab/pump/pump.js';
export { type LoadOptions, type LoadResult, runLoad } from './lab/load/load.js';
export { type LatencyPercentiles, latencyPercentiles, newLatencyHistogram, recordLatencyNs } from './lab/pump/latency-histogram.js';
export { type SoakOptions, type SoakResult, runSoak } from './lab/soak/soak.js';
export { formatSoakReport } from './cli/soak-report.js';
export { type Placement, probePlacement } from './lab/placement.js';
