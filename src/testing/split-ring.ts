/**
 * Split-ring facts shared by the test-side mini driver and mini device,
 * written from virtio 1.2 section 2.7 alone: field offsets, raw descriptor
 * access, the spec's event rule, and a guarded memory with a ring in it.
 * Nothing here imports src/ring: these are the independent reference.
 */
import { GuestAllocator, type GuestMemory } from '../memory/index.js';
import { type GuardedMemory, guardedMemory } from './guest.js';
import { type Segment, descAddr, writeDescFields } from './ring-bytes.js';

export type { Segment } from './ring-bytes.js';

/** Where the three parts of one split ring live (the address fields of a QueueState). */
export interface RingAddrs {
  size: number;
  desc: number;
  avail: number;
  used: number;
}

/** The four fields of a descriptor as stored (2.7.5); any values, hostile ones included. */
export interface RawDesc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/** Guest addresses of the ring fields: struct virtq_desc, virtq_avail, virtq_used (2.7.5, 2.7.6, 2.7.8). */
export const at = {
  desc: (table: number, i: number): number => table + 16 * i,
  availFlags: (r: RingAddrs): number => r.avail,
  availIdx: (r: RingAddrs): number => r.avail + 2,
  availRing: (r: RingAddrs, slot: number): number => r.avail + 4 + 2 * slot,
  usedEvent: (r: RingAddrs): number => r.avail + 4 + 2 * r.size,
  usedFlags: (r: RingAddrs): number => r.used,
  usedIdx: (r: RingAddrs): number => r.used + 2,
  usedElem: (r: RingAddrs, slot: number): number => r.used + 4 + 8 * slot,
  availEvent: (r: RingAddrs): number => r.used + 4 + 8 * r.size,
};

/** Store a descriptor little-endian at `gpa` (le64 addr, le32 len, le16 flags, le16 next). */
export function writeDesc(memory: GuestMemory, gpa: number, d: RawDesc): void {
  writeDescFields(memory, gpa, d.addr, d.len, d.flags, d.next);
}

export function readDesc(memory: GuestMemory, gpa: number): RawDesc {
  return {
    addr: descAddr(memory, gpa),
    len: memory.readU32(gpa + 8),
    flags: memory.readU16(gpa + 12),
    next: memory.readU16(gpa + 14),
  };
}

/**
 * The notification rule of 2.7.7.2 / 2.7.10 taken literally: having written
 * ring entries at indices old, old+1, ..., next-1 (mod 2^16), the other side
 * must be notified iff one of those indices equals `event`.
 */
export function passedEvent(event: number, old: number, next: number): boolean {
  for (let i = old; i !== next; i = (i + 1) & 0xffff) if (i === event) return true;
  return false;
}

/** A device's view of a popped chain, as plain segments with guest addresses. */
export interface ChainLike {
  readable: number;
  writable: number;
  segIdx: ArrayLike<number>;
  segLen: ArrayLike<number>;
  segRegion: ArrayLike<{ bias: number }>;
}

export function segmentsOf(chain: ChainLike): Segment[] {
  const out: Segment[] = [];
  for (let s = 0; s < chain.readable + chain.writable; s++) {
    out.push({ addr: chain.segIdx[s] - chain.segRegion[s].bias, len: chain.segLen[s], write: s >= chain.readable });
  }
  return out;
}

export interface RingRig extends GuardedMemory {
  ring: RingAddrs;
  /** Hands out guest memory after the ring (buffers, indirect tables). */
  alloc: GuestAllocator;
  /** A QueueState for this ring: both indices at `start`, as the ring's memory says. */
  state: RingAddrs & { nextAvail: number; nextUsed: number; eventIdx: boolean; indirect: boolean };
}

export interface RigOptions {
  memSize?: number;
  gpa?: number;
  /** avail.idx and used.idx to start from (a restored queue). */
  start?: number;
  eventIdx?: boolean;
  indirect?: boolean;
}

/** Guarded guest memory with a split ring of `size` laid out at the spec's minimum alignments. */
export function ringRig(size: number, opts: RigOptions = {}): RingRig {
  const { memSize = 1 << 20, gpa = 0, start = 0, eventIdx = false, indirect = false } = opts;
  const g = guardedMemory(memSize, gpa);
  const alloc = new GuestAllocator(g.memory);
  const ring = { size, desc: alloc.alloc(16 * size, 16), avail: alloc.alloc(6 + 2 * size, 2), used: alloc.alloc(6 + 8 * size, 4) };
  g.memory.writeU16(at.availIdx(ring), start);
  g.memory.writeU16(at.usedIdx(ring), start);
  return { ...g, ring, alloc, state: { ...ring, nextAvail: start, nextUsed: start, eventIdx, indirect } };
}

/** Room for one indirect table of `maxEntries` per descriptor: SplitQueueDriver's `indirectTables` option. */
export function indirectTables(rig: RingRig, maxEntries: number): { base: number; maxEntries: number } {
  return { base: rig.alloc.alloc(rig.ring.size * maxEntries * 16, 16), maxEntries };
}

/** Deterministic filler bytes: a different stream per seed. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
