import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ImpairmentOptions, validateImpairment } from '../backends/impairment.js';
import { type Link, type LinkOptions, connectNics } from '../backends/link.js';
import { isInterfaceName, isNetnsName, netnsExists } from '../backends/netns.js';
import type { PortAttachable } from '../net/net-port.js';
import type { RelayImpairment } from '../backends/relay.js';
import { SocketLink, type SocketLinkOptions, type SocketLinkStats } from '../backends/socket-link.js';
import { TapPort } from '../backends/tap-port.js';
import type { MacEntry } from '../backends/switch-mac-table.js';
import type { PortStats, SwitchStats } from '../backends/switch-stats.js';
import { MAX_PORTS, NetSwitch, type NetSwitchOptions, type SwitchPortOptions, type TapOptions } from '../backends/switch.js';
import { type VxlanUplinkOptions, checkVxlanOptions } from '../backends/vxlan-options.js';
import { type VxlanStats, VxlanUplink } from '../backends/vxlan-uplink.js';
import { InvalidArgumentError, VirtioLabError } from '../errors.js';
import { SharedArena } from '../memory/arena.js';
import { formatMac, parseMac } from '../net/mac.js';
import { NET_DEVICE_FEATURES, VirtioNetDevice } from '../net/net-device.js';
import { NET_DEFAULT_FEATURES, NetDriver, newInterruptWord, setupNetDriver } from '../net/net-driver.js';
import type { NetPairStats } from '../net/net-pair-driver.js';
import { type WordRef, waitAsync } from '../notify/notify-area.js';
import { F_RING_PACKED, type FeatureSet, hasFeature } from '../spec/features.js';
import { ETH_MAX_FRAME, NET_HDR_SIZE, netRxQueue, netTxQueue } from '../spec/net.js';
import type { NetQueueStats } from '../net/net-counters.js';
import type { ThreadMapping } from '../transport/thread-mapping.js';
import { serveVhostUserNet } from '../vhost-user/devices.js';
import type { VhostUserDisconnect, VhostUserServer } from '../vhost-user/server.js';
import type { SessionSummary } from '../vhost-user/session.js';
import { LabChildren, type LabExecOptions, type LabExecResult, type LabNetnsOptions, type LabNetnsStats, execInNetns } from './lab-netns.js';
import { ARENA_SLACK, channelBytes, impairmentBytes, nicMemoryBytes } from './lab-sizing.js';

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

// Node 20.0-20.3 predate Symbol.asyncDispose; 20.4-22 define it as this registered symbol, and
// Node 24's V8 has it built in (then this line does nothing).
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

interface NicEntry {
  kind: 'nic';
  name: string;
  mac: string;
  mtu: number;
  queuePairs: number;
  queueSize: number;
  features: FeatureSet;
  driverFeatures: FeatureSet;
  bufferSize: number;
  memoryBytes: number;
  /** Where it is plugged in (for error messages), once it is. */
  attached?: string;
  device?: VirtioNetDevice;
  driver?: NetDriver;
}

interface SocketEntry {
  kind: 'socket';
  name: string;
  options: SocketLinkOptions;
  attached?: string;
  link?: SocketLink;
}

interface VxlanEntry {
  kind: 'vxlan';
  name: string;
  options: VxlanUplinkOptions;
  attached?: string;
  uplink?: VxlanUplink;
}

interface VhostUserEntry {
  kind: 'vhost-user';
  name: string;
  path: string;
  mac: string;
  mtu: number;
  queuePairs: number;
  allowUnsealedMemory: boolean;
  attached?: string;
  server?: VhostUserServer<VirtioNetDevice>;
  /** Front ends that connected / went away since start(), and why the last one went. */
  connects: number;
  disconnects: number;
  lastDisconnect?: string;
}

interface SwitchEntry {
  kind: 'switch';
  name: string;
  options: NetSwitchOptions;
  ports: { endpoint: string; options: SwitchPortOptions }[];
  /** The far ends of its links to other switches (or NICs), in link() order: its ports after `ports`. */
  uplinks: string[];
  /** A port by number, or by the name of what is on it (resolved at start()). */
  taps: { path: string; port: number | string | null; options: Omit<TapOptions, 'port'> }[];
  sw?: NetSwitch;
}

/** What is on each port of a switch, by port number: connect()ed endpoints, then links. */
const portNames = (s: SwitchEntry): string[] => [...s.ports.map((p) => p.endpoint), ...s.uplinks];

interface LinkEntry {
  a: string;
  b: string;
  options: LinkOptions;
  link?: Link;
}

interface NetnsEntry {
  kind: 'netns';
  name: string;
  ifname: string;
  addresses: string[];
  options: LabNetnsOptions;
  attached?: string;
  port?: TapPort;
}

type Entry = NicEntry | SocketEntry | VhostUserEntry | SwitchEntry | VxlanEntry | NetnsEntry;
type Endpoint = NicEntry | SocketEntry | VhostUserEntry | VxlanEntry | NetnsEntry;

const KIND_NAMES: Record<Entry['kind'], string> = { nic: 'NIC', socket: 'socket link', 'vhost-user': 'vhost-user port', switch: 'switch', vxlan: 'VXLAN uplink', netns: 'network namespace' };

const DEFAULT_QUEUE_SIZE = 256;
const DEFAULT_SPIN_US = 20;
/** Default channel capacities of connectNics() and NetSwitch (see link.ts, switch.ts). */
const LINK_CAPACITY = 1 << 20;
const LINK_CAPACITY_MQ = 1 << 18;
const SWITCH_CAPACITY = 1 << 18;
/** How long start() waits for every worker thread to run. */
const WORKER_START_TIMEOUT_MS = 20_000;

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * A NIC's queue size: any size 1..32768 on packed rings (2.8.10.1), a power of
 * two on split rings (2.7, 4.1.4.3.2).
 */
