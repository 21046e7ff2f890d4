import type { SocketLinkStats } from '../../backends/socket-link.js';
import type { MacEntry } from '../../backends/switch-mac-table.js';
import type { PortStats, SwitchStats } from '../../backends/switch-stats.js';
import type { TapOptions } from '../../backends/switch.js';
import type { VxlanStats } from '../../backends/vxlan-uplink.js';
import type { NetQueueStats } from '../../net/net-counters.js';
import type { NetPairStats } from '../../net/net-pair-driver.js';
import type { FeatureSet } from '../../spec/features.js';
import type { ThreadMapping } from '../../transport/thread-mapping.js';
import type { SessionSummary } from '../../vhost-user/session.js';
import type { LabNetnsStats } from './lab-netns.js';

// The public options, counters and events of a Lab.

/** Options of a lab. */
export interface LabOptions {
  /**
   * Guest-memory bytes of every NIC. Default: what its driver needs for the
   * rings, receive pool and tx buffers its options ask for (about 1.5 MiB
   * per queue pair at queue size 256), computed per NIC.
   */
  memoryPerNic?: number;
  /** Microseconds queue, switch and relay workers poll before they sleep; default 20. */
  spinUs?: number;
  /**
   * How often the NICs' and vhost-user ports' queue threads look at their
   * queues while they sleep, for a second after their last work, in
   * milliseconds: 0 (the default: never) up to 1000. A look every
   * millisecond keeps the first frame after a pause fast
   * (QueueThreadPoolOptions.idlePollMs). A shared `threads: { pool }`
   * polls as that pool was made.
   */
  idlePollMs?: number;
  /** Queue size of NICs that do not name one; default 256. */
  queueSize?: number;
  /**
   * How every NIC's queues map onto queue threads (default: the devices'
   * default, VIRTIO_LAB_THREADS or 'auto'). `{ pool }` shares one
   * QueueThreadPool among all the NICs; the caller closes it after the lab.
   */
  threads?: ThreadMapping;
}

/** Options of a NIC in a lab. */
export interface LabNicOptions {
  /** MAC address; default 52:54:00:1a:xx:xx numbered in the order NICs are added. */
  mac?: string;
  /** MTU in config space; default 1500. */
  mtu?: number;
  /** Queue pairs (each pair is two queues; see LabOptions.threads for the threads that serve them); default 1. The lab's driver uses them all. */
  queuePairs?: number;
  /** Ring size of every queue: a power of two on split rings, any size up to 32768 on packed ones; default the lab's queueSize. */
  queueSize?: number;
  /** Features the device offers; default NET_DEVICE_FEATURES. */
  features?: FeatureSet;
  /** Features the lab's driver asks for (it gets those also offered); default NET_DEFAULT_FEATURES. */
  driverFeatures?: FeatureSet;
  /** Bytes of each tx buffer, virtio_net_hdr included; default room for one MTU-sized frame. */
  bufferSize?: number;
}

/** Options of a capture on a lab switch: `port` may name what is plugged into it. */
export interface LabTapOptions extends Omit<TapOptions, 'port'> {
  /** Capture one port only: its number, or the name of the NIC or socket link connected to it. */
  port?: number | string;
}

/** Counters of one NIC: its device's queues and its driver. */
export interface LabNicStats {
  mac: string;
  /** Device side, by queue pair (written by the queue workers). */
  queues: { rx: NetQueueStats; tx: NetQueueStats }[];
  /** The lab's driver, by queue pair. */
  driver: NetPairStats[];
}

/** Counters of a lab switch; each port carries the name of what is plugged into it. */
export interface LabSwitchStats extends Omit<SwitchStats, 'ports'> {
  ports: (PortStats & { name: string })[];
}

/** Counters of a cable between two endpoints. */
export interface LabLinkStats {
  a: string;
  b: string;
  /** The relay's counters (ports[0]: a's end), or null for a direct cable without impairment or capture. */
  relay: SwitchStats | null;
  /** Frames from a to b (and b to a) the link's impairment dropped. */
  lostAToB: number;
  lostBToA: number;
}

/** Everything a lab counts. */
export interface LabStats {
  nics: Record<string, LabNicStats>;
  /** vhost-user ports: the device's queue counters and what the front end negotiated. */
  vhostUser: Record<string, LabVhostUserStats>;
  switches: Record<string, LabSwitchStats>;
  links: LabLinkStats[];
  sockets: Record<string, SocketLinkStats>;
  /** VXLAN uplinks: frames in and out, learned MACs, drops by reason. */
  vxlan: Record<string, VxlanStats>;
  /** Network namespaces (their TAP ports), by namespace name. */
  netns: Record<string, LabNetnsStats>;
}

/** Counters of a vhost-user port. */
export interface LabVhostUserStats {
  path: string;
  mac: string;
  connected: boolean;
  /** Front ends that connected, and that went away, since start(). */
  connects: number;
  disconnects: number;
  /** Why the last front end went away (its socket closed, a malformed message, the lab closing). */
  lastDisconnect?: string;
  /** Device side, by queue pair. */
  queues: { rx: NetQueueStats; tx: NetQueueStats }[];
  /** The current (or last) front end's negotiation, undefined before any connected. */
  session: SessionSummary | undefined;
}

/** Options of a vhost-user port in a lab. */
export interface LabVhostUserOptions {
  /** Unix socket the front end (QEMU `-netdev vhost-user`, DPDK virtio-user) connects to. */
  path: string;
  /** MAC address in config space; default numbered like NICs. */
  mac?: string;
  /** MTU in config space; default 1500. */
  mtu?: number;
  /** Queue pairs (MQ offered when more than 1; the front end picks how many it uses); default 1. */
  queuePairs?: number;
  /** Trust the front end with memory not sealed against shrinking (DPDK's `--no-huge`): see VhostUserTrustOptions. */
  allowUnsealedMemory?: boolean;
  /**
   * How the port's rings map onto its server's ring threads (see
   * VhostUserThreadOptions.threads). Default the server's own:
   * VIRTIO_LAB_THREADS, else 'auto'; the lab's `threads` is for its NICs
   * and does not apply here. A bad mapping is refused by start().
   */
  threads?: ThreadMapping;
  /** Microseconds the port's ring threads poll before they sleep; default the lab's spinUs. */
  spinUs?: number;
}

/** A learned address with the name of the NIC (or socket link) on its port. */
export interface LabMacEntry extends MacEntry {
  portName: string;
}

/** Where a lab is in its life. */
export type LabState = 'building' | 'starting' | 'running' | 'closed';

/** Options of Lab.start(). */
export interface LabStartOptions {
  /**
   * Aborting closes the lab (as close() does), whenever it happens: while it
   * starts (start() then rejects with the signal's reason) or while it runs.
   */
  signal?: AbortSignal;
}

/** The events of a Lab. */
export interface LabEvents {
  /** start() finished: every worker runs. */
  running: [];
  /** close() finished: everything the lab created is ended (`error` is the first failure while closing, if any). */
  closed: [error: unknown];
}
