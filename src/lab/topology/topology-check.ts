import type { TopologyProblem } from '../../errors.js';
import { formatMac, parseMac } from '../../net/mac.js';

/** A JSON object of a topology. */
export type Json = Record<string, unknown>;

/** What a name in a topology can be. */
export type EntryKind = 'NIC' | 'switch' | 'socket link' | 'vhost-user port' | 'IP host' | 'VXLAN uplink' | 'network namespace';

const IMPAIRMENT_KEYS = ['delayMs', 'jitterMs', 'lossPercent', 'rateBitsPerSec', 'burstBytes', 'seed', 'queueBytes'] as const;
const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

/** A value as a problem message shows it ("got ..."). */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

/** Collects problems with their JSON paths; each check names the value it saw. */
export class Checker {
  readonly problems: TopologyProblem[] = [];

  bad(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  object(v: unknown, path: string): Json | undefined {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Json;
    this.bad(path, `must be an object, got ${describe(v)}`);
    return undefined;
  }

  array(v: unknown, path: string, required: boolean): unknown[] {
    if (v === undefined && !required) return [];
    if (Array.isArray(v)) return v;
    this.bad(path, v === undefined ? 'is required (a list)' : `must be a list, got ${describe(v)}`);
    return [];
  }

  keys(o: Json, allowed: readonly string[], path: string): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.bad(`${path}.${k}`, `unknown key (known: ${allowed.join(', ')})`);
  }

  string(o: Json, key: string, path: string, required: boolean): string | undefined {
    const v = o[key];
    if (v === undefined) {
      if (required) this.bad(`${path}.${key}`, 'is required');
      return undefined;
    }
    if (typeof v === 'string' && v.length > 0) return v;
    this.bad(`${path}.${key}`, `must be a non-empty string, got ${describe(v)}`);
    return undefined;
  }

  number(o: Json, key: string, path: string, min: number, max: number, opts: { integer?: boolean; required?: boolean; exclusiveMin?: boolean } = {}): number | undefined {
    const v = o[key];
    if (v === undefined) {
      if (opts.required === true) this.bad(`${path}.${key}`, 'is required');
      return undefined;
    }
    const ok = typeof v === 'number' && Number.isFinite(v) && (opts.exclusiveMin === true ? v > min : v >= min) && v <= max && (opts.integer !== true || Number.isInteger(v));
    if (ok) return v;
    this.bad(`${path}.${key}`, `must be ${opts.integer === true ? 'an integer' : 'a number'} in ${opts.exclusiveMin === true ? '(' : '['}${min}, ${max}], got ${describe(v)}`);
    return undefined;
  }

  boolean(o: Json, key: string, path: string): boolean | undefined {
    const v = o[key];
    if (v === undefined || typeof v === 'boolean') return v;
    this.bad(`${path}.${key}`, `must be true or false, got ${describe(v)}`);
    return undefined;
  }

  /** ImpairmentOptions (one direction). */
  impairment(v: unknown, path: string): void {
    const o = this.object(v, path);
    if (o === undefined) return;
    this.keys(o, IMPAIRMENT_KEYS, path);
    this.number(o, 'delayMs', path, 0, 60_000);
    this.number(o, 'jitterMs', path, 0, 60_000);
    this.number(o, 'lossPercent', path, 0, 100);
    this.number(o, 'rateBitsPerSec', path, 0, 1e12, { exclusiveMin: true });
    this.number(o, 'burstBytes', path, 1, 1 << 30, { integer: true });
    this.number(o, 'seed', path, 0, 0x7fffffff, { integer: true });
    this.number(o, 'queueBytes', path, 4096, 1 << 30, { integer: true });
  }
}

/**
 * A Checker plus what the sections tell each other: the names and their
 * kinds, which ends are attached where, the ports of each switch in order,
 * the MTU of each NIC and the files written.
 */