function checkQueueSize(what: string, size: number, packed: boolean): void {
  if (!(Number.isInteger(size) && size >= 1 && size <= 32768)) throw new InvalidArgumentError(`${what}: queueSize ${size} must be an integer in [1, 32768]`);
  if (!packed && !isPowerOfTwo(size)) throw new InvalidArgumentError(`${what}: queueSize ${size} must be a power of two on split rings (packed rings, VIRTIO_F_RING_PACKED in both features and driverFeatures, take any size)`);
}

/** The two directions of a link impairment. */
function relayDirections(imp: RelayImpairment | undefined): { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions } {
  if (imp === undefined) return {};
  if ('aToB' in imp || 'bToA' in imp) return imp as { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions };
  return { aToB: imp as ImpairmentOptions, bToA: imp as ImpairmentOptions };
}

const delayOf = (i: ImpairmentOptions | undefined): number => (i === undefined ? 0 : (i.delayMs ?? 0) + (i.jitterMs ?? 0));

/**
 * A network lab: virtio-net NICs, learning switches, cables (plain, impaired
 * or captured), pcap taps, socket links to other processes and VXLAN
 * uplinks to other labs or Linux VTEPs, built by name and run as one unit.
 *
 * Build first, then start: nic(), switch(), link(), connect(), tap(),
 * socketLink() and vxlan() only record what is asked (and check it). start()
 * sizes one SharedArena for every guest memory and channel of the lab
 * (allocated once, when the whole topology is known: see lab-sizing.ts),
 * creates the devices, opens the socket links, binds the VXLAN uplinks,
 * plugs everything in, starts the switch workers, and
 * brings every NIC up with setupNetDriver() and a NetDriver on the calling
 * thread (receive buffers posted); it resolves once every worker thread runs.
 * All drivers route their interrupts to one word, so waitForInterrupt()
 * wakes on any NIC (and a NetDriver's own waitForInterrupt() may wake for
 * another NIC: loop on receive()).
 *
 * close() ends everything the lab created: switch workers, relay workers,
 * sockets (socket links, VXLAN uplinks), then the devices' queue workers. A started lab keeps the process
 * alive (its worker threads run until closed): close it, abort the signal
 * given to start(), or hold it with `await using lab = new Lab()`, which
 * closes it when the scope ends (Symbol.asyncDispose). Events: `running`
 * once start() is done, `closed` once close() is. Misuse (an unknown name,
 * a second attachment of a NIC, building after start) throws
 * InvalidArgumentError saying what was wrong.
 */
export class Lab extends EventEmitter<LabEvents> {
  private readonly entries = new Map<string, Entry>();
  private readonly nicList: NicEntry[] = [];
  private readonly socketList: SocketEntry[] = [];
  private readonly vhostList: VhostUserEntry[] = [];
  private readonly vxlanList: VxlanEntry[] = [];
  private readonly switchList: SwitchEntry[] = [];
  private readonly linkList: LinkEntry[] = [];
  private readonly netnsList: NetnsEntry[] = [];
  private readonly children = new LabChildren();
  private readonly spinUs: number;
  private readonly threads: ThreadMapping | undefined;
  private readonly queueSize: number;
  private readonly memoryPerNic: number | undefined;
  private readonly interrupt: WordRef = newInterruptWord();
  private readonly irqI32 = new Int32Array(this.interrupt.buffer);
  private state: LabState = 'building';
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private arena: SharedArena | undefined;

  constructor(options: LabOptions = {}) {
    super();
    this.spinUs = options.spinUs ?? DEFAULT_SPIN_US;
    this.threads = options.threads;
    this.queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    this.memoryPerNic = options.memoryPerNic;
    if (!(Number.isFinite(this.spinUs) && this.spinUs >= 0)) throw new InvalidArgumentError(`lab spinUs ${this.spinUs} must be a number >= 0`);
    // Each NIC checks it against its ring format (nic()).
    if (!(Number.isInteger(this.queueSize) && this.queueSize >= 1 && this.queueSize <= 32768)) throw new InvalidArgumentError(`lab queueSize ${this.queueSize} must be an integer in [1, 32768]`);
    if (this.memoryPerNic !== undefined && !(Number.isSafeInteger(this.memoryPerNic) && this.memoryPerNic >= 1 << 16)) {
      throw new InvalidArgumentError(`lab memoryPerNic ${this.memoryPerNic} must be an integer of at least 65536 bytes`);
    }
  }

  // ---- building ------------------------------------------------------------

  /** Add a virtio-net NIC named `name`. */
  nic(name: string, options: LabNicOptions = {}): this {
    this.building(`nic("${name}")`);
    this.checkNewName(name);
    const mac = this.newMac(`NIC "${name}"`, options.mac);
    const mtu = checkMtu(`NIC "${name}"`, options.mtu);
    const queuePairs = options.queuePairs ?? 1;
    if (!(Number.isInteger(queuePairs) && queuePairs >= 1 && queuePairs <= 0x8000)) throw new InvalidArgumentError(`NIC "${name}": queuePairs ${queuePairs} must be an integer in [1, 32768]`);
    const queueSize = options.queueSize ?? this.queueSize;
    const features = options.features ?? NET_DEVICE_FEATURES;
    const driverFeatures = options.driverFeatures ?? NET_DEFAULT_FEATURES;
    checkQueueSize(`NIC "${name}"`, queueSize, hasFeature(features & driverFeatures, F_RING_PACKED));
    const bufferSize = options.bufferSize ?? NET_HDR_SIZE + Math.max(ETH_MAX_FRAME, mtu + 18);
    if (!(Number.isInteger(bufferSize) && bufferSize > NET_HDR_SIZE + 14)) throw new InvalidArgumentError(`NIC "${name}": bufferSize ${bufferSize} leaves no room for a frame after the ${NET_HDR_SIZE}-byte header`);
    const memoryBytes = this.memoryPerNic ?? nicMemoryBytes({ queueSize, queuePairs, mtu, features: features & driverFeatures, bufferSize });
    const entry: NicEntry = { kind: 'nic', name, mac, mtu, queuePairs, queueSize, features, driverFeatures, bufferSize, memoryBytes };
    this.entries.set(name, entry);
    this.nicList.push(entry);
    return this;
  }

