import { readFileSync } from 'node:fs';
import type { ImpairmentOptions } from '../../backends/impairment.js';
import { isInterfaceName, isNetnsName } from '../../backends/netns.js';
import type { RelayImpairment } from '../../backends/relay.js';
import type { SocketLinkOptions } from '../../backends/socket-link.js';
import { type VxlanUplinkOptions, checkVxlanOptions } from '../../backends/vxlan-options.js';
import { VirtioLabError } from '../../errors.js';
import { formatMac, parseMac } from '../../net/mac.js';
import type { DhcpServerOptions } from '../hosts/dhcp-server.js';
import { parseIpv4 } from '../hosts/ipv4-address.js';
import { Lab, type LabOptions, type LabVhostUserOptions } from '../runtime/lab.js';
import { LAB_FRAME_MIN, type TrafficFlow } from '../runtime/lab-traffic.js';

/**
 * A lab described as JSON (what `virtio-lab lab <file>` runs):
 *
 * ```json
 * { "nics":     [{ "name": "a", "mac": "52:54:00:00:00:0a", "queuePairs": 2, "mtu": 1500, "queueSize": 256 }],
 *   "switches": [{ "name": "sw0", "ageingMs": 300000 }],
 *   "sockets":  [{ "name": "qemu", "transport": "stream", "role": "server", "path": "/tmp/q.sock" },
 *                { "name": "udp", "transport": "dgram", "remote": { "port": 5555 }, "recvBufferSize": 4194304 }],
 *   "vhostUser": [{ "name": "vm", "path": "/tmp/vm-net.sock", "mac": "52:54:00:12:34:56", "allowUnsealedMemory": false }],
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

export interface TopologyNic {
  name: string;
  mac?: string;
  mtu?: number;
  queuePairs?: number;
  queueSize?: number;
}

/** A vhost-user port as JSON: LabVhostUserOptions plus a name. */
export type TopologyVhostUser = { name: string } & LabVhostUserOptions;

/** A socket link as JSON: SocketLinkOptions plus a name. */
export type TopologySocket = { name: string } & SocketLinkOptions;

/** One thing wrong with a topology: where (a JSON path such as `links[1].b`) and what. */
export interface TopologyProblem {
  field: string;
  message: string;
}

/** A topology that cannot be built; `problems` lists every field that is wrong. */
export class TopologyError extends VirtioLabError {
  constructor(readonly problems: TopologyProblem[]) {
    super(
      'INVALID_TOPOLOGY',
      problems.length === 1
        ? `${problems[0].field}: ${problems[0].message}`
        : `${problems.length} problems in the topology:\n${problems.map((p) => `  ${p.field}: ${p.message}`).join('\n')}`,
    );
  }

  /** The first bad field. */
  get field(): string {
    return this.problems[0].field;
  }
}

/** Queue pairs a topology NIC may have (each pair is two worker threads). */
export const TOPOLOGY_MAX_QUEUE_PAIRS = 16;
const IMPAIRMENT_KEYS = ['delayMs', 'jitterMs', 'lossPercent', 'rateBitsPerSec', 'burstBytes', 'seed', 'queueBytes'] as const;
const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

type Json = Record<string, unknown>;

/** Collects problems with their JSON paths. */
class Checker {
  readonly problems: TopologyProblem[] = [];

  bad(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  object(v: unknown, field: string): Json | undefined {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Json;
    this.bad(field, `must be an object, got ${describe(v)}`);
    return undefined;
  }

  array(v: unknown, field: string, required: boolean): unknown[] {
    if (v === undefined && !required) return [];
    if (Array.isArray(v)) return v;
    this.bad(field, v === undefined ? 'is required (a list)' : `must be a list, got ${describe(v)}`);
    return [];
  }

  keys(o: Json, allowed: readonly string[], field: string): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.bad(`${field}.${k}`, `unknown key (known: ${allowed.join(', ')})`);
  }

  string(o: Json, key: string, field: string, required: boolean): string | undefined {
    const v = o[key];
    if (v === undefined) {
      if (required) this.bad(`${field}.${key}`, 'is required');
      return undefined;
    }
    if (typeof v === 'string' && v.length > 0) return v;
    this.bad(`${field}.${key}`, `must be a non-empty string, got ${describe(v)}`);
    return undefined;
  }

