import { type ImpairmentOptions, validateImpairment } from '../../backends/impairment.js';
import type { Link, LinkOptions } from '../../backends/link.js';
import type { RelayImpairment } from '../../backends/relay.js';
import type { SocketLink, SocketLinkOptions } from '../../backends/socket-link.js';
import { MAX_PORTS, type NetSwitch, type NetSwitchOptions, type SwitchPortOptions, type TapOptions } from '../../backends/switch.js';
import type { TapPort } from '../../backends/tap-port.js';
import type { VxlanUplinkOptions } from '../../backends/vxlan-options.js';
import type { VxlanUplink } from '../../backends/vxlan-uplink.js';
import { InvalidArgumentError } from '../../errors.js';
import { formatMac, parseMac } from '../../net/mac.js';
import type { VirtioNetDevice } from '../../net/net-device.js';
import type { NetDriver } from '../../net/net-driver.js';
import type { FeatureSet } from '../../spec/features.js';
import type { ThreadMapping } from '../../transport/thread-mapping.js';
import type { VhostUserServer } from '../../vhost-user/server.js';
import type { LabNetnsOptions } from './lab-netns.js';
import type { LabTapOptions } from './lab-types.js';

// What a Lab records while it is built, by name, and the checks of its
// wiring (link, connect, tap); start() fills in the live objects.

export interface NicEntry {
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

export interface SocketEntry {
  kind: 'socket';
  name: string;
  options: SocketLinkOptions;
  attached?: string;
  link?: SocketLink;
}

export interface VxlanEntry {
  kind: 'vxlan';
  name: string;
  options: VxlanUplinkOptions;
  attached?: string;
  uplink?: VxlanUplink;
}

export interface VhostUserEntry {
  kind: 'vhost-user';
  name: string;
  path: string;
  mac: string;
  mtu: number;
  queuePairs: number;
  allowUnsealedMemory: boolean;
  /** Undefined: the server's default. */
  threads: ThreadMapping | undefined;
  /** Undefined: the lab's spinUs. */
  spinUs: number | undefined;
  attached?: string;
  server?: VhostUserServer<VirtioNetDevice>;
  /** Front ends that connected / went away since start(), and why the last one went. */
  connects: number;
  disconnects: number;
  lastDisconnect?: string;
}

export interface SwitchEntry {
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

export interface LinkEntry {
  a: string;
  b: string;
  options: LinkOptions;
  link?: Link;
}

export interface NetnsEntry {
  kind: 'netns';
  name: string;
  ifname: string;
  addresses: string[];
  options: LabNetnsOptions;
  attached?: string;
  port?: TapPort;
}

type Entry = NicEntry | SocketEntry | VhostUserEntry | SwitchEntry | VxlanEntry | NetnsEntry;
export type Endpoint = NicEntry | SocketEntry | VhostUserEntry | VxlanEntry | NetnsEntry;

const KIND_NAMES: Record<Entry['kind'], string> = { nic: 'NIC', socket: 'socket link', 'vhost-user': 'vhost-user port', switch: 'switch', vxlan: 'VXLAN uplink', netns: 'network namespace' };

/** What is on each port of a switch, by port number: connect()ed endpoints, then links. */
export const portNames = (s: SwitchEntry): string[] => [...s.ports.map((p) => p.endpoint), ...s.uplinks];

/** The two directions of a link impairment. */
export function relayDirections(imp: RelayImpairment | undefined): { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions } {
  if (imp === undefined) return {};
  if ('aToB' in imp || 'bToA' in imp) return imp as { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions };
  return { aToB: imp as ImpairmentOptions, bToA: imp as ImpairmentOptions };
}

/** The entries of a lab by name and by kind (in the order they were added), and the checks between them. */
export class LabEntries {
  private readonly byName = new Map<string, Entry>();
  readonly nics: NicEntry[] = [];
  readonly sockets: SocketEntry[] = [];
  readonly vhostUser: VhostUserEntry[] = [];
  readonly vxlan: VxlanEntry[] = [];
  readonly switches: SwitchEntry[] = [];
  readonly links: LinkEntry[] = [];
  readonly netns: NetnsEntry[] = [];

  /** Record a new entry under its name (checkNewName() first). */
  add(entry: Entry): void {
    this.byName.set(entry.name, entry);
    const list: Entry[] = { nic: this.nics, socket: this.sockets, 'vhost-user': this.vhostUser, vxlan: this.vxlan, switch: this.switches, netns: this.netns }[entry.kind];
    list.push(entry);
  }

  get(name: string): Entry | undefined {
    return this.byName.get(name);
  }

  checkNewName(name: string): void {
    if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError(`a lab name must be a non-empty string, got ${JSON.stringify(name)}`);
    const e = this.byName.get(name);
    if (e !== undefined) throw new InvalidArgumentError(`the lab already has a ${KIND_NAMES[e.kind]} named "${name}"`);
  }