  /**
   * Add a vhost-user port named `name`: a virtio-net device served on a Unix
   * socket (its server starts listening at start()), whose driver is a front
   * end in another process (QEMU's guest, DPDK's virtio-user). Plug it into a
   * switch or link it like a NIC; its queues run when the front end starts
   * its rings.
   */
  vhostUser(name: string, options: LabVhostUserOptions): this {
    this.building(`vhostUser("${name}")`);
    this.checkNewName(name);
    if (typeof options?.path !== 'string' || options.path.length === 0) throw new InvalidArgumentError(`vhost-user port "${name}": path must name a Unix socket`);
    const queuePairs = options.queuePairs ?? 1;
    if (!(Number.isInteger(queuePairs) && queuePairs >= 1 && queuePairs <= 128)) throw new InvalidArgumentError(`vhost-user port "${name}": queuePairs ${queuePairs} must be an integer in [1, 128]`);
    const entry: VhostUserEntry = {
      kind: 'vhost-user',
      name,
      path: options.path,
      mac: this.newMac(`vhost-user port "${name}"`, options.mac),
      mtu: checkMtu(`vhost-user port "${name}"`, options.mtu),
      queuePairs,
      allowUnsealedMemory: options.allowUnsealedMemory === true,
      connects: 0,
      disconnects: 0,
    };
    this.entries.set(name, entry);
    this.vhostList.push(entry);
    return this;
  }

  /** The vhost-user server behind a port name (after start()): its device, events and negotiation summary. */
  vhostUserServer(name: string): VhostUserServer<VirtioNetDevice> {
    const e = this.entries.get(name);
    if (e?.kind !== 'vhost-user') throw new InvalidArgumentError(`vhostUserServer("${name}"): no vhost-user port of that name (ports: ${this.list(this.vhostList)})`);
    if (e.server === undefined) throw new InvalidArgumentError(`vhostUserServer("${name}"): start() the lab first`);
    return e.server;
  }

  /** Add a learning switch named `name` (its worker starts at start()). */
  switch(name: string, options: NetSwitchOptions = {}): this {
    this.building(`switch("${name}")`);
    this.checkNewName(name);
    const ageingMs = options.ageingMs;
    if (ageingMs !== undefined && !(typeof ageingMs === 'number' && ageingMs > 0)) throw new InvalidArgumentError(`switch "${name}": ageingMs ${ageingMs} must be a positive number`);
    const capacity = options.capacity;
    if (capacity !== undefined && !isPowerOfTwo(capacity)) throw new InvalidArgumentError(`switch "${name}": capacity ${capacity} must be a power of two`);
    const entry: SwitchEntry = { kind: 'switch', name, options: { ...options }, ports: [], uplinks: [], taps: [] };
    this.entries.set(name, entry);
    this.switchList.push(entry);
    return this;
  }

  /**
   * Add a link to another process (QEMU `-netdev stream` / `dgram`, a test
   * peer): it plugs into a switch (connect()) or a NIC (link()) as a NIC
   * does. Its socket opens at start(); socket(name) gives its handle then.
   */
  socketLink(name: string, options: SocketLinkOptions): this {
    this.building(`socketLink("${name}")`);
    this.checkNewName(name);
    if (typeof options !== 'object' || options === null || (options.transport !== 'stream' && options.transport !== 'dgram')) {
      throw new InvalidArgumentError(`socket link "${name}": transport must be "stream" or "dgram"`);
    }
    const entry: SocketEntry = { kind: 'socket', name, options };
    this.entries.set(name, entry);
    this.socketList.push(entry);
    return this;
  }

  /**
   * Add a VXLAN uplink (RFC 7348): a port that carries frames to and from
   * remote VTEPs over UDP (another lab, a Linux `vxlan` device, Open
   * vSwitch), so labs on several machines share one layer 2. Plug it into a
   * switch with connect() (or link() it to a NIC). Its socket is bound at
   * start(); vxlanUplink(name) gives its handle then.
   * @throws InvalidArgumentError for a bad option (VNI beyond 24 bits, an address that is not IPv4).
   */
  vxlan(name: string, options: VxlanUplinkOptions): this {
    this.building(`vxlan("${name}")`);
    this.checkNewName(name);
    try {
      checkVxlanOptions(options);
    } catch (e) {
      throw new InvalidArgumentError(`VXLAN uplink "${name}": ${(e as Error).message}`);
    }
    const entry: VxlanEntry = { kind: 'vxlan', name, options: { ...options } };
    this.entries.set(name, entry);
    this.vxlanList.push(entry);
    return this;
  }

  /**
   * Add a Linux network namespace named `name` as a host of the lab: at
   * start() the namespace is created with a TAP interface (`ifname`, default
   * eth0) holding `address`, and that interface is the lab's port: plug it
   * into a switch (connect()) or link it to a NIC, or to another namespace,
   * like a NIC. exec() and spawn() run programs inside it (ping, iperf3).
   * close() deletes the interface and the namespace. Needs root or
   * CAP_NET_ADMIN, /dev/net/tun and iproute2's `ip` (see TapPort).
   */
  netns(name: string, options: LabNetnsOptions = {}): this {
    this.building(`netns("${name}")`);
    this.checkNewName(name);
    const entry = checkNetnsEntry(name, options);
    this.entries.set(name, entry);
    this.netnsList.push(entry);
    return this;
  }

