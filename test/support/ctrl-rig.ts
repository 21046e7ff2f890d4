/**
 * A virtio-net control queue under test: NetCtrlQueue over a SplitQueueDevice,
 * fed by the independent MiniDriver (src/testing/mini-driver.ts), with a
 * target that records every effect together with where the used ring stood
 * when it happened (to check "before the buffer is used" rules).
 */
import { type FeatureSet, featureSet, formatMac } from '../../src/index.js';
import { NET_QUEUE_COUNTERS } from '../../src/net/net-counters.js';
import { SplitQueueDevice } from '../../src/ring/split-device.js';
import { NET_F_CTRL_GUEST_OFFLOADS, NET_F_CTRL_MAC_ADDR, NET_F_CTRL_RX, NET_F_CTRL_RX_EXTRA, NET_F_CTRL_VLAN, NET_F_CTRL_VQ, NET_F_GUEST_ANNOUNCE, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_MQ } from '../../src/spec/features.js';
import { NET_CTRL_MAC_LEN } from '../../src/spec/net.js';
import { StatsBlock } from '../../src/stats/queue-stats.js';
import { NetCtrlQueue, type NetCtrlTarget, RxFilterTable } from '../../src/net/ctrl/index.js';
import type { HandlerContext } from '../../src/worker/queue-handler.js';
import { MiniDriver } from '../../src/testing/mini-driver.js';
import { type RingRig, type Segment, at, ringRig } from '../../src/testing/split-ring.js';

export const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);

/** One effect of a command, and the used ring's state when it happened. */
export interface Effect {
  what: string;
  value: unknown;
  /** Used entries the device had pushed (published or not) when the effect happened. */
  pushed: number;
  /** used.idx in guest memory when the effect happened. */
  usedIdx: number;
}

/** A filter that records its writer calls (the control queue writes it directly). */
export class RecordingFilter extends RxFilterTable {
  log: (what: string, value: unknown) => void = () => {};

  override setRxMode(command: number, on: boolean): void {
    super.setRxMode(command, on);
    this.log('setRxMode', [command, on]);
  }

  override setMacTables(unicast: readonly Uint8Array[], multicast: readonly Uint8Array[]): void {
    super.setMacTables(unicast, multicast);
    this.log('setMacTables', [unicast.length, multicast.length]);
  }

  override setPrimaryMac(mac: Uint8Array): void {
    super.setPrimaryMac(mac);
    this.log('setPrimaryMac', formatMac(mac));
  }

  override addVlan(vid: number): void {
    super.addVlan(vid);
    this.log('addVlan', vid);
  }

  override delVlan(vid: number): void {
    super.delVlan(vid);
    this.log('delVlan', vid);
  }
}

export class RecordingTarget implements NetCtrlTarget {
  readonly effects: Effect[] = [];
  readonly filter: RecordingFilter;
  setGuestOffloads?: (offloads: FeatureSet) => void;

  constructor(
    public negotiated: FeatureSet,
    public maxPairs: number,
    private readonly where: () => { pushed: number; usedIdx: number },
    offloadsHook: boolean,
  ) {
    this.filter = new RecordingFilter(RxFilterTable.create(MAC).buffer);
    this.filter.log = (what, value) => this.record(what, value);
    if (offloadsHook) this.setGuestOffloads = (offloads) => this.record('setGuestOffloads', offloads);
  }

  record(what: string, value: unknown): void {
    this.effects.push({ what, value, ...this.where() });
  }

  setMac(mac: Uint8Array): void {
    this.record('setMac', formatMac(mac));
  }

  ackAnnounce(): void {
    this.record('ackAnnounce', null);
  }

  setActivePairs(n: number): void {
    this.record('setActivePairs', n);
  }
}

/** How a command is laid over descriptors. */
export interface CmdLayout {
  /** Offsets into the readable bytes (header + data) where a new descriptor starts; may repeat (empty descriptors). */
  cuts?: readonly number[];
  /** Lengths of the device-writable descriptors after them; default [1]. Zero lengths allowed. */
  writable?: readonly number[];
  /** Put the whole chain in an indirect table (the rig must be made with indirect: true). */
  indirect?: boolean;
}