export class TopologyCheck extends Checker {
  private readonly kinds = new Map<string, { kind: EntryKind; path: string }>();
  private readonly attached = new Map<string, string>();
  private readonly macs = new Map<string, string>();
  /** Ports of each switch in order: "ports", hosts, VXLAN uplinks, namespaces. */
  private readonly portsBySwitch = new Map<string, string[]>();
  /** Far ends of each switch's links, in order (its ports after those of "ports"). */
  private readonly uplinksBySwitch = new Map<string, string[]>();
  /** MTU of each NIC (1500 unless given). */
  readonly mtus = new Map<string, number>();
  /** Capture files and the entry that writes each. */
  readonly files = new Map<string, string>();

  /** The entry's "name": required, well formed, not taken. */
  name(o: Json, path: string, kind: EntryKind): void {
    const n = this.string(o, 'name', path, true);
    if (n === undefined) return;
    if (!NAME.test(n)) this.bad(`${path}.name`, `"${n}" is not a name (letters, digits, _ . : -; at most 64)`);
    const seen = this.kinds.get(n);
    if (seen !== undefined) this.bad(`${path}.name`, `"${n}" is already the name of the ${seen.kind} at ${seen.path}`);
    else this.kinds.set(n, { kind, path });
  }

  isKind(n: unknown, ...want: EntryKind[]): boolean {
    const k = typeof n === 'string' ? this.kinds.get(n)?.kind : undefined;
    return k !== undefined && want.includes(k);
  }

  /** The entry's "mac", if any: unicast and not taken. */
  mac(o: Json, path: string): void {
    const mac = this.string(o, 'mac', path, false);
    if (mac === undefined) return;
    try {
      const bytes = parseMac(mac);
      const m = formatMac(bytes);
      if ((bytes[0] & 1) !== 0) this.bad(`${path}.mac`, `${mac} is a multicast address; a NIC needs a unicast one`);
      else if (this.macs.has(m)) this.bad(`${path}.mac`, `${mac} is already the MAC of ${this.macs.get(m)}`);
      else this.macs.set(m, path);
    } catch (e) {
      this.bad(`${path}.mac`, (e as Error).message);
    }
  }

  /**
   * `o[key]` as one end of a link or attachment: a NIC, socket link or
   * vhost-user port not attached yet (a switch too where `switchOk`).
   * Records the attachment at `path`; undefined when refused.
   */
  endpoint(o: Json, key: string, path: string, switchOk = false): string | undefined {
    const n = this.string(o, key, path, true);
    if (n === undefined) return undefined;
    if (!this.kinds.has(n)) this.bad(`${path}.${key}`, `"${n}" is not a NIC, ${switchOk ? 'switch, ' : ''}socket link or vhost-user port of this topology`);
    else if (this.isKind(n, 'switch')) {
      if (switchOk) return n;
      this.bad(`${path}.${key}`, `"${n}" is a switch; plug NICs into switches with "ports"`);
    } else if (this.attached.has(n)) this.bad(`${path}.${key}`, `"${n}" is already attached at ${this.attached.get(n)} (one attachment per NIC)`);
    else {
      this.attached.set(n, path);
      return n;
    }
    return undefined;
  }

  /**
   * The entry's "port" for a host or namespace: a switch it plugs into (as
   * `name`), or a NIC or vhost-user port it links to.
   */
  plugOrLink(o: Json, path: string, name: unknown): void {
    const port = this.string(o, 'port', path, true);
    if (port === undefined) return;
    if (this.isKind(port, 'switch')) {
      if (typeof name === 'string') this.plug(port, name);
    } else if (!this.isKind(port, 'NIC', 'vhost-user port')) {
      this.bad(`${path}.port`, `"${port}" is not a switch, NIC or vhost-user port of this topology`);
    } else this.endpoint(o, 'port', path);
  }

  /** `port` takes the next port of switch `sw`. */
  plug(sw: string, port: string): void {
    this.portsBySwitch.set(sw, [...(this.portsBySwitch.get(sw) ?? []), port]);
  }

  /** `far` is at the next link port of switch `sw`. */
  uplink(sw: string, far: string): void {
    this.uplinksBySwitch.set(sw, [...(this.uplinksBySwitch.get(sw) ?? []), far]);
  }

  /** What is on each port of switch `sw`, in port order. */
  switchPorts(sw: string): string[] {
    return [...(this.portsBySwitch.get(sw) ?? []), ...(this.uplinksBySwitch.get(sw) ?? [])];
  }
}
