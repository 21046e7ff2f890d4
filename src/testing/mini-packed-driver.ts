/**
 * A minimal driver side of a packed ring, written from virtio 1.2 section 2.8
 * without src/ring: descriptors, flags and event suppression words are stored
 * byte by byte through GuestMemory, following the spec's example code
 * (2.8.21 "Implementation Example", 2.8.22 "Receiving Used Buffers"). Besides
 * well-formed chains it writes any raw value a test asks for.
 *
 * Also the packed-ring facts shared with the mini device: raw descriptors,
 * positions, a guarded memory with a ring in it, the literal event rule.
 */
import { GuestAllocator, type GuestMemory } from '../memory/index.js';
import type { QueueState } from '../ring/queue-state.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../spec/ring.js';
import { type GuardedMemory, guardedMemory } from './guest.js';
import { type Segment, descAddr, gatherSegments, scatterSegments, writeDescFields } from './ring-bytes.js';

export type { Segment } from './ring-bytes.js';

const AVAIL = 1 << 7;
const USED = 1 << 15;

/** Where one packed ring lives: descriptor ring, driver area (Driver Event Suppression), device area (Device Event Suppression). */
export interface PackedAddrs {
  size: number;
  desc: number;
  driverEvent: number;
  deviceEvent: number;
}

/** struct pvirtq_desc (2.8.15), any values. */
export interface PDesc {
  addr: number;
  len: number;
  id: number;
  flags: number;
}

export function writePDesc(memory: GuestMemory, gpa: number, d: PDesc): void {
  writeDescFields(memory, gpa, d.addr, d.len, d.id, d.flags);
}

export function readPDesc(memory: GuestMemory, gpa: number): PDesc {
  return {
    addr: descAddr(memory, gpa),
    len: memory.readU32(gpa + 8),
    id: memory.readU16(gpa + 12),
    flags: memory.readU16(gpa + 14),
  };
}

/** A point in the ring: index and wrap counter (2.8.1). */
export interface Cursor {
  idx: number;
  wrap: number;
}

export const advance = (c: Cursor, n: number, size: number): Cursor => {
  let { idx, wrap } = c;
  for (let k = 0; k < n; k++) {
    idx++;
    if (idx === size) {
      idx = 0;
      wrap ^= 1;
    }
  }
  return { idx, wrap };
};

/**
 * 2.8.10 literally: the descriptors just written (made available, or used and
 * skipped over) are the `n` from `from` on; the event triggers iff one of them
 * is the descriptor at offset `off` with wrap counter `wrap`.
 */
export function eventHit(offWrap: number, from: Cursor, n: number, size: number): boolean {
  let c = from;
  for (let k = 0; k < n; k++) {
    if (c.idx === (offWrap & 0x7fff) && c.wrap === offWrap >>> 15) return true;
    c = advance(c, 1, size);
  }
  return false;
}

/** Whether to notify, by the other side's suppression structure (flags 0 enable, 1 disable, 2 desc). */
export function shouldNotify(flags: number, offWrap: number, from: Cursor, n: number, size: number, eventIdx: boolean): boolean {
  if (n === 0) return false;
  if (flags === 1) return false;
  if (flags === 2 && eventIdx) return eventHit(offWrap, from, n, size);
  return true;
}

/**
 * One side's notification decisions (2.8.10): the descriptors it made
 * available (driver) or used (device) since its last decision, judged by the
 * other side's event suppression structure at `area`.
 */
export class NotifyDecision {
  private from: Cursor;
  private since = 0;

  constructor(start: Cursor) {
    this.from = { ...start };
  }

  /** `n` more descriptors made available / used. */
  add(n: number): void {
    this.since += n;
  }

  /** Whether to notify for what was added since the last decision; the next one counts from `now`. */
  decide(memory: GuestMemory, area: number, size: number, eventIdx: boolean, now: Cursor): boolean {
    const r = shouldNotify(memory.readU16(area + 2) & 3, memory.readU16(area), this.from, this.since, size, eventIdx);
    this.from = { ...now };
    this.since = 0;
    return r;
  }
}

export interface PackedRig extends GuardedMemory {
  ring: PackedAddrs;
  alloc: GuestAllocator;
  /** The queue's state for a device under test: always packed, IN_ORDER known. */
  state: QueueState & { packed: true; inOrder: boolean };
}