  /**
   * A cable between two NICs (or a NIC and a socket link), or between two
   * switches (a new port on each, numbered after its connect()ed ones). With
   * an impairment or a capture a relay worker sits in the middle, and
   * stats().links counts what its impairment dropped; without, the two ends
   * share the channels directly.
   */
  link(a: string, b: string, options: LinkOptions = {}): this {
    this.building(`link("${a}", "${b}")`);
    const ea = this.cableEnd(a);
    const eb = this.cableEnd(b);
    if (ea === eb) throw new InvalidArgumentError(`link("${a}", "${b}"): a cable needs two different ends`);
    if (ea.kind === 'socket' && eb.kind === 'socket') throw new InvalidArgumentError(`link("${a}", "${b}"): both ends are socket links; connect at least one NIC`);
    if ((ea.kind === 'vxlan' || ea.kind === 'socket') && (eb.kind === 'vxlan' || eb.kind === 'socket')) {
      throw new InvalidArgumentError(`link("${a}", "${b}"): both ends lead out of the lab (${KIND_NAMES[ea.kind]}, ${KIND_NAMES[eb.kind]}); connect at least one NIC`);
    }
    if ((ea.kind === 'switch') !== (eb.kind === 'switch')) {
      const sw = ea.kind === 'switch' ? a : b;
      throw new InvalidArgumentError(`link("${a}", "${b}"): "${sw}" is a switch; connect() plugs NICs into switches, link() joins two switches or two NICs`);
    }
    for (const [e, other] of [
      [ea, b],
      [eb, a],
    ] as const) {
      if (e.kind !== 'switch') this.checkFree(e, `link to "${other}"`);
      else if (portNames(e).length >= MAX_PORTS) throw new InvalidArgumentError(`link("${a}", "${b}"): switch "${e.name}" has ${MAX_PORTS} ports already (the most a switch has)`);
    }
    const dirs = relayDirections(options.impairment);
    try {
      if (dirs.aToB !== undefined) validateImpairment(dirs.aToB);
      if (dirs.bToA !== undefined) validateImpairment(dirs.bToA);
    } catch (e) {
      throw new InvalidArgumentError(`link("${a}", "${b}"): ${(e as Error).message}`);
    }
    if (options.capture !== undefined && (typeof options.capture !== 'string' || options.capture.length === 0)) {
      throw new InvalidArgumentError(`link("${a}", "${b}"): capture ${String(options.capture)} is not a file name`);
    }
    if (options.capture !== undefined && this.capturePaths().includes(options.capture)) {
      throw new InvalidArgumentError(`link("${a}", "${b}"): ${options.capture} is already a capture of this lab`);
    }
    if (ea.kind === 'switch') ea.uplinks.push(b);
    else ea.attached = `a link to "${b}"`;
    if (eb.kind === 'switch') eb.uplinks.push(a);
    else eb.attached = `a link to "${a}"`;
    this.linkList.push({ a, b, options: { ...options } });
    return this;
  }

  /** Plug a NIC (or a socket link) into a new port of a switch; the impairment applies to frames leaving the switch towards it. */
  connect(endpoint: string, switchName: string, options: SwitchPortOptions = {}): this {
    this.building(`connect("${endpoint}", "${switchName}")`);
    const e = this.endpoint(endpoint, 'connect');
    const s = this.switchEntry(switchName);
    if (portNames(s).length >= MAX_PORTS) throw new InvalidArgumentError(`connect("${endpoint}", "${switchName}"): a switch has at most ${MAX_PORTS} ports`);
    this.checkFree(e, `port ${s.ports.length} of switch "${switchName}"`);
    if (options.impairment !== undefined) {
      try {
        validateImpairment(options.impairment);
      } catch (err) {
        throw new InvalidArgumentError(`connect("${endpoint}", "${switchName}"): ${(err as Error).message}`);
      }
    }
    e.attached = `port ${s.ports.length} of switch "${switchName}"`;
    s.ports.push({ endpoint, options: { ...options } });
    return this;
  }

  /**
   * Capture a switch's traffic to a pcap file: every frame it forwards, or
   * with `port` the traffic in and out of one port (its number, or the name
   * of the NIC or switch on it: connect or link it first). The file is
   * created at start() and complete after close().
   */
  tap(switchName: string, path: string, options: LabTapOptions = {}): this {
    this.building(`tap("${switchName}", "${path}")`);
    const s = this.switchEntry(switchName);
    if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError(`tap on switch "${switchName}": ${String(path)} is not a file name`);
    const names = portNames(s);
    const port = options.port ?? null;
    if (typeof port === 'string') {
      if (!names.includes(port)) throw new InvalidArgumentError(`tap on switch "${switchName}": "${port}" is not connected to it (connect it before tapping its port)`);
    } else if (port !== null && !(Number.isInteger(port) && port >= 0 && port < names.length)) {
      throw new InvalidArgumentError(`tap on switch "${switchName}": port ${port} is not one of its ${names.length} ports`);
    }
    if (this.capturePaths().includes(path)) {
      throw new InvalidArgumentError(`tap on switch "${switchName}": ${path} is already a capture of this lab`);
    }
    const { port: _ignored, ...rest } = options;
    s.taps.push({ path, port, options: rest });
    return this;
  }

  // ---- running -------------------------------------------------------------

  /** 'building' until start(), 'running' after it, 'closed' after close() (or a failed start). */
  get status(): LabState {
    return this.state;
  }

  /** Names of the NICs, in the order they were added. */
  get nicNames(): string[] {
    return this.nicList.map((n) => n.name);
  }

  /** Names of the switches. */
  get switchNames(): string[] {
    return this.switchList.map((s) => s.name);
  }

  /** The arena's size in bytes (0 before start()). */
  get arenaBytes(): number {
    return this.arena?.buffer.byteLength ?? 0;
  }

