/**
 * What the split and packed mini rings store alike: a 16-byte descriptor
 * (le64 addr, le32 len, then two le16 fields: split's flags and next
 * (2.7.5), packed's id and flags (2.8.13)) and a buffer as segments.
 */
import type { GuestMemory } from '../memory/index.js';

const TWO_32 = 0x1_0000_0000;

/** One buffer element as a driver describes it (2.7.13.1, 2.8.13). */
export interface Segment {
  addr: number;
  len: number;
  write: boolean;
}

/** Store a descriptor at `gpa`: addr, len, then the u16 at offset 12 and the one at 14. Any values. */
export function writeDescFields(memory: GuestMemory, gpa: number, addr: number, len: number, at12: number, at14: number): void {
  const hi = Math.floor(addr / TWO_32);
  memory.writeU32(gpa, addr - hi * TWO_32);
  memory.writeU32(gpa + 4, hi);
  memory.writeU32(gpa + 8, len);
  memory.writeU16(gpa + 12, at12);
  memory.writeU16(gpa + 14, at14);
}

/** The 64-bit address of the descriptor at `gpa`. */
export const descAddr = (memory: GuestMemory, gpa: number): number => memory.readU32(gpa) + memory.readU32(gpa + 4) * TWO_32;

/** The bytes of `segs`, concatenated. */
export function gatherSegments(memory: GuestMemory, segs: readonly Segment[]): Uint8Array {
  const out = new Uint8Array(segs.reduce((n, s) => n + s.len, 0));
  let off = 0;
  for (const s of segs) {
    memory.read(s.addr, out, off, s.len);
    off += s.len;
  }
  return out;
}

/** Spread `bytes` over `segs` in order. */
export function scatterSegments(memory: GuestMemory, segs: readonly Segment[], bytes: Uint8Array): void {
  let off = 0;
  for (const s of segs) {
    memory.write(s.addr, bytes, off, s.len);
    off += s.len;
  }
}