export interface PackedRigOptions {
  memSize?: number;
  gpa?: number;
  /** Start index and wrap counter of both sides (a restored queue): the ring is made to look like the previous laps were all used. */
  start?: Cursor;
  eventIdx?: boolean;
  indirect?: boolean;
  inOrder?: boolean;
}

/** Guarded guest memory with a packed ring of `size` at the spec's minimum alignments (2.8.10.1). */
export function packedRig(size: number, opts: PackedRigOptions = {}): PackedRig {
  const { memSize = 1 << 20, gpa = 0, start = { idx: 0, wrap: 1 }, eventIdx = false, indirect = false, inOrder = false } = opts;
  const g = guardedMemory(memSize, gpa);
  const alloc = new GuestAllocator(g.memory);
  const ring = { size, desc: alloc.alloc(16 * size, 16), driverEvent: alloc.alloc(4, 4), deviceEvent: alloc.alloc(4, 4) };
  // Before `start` in this lap: used with this wrap; from `start` on: used in the previous lap.
  for (let i = 0; i < size; i++) {
    const w = i < start.idx ? start.wrap : start.wrap ^ 1;
    g.memory.writeU16(ring.desc + 16 * i + 14, w ? AVAIL | USED : 0);
  }
  const v = start.idx | (start.wrap << 15);
  return {
    ...g,
    ring,
    alloc,
    state: { size, desc: ring.desc, avail: ring.driverEvent, used: ring.deviceEvent, nextAvail: v, nextUsed: v, eventIdx, indirect, packed: true, inOrder },
  };
}

export interface UsedDesc {
  id: number;
  len: number;
  /** WRITE flag of the used descriptor. */
  write: boolean;
}

/** How a chain is laid out: all direct (default), or one indirect descriptor pointing at `table`. */
export interface PLayout {
  table?: number;
}

export class MiniPackedDriver {
  next: Cursor;
  nextUsed: Cursor;
  /** Descriptors free in the ring. */
  numFree: number;
  private readonly freeIds: number[] = [];
  /** Per buffer id in flight: ring descriptors and writable bytes. */
  readonly sgs = new Map<number, { descs: number; cap: number }>();
  /** In-order: ids in the order made available. */
  private readonly order: number[] = [];
  /** Position of the last notification decision: descriptors made available since. */
  private readonly notify: NotifyDecision;

  constructor(
    readonly memory: GuestMemory,
    readonly ring: PackedAddrs,
    start: Cursor = { idx: 0, wrap: 1 },
    readonly inOrder = false,
  ) {
    this.next = { ...start };
    this.nextUsed = { ...start };
    this.notify = new NotifyDecision(start);
    this.numFree = ring.size;
    for (let i = 0; i < ring.size; i++) this.freeIds.push(i);
  }

  // --- raw access ---

  descAt(i: number): number {
    return this.ring.desc + 16 * i;
  }

  setDesc(i: number, d: PDesc): void {
    writePDesc(this.memory, this.descAt(i), d);
  }

  getDesc(i: number): PDesc {
    return readPDesc(this.memory, this.descAt(i));
  }

  writeTable(gpa: number, entries: readonly PDesc[]): void {
    entries.forEach((d, j) => writePDesc(this.memory, gpa + 16 * j, d));
  }

  /** The AVAIL/USED bits of a descriptor made available with wrap counter w (2.8.1). */
  static availFlags(w: number): number {
    return w ? AVAIL : USED;
  }

  /**
   * Write raw descriptors at consecutive positions from `next` (flags given
   * without AVAIL/USED: those are added for each position's wrap counter),
   * the first one's flags last; moves `next` on. Returns the first index.
   */
  offerRaw(descs: readonly PDesc[], opts: { availBits?: (k: number, w: number) => number } = {}): number {
    const first = this.next.idx;
    const bits = opts.availBits ?? ((_k: number, w: number) => MiniPackedDriver.availFlags(w));
    let c = this.next;
    let headFlags = 0;
    descs.forEach((d, k) => {
      const flags = d.flags | bits(k, c.wrap);
      writePDesc(this.memory, this.descAt(c.idx), { ...d, flags: k === 0 ? 0 : flags });
      if (k === 0) headFlags = flags;
      c = advance(c, 1, this.ring.size);
    });
    // Write the head's flags last (2.8.6): the device never sees a partial list.
    this.memory.writeU16(this.descAt(first) + 14, headFlags);
    this.next = c;
    this.notify.add(descs.length);
    return first;
  }