  /** The longest delay plus jitter any link or port of the lab adds, in ms (how long a frame may stay in flight). */
  get maxImpairmentDelayMs(): number {
    let max = 0;
    for (const l of this.linkList) {
      const d = relayDirections(l.options.impairment);
      max = Math.max(max, delayOf(d.aToB), delayOf(d.bToA));
    }
    for (const s of this.switchList) for (const p of s.ports) max = Math.max(max, delayOf(p.options.impairment));
    return max;
  }

  /** The MAC address of a NIC. */
  mac(nic: string): string {
    return this.nicEntry(nic).mac;
  }

  /** The MTU of a NIC. */
  mtu(nic: string): number {
    return this.nicEntry(nic).mtu;
  }

  /**
   * Create everything and bring it up (see the class comment). Rejects, with
   * everything created so far closed again, when a piece cannot be made
   * (a socket that cannot listen, a capture file that cannot be created).
   */
  start(options: LabStartOptions = {}): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new InvalidArgumentError('start(): the lab is closed'));
    if (this.state !== 'building') return Promise.reject(new InvalidArgumentError('start(): the lab is already started'));
    const signal = options.signal;
    if (signal?.aborted === true) {
      void this.close();
      return Promise.reject(signal.reason);
    }
    this.state = 'starting';
    const onAbort = (): void => void this.close().catch(() => undefined);
    const detach = (): void => signal?.removeEventListener('abort', onAbort);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.once('closed', detach);
    this.starting = this.bringUp().then(
      () => {
        if (this.state !== 'starting') return;
        this.state = 'running';
        this.emit('running');
      },
      async (e: unknown) => {
        detach();
        this.state = 'closed';
        await this.shutdown().catch(() => undefined);
        throw signal?.aborted === true ? signal.reason : e;
      },
    );
    return this.starting;
  }

  /** The driver of a NIC (after start()): send, receive, ctrl, stats. */
  driver(nic: string): NetDriver {
    const e = this.nicEntry(nic);
    this.running(`driver("${nic}")`);
    return e.driver!;
  }

  /** The device of a NIC (after start()): queue stats, link state, announce, reset. */
  device(nic: string): VirtioNetDevice {
    const e = this.nicEntry(nic);
    if (e.device === undefined) throw new InvalidArgumentError(`device("${nic}"): start() the lab first`);
    return e.device;
  }

  /** The NetSwitch behind a switch name (after start()). */
  netSwitch(name: string): NetSwitch {
    const s = this.switchEntry(name);
    if (s.sw === undefined) throw new InvalidArgumentError(`netSwitch("${name}"): start() the lab first`);
    return s.sw;
  }

  /** The SocketLink behind a socket link name (after start()): its address, events, counters. */
  socket(name: string): SocketLink {
    const e = this.entries.get(name);
    if (e?.kind !== 'socket') throw new InvalidArgumentError(`socket("${name}"): no socket link of that name (socket links: ${this.list(this.socketList)})`);
    if (e.link === undefined) throw new InvalidArgumentError(`socket("${name}"): start() the lab first`);
    return e.link;
  }

  /** The VxlanUplink behind an uplink name (after start()): its address, learned MACs, counters. */
  vxlanUplink(name: string): VxlanUplink {
    const e = this.entries.get(name);
    if (e?.kind !== 'vxlan') throw new InvalidArgumentError(`vxlanUplink("${name}"): no VXLAN uplink of that name (uplinks: ${this.list(this.vxlanList)})`);
    if (e.uplink === undefined) throw new InvalidArgumentError(`vxlanUplink("${name}"): start() the lab first`);
    return e.uplink;
  }

  /** The addresses a switch has learned, each with the name of what is on its port. */
  async macTable(switchName: string): Promise<LabMacEntry[]> {
    const s = this.switchEntry(switchName);
    this.running(`macTable("${switchName}")`);
    const table = await s.sw!.macTable();
    const names = portNames(s);
    return table.map((e) => ({ ...e, portName: names[e.port] ?? `port ${e.port}` }));
  }

  /**
   * Wait (without blocking the event loop) until any NIC's driver gets an
   * interrupt, or `timeoutMs` passes. Re-enables interrupts on every queue
   * first and resolves at once when work is already waiting. True when woken.
   */
  async waitForInterrupt(timeoutMs: number): Promise<boolean> {
    this.running('waitForInterrupt()');
    const drivers = this.nicList.map((n) => n.driver!);
    const seen = Atomics.load(this.irqI32, this.interrupt.index);
    let ready = false;
    for (const d of drivers) if (d.enableInterrupts()) ready = true;
    const woken = ready || (await waitAsync(this.irqI32, this.interrupt.index, seen, timeoutMs));
    for (const d of drivers) d.disableInterrupts();
    return woken;
  }

  /**
   * Run a program inside one of the lab's namespaces (`ip netns exec`) to
   * completion; resolves with its exit status and output (a non-zero exit
   * is a result, not a rejection).
   */
  exec(netns: string, argv: readonly string[], options: LabExecOptions = {}): Promise<LabExecResult> {
    this.running(`exec("${netns}")`);
    this.netnsEntry(netns);
    return execInNetns(netns, argv, options);
  }

  /**
   * Start a program inside one of the lab's namespaces and return it (a
   * server: `iperf3 -s`); close() ends it if it still runs.
   */
  spawn(netns: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    this.running(`spawn("${netns}")`);
    this.netnsEntry(netns);
    return this.children.spawn(netns, argv, options);
  }

  /** Names of the network namespaces, in the order they were added. */
  get netnsNames(): string[] {
    return this.netnsList.map((n) => n.name);
  }

  /** Every counter of the lab (after start(); still readable after close()). */
  stats(): LabStats {
    if (this.arena === undefined) throw new InvalidArgumentError('stats(): start() the lab first');
    const nics: Record<string, LabNicStats> = {};
    for (const n of this.nicList) {
      const d = n.device;
      if (d === undefined) continue;
      nics[n.name] = {
        mac: n.mac,
        queues: Array.from({ length: n.queuePairs }, (_, p) => ({ rx: d.queueStats(netRxQueue(p)), tx: d.queueStats(netTxQueue(p)) })),
        driver: n.driver?.stats() ?? [],
      };
    }
    const switches: Record<string, LabSwitchStats> = {};
    for (const s of this.switchList) {
      if (s.sw === undefined) continue;
      const st = s.sw.stats();
      const names = portNames(s);
      switches[s.name] = { ...st, ports: st.ports.map((p, i) => ({ name: names[i] ?? `port ${i}`, ...p })) };
    }
    const links = this.linkList.map((l) => {
      const relay = l.link?.stats() ?? null;
      return { a: l.a, b: l.b, relay, lostAToB: relay?.ports[1].dropsLoss ?? 0, lostBToA: relay?.ports[0].dropsLoss ?? 0 };
    });
    const sockets: Record<string, SocketLinkStats> = {};
    for (const s of this.socketList) if (s.link !== undefined) sockets[s.name] = s.link.stats();
    const vxlan: Record<string, VxlanStats> = {};
    for (const v of this.vxlanList) if (v.uplink !== undefined) vxlan[v.name] = v.uplink.stats();
    const vhostUser: Record<string, LabVhostUserStats> = {};
    for (const v of this.vhostList) {
      const server = v.server;
      if (server === undefined) continue;
      const d = server.device;
      const queues = Array.from({ length: v.queuePairs }, (_, p) => ({ rx: d.queueStats(netRxQueue(p)), tx: d.queueStats(netTxQueue(p)) }));
      vhostUser[v.name] = {
        path: v.path,
        mac: v.mac,
        connected: server.connected,
        connects: v.connects,
        disconnects: v.disconnects,
        ...(v.lastDisconnect === undefined ? {} : { lastDisconnect: v.lastDisconnect }),
        queues,
        session: server.summary(),
      };
    }
    const netns: Record<string, LabNetnsStats> = {};
    for (const n of this.netnsList) if (n.port !== undefined) netns[n.name] = { ifname: n.ifname, addresses: n.addresses, ...n.port.stats() };
    return { nics, vhostUser, switches, links, sockets, vxlan, netns };
  }

  /**
   * End everything the lab created, in order: switch workers (flushing their
   * captures), relay workers, sockets, then the NICs' queue workers. Every
   * piece is closed even when one fails; the first failure is thrown after.
   * Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const wasStarting = this.starting;
      this.state = 'closed';
      if (wasStarting !== undefined) await wasStarting.catch(() => undefined);
      try {
        await this.shutdown();
      } catch (e) {
        this.emit('closed', e);
        throw e;
      }
      this.emit('closed', undefined);
    })();
    return this.closing;
  }

  /** close(), for `await using lab = new Lab()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- internals -------------------------------------------------------------

  private async bringUp(): Promise<void> {
    const arena = new SharedArena(this.plannedArenaBytes());
    this.arena = arena;
    for (const n of this.nicList) {
      n.device = new VirtioNetDevice(arena.guestMemory(n.memoryBytes), {
        mac: n.mac,
        mtu: n.mtu,
        queuePairs: n.queuePairs,
        // The device offers a power of two (4.1.4.3.2); the driver takes the NIC's size, which a packed ring allows to be any.
        queueSize: 2 ** Math.ceil(Math.log2(n.queueSize)),
        features: n.features,
        spinUs: this.spinUs,
        threads: this.threads,
      });
    }
    for (const s of this.socketList) {
      s.link = await SocketLink.open(s.options);
      this.abortIfClosed();
    }
    for (const v of this.vxlanList) {
      v.uplink = await VxlanUplink.open(v.options);
      this.abortIfClosed();
    }
    for (const n of this.netnsList) {
      if (n.options.existing !== true && netnsExists(n.name)) {
        throw new InvalidArgumentError(`network namespace "${n.name}" exists already: pick another name, delete it (ip netns del ${n.name}), or pass existing: true to use it`);
      }
      n.port = await TapPort.open({
        name: n.ifname,
        netns: n.name,
        createNetns: n.options.existing !== true,
        mtu: n.options.mtu,
        addresses: n.addresses,
        offloads: n.options.offloads,
        spinUs: this.spinUs,
      });
      this.abortIfClosed();
    }
    for (const v of this.vhostList) {
      v.server = serveVhostUserNet(v.path, { mac: v.mac, mtu: v.mtu, queuePairs: v.queuePairs, spinUs: this.spinUs, allowUnsealedMemory: v.allowUnsealedMemory });
      v.server.on('connected', () => v.connects++);
      v.server.on('disconnected', (d: VhostUserDisconnect) => {
        v.disconnects++;
        v.lastDisconnect = d.reason;
      });
    }
    for (const s of this.switchList) {
      const sw = new NetSwitch(arena, { ...s.options, spinUs: s.options.spinUs ?? this.spinUs });
      s.sw = sw;
      for (const p of s.ports) sw.connect(this.attachable(p.endpoint), p.options);
    }
    // Links after every connect(): a switch's link ports are numbered after its connected ones, in link() order.
    for (const l of this.linkList) l.link = connectNics(arena, this.cableAttachable(l.a), this.cableAttachable(l.b), { ...l.options, spinUs: l.options.spinUs ?? this.spinUs });
    for (const s of this.switchList) {
      for (const t of s.taps) {
        const port = typeof t.port === 'string' ? portNames(s).indexOf(t.port) : t.port;
        await s.sw!.tap(t.path, port === null ? t.options : { ...t.options, port });
      }
    }
    for (const s of this.switchList) s.sw!.start();
    for (const n of this.nicList) {
      this.abortIfClosed();
      let spec;
      try {
        spec = await setupNetDriver(n.device!, { queueSize: n.queueSize, bufferSize: n.bufferSize, features: n.driverFeatures, interrupt: this.interrupt });
      } catch (e) {
        const hint = this.memoryPerNic !== undefined ? ` (memoryPerNic is ${this.memoryPerNic} bytes)` : '';
        throw new InvalidArgumentError(`NIC "${n.name}" did not come up: ${(e as Error).message}${hint}`);
      }
      n.driver = new NetDriver(spec);
      n.driver.fillRx();
    }
    await this.workersUp();
  }

  /**
   * Resolve once every worker of the lab runs its loop. Threads take tens of
   * milliseconds to boot (more when a lab starts ten of them on two cores);
   * traffic sent before that would wait in rings and, for floods, find
   * channels of NICs whose receive workers are not there yet full. A worker
   * is up once it has gone idle (its sleep counter moved) or done work.
   */
  private async workersUp(): Promise<void> {
    const end = performance.now() + WORKER_START_TIMEOUT_MS;
    for (;;) {
      const waiting = this.workersNotUp();
      if (waiting.length === 0) return;
      if (performance.now() > end) {
        throw new VirtioLabError('LAB_START_TIMEOUT', `workers not running ${WORKER_START_TIMEOUT_MS} ms after start: ${waiting.slice(0, 5).join(', ')}${waiting.length > 5 ? ', ...' : ''}`);
      }
      this.abortIfClosed();
      await sleep(2);
    }
  }

  private workersNotUp(): string[] {
    const waiting: string[] = [];
    for (const n of this.nicList) {
      const d = n.device!;
      const pairs = n.driver?.pairs.length ?? 0;
      for (let p = 0; p < pairs; p++) {
        for (const [q, what] of [[netRxQueue(p), 'rx'], [netTxQueue(p), 'tx']] as const) {
          if (!d.queueRunning(q)) continue;
          const st = d.queueStats(q);
          if (st.sleeps === 0 && st.chains === 0) waiting.push(`NIC "${n.name}" ${what} queue ${p}`);
        }
      }
    }
    const idle = (st: SwitchStats): boolean => st.sleeps !== 0 || st.ports.some((p) => p.rxFrames !== 0 || p.txFrames !== 0);
    for (const s of this.switchList) if (!idle(s.sw!.stats())) waiting.push(`switch "${s.name}"`);
    for (const n of this.netnsList) if (n.port!.error !== undefined) throw n.port!.error;
    for (const n of this.netnsList) if (!n.port!.running) waiting.push(`TAP port of namespace "${n.name}"`);
    for (const l of this.linkList) {
      const st = l.link!.stats();
      if (st !== undefined && !idle(st)) waiting.push(`relay of link "${l.a}" <-> "${l.b}"`);
    }
    return waiting;
  }

  /** close() while start() was under way: stop building (shutdown() ends what exists). */
  private abortIfClosed(): void {
    if (this.state === 'closed') throw new InvalidArgumentError('the lab was closed while it started');
  }

  private plannedArenaBytes(): number {
    let bytes = ARENA_SLACK;
    for (const n of this.nicList) bytes += n.memoryBytes + 4096;
    for (const s of this.switchList) {
      const capacity = s.options.capacity ?? SWITCH_CAPACITY;
      for (const p of s.ports) bytes += channelBytes(2 * this.pairsOf(p.endpoint), capacity) + impairmentBytes(p.options.impairment);
    }
    for (const l of this.linkList) {
      const pa = this.pairsOf(l.a);
      const pb = this.pairsOf(l.b);
      const capacity = l.options.capacity ?? (pa > 1 || pb > 1 ? LINK_CAPACITY_MQ : LINK_CAPACITY);
      if (l.options.impairment !== undefined || l.options.capture !== undefined) {
        const d = relayDirections(l.options.impairment);
        bytes += channelBytes(2 * (pa + pb), capacity) + impairmentBytes(d.aToB) + impairmentBytes(d.bToA);
      } else {
        bytes += channelBytes(2 * pa * pb, capacity);
      }
    }
    return bytes;
  }

  private pairsOf(name: string): number {
    const e = this.entries.get(name);
    return e?.kind === 'nic' || e?.kind === 'vhost-user' ? e.queuePairs : 1;
  }

  /** A link's end: a new port of a switch, or the endpoint itself. */
  private cableAttachable(name: string): PortAttachable {
    const e = this.entries.get(name);
    return e?.kind === 'switch' ? e.sw!.uplink() : this.attachable(name);
  }

  private attachable(name: string): PortAttachable {
    const e = this.entries.get(name) as Endpoint;
    return e.kind === 'nic' ? e.device! : e.kind === 'vhost-user' ? e.server!.device : e.kind === 'vxlan' ? e.uplink! : e.kind === 'netns' ? e.port! : e.link!;
  }

  /** Close in dependency order; every stage runs even when an earlier one failed. */
  private async shutdown(): Promise<void> {
    const failures: unknown[] = [];
    const stage = async (closers: (Promise<void> | undefined)[]): Promise<void> => {
      for (const r of await Promise.allSettled(closers)) if (r.status === 'rejected') failures.push(r.reason);
    };
    await stage(this.switchList.map((s) => s.sw?.close()));
    await stage(this.linkList.map((l) => l.link?.close()));
    await stage(this.socketList.map((s) => s.link?.close()));
    await stage(this.vxlanList.map((v) => v.uplink?.close()));
    await this.children.killAll();
    await stage(this.netnsList.map((n) => n.port?.close()));
    await stage(this.vhostList.map((v) => v.server?.close()));
    await stage(this.nicList.map((n) => n.device?.close()));
    if (failures.length !== 0) throw failures[0];
  }

  private capturePaths(): string[] {
    return [...this.switchList.flatMap((s) => s.taps.map((t) => t.path)), ...this.linkList.flatMap((l) => (l.options.capture === undefined ? [] : [l.options.capture]))];
  }

  private building(what: string): void {
    if (this.state === 'closed') throw new InvalidArgumentError(`${what}: the lab is closed`);
    if (this.state !== 'building') throw new InvalidArgumentError(`${what} after start(): build the whole topology before starting the lab`);
  }

  private running(what: string): void {
    if (this.state === 'building' || this.state === 'starting') throw new InvalidArgumentError(`${what}: start() the lab first`);
    if (this.state === 'closed') throw new InvalidArgumentError(`${what}: the lab is closed`);
  }

  private checkNewName(name: string): void {
    if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError(`a lab name must be a non-empty string, got ${JSON.stringify(name)}`);
    const e = this.entries.get(name);
    if (e !== undefined) throw new InvalidArgumentError(`the lab already has a ${KIND_NAMES[e.kind]} named "${name}"`);
  }

  /** A unicast MAC not used in this lab: `requested`, or the next numbered one. */
  private newMac(what: string, requested: string | undefined): string {
    const index = this.nicList.length + this.vhostList.length + 1;
    const mac = formatMac(parseMac(requested ?? `52:54:00:1a:${((index >>> 8) & 0xff).toString(16).padStart(2, '0')}:${(index & 0xff).toString(16).padStart(2, '0')}`));
    if ((parseMac(mac)[0] & 1) !== 0) throw new InvalidArgumentError(`${what}: ${mac} is a multicast address; a NIC needs a unicast one`);
    const clash = [...this.nicList, ...this.vhostList].find((n) => n.mac === mac);
    if (clash !== undefined) throw new InvalidArgumentError(`${what}: MAC ${mac} is already ${KIND_NAMES[clash.kind]} "${clash.name}"'s (a switch would see one station on two ports)`);
    return mac;
  }

  private checkFree(e: Endpoint, where: string): void {
    if (e.attached !== undefined) {
      throw new InvalidArgumentError(`${KIND_NAMES[e.kind]} "${e.name}" cannot be plugged into ${where}: it is already on ${e.attached} (one attachment per NIC)`);
    }
  }

  private list(entries: { name: string }[]): string {
    return entries.length === 0 ? 'none' : entries.map((e) => e.name).join(', ');
  }

  private nicEntry(name: string): NicEntry {
    const e = this.entries.get(name);
    if (e?.kind !== 'nic') throw new InvalidArgumentError(`no NIC named "${name}" in this lab (NICs: ${this.list(this.nicList)})`);
    return e;
  }

  private netnsEntry(name: string): NetnsEntry {
    const e = this.entries.get(name);
    if (e?.kind !== 'netns') throw new InvalidArgumentError(`no network namespace named "${name}" in this lab (namespaces: ${this.list(this.netnsList)})`);
    return e;
  }

  private switchEntry(name: string): SwitchEntry {
    const e = this.entries.get(name);
    if (e?.kind !== 'switch') throw new InvalidArgumentError(`no switch named "${name}" in this lab (switches: ${this.list(this.switchList)})`);
    return e;
  }

  /** An end of link(): a switch or an endpoint. */
  private cableEnd(name: string): Endpoint | SwitchEntry {
    const e = this.entries.get(name);
    return e?.kind === 'switch' ? e : this.endpoint(name, 'link');
  }

  private endpoint(name: string, what: string): Endpoint {
    const e = this.entries.get(name);
    if (e?.kind === 'switch') throw new InvalidArgumentError(`${what}: "${name}" is a switch; connect() plugs NICs and socket links into switches, link() joins two switches`);
    if (e === undefined) {
      throw new InvalidArgumentError(
        `${what}: no NIC, socket link, vhost-user port or VXLAN uplink named "${name}" in this lab (NICs: ${this.list(this.nicList)}; socket links: ${this.list(this.socketList)}; vhost-user ports: ${this.list(this.vhostList)}; VXLAN uplinks: ${this.list(this.vxlanList)}${this.netnsList.length === 0 ? '' : `; network namespaces: ${this.list(this.netnsList)}`})`,
      );
    }
    return e;
  }
}