export interface Submitted {
  head: number;
  /** The chain's segments as laid out (readable first). */
  segs: Segment[];
  /** Guest address of the first writable byte, or -1 when there is none. */
  ackAddr: number;
}

export interface Outcome {
  /** The ack byte, or null when the used length is 0. */
  ack: number | null;
  len: number;
}

/** What every byte of a command area starts as (gaps and writable bytes). */
export const POISON = 0xee;

export interface CtrlRigOptions {
  features?: FeatureSet;
  maxPairs?: number;
  size?: number;
  indirect?: boolean;
  eventIdx?: boolean;
  offloadsHook?: boolean;
  /** avail.idx and used.idx to start from (a restored ring). */
  start?: number;
}

export class CtrlRig {
  readonly rig: RingRig;
  readonly mini: MiniDriver;
  readonly device: SplitQueueDevice;
  readonly target: RecordingTarget;
  readonly handler: NetCtrlQueue;
  readonly stats = StatsBlock.create(1, NET_QUEUE_COUNTERS);
  interrupts = 0;
  private readonly area: number;
  private readonly areaSize = 1 << 17;
  private next = 0;

  constructor(o: CtrlRigOptions = {}) {
    const size = o.size ?? 64;
    this.rig = ringRig(size, { indirect: o.indirect ?? false, eventIdx: o.eventIdx ?? false, memSize: 1 << 19, start: o.start ?? 0 });
    this.area = this.rig.alloc.alloc(this.areaSize, 16);
    this.mini = new MiniDriver(this.rig.memory, this.rig.ring);
    this.device = new SplitQueueDevice(this.rig.memory, this.rig.state);
    const where = () => ({ pushed: this.device.nextUsed, usedIdx: this.rig.memory.readU16(at.usedIdx(this.rig.ring)) });
    this.target = new RecordingTarget(o.features ?? ALL_CTRL_FEATURES, o.maxPairs ?? 4, where, o.offloadsHook ?? false);
    const ctx: HandlerContext = {
      queue: 0,
      memory: this.rig.memory,
      device: this.device,
      stats: this.stats,
      interrupt: () => this.interrupts++,
      params: undefined,
    };
    this.handler = new NetCtrlQueue(ctx, this.target);
  }

  get memory() {
    return this.rig.memory;
  }

  get filter(): RecordingFilter {
    return this.target.filter;
  }

  /** Reserve `len` bytes of the command area, filled with poison, with a poisoned gap byte before. */
  private take(len: number, align = 1): number {
    const start = Math.ceil((this.next + 1) / align) * align;
    if (start + len > this.areaSize) throw new Error('ctrl rig: command area exhausted; call resetArea()');
    this.next = start + len;
    const gpa = this.area + start;
    if (len > 0) this.memory.write(gpa, new Uint8Array(len).fill(POISON), 0, len);
    return gpa;
  }

  /** Reuse the command area (no command may be in flight). */
  resetArea(): void {
    this.next = 0;
  }

  /** Lay `bytes` (header + data) and the writable part out as `layout` says and offer the chain (not yet published). */
  submit(bytes: Uint8Array, layout: CmdLayout = {}): Submitted | undefined {
    const cuts = [...new Set([0, ...(layout.cuts ?? []).filter((c) => c > 0 && c < bytes.length)])].sort((a, b) => a - b);
    const extraEmpty = (layout.cuts ?? []).length - (cuts.length - 1);
    const segs: Segment[] = [];
    for (let k = 0; k < cuts.length && bytes.length > 0; k++) {
      const from = cuts[k];
      const to = k + 1 < cuts.length ? cuts[k + 1] : bytes.length;
      const addr = this.take(to - from);
      this.memory.write(addr, bytes, from, to - from);
      segs.push({ addr, len: to - from, write: false });
    }
    // Repeated cuts stand for empty readable descriptors.
    for (let e = 0; e < extraEmpty && segs.length > 0; e++) segs.splice(1, 0, { addr: segs[0].addr, len: 0, write: false });
    let ackAddr = -1;
    for (const len of layout.writable ?? [1]) {
      const addr = this.take(len);
      if (ackAddr === -1 && len > 0) ackAddr = addr;
      segs.push({ addr, len, write: true });
    }
    if (segs.length === 0) throw new Error('ctrl rig: a chain needs at least one descriptor');
    const head = layout.indirect ? this.mini.addChain(segs, { table: this.take(16 * segs.length, 16) }) : this.mini.addChain(segs);
    return head === undefined ? undefined : { head, segs, ackAddr };
  }

