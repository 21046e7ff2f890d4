/**
 * A minimal driver side of a split ring, written from virtio 1.2 section
 * 2.7.13 without src/ring: every descriptor, avail entry and index is stored
 * byte by byte through GuestMemory. Besides well-formed chains it writes any
 * raw value a test asks for, so hostile tests can break every rule.
 */
import type { GuestMemory } from '../memory/index.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../spec/ring.js';
import { gatherSegments, scatterSegments } from './ring-bytes.js';
import { type RawDesc, type RingAddrs, type Segment, at, readDesc, writeDesc } from './split-ring.js';

export interface UsedElem {
  id: number;
  len: number;
}

/** How addChain lays a chain out. Default: all segments as chained ring descriptors. */
export interface ChainLayout {
  /** Put the segments in an indirect table at this guest address (2.7.5.3). */
  table?: number;
  /** With `table`: this many leading segments stay direct ring descriptors (2.7.5.3.2). */
  direct?: number;
}

/** The descriptor for one segment, chained to `next` when given. */
export const descFor = (s: Segment, next?: number): RawDesc => ({
  addr: s.addr,
  len: s.len,
  flags: (s.write ? VIRTQ_DESC_F_WRITE : 0) | (next === undefined ? 0 : VIRTQ_DESC_F_NEXT),
  next: next ?? 0,
});

export class MiniDriver {
  /** The avail.idx the next publish() stores (free-running u16). */
  availIdx: number;
  /** Next used ring slot to reap. */
  lastUsed: number;
  /** Free descriptor indices, taken from the front and returned at the back. */
  private readonly free: number[] = [];
  /** Ring descriptors each chain in flight holds, by head. */
  private readonly owned = new Map<number, number[]>();

  constructor(
    readonly memory: GuestMemory,
    readonly ring: RingAddrs,
  ) {
    this.availIdx = memory.readU16(at.availIdx(ring));
    this.lastUsed = memory.readU16(at.usedIdx(ring));
    for (let i = 0; i < ring.size; i++) this.free.push(i);
  }

  get numFree(): number {
    return this.free.length;
  }

  // --- raw access: any value, legal or not ---

  setDesc(i: number, d: RawDesc): void {
    writeDesc(this.memory, at.desc(this.ring.desc, i), d);
  }

  getDesc(i: number): RawDesc {
    return readDesc(this.memory, at.desc(this.ring.desc, i));
  }

  /** Write an indirect descriptor table (or any descriptors) at `gpa`. */
  writeTable(gpa: number, entries: readonly RawDesc[]): void {
    entries.forEach((d, j) => writeDesc(this.memory, gpa + 16 * j, d));
  }

  /** Put `head` in the next avail ring slot (2.7.13.2); visible after publish(). */
  offer(head: number): void {
    this.memory.writeU16(at.availRing(this.ring, this.availIdx % this.ring.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Store avail.idx (2.7.13.3): by default the chains offered so far. */
  publish(idx = this.availIdx): void {
    this.memory.writeU16(at.availIdx(this.ring), idx);
  }

  setAvailFlags(v: number): void {
    this.memory.writeU16(at.availFlags(this.ring), v);
  }

  setUsedEvent(v: number): void {
    this.memory.writeU16(at.usedEvent(this.ring), v);
  }

  // --- well-formed use ---

  /**
   * Place a chain (2.7.13.1) and offer its head; returns the head, or
   * undefined when too few descriptors are free.
   */
  addChain(segs: readonly Segment[], layout: ChainLayout = {}): number | undefined {
    const { table } = layout;
    const nDirect = table === undefined ? segs.length : (layout.direct ?? 0);
    const nRing = nDirect + (table === undefined ? 0 : 1);
    if (nRing === 0 || nRing > this.free.length) return undefined;
    const descs = this.free.splice(0, nRing);
    for (let k = 0; k < nDirect; k++) this.setDesc(descs[k], descFor(segs[k], k + 1 < nRing ? descs[k + 1] : undefined));
    if (table !== undefined) {
      const rest = segs.slice(nDirect);
      this.writeTable(
        table,
        rest.map((s, j) => descFor(s, j + 1 < rest.length ? j + 1 : undefined)),
      );
      this.setDesc(descs[nDirect], { addr: table, len: 16 * rest.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    }
    this.owned.set(descs[0], descs);
    this.offer(descs[0]);
    return descs[0];
  }

  /** Reap every used entry the device published (2.7.14), freeing their descriptors. */
  reap(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.memory.readU16(at.usedIdx(this.ring));
    while (this.lastUsed !== idx) {
      const e = at.usedElem(this.ring, this.lastUsed % this.ring.size);
      const id = this.memory.readU32(e);
      const descs = this.owned.get(id);
      if (descs === undefined) throw new Error(`mini-driver: used id ${id} is not the head of a chain in flight`);
      this.owned.delete(id);
      this.free.push(...descs);
      out.push({ id, len: this.memory.readU32(e + 4) });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
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
