import type { GuestMemory } from '../memory/guest-memory.js';
import { packedAvailFlags, packedIsUsed } from '../ring/packed-layout.js';
import type { QueueState } from '../ring/queue-state.js';
import { VIRTQ_DESC_F_NEXT } from '../spec/ring.js';

/** One descriptor as a lying driver writes it: any values, no checks. */
export interface RawDesc {
  addr: number;
  len: number;
  /** VIRTQ_DESC_F_* bits (packed: AVAIL / USED are added by chain(), or given as they are to writeDesc()). */
  flags: number;
  /** Split: the next field. */
  next?: number;
  /** Packed: the buffer id. */
  id?: number;
}

/**
 * A driver's raw pen on one freshly set-up queue (split 2.7 or packed 2.8):
 * writes descriptors, avail entries and indices exactly as told, valid or
 * not. It starts where a fresh queue starts (avail.idx 0; packed: slot 0,
 * wrap counter 1) and only moves forward through chain().
 */
export class RawRing {
  readonly packed: boolean;
  readonly size: number;
  /** Split: the avail index published next. Packed: the next ring slot (first pass only). */
  private cursor = 0;
  private availIdx = 0;
  /** Packed: head slot of the last chain made by chain(), or -1. */
  private lastHead = -1;

  constructor(
    readonly memory: GuestMemory,
    readonly state: QueueState,
    private readonly kick: () => void,
  ) {
    this.packed = state.packed === true;
    this.size = state.size;
  }

  /** Write descriptor `i` of the table (split) or ring (packed) verbatim. Packed flags are stored last. */
  writeDesc(i: number, d: RawDesc): void {
    const at = this.state.desc + 16 * i;
    const m = this.memory;
    m.writeU64(at, d.addr);
    m.writeU32(at + 8, d.len >>> 0);
    if (this.packed) {
      m.writeU16(at + 12, d.id ?? 0);
      this.store16(at + 14, d.flags);
    } else {
      m.writeU16(at + 12, d.flags);
      m.writeU16(at + 14, d.next ?? 0);
    }
  }

  /**
   * Make a chain of `descs` available the honest way (the descriptors
   * themselves may lie): consecutive slots linked by NEXT; split: one avail
   * entry naming the first; packed: AVAIL/USED bits for wrap counter 1, the
   * id in the last descriptor, the head's flags written last. Returns the head slot.
   */
  chain(descs: readonly RawDesc[]): number {
    const head = this.cursor;
    const n = descs.length;
    // Packed: the head is written last so the device never sees a partial chain (2.8.6).
    for (let k = n - 1; k >= 0; k--) {
      const d = descs[k];
      const slot = head + k;
      const link = k + 1 < n ? VIRTQ_DESC_F_NEXT : 0;
      if (this.packed) this.writeDesc(slot, { ...d, flags: d.flags | link | packedAvailFlags(true), id: d.id ?? head });
      else this.writeDesc(slot, { ...d, flags: d.flags | link, next: d.next ?? slot + 1 });
    }
    this.cursor = head + n;
    this.lastHead = head;
    if (!this.packed) this.offer(head);
    return head;
  }

  /** Split: put `head` in the next avail ring entry (published by publish()). */
  offer(head: number): void {
    this.memory.writeU16(this.state.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Split: store avail.idx (default: every entry offered so far); then kick. Packed: kick. */
  publish(idx = this.availIdx): void {
    if (!this.packed) this.store16(this.state.avail + 2, idx);
    this.kick();
  }

  /**
   * Where an honest driver goes on once the device has used every chain
   * made available here: the QueueState nextAvail / nextUsed encoding
   * (split: avail.idx; packed: slot | wrap counter 1 << 15).
   */
  position(): number {
    return this.packed ? this.cursor | 0x8000 : this.availIdx;
  }

  /** True once the device has used every chain made available here (the ring is the driver's again). */
  settled(): boolean {
    if (!this.packed) return this.usedIdx() === this.availIdx;
    return this.lastHead < 0 || packedIsUsed(this.load16(this.state.desc + 16 * this.lastHead + 14), true);
  }

  /** Split: used.idx as the device last published it. */
  usedIdx(): number {
    return this.load16(this.state.used + 2);
  }

  /** Write a little-endian u16 in the driver or device area (event words, flags). */
  store16(gpa: number, v: number): void {
    const r = this.memory.region(gpa, 2);
    Atomics.store(r.u16, (gpa + r.bias) >>> 1, v);
  }

  load16(gpa: number): number {
    const r = this.memory.region(gpa, 2);
    return Atomics.load(r.u16, (gpa + r.bias) >>> 1);
  }
}