  /** Submit one command, publish, poll once, reap its used entry. */
  exec(bytes: Uint8Array, layout: CmdLayout = {}): Outcome {
    this.resetArea();
    const s = this.submit(bytes, layout);
    if (s === undefined) throw new Error('ctrl rig: ring full');
    this.mini.publish();
    const polled = this.handler.poll();
    if (polled !== 1) throw new Error(`ctrl rig: poll completed ${polled} chains, expected 1`);
    const used = this.mini.reap();
    if (used.length !== 1 || used[0].id !== s.head) throw new Error(`ctrl rig: reaped ${JSON.stringify(used)}, expected head ${s.head}`);
    const len = used[0].len;
    return { len, ack: len === 0 ? null : this.memory.readU8(s.ackAddr) };
  }

  /** Total of a counter record. */
  static sum(r: Record<string, number>): number {
    return Object.values(r).reduce((a, b) => a + b, 0);
  }
}

/** Every feature the control queue serves (and the queue itself). */
export const ALL_CTRL_FEATURES: FeatureSet = featureSet(
  NET_F_CTRL_VQ,
  NET_F_CTRL_RX,
  NET_F_CTRL_RX_EXTRA,
  NET_F_CTRL_VLAN,
  NET_F_GUEST_ANNOUNCE,
  NET_F_MQ,
  NET_F_CTRL_MAC_ADDR,
  NET_F_CTRL_GUEST_OFFLOADS,
  NET_F_GUEST_CSUM,
  NET_F_GUEST_TSO4,
  NET_F_GUEST_TSO6,
);

// --- command builders ---

export const cmd = (cls: number, command: number, ...data: number[]): Uint8Array => Uint8Array.of(cls, command, ...data);

export const withData = (cls: number, command: number, data: Uint8Array): Uint8Array => {
  const out = new Uint8Array(2 + data.length);
  out[0] = cls;
  out[1] = command;
  out.set(data, 2);
  return out;
};

export const le16 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff];
export const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** struct virtio_net_ctrl_mac twice (5.1.6.5.2), with the counts given or the real ones. */
export function macTableData(uni: readonly Uint8Array[], multi: readonly Uint8Array[], counts?: [number, number]): Uint8Array {
  const out: number[] = [...le32(counts?.[0] ?? uni.length)];
  for (const m of uni) out.push(...m);
  out.push(...le32(counts?.[1] ?? multi.length));
  for (const m of multi) out.push(...m);
  return Uint8Array.from(out);
}

/** A unicast (locally administered) or multicast MAC numbered n. */
export const uniMac = (n: number): Uint8Array => Uint8Array.of(0x02, 0, 0, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
export const multiMac = (n: number): Uint8Array => Uint8Array.of(0x01, 0, 0x5e, (n >>> 16) & 0x7f, (n >>> 8) & 0xff, n & 0xff);
export const BROADCAST = new Uint8Array(NET_CTRL_MAC_LEN).fill(0xff);

/** An Ethernet frame to `dst`, optionally 802.1Q-tagged with `vid`, `len` bytes long. */
export function frame(dst: Uint8Array, opts: { vid?: number; pcp?: number; len?: number; tpid?: number } = {}): Uint8Array {
  const len = opts.len ?? 64;
  const f = new Uint8Array(len);
  f.set(dst.subarray(0, Math.min(6, len)), 0);
  const src = Uint8Array.of(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee);
  if (len > 6) f.set(src.subarray(0, Math.min(6, len - 6)), 6);
  const put = (i: number, v: number) => {
    if (i < len) f[i] = v;
  };
  if (opts.vid !== undefined) {
    const tpid = opts.tpid ?? 0x8100;
    put(12, tpid >>> 8);
    put(13, tpid & 0xff);
    put(14, ((opts.pcp ?? 0) << 5) | ((opts.vid >>> 8) & 0x0f));
    put(15, opts.vid & 0xff);
    put(16, 0x08);
    put(17, 0x00);
  } else {
    put(12, 0x08);
    put(13, 0x00);
  }
  return f;
}