  number(o: Json, key: string, field: string, min: number, max: number, opts: { integer?: boolean; required?: boolean; exclusiveMin?: boolean } = {}): number | undefined {
    const v = o[key];
    if (v === undefined) {
      if (opts.required === true) this.bad(`${field}.${key}`, 'is required');
      return undefined;
    }
    const ok = typeof v === 'number' && Number.isFinite(v) && (opts.exclusiveMin === true ? v > min : v >= min) && v <= max && (opts.integer !== true || Number.isInteger(v));
    if (ok) return v;
    this.bad(`${field}.${key}`, `must be ${opts.integer === true ? 'an integer' : 'a number'} in ${opts.exclusiveMin === true ? '(' : '['}${min}, ${max}], got ${describe(v)}`);
    return undefined;
  }

  boolean(o: Json, key: string, field: string): boolean | undefined {
    const v = o[key];
    if (v === undefined || typeof v === 'boolean') return v;
    this.bad(`${field}.${key}`, `must be true or false, got ${describe(v)}`);
    return undefined;
  }

  impairment(v: unknown, field: string): void {
    const o = this.object(v, field);
    if (o === undefined) return;
    this.keys(o, IMPAIRMENT_KEYS, field);
    this.number(o, 'delayMs', field, 0, 60_000);
    this.number(o, 'jitterMs', field, 0, 60_000);
    this.number(o, 'lossPercent', field, 0, 100);
    this.number(o, 'rateBitsPerSec', field, 0, 1e12, { exclusiveMin: true });
    this.number(o, 'burstBytes', field, 1, 1 << 30, { integer: true });
    this.number(o, 'seed', field, 0, 0x7fffffff, { integer: true });
    this.number(o, 'queueBytes', field, 4096, 1 << 30, { integer: true });
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

/**
 * Check a parsed topology and return it typed. Every problem is collected
 * (shape, ranges, names that do not exist, an end attached twice, a frame
 * size larger than an MTU) and thrown as one TopologyError.
 */
export function parseTopology(json: unknown): LabTopology {
  const c = new Checker();
  const root = c.object(json, '(topology)');
  if (root === undefined) throw new TopologyError(c.problems);
  c.keys(root, ['description', 'nics', 'switches', 'sockets', 'vhostUser', 'links', 'ports', 'taps', 'hosts', 'netns', 'traffic', 'vxlan'], '(topology)');
  const hasNetns = Array.isArray(root.netns) && root.netns.length !== 0;
  if (root.description !== undefined && typeof root.description !== 'string') c.bad('description', 'must be a string');

  const kinds = new Map<string, { kind: EntryKind; field: string }>();
  const name = (o: Json, field: string, kind: EntryKind): void => {
    const n = c.string(o, 'name', field, true);
    if (n === undefined) return;
    if (!NAME.test(n)) c.bad(`${field}.name`, `"${n}" is not a name (letters, digits, _ . : -; at most 64)`);
    const seen = kinds.get(n);
    if (seen !== undefined) c.bad(`${field}.name`, `"${n}" is already the name of the ${seen.kind} at ${seen.field}`);
    else kinds.set(n, { kind, field });
  };

  // NICs.
  const nics = c.array(root.nics, 'nics', !hasNetns);
  if (Array.isArray(root.nics) && nics.length === 0 && !hasNetns) c.bad('nics', 'must list at least one NIC');
  const mtus = new Map<string, number>();
  const macs = new Map<string, string>();
  const checkMac = (o: Json, field: string): void => {
    const mac = c.string(o, 'mac', field, false);
    if (mac === undefined) return;
    try {
      const m = formatMac(parseMac(mac));
      if ((parseMac(mac)[0] & 1) !== 0) c.bad(`${field}.mac`, `${mac} is a multicast address; a NIC needs a unicast one`);
      else if (macs.has(m)) c.bad(`${field}.mac`, `${mac} is already the MAC of ${macs.get(m)}`);
      else macs.set(m, field);
    } catch (e) {
      c.bad(`${field}.mac`, (e as Error).message);
    }
  };
  nics.forEach((v, i) => {
    const field = `nics[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['name', 'mac', 'mtu', 'queuePairs', 'queueSize'], field);
    name(o, field, 'NIC');
    checkMac(o, field);
    const mtu = c.number(o, 'mtu', field, 68, 65535, { integer: true });
    if (typeof o.name === 'string') mtus.set(o.name, mtu ?? 1500);
    c.number(o, 'queuePairs', field, 1, TOPOLOGY_MAX_QUEUE_PAIRS, { integer: true });
    const qs = c.number(o, 'queueSize', field, 2, 32768, { integer: true });
    if (qs !== undefined && (qs & (qs - 1)) !== 0) c.bad(`${field}.queueSize`, `${qs} is not a power of two`);
  });

  // Switches and socket links (names first: links and ports refer to them).
  const switches = c.array(root.switches, 'switches', false);
  switches.forEach((v, i) => {
    const field = `switches[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['name', 'ageingMs'], field);
    name(o, field, 'switch');
    c.number(o, 'ageingMs', field, 0, 1e9, { exclusiveMin: true });
  });
  const sockets = c.array(root.sockets, 'sockets', false);
  sockets.forEach((v, i) => checkSocket(c, v, `sockets[${i}]`, name));
  const vhostUser = c.array(root.vhostUser, 'vhostUser', false);
  vhostUser.forEach((v, i) => {
    const field = `vhostUser[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['name', 'path', 'mac', 'mtu', 'queuePairs', 'allowUnsealedMemory'], field);
    name(o, field, 'vhost-user port');
    c.boolean(o, 'allowUnsealedMemory', field);
    c.string(o, 'path', field, true);
    checkMac(o, field);
    c.number(o, 'mtu', field, 68, 65535, { integer: true });
    c.number(o, 'queuePairs', field, 1, TOPOLOGY_MAX_QUEUE_PAIRS, { integer: true });
  });

  const isKind = (n: unknown, ...want: string[]): boolean => typeof n === 'string' && want.includes(kinds.get(n)?.kind ?? '');
  const attached = new Map<string, string>();
  /** Far ends of each switch's links, in order (its ports after those of "ports"). */
  const uplinksBySwitch = new Map<string, string[]>();
  const endpoint = (o: Json, key: string, field: string, where: string, switchOk = false): string | undefined => {
    const n = c.string(o, key, field, true);
    if (n === undefined) return undefined;
    if (!kinds.has(n)) c.bad(`${field}.${key}`, `"${n}" is not a NIC, ${switchOk ? 'switch, ' : ''}socket link or vhost-user port of this topology`);
    else if (isKind(n, 'switch')) {
      if (switchOk) return n;
      c.bad(`${field}.${key}`, `"${n}" is a switch; plug NICs into switches with "ports"`);
    }
    else if (attached.has(n)) c.bad(`${field}.${key}`, `"${n}" is already attached at ${attached.get(n)} (one attachment per NIC)`);
    else {
      attached.set(n, where);
      return n;
    }
    return undefined;
  };

  const links = c.array(root.links, 'links', false);
  links.forEach((v, i) => {
    const field = `links[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['a', 'b', 'impairment', 'capture'], field);
    const a = endpoint(o, 'a', field, field, true);
    if (o.a !== undefined && o.a === o.b) c.bad(`${field}.b`, 'a link needs two different ends');
    else {
      const b = endpoint(o, 'b', field, field, true);
      if (a !== undefined && b !== undefined && isKind(a, 'socket link') && isKind(b, 'socket link')) c.bad(field, 'both ends are socket links; connect at least one NIC');
      // A link joins two switches or two NICs; a NIC goes into a switch by "ports".
      if (a !== undefined && b !== undefined && isKind(a, 'switch') !== isKind(b, 'switch')) {
        const [key, sw] = isKind(a, 'switch') ? ['a', a] : ['b', b];
        c.bad(`${field}.${key}`, `"${sw}" is a switch; plug NICs into switches with "ports"`);
        return;
      }
      for (const [end, far] of [
        [a, b],
        [b, a],
      ]) {
        if (end !== undefined && far !== undefined && isKind(end, 'switch')) uplinksBySwitch.set(end, [...(uplinksBySwitch.get(end) ?? []), far]);
      }
    }
    if (o.impairment !== undefined) {
      const imp = c.object(o.impairment, `${field}.impairment`);
      if (imp !== undefined && ('aToB' in imp || 'bToA' in imp)) {
        c.keys(imp, ['aToB', 'bToA'], `${field}.impairment`);
        if (imp.aToB !== undefined) c.impairment(imp.aToB, `${field}.impairment.aToB`);
        if (imp.bToA !== undefined) c.impairment(imp.bToA, `${field}.impairment.bToA`);
      } else if (imp !== undefined) {
        c.impairment(imp, `${field}.impairment`);
      }
    }
    c.string(o, 'capture', field, false);
  });

  const portsBySwitch = new Map<string, string[]>();
  const ports = c.array(root.ports, 'ports', false);
  ports.forEach((v, i) => {
    const field = `ports[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['nic', 'switch', 'impairment'], field);
    const sw = c.string(o, 'switch', field, true);
    const swOk = sw !== undefined && isKind(sw, 'switch');
    if (sw !== undefined && !swOk) c.bad(`${field}.switch`, `"${sw}" is not a switch of this topology`);
    const nic = endpoint(o, 'nic', field, field);
    if (swOk && nic !== undefined) portsBySwitch.set(sw, [...(portsBySwitch.get(sw) ?? []), nic]);
    if (o.impairment !== undefined) c.impairment(o.impairment, `${field}.impairment`);
  });

  const hosts = c.array(root.hosts, 'hosts', false);
  hosts.forEach((v, i) => {
    const field = `hosts[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['name', 'address', 'port', 'tftpRoot', 'dhcp'], field);
    name(o, field, 'IP host');
    const address = c.string(o, 'address', field, true);
    if (address !== undefined && parseHostAddress(address) === undefined) c.bad(`${field}.address`, `"${address}" is not an IPv4 address with an optional prefix length in [1, 30], like 10.0.2.2/24`);
    const port = c.string(o, 'port', field, true);
    if (port !== undefined && isKind(port, 'switch')) {
      if (typeof o.name === 'string') portsBySwitch.set(port, [...(portsBySwitch.get(port) ?? []), o.name]);
    } else if (port !== undefined && !isKind(port, 'NIC', 'vhost-user port')) {
      c.bad(`${field}.port`, `"${port}" is not a switch, NIC or vhost-user port of this topology`);
    } else endpoint(o, 'port', field, field);
    c.string(o, 'tftpRoot', field, false);
    if (o.dhcp !== undefined && o.dhcp !== true) {
      const d = c.object(o.dhcp, `${field}.dhcp`);
      if (d !== undefined) {
        c.keys(d, ['poolStart', 'poolSize', 'leaseSeconds', 'router', 'nextServer'], `${field}.dhcp`);
        for (const key of ['poolStart', 'router', 'nextServer']) {
          const a = c.string(d, key, `${field}.dhcp`, key === 'poolStart');
          if (a !== undefined && parseHostAddress(a) === undefined) c.bad(`${field}.dhcp.${key}`, `"${a}" is not an IPv4 address`);
        }
        c.number(d, 'poolSize', `${field}.dhcp`, 1, 65534, { integer: true });
        c.number(d, 'leaseSeconds', `${field}.dhcp`, 60, 0x7fffffff, { integer: true });
      }
    }
  });

  checkVxlanUplinks(c, root.vxlan, name, (sw) => isKind(sw, 'switch'), (sw, uplink) => portsBySwitch.set(sw, [...(portsBySwitch.get(sw) ?? []), uplink]));
  checkNetnsList(c, root.netns, { name, isKind, endpoint, plug: (sw, n) => portsBySwitch.set(sw, [...(portsBySwitch.get(sw) ?? []), n]) });

  const files = new Map<string, string>();
  links.forEach((v, i) => {
    const f = (v as Json | null)?.capture;
    if (typeof f === 'string' && f.length > 0) files.set(f, `links[${i}].capture`);
  });
  const taps = c.array(root.taps, 'taps', false);
  taps.forEach((v, i) => {
    const field = `taps[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['switch', 'file', 'port'], field);
    const sw = c.string(o, 'switch', field, true);
    if (sw !== undefined && !isKind(sw, 'switch')) c.bad(`${field}.switch`, `"${sw}" is not a switch of this topology`);
    const file = c.string(o, 'file', field, true);
    if (file !== undefined) {
      if (files.has(file)) c.bad(`${field}.file`, `${file} is already written by ${files.get(file)}`);
      files.set(file, field);
    }
    const onSwitch = sw === undefined ? [] : [...(portsBySwitch.get(sw) ?? []), ...(uplinksBySwitch.get(sw) ?? [])];
    if (typeof o.port === 'string') {
      if (!onSwitch.includes(o.port)) c.bad(`${field}.port`, `"${o.port}" is not connected to switch "${sw}" (its ports: ${onSwitch.join(', ') || 'none'})`);
    } else if (o.port !== undefined) {
      c.number(o, 'port', field, 0, Math.max(0, onSwitch.length - 1), { integer: true });
      if (onSwitch.length === 0) c.bad(`${field}.port`, `switch "${sw}" has no ports`);
    }
  });

  const traffic = c.array(root.traffic, 'traffic', false);
  traffic.forEach((v, i) => {
    const field = `traffic[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['from', 'to', 'frames', 'size', 'ratePps'], field);
    for (const key of ['from', 'to']) {
      const n = c.string(o, key, field, true);
      if (n !== undefined && !isKind(n, 'NIC')) c.bad(`${field}.${key}`, `"${n}" is not a NIC of this topology (NICs: ${[...mtus.keys()].join(', ')})`);
    }
    if (typeof o.from === 'string' && o.from === o.to) c.bad(`${field}.to`, 'a flow needs two different NICs');
    c.number(o, 'frames', field, 1, 1e9, { integer: true, required: true });
    const max = Math.min(mtus.get(o.from as string) ?? 1500, mtus.get(o.to as string) ?? 1500) + 14;
    c.number(o, 'size', field, LAB_FRAME_MIN, max, { integer: true, required: true });
    c.number(o, 'ratePps', field, 0, 1e9, { exclusiveMin: true });
  });

  if (c.problems.length !== 0) throw new TopologyError(c.problems);
  return { ...root, nics: root.nics ?? [] } as unknown as LabTopology;
}

/** What a name in a topology can be. */
type EntryKind = 'NIC' | 'switch' | 'socket link' | 'vhost-user port' | 'IP host' | 'VXLAN uplink' | 'network namespace';

/** What checkNetnsList() needs of parseTopology()'s bookkeeping. */
interface NetnsCheckContext {
  name(o: Json, field: string, kind: EntryKind): void;
  isKind(n: unknown, ...want: EntryKind[]): boolean;
  endpoint(o: Json, key: string, field: string, where: string): string | undefined;
  /** `n` takes the next port of switch `sw`. */
  plug(sw: string, n: string): void;
}

/** Check the "netns" list (after "hosts", whose NICs it cannot take). */
function checkNetnsList(c: Checker, list: unknown, ctx: NetnsCheckContext): void {
  c.array(list, 'netns', false).forEach((v, i) => {
    const field = `netns[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, ['name', 'address', 'mtu', 'ifname', 'port', 'impairment'], field);
    const port = c.string(o, 'port', field, true);
    const isSwitch = port !== undefined && ctx.isKind(port, 'switch');
    if (port !== undefined && !isSwitch && !ctx.isKind(port, 'NIC', 'vhost-user port')) {
      c.bad(`${field}.port`, `"${port}" is not a switch, NIC or vhost-user port of this topology`);
    } else if (port !== undefined && !isSwitch) ctx.endpoint(o, 'port', field, field);
    ctx.name(o, field, 'network namespace');
    if (typeof o.name === 'string' && !isNetnsName(o.name)) c.bad(`${field}.name`, `"${o.name}" is not a name ip netns takes (letters, digits, _ . -)`);
    if (isSwitch && typeof o.name === 'string') ctx.plug(port, o.name);
    const addresses = typeof o.address === 'string' ? [o.address] : Array.isArray(o.address) ? o.address : o.address === undefined ? [] : [undefined];
    for (const a of addresses) {
      if (typeof a !== 'string' || !/^[0-9A-Fa-f.:]+\/\d{1,3}$/.test(a)) c.bad(`${field}.address`, `${describe(a)} is not an address with its prefix length, like 10.0.0.1/24`);
    }
    c.number(o, 'mtu', field, 68, 65521, { integer: true });
    const ifname = c.string(o, 'ifname', field, false);
    if (ifname !== undefined && !isInterfaceName(ifname)) c.bad(`${field}.ifname`, `"${ifname}" is not an interface name (1 to 15 of letters, digits, _ . -)`);
    if (o.impairment !== undefined) c.impairment(o.impairment, `${field}.impairment`);
  });
}

/** Add the topology's namespaces to the lab and plug each into its port (buildLab's part for "netns"). */
function buildNetns(lab: Lab, list: readonly TopologyNetns[], at: (field: string, build: () => void) => void): void {
  list.forEach((n, i) =>
    at(`netns[${i}]`, () => {
      lab.netns(n.name, { address: n.address, mtu: n.mtu, ifname: n.ifname });
      const impairment = n.impairment === undefined ? {} : { impairment: n.impairment };
      if (lab.switchNames.includes(n.port)) lab.connect(n.name, n.port, impairment);
      else lab.link(n.name, n.port, impairment);
    }),
  );
}

const VXLAN_KEYS = ['name', 'switch', 'vni', 'local', 'port', 'remotes', 'learning', 'restrictSources', 'ageingSeconds', 'fdbSize', 'mtu'] as const;

/**
 * The "vxlan" list: shape and switch here, the options by the uplink's own
 * check (the same messages as Lab.vxlan()). `plugged` records each uplink
 * on its switch's ports (for taps that name it).
 */
function checkVxlanUplinks(
  c: Checker,
  list: unknown,
  name: (o: Json, field: string, kind: 'VXLAN uplink') => void,
  isSwitch: (n: string) => boolean,
  plugged: (sw: string, uplink: string) => void,
): void {
  c.array(list, 'vxlan', false).forEach((v, i) => {
    const field = `vxlan[${i}]`;
    const o = c.object(v, field);
    if (o === undefined) return;
    c.keys(o, VXLAN_KEYS, field);
    name(o, field, 'VXLAN uplink');
    const sw = c.string(o, 'switch', field, true);
    if (sw !== undefined && !isSwitch(sw)) c.bad(`${field}.switch`, `"${sw}" is not a switch of this topology`);
    else if (sw !== undefined && typeof o.name === 'string') plugged(sw, o.name);
    if (o.vni === undefined) c.bad(`${field}.vni`, 'is required');
    if (o.remotes !== undefined && !Array.isArray(o.remotes)) c.bad(`${field}.remotes`, `must be a list, got ${describe(o.remotes)}`);
    if (o.vni === undefined || (o.remotes !== undefined && !Array.isArray(o.remotes))) return;
    const { name: _name, switch: _switch, ...options } = o;
    try {
      checkVxlanOptions(options as unknown as VxlanUplinkOptions);
    } catch (e) {
      c.bad(field, (e as Error).message);
    }
  });
}

/** "10.0.2.2/24" or "10.0.2.2" as address and prefix length (default 24); undefined when malformed. */
export function parseHostAddress(s: string): { ip: string; prefixLength: number } | undefined {
  const [ip, prefix, more] = s.split('/');
  const prefixLength = prefix === undefined ? 24 : /^\d{1,2}$/.test(prefix) ? Number(prefix) : NaN;
  if (more !== undefined || !(prefixLength >= 1 && prefixLength <= 30)) return undefined;
  try {
    parseIpv4(ip, 'address');
  } catch {
    return undefined;
  }
  return { ip, prefixLength };
}

function checkSocket(c: Checker, v: unknown, field: string, name: (o: Json, field: string, kind: 'socket link') => void): void {
  const o = c.object(v, field);
  if (o === undefined) return;
  name(o, field, 'socket link');
  c.number(o, 'mtu', field, 68, 65535, { integer: true });
  if (o.transport === 'stream') {
    c.keys(o, ['name', 'transport', 'role', 'path', 'host', 'port', 'mtu'], field);
    if (o.role !== 'server' && o.role !== 'client') c.bad(`${field}.role`, `must be "server" or "client", got ${describe(o.role)}`);
    if (o.path !== undefined) {
      c.string(o, 'path', field, true);
      if (o.port !== undefined || o.host !== undefined) c.bad(field, 'give a Unix socket "path" or a TCP "host"/"port", not both');
    } else {
      c.string(o, 'host', field, false);
      c.number(o, 'port', field, 0, 65535, { integer: true, required: true });
    }
  } else if (o.transport === 'dgram') {
    c.keys(o, ['name', 'transport', 'local', 'remote', 'mtu', 'recvBufferSize', 'sendBufferSize'], field);
    for (const key of ['recvBufferSize', 'sendBufferSize']) c.number(o, key, field, 1, 0x7fffffff, { integer: true });
    for (const key of ['local', 'remote']) {
      if (o[key] === undefined && key === 'local') continue;
      const a = c.object(o[key], `${field}.${key}`);
      if (a === undefined) continue;
      c.keys(a, ['host', 'port'], `${field}.${key}`);
      c.string(a, 'host', `${field}.${key}`, false);
      c.number(a, 'port', `${field}.${key}`, key === 'remote' ? 1 : 0, 65535, { integer: true, required: key === 'remote' });
    }
  } else {
    c.bad(`${field}.transport`, `must be "stream" or "dgram", got ${describe(o.transport)}`);
  }
}

/** Read and check a topology file; a file that cannot be read or parsed is a TopologyError too. */
export function loadTopology(path: string): LabTopology {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TopologyError([{ field: '(file)', message: `cannot read ${path}: ${(e as Error).message}` }]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TopologyError([{ field: '(file)', message: `${path} is not JSON: ${(e as Error).message}` }]);
  }
  return parseTopology(json);
}

/**
 * Build (not start) the lab a checked topology describes. What only the
 * lab can tell (a capture file that cannot be created shows at start()) is
 * thrown by the lab; anything the lab refuses here comes back as a
 * TopologyError naming the entry.
 */
export function buildLab(t: LabTopology, options: LabOptions = {}): Lab {
  const lab = new Lab(options);
  const at = (field: string, build: () => void): void => {
    try {
      build();
    } catch (e) {
      if (e instanceof TopologyError || !(e instanceof VirtioLabError)) throw e;
      throw new TopologyError([{ field, message: e.message }]);
    }
  };
  t.nics.forEach((n, i) => at(`nics[${i}]`, () => lab.nic(n.name, { mac: n.mac, mtu: n.mtu, queuePairs: n.queuePairs, queueSize: n.queueSize })));
  (t.switches ?? []).forEach((s, i) => at(`switches[${i}]`, () => lab.switch(s.name, s.ageingMs === undefined ? {} : { ageingMs: s.ageingMs })));
  (t.sockets ?? []).forEach((s, i) => {
    const { name, ...options } = s;
    at(`sockets[${i}]`, () => lab.socketLink(name, options as SocketLinkOptions));
  });
  (t.vhostUser ?? []).forEach((v, i) => {
    const { name, ...options } = v;
    at(`vhostUser[${i}]`, () => lab.vhostUser(name, options));
  });
  (t.links ?? []).forEach((l, i) => at(`links[${i}]`, () => lab.link(l.a, l.b, { impairment: l.impairment, capture: l.capture })));
  (t.ports ?? []).forEach((p, i) => at(`ports[${i}]`, () => lab.connect(p.nic, p.switch, { impairment: p.impairment })));
  (t.hosts ?? []).forEach((h, i) =>
    at(`hosts[${i}]`, () => {
      lab.nic(h.name);
      if (lab.switchNames.includes(h.port)) lab.connect(h.name, h.port);
      else lab.link(h.name, h.port);
    }),
  );
  buildVxlanUplinks(lab, t.vxlan ?? [], at);
  buildNetns(lab, t.netns ?? [], at);
  (t.taps ?? []).forEach((tap, i) => at(`taps[${i}]`, () => lab.tap(tap.switch, tap.file, tap.port === undefined ? {} : { port: tap.port })));
  return lab;
}

/** Add each VXLAN uplink and plug it into its switch (after the hosts, as parseTopology numbers the ports). */
function buildVxlanUplinks(lab: Lab, list: readonly TopologyVxlan[], at: (field: string, build: () => void) => void): void {
  list.forEach((v, i) =>
    at(`vxlan[${i}]`, () => {
      const { name, switch: sw, ...options } = v;
      lab.vxlan(name, options);
      lab.connect(name, sw);
    }),
  );
}
