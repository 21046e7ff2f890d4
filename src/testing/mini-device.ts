/**
 * A minimal device side of a split ring, written from virtio 1.2 sections
 * 2.7.5-2.7.8 without src/ring: it reads avail.idx and walks chains (direct
 * and indirect) byte by byte, writes used elements and used.idx, and decides
 * interrupts by used_event (2.7.7.2). It trusts the driver under test just
 * enough not to loop forever.
 */
import type { GuestMemory } from '../memory/index.js';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../spec/ring.js';
import { type RawDesc, type RingAddrs, type Segment, at, passedEvent, readDesc } from './split-ring.js';

export interface MiniChain {
  head: number;
  segs: Segment[];
  /** Ring descriptor indices the chain occupies (an indirect table counts as its one ring descriptor). */
  descs: number[];
  /** Whether the chain ends in an indirect table. */
  indirect: boolean;
}

const segment = (d: RawDesc): Segment => ({ addr: d.addr, len: d.len, write: (d.flags & VIRTQ_DESC_F_WRITE) !== 0 });

export class MiniDevice {
  /** Next avail slot to read, next used slot to write (free-running u16). */
  lastAvail: number;
  nextUsed: number;
  private published: number;

  constructor(
    readonly memory: GuestMemory,
    readonly ring: RingAddrs,
    readonly eventIdx = false,
  ) {
    // The device owns used.idx; everything before it has been consumed.
    this.lastAvail = this.nextUsed = this.published = memory.readU16(at.usedIdx(ring));
  }

  /** The next available chain, or undefined when the driver has offered none. */
  pop(): MiniChain | undefined {
    const idx = this.memory.readU16(at.availIdx(this.ring));
    if (idx === this.lastAvail) return undefined;
    const head = this.memory.readU16(at.availRing(this.ring, this.lastAvail % this.ring.size));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return this.walk(head);
  }

  private walk(head: number): MiniChain {
    const { size } = this.ring;
    const chain: MiniChain = { head, segs: [], descs: [], indirect: false };
    for (let i = head; ; ) {
      if (i >= size || chain.descs.length === size) throw new Error(`mini-device: broken chain from head ${head}`);
      chain.descs.push(i);
      const d = readDesc(this.memory, at.desc(this.ring.desc, i));
      if ((d.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        chain.indirect = true;
        this.walkTable(d, chain.segs);
        return chain;
      }
      chain.segs.push(segment(d));
      if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) return chain;
      i = d.next;
    }
  }

  private walkTable(table: RawDesc, segs: Segment[]): void {
    const count = table.len / 16;
    for (let j = 0, n = 0; ; n++) {
      if (j >= count || n === count) throw new Error(`mini-device: broken indirect table at 0x${table.addr.toString(16)}`);
      const d = readDesc(this.memory, table.addr + 16 * j);
      segs.push(segment(d));
      if ((d.flags & VIRTQ_DESC_F_NEXT) === 0) return;
      j = d.next;
    }
  }

  /** Write a used element (2.7.8); visible after publish(). */
  push(id: number, len: number): void {
    const e = at.usedElem(this.ring, this.nextUsed % this.ring.size);
    this.memory.writeU32(e, id);
    this.memory.writeU32(e + 4, len);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
  }

  /** Store used.idx; returns whether the driver must be interrupted (2.7.7.2). */
  publish(): boolean {
    const old = this.published;
    const next = this.nextUsed;
    if (old === next) return false;
    this.memory.writeU16(at.usedIdx(this.ring), next);
    this.published = next;
    if (this.eventIdx) return passedEvent(this.memory.readU16(at.usedEvent(this.ring)), old, next);
    return (this.memory.readU16(at.availFlags(this.ring)) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** Ask for a kick once the driver writes avail ring entry `v` (2.7.10). */
  setAvailEvent(v: number): void {
    this.memory.writeU16(at.availEvent(this.ring), v);
  }

  setUsedFlags(v: number): void {
    this.memory.writeU16(at.usedFlags(this.ring), v);
  }
}