  // --- well-formed use ---

  /** Make a buffer available (2.8.21); returns its id, or undefined when the ring has no room. */
  addChain(segs: readonly Segment[], layout: PLayout = {}): number | undefined {
    const n = layout.table === undefined ? segs.length : 1;
    if (n === 0 || n > this.numFree || this.freeIds.length === 0) return undefined;
    const id = this.freeIds.shift()!;
    const cap = segs.filter((s) => s.write).reduce((a, s) => a + s.len, 0);
    if (layout.table !== undefined) {
      this.writeTable(
        layout.table,
        segs.map((s) => ({ addr: s.addr, len: s.len, id: 0, flags: s.write ? VIRTQ_DESC_F_WRITE : 0 })),
      );
      this.offerRaw([{ addr: layout.table, len: 16 * segs.length, id, flags: VIRTQ_DESC_F_INDIRECT }]);
    } else {
      this.offerRaw(
        segs.map((s, k) => ({
          addr: s.addr,
          len: s.len,
          // Buffer ID is in the last descriptor (2.8.6); put it in all, as Linux does, except on purpose.
          id,
          flags: (s.write ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < segs.length ? VIRTQ_DESC_F_NEXT : 0),
        })),
      );
    }
    this.numFree -= n;
    this.sgs.set(id, { descs: n, cap });
    this.order.push(id);
    return id;
  }

  /**
   * Whether to notify the device for what was made available since the last
   * call (2.8.10, Device Event Suppression read literally).
   */
  kick(eventIdx: boolean): boolean {
    return this.notify.decide(this.memory, this.ring.deviceEvent, this.ring.size, eventIdx, this.next);
  }

  setDriverEvent(offWrap: number, flags: number): void {
    this.memory.writeU16(this.ring.driverEvent, offWrap);
    this.memory.writeU16(this.ring.driverEvent + 2, flags);
  }

  /**
   * Reap used descriptors (2.8.22): at nextUsed while AVAIL == USED == the
   * used wrap counter; skip the buffer's descriptor count. In order, one used
   * descriptor completes every buffer up to its id; the skipped ones are
   * reported with their full writable length (2.8.9).
   */
  reap(): UsedDesc[] {
    const out: UsedDesc[] = [];
    const { size } = this.ring;
    for (;;) {
      const d = this.getDesc(this.nextUsed.idx);
      const a = (d.flags & AVAIL) !== 0 ? 1 : 0;
      const u = (d.flags & USED) !== 0 ? 1 : 0;
      if (a !== u || u !== this.nextUsed.wrap) return out;
      const write = (d.flags & VIRTQ_DESC_F_WRITE) !== 0;
      const done: number[] = [];
      if (this.inOrder) {
        const at = this.order.indexOf(d.id);
        if (at < 0) throw new Error(`mini-packed-driver: used id ${d.id} not in flight`);
        done.push(...this.order.splice(0, at + 1));
      } else {
        if (!this.sgs.has(d.id)) throw new Error(`mini-packed-driver: used id ${d.id} not in flight`);
        done.push(d.id);
        this.order.splice(this.order.indexOf(d.id), 1);
      }
      for (const id of done) {
        const s = this.sgs.get(id)!;
        this.sgs.delete(id);
        this.freeIds.push(id);
        this.numFree += s.descs;
        this.nextUsed = advance(this.nextUsed, s.descs, size);
        out.push(id === d.id ? { id, len: write ? d.len : 0, write } : { id, len: s.cap, write: s.cap > 0 });
      }
    }
  }

  /** The bytes of `segs`, concatenated. */
  gather(segs: readonly Segment[]): Uint8Array {
    return gatherSegments(this.memory, segs);
  }

  /** Spread `bytes` over `segs` in order. */
  scatter(segs: readonly Segment[], bytes: Uint8Array): void {
    scatterSegments(this.memory, segs, bytes);
  }
}