  /** A unicast MAC not used in this lab: `requested`, or the next numbered one. */
  newMac(what: string, requested: string | undefined): string {
    const index = this.nics.length + this.vhostUser.length + 1;
    const mac = formatMac(parseMac(requested ?? `52:54:00:1a:${((index >>> 8) & 0xff).toString(16).padStart(2, '0')}:${(index & 0xff).toString(16).padStart(2, '0')}`));
    if ((parseMac(mac)[0] & 1) !== 0) throw new InvalidArgumentError(`${what}: ${mac} is a multicast address; a NIC needs a unicast one`);
    const clash = [...this.nics, ...this.vhostUser].find((n) => n.mac === mac);
    if (clash !== undefined) throw new InvalidArgumentError(`${what}: MAC ${mac} is already ${KIND_NAMES[clash.kind]} "${clash.name}"'s (a switch would see one station on two ports)`);
    return mac;
  }

  /** Record a cable (see Lab.link()) after checking both ends and its options. */
  addLink(a: string, b: string, options: LinkOptions): void {
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
    this.links.push({ a, b, options: { ...options } });
  }

  /** Record a switch port (see Lab.connect()) after checking it. */
  addPort(endpoint: string, switchName: string, options: SwitchPortOptions): void {
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
  }

  /** Record a capture on a switch (see Lab.tap()) after checking it. */
  addTap(switchName: string, path: string, options: LabTapOptions): void {
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
  }

  /** Queue pairs of what is plugged in under `name` (1 for a socket link, an uplink, a namespace). */
  pairsOf(name: string): number {
    const e = this.byName.get(name);
    return e?.kind === 'nic' || e?.kind === 'vhost-user' ? e.queuePairs : 1;
  }

  nicEntry(name: string): NicEntry {
    const e = this.byName.get(name);
    if (e?.kind !== 'nic') throw new InvalidArgumentError(`no NIC named "${name}" in this lab (NICs: ${namesOf(this.nics)})`);
    return e;
  }

  netnsEntry(name: string): NetnsEntry {
    const e = this.byName.get(name);
    if (e?.kind !== 'netns') throw new InvalidArgumentError(`no network namespace named "${name}" in this lab (namespaces: ${namesOf(this.netns)})`);
    return e;
  }

  switchEntry(name: string): SwitchEntry {
    const e = this.byName.get(name);
    if (e?.kind !== 'switch') throw new InvalidArgumentError(`no switch named "${name}" in this lab (switches: ${namesOf(this.switches)})`);
    return e;
  }

  /** The entry `name` of `kind`, or InvalidArgumentError from `what` naming those there are (`plural`). */
  entryOf<K extends 'socket' | 'vxlan' | 'vhost-user'>(name: string, kind: K, what: string, plural: string): Extract<Entry, { kind: K }> {
    const e = this.byName.get(name);
    if (e?.kind !== kind) {
      const list = { socket: this.sockets, vxlan: this.vxlan, 'vhost-user': this.vhostUser }[kind];
      throw new InvalidArgumentError(`${what}("${name}"): no ${KIND_NAMES[kind]} of that name (${plural}: ${namesOf(list)})`);
    }
    return e as Extract<Entry, { kind: K }>;
  }

  private capturePaths(): string[] {
    return [...this.switches.flatMap((s) => s.taps.map((t) => t.path)), ...this.links.flatMap((l) => (l.options.capture === undefined ? [] : [l.options.capture]))];
  }

  private checkFree(e: Endpoint, where: string): void {
    if (e.attached !== undefined) {
      throw new InvalidArgumentError(`${KIND_NAMES[e.kind]} "${e.name}" cannot be plugged into ${where}: it is already on ${e.attached} (one attachment per NIC)`);
    }
  }

  /** An end of link(): a switch or an endpoint. */
  private cableEnd(name: string): Endpoint | SwitchEntry {
    const e = this.byName.get(name);
    return e?.kind === 'switch' ? e : this.endpoint(name, 'link');
  }

  private endpoint(name: string, what: string): Endpoint {
    const e = this.byName.get(name);
    if (e?.kind === 'switch') throw new InvalidArgumentError(`${what}: "${name}" is a switch; connect() plugs NICs and socket links into switches, link() joins two switches`);
    if (e === undefined) {
      throw new InvalidArgumentError(
        `${what}: no NIC, socket link, vhost-user port or VXLAN uplink named "${name}" in this lab (NICs: ${namesOf(this.nics)}; socket links: ${namesOf(this.sockets)}; vhost-user ports: ${namesOf(this.vhostUser)}; VXLAN uplinks: ${namesOf(this.vxlan)}${this.netns.length === 0 ? '' : `; network namespaces: ${namesOf(this.netns)}`})`,
      );
    }
    return e;
  }
}

/** "a, b" or "none". */
const namesOf = (entries: { name: string }[]): string => (entries.length === 0 ? 'none' : entries.map((e) => e.name).join(', '));