/** Check a namespace's options (names the kernel and ip accept) before anything is created. */
function checkNetnsEntry(name: string, options: LabNetnsOptions): NetnsEntry {
  if (!isNetnsName(name)) throw new InvalidArgumentError(`netns("${name}"): not a name ip netns takes (1 to 64 of letters, digits, _ . -)`);
  const ifname = options.ifname ?? 'eth0';
  if (!isInterfaceName(ifname)) throw new InvalidArgumentError(`netns("${name}"): ifname ${JSON.stringify(ifname)} is not an interface name (1 to 15 of letters, digits, _ . -)`);
  if (options.mtu !== undefined) checkMtu(`netns("${name}")`, options.mtu);
  const addresses = options.address === undefined ? [] : typeof options.address === 'string' ? [options.address] : options.address;
  for (const a of addresses) {
    if (typeof a !== 'string' || !/^[0-9A-Fa-f.:]+\/\d{1,3}$/.test(a)) throw new InvalidArgumentError(`netns("${name}"): address ${JSON.stringify(a)} must be an address with its prefix length, e.g. "10.0.0.1/24"`);
  }
  return { kind: 'netns', name, ifname, addresses: [...addresses], options: { ...options } };
}

function checkMtu(what: string, requested: number | undefined): number {
  const mtu = requested ?? 1500;
  if (!(Number.isInteger(mtu) && mtu >= 68 && mtu <= 65535)) throw new InvalidArgumentError(`${what}: MTU ${mtu} must be an integer in [68, 65535]`);
  return mtu;
}
