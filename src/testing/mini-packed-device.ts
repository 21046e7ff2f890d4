/**
 * A minimal device side of a packed ring, written from virtio 1.2 section 2.8
 * without src/ring: it reads descriptors at its next position while AVAIL
 * matches its wrap counter and USED does not, walks NEXT lists and indirect
 * tables byte by byte, writes used descriptors (id, len, then flags) and
 * decides used buffer notifications from the Driver Event Suppression
 * structure read literally. It can write any raw used descriptor a test asks for.
 */
import type { GuestMemory } from '../memory/index.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../spec/ring.js';
import { type Cursor, NotifyDecision, type PackedAddrs, type Segment, advance, readPDesc } from './mini-packed-driver.js';

const AVAIL = 1 << 7;
const USED = 1 << 15;

export interface MiniPChain {
  id: number;
  segs: Segment[];
  /** Ring descriptors the chain occupies (1 for an indirect one). */
  descs: number;
  indirect: boolean;
  /** Ring index of its first descriptor. */
  first: number;
}

export class MiniPackedDevice {
  next: Cursor;
  nextUsed: Cursor;
  private readonly notify: NotifyDecision;

  constructor(
    readonly memory: GuestMemory,
    readonly ring: PackedAddrs,
    start: Cursor = { idx: 0, wrap: 1 },
    readonly eventIdx = false,
  ) {
    this.next = { ...start };
    this.nextUsed = { ...start };
    this.notify = new NotifyDecision(start);
  }

  private isAvail(flags: number, wrap: number): boolean {
    return ((flags & AVAIL) !== 0 ? 1 : 0) === wrap && ((flags & USED) !== 0 ? 1 : 0) !== wrap;
  }

  /** The next available buffer, or undefined. */
  pop(): MiniPChain | undefined {
    const { size } = this.ring;
    const first = this.next.idx;
    if (!this.isAvail(this.memory.readU16(this.ring.desc + 16 * first + 14), this.next.wrap)) return undefined;
    const chain: MiniPChain = { id: 0, segs: [], descs: 0, indirect: false, first };
    let c = this.next;
    for (;;) {
      const d = readPDesc(this.memory, this.ring.desc + 16 * c.idx);
      if (!this.isAvail(d.flags, c.wrap) || chain.descs === size) throw new Error(`mini-packed-device: broken list at ${c.idx}`);
      chain.descs++;
      c = advance(c, 1, size);
      if ((d.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        chain.indirect = true;
        for (let j = 0; j < d.len / 16; j++) {
          const e = readPDesc(this.memory, d.addr + 16 * j);
          chain.segs.push({ addr: e.addr, len: e.len, write: (e.flags & VIRTQ_DESC_F_WRITE) !== 0 });
        }
      } else {
        chain.segs.push({ addr: d.addr, len: d.len, write: (d.flags & VIRTQ_DESC_F_WRITE) !== 0 });
      }
      if ((d.flags & VIRTQ_DESC_F_NEXT) === 0 || (d.flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        chain.id = d.id; // Buffer ID is in the last descriptor (2.8.6)
        break;
      }
    }
    this.next = c;
    return chain;
  }

  /**
   * Write a used descriptor at nextUsed (2.8.1: AVAIL = USED = the device wrap
   * counter; WRITE when anything was written) and skip `descs` descriptors.
   */
  push(id: number, len: number, descs: number, opts: { flags?: number } = {}): void {
    const at = this.ring.desc + 16 * this.nextUsed.idx;
    this.memory.writeU32(at + 8, len);
    this.memory.writeU16(at + 12, id);
    const w = this.nextUsed.wrap;
    this.memory.writeU16(at + 14, opts.flags ?? ((w ? AVAIL | USED : 0) | (len > 0 ? VIRTQ_DESC_F_WRITE : 0)));
    this.nextUsed = advance(this.nextUsed, descs, this.ring.size);
    this.notify.add(descs);
  }

  /** Whether the driver wants a used buffer notification for what was used since the last call. */
  interrupt(): boolean {
    return this.notify.decide(this.memory, this.ring.driverEvent, this.ring.size, this.eventIdx, this.nextUsed);
  }

  setDeviceEvent(offWrap: number, flags: number): void {
    this.memory.writeU16(this.ring.deviceEvent, offWrap);
    this.memory.writeU16(this.ring.deviceEvent + 2, flags);
  }
}
