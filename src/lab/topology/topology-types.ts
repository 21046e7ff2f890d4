import type { ImpairmentOptions } from '../../backends/impairment.js';
import type { RelayImpairment } from '../../backends/relay.js';
import type { SocketLinkOptions } from '../../backends/socket-link.js';
import type { VxlanUplinkOptions } from '../../backends/vxlan-options.js';
import type { NamedThreadMapping } from '../../transport/thread-mapping.js';
import type { DhcpServerOptions } from '../hosts/dhcp-server.js';
import type { LabVhostUserOptions } from '../runtime/lab-types.js';
import type { TrafficFlow } from '../runtime/lab-traffic.js';

/**
 * A lab described as JSON (what `virtio-lab lab <file>` runs):
 *
 * ```json
 * { "nics":     [{ "name": "a", "mac": "52:54:00:00:00:0a", "queuePairs": 2, "mtu": 1500, "queueSize": 256 }],
 *   "switches": [{ "name": "sw0", "ageingMs": 300000 }],
 *   "sockets":  [{ "name": "qemu", "transport": "stream", "role": "server", "path": "/tmp/q.sock" },
 *                { "name": "udp", "transport": "dgram", "remote": { "port": 5555 }, "recvBufferSize": 4194304 }],
 *   "vhostUser": [{ "name": "vm", "path": "/tmp/vm-net.sock", "mac": "52:54:00:12:34:56", "threads": "per-pair", "spinUs": 30 }],
 *   "links":    [{ "a": "a", "b": "b", "impairment": { "lossPercent": 10, "delayMs": 2 }, "capture": "ab.pcap" }],
 *   "ports":    [{ "nic": "c", "switch": "sw0", "impairment": { "delayMs": 1 } }],
 *   "taps":     [{ "switch": "sw0", "file": "sw0.pcap", "port": "c" }],
 *   "hosts":    [{ "name": "gw", "address": "10.0.2.2/24", "port": "sw0", "tftpRoot": "./files", "dhcp": { "poolStart": "10.0.2.15" } }],
 *   "netns":    [{ "name": "ns1", "address": "10.0.0.1/24", "port": "sw0", "mtu": 1500, "impairment": { "lossPercent": 1 } }],
 *   "traffic":  [{ "from": "a", "to": "b", "frames": 1000, "size": 512, "ratePps": 10000 }],
 *   "vxlan":    [{ "name": "vx0", "switch": "sw0", "vni": 42, "local": "10.0.0.1", "port": 4789, "remotes": ["10.0.0.2"] }] }
 * ```
 *
 * Only "nics" is required, and not even that when "netns" lists a
 * namespace. A netns entry is a Linux network namespace the lab creates with
 * a TAP interface (`ifname`, default eth0) holding `address`, plugged into
 * the switch `port` (or linked straight to the NIC or vhost-user port of
 * that name), with `impairment` on that port or link. A link or port end (`a`, `b`, `nic`) may name a
 * socket link or a vhost-user port too (a NIC whose driver is a QEMU guest or
 * DPDK, connecting to `path`; traffic flows run between the lab's own NICs).
 * A vhost-user port's `threads` (a named ThreadMapping or `{ "workers": N }`)
 * and `spinUs` are its server's ring threads (LabVhostUserOptions).
 * Both ends of a link may be switches: a cable between two switches, with
 * its impairment and capture (a switch's link ports come after its "ports"). File names are relative to the working directory. A
 * link impairment is one set of options for both directions or
 * `{ "aToB": {...}, "bToA": {...} }`; impairment keys are those of
 * ImpairmentOptions. Unknown keys are errors (they are usually typos).
 *
 * A host is the lab's IPv4 host (IpHost: ARP, ping, UDP) on a NIC of its
 * own named `name`, plugged into the switch `port` (or linked straight to
 * the NIC or vhost-user port of that name); `address` is its address with an
 * optional prefix length (default /24). With `tftpRoot` it serves that
 * directory over TFTP; with `dhcp` (true, or DhcpServerOptions without
 * `host`) it hands out addresses from a pool (default 16 from .15 of its
 * subnet), so a stock guest image comes up without static configuration.
 *
 * A VXLAN uplink (RFC 7348) is a port of `switch` carrying its frames to
 * remote VTEPs over UDP: `vni` (24 bits), the `local` IPv4 address and
 * `port` (default 4789) it binds, `remotes` ("10.0.0.2" or
 * "10.0.0.2:4790") that floods go to; the other keys are those of
 * VxlanUplinkOptions (`learning`, `restrictSources`, `ageingSeconds`,
 * `fdbSize`, `mtu`). Its switch ports come after the switch's hosts.
 */
export interface LabTopology {
  description?: string;
  /** Required unless "netns" lists a namespace (then parseTopology() gives [] for a missing list). */
  nics: TopologyNic[];
  switches?: { name: string; ageingMs?: number }[];
  sockets?: TopologySocket[];
  vhostUser?: TopologyVhostUser[];
  links?: { a: string; b: string; impairment?: RelayImpairment; capture?: string }[];
  ports?: { nic: string; switch: string; impairment?: ImpairmentOptions }[];
  taps?: { switch: string; file: string; port?: string | number }[];
  hosts?: TopologyHost[];
  netns?: TopologyNetns[];
  traffic?: TrafficFlow[];
  vxlan?: TopologyVxlan[];
}

/** A VXLAN uplink as JSON: VxlanUplinkOptions, a name, and the switch it is a port of. */
export type TopologyVxlan = { name: string; switch: string } & VxlanUplinkOptions;

/** A network namespace as JSON (see LabTopology). */
export interface TopologyNetns {
  name: string;
  /** Address(es) with prefix length, "10.0.0.1/24". */
  address?: string | string[];
  mtu?: number;
  ifname?: string;
  /** A switch to plug into, or a NIC or vhost-user port to link to. */
  port: string;
  /** On the switch port (frames towards the namespace) or the link (both ways). */
  impairment?: ImpairmentOptions;
}

/** The lab's IPv4 host as JSON (see LabTopology). */
export interface TopologyHost {
  name: string;
  /** "10.0.2.2/24" (the prefix length defaults to 24). */
  address: string;
  /** A switch to plug into, or a NIC or vhost-user port to link to. */
  port: string;
  tftpRoot?: string;
  dhcp?: true | Omit<DhcpServerOptions, 'host'>;
}

/** A lab NIC as JSON (see LabTopology). */
export interface TopologyNic {
  name: string;
  mac?: string;
  mtu?: number;
  queuePairs?: number;
  queueSize?: number;
}

/** A vhost-user port as JSON: LabVhostUserOptions plus a name; `threads` is a named mapping or `{ "workers": N }`. */
export type TopologyVhostUser = { name: string; threads?: NamedThreadMapping | { workers: number } } & Omit<LabVhostUserOptions, 'threads'>;

/** A socket link as JSON: SocketLinkOptions plus a name. */
export type TopologySocket = { name: string } & SocketLinkOptions;

/** Queue pairs a topology NIC may have (each pair is two worker threads). */
export const TOPOLOGY_MAX_QUEUE_PAIRS = 16;

/** Ring threads a topology vhost-user port may ask for (`{ "workers": N }`): one per ring at most. */
export const TOPOLOGY_MAX_RING_THREADS = 2 * TOPOLOGY_MAX_QUEUE_PAIRS;
