import { MAX_REMOTES } from './vxlan-options.js';
import type { VxlanRemoteStats } from './vxlan-stats.js';

/** What remoteOf() returns for a sender that is not (and may not become) a remote. */
export const NOT_FOUND = -1;

/**
 * The remote VTEPs of a VXLAN uplink, by index: the configured ones first
 * (the flood list), then those learned from the outer source address of
 * packets received (Linux sends to a learned VTEP on its `dstport`).
 */
export class VxlanRemotes {
  /** The remotes and their counters (stats() reports copies). */
  readonly list: VxlanRemoteStats[] = [];
  /** How many of `list` are configured (they come first): the flood list. */
  readonly configured: number;
  /** Remote index by address (the outer source of a packet). */
  private readonly byHost = new Map<string, number>();
  /** True when two configured remotes share an address (then the source port tells them apart). */
  private readonly sharedHosts: boolean;

  constructor(
    configured: readonly { host: string; port: number }[],
    /** Whether packets from an unlisted address may add a learned remote. */
    private readonly mayLearn: boolean,
    /** The port a learned remote is sent to. */
    private readonly learnedPort: number,
  ) {
    for (const r of configured) this.add(r.host, r.port, false);
    this.configured = this.list.length;
    this.sharedHosts = this.byHost.size < this.configured;
  }

  /** The remote a packet from `host`:`port` came from: configured, learned before, or learned now (NOT_FOUND when it may not be). */
  remoteOf(host: string, port: number): number {
    const index = this.byHost.get(host);
    if (index !== undefined) return this.sharedHosts ? this.byHostAndPort(host, port, index) : index;
    if (!this.mayLearn || this.list.length >= MAX_REMOTES) return NOT_FOUND;
    // A new VTEP: Linux sends to it on its dstport, whatever source port it used.
    return this.add(host, this.learnedPort, true);
  }

  /** "host:port" of remote r. */
  name(r: number): string {
    return `${this.list[r].host}:${this.list[r].port}`;
  }

  private add(host: string, port: number, learned: boolean): number {
    const index = this.list.length;
    this.list.push({ host, port, learned, rxFrames: 0, txFrames: 0 });
    if (!this.byHost.has(host)) this.byHost.set(host, index);
    return index;
  }

  /** Of several configured remotes on one address, the one on the packet's source port (else the first). */
  private byHostAndPort(host: string, port: number, first: number): number {
    for (let r = 0; r < this.configured; r++) if (this.list[r].port === port && this.list[r].host === host) return r;
    return first;
  }
}
