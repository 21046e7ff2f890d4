import type { GuestMemory } from '../memory/guest-memory.js';
import {
  DESC_SIZE,
  PACKED_EVENT_SIZE,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_USED,
} from '../spec/ring.js';
import type { QueueState } from './queue-state.js';

/**
 * vring base of a fresh packed queue: ring index 0 with wrap counter 1
 * (2.8.1: both wrap counters start at 1). QueueState.nextAvail / nextUsed of
 * a packed queue use the vhost encoding: bits 0-14 the ring index, bit 15 the
 * wrap counter.
 */
export const PACKED_RING_START = 0x8000;

/** Bytes of the packed descriptor ring for `size` entries (2.8.10.1: 16 * Queue Size). */
export const packedDescBytes = (size: number): number => DESC_SIZE * size;

/** Bytes of each event suppression structure (2.8.10.1). */
export const packedEventBytes = (): number => PACKED_EVENT_SIZE;

/**
 * A ring position as one number in [0, 2 * size): positions [0, size) are the
 * ring with wrap counter 1, [size, 2 * size) the ring with wrap counter 0.
 * Moving n descriptors on is (pos + n) mod 2 * size, and the wrap counter
 * flips exactly when the index passes size - 1 -> 0 (2.8.1).
 */
export function packedPosition(encoded: number, size: number): number {
  const idx = encoded & 0x7fff;
  return (encoded & 0x8000) !== 0 ? idx : idx + size;
}

/** The vhost encoding (index | wrap << 15) of a position from packedPosition(). */
export function packedEncode(pos: number, size: number): number {
  return pos < size ? pos | 0x8000 : pos - size;
}

/**
 * The event rule of 2.8.10 taken as a position range: having moved from
 * position `old` to `next` (both from packedPosition, at most `size` apart,
 * `next` != `old`), the other side asked to be told when the descriptor at
 * `offWrap` (offset bits 0-14, wrap counter bit 15) is made available / used.
 * An offset at or beyond the queue size names no descriptor: never passed.
 */
export function packedEventPassed(offWrap: number, old: number, next: number, size: number): boolean {
  const off = offWrap & 0x7fff;
  if (off >= size) return false;
  const two = 2 * size;
  const ev = (offWrap & 0x8000) !== 0 ? off : off + size;
  // Distances from `old`, all positions being in [0, 2 * size): compare-and-wrap, no division.
  const toEv = ev >= old ? ev - old : ev - old + two;
  const toNext = next >= old ? next - old : next - old + two;
  return toEv < toNext;
}

/**
 * Whether to notify after moving from `old` to `next`, given the other side's
 * event suppression word (le16 off_wrap | le16 flags << 16): DISABLE never;
 * DESC with EVENT_IDX negotiated when the move passes off_wrap; anything else
 * (ENABLE, the reserved value 3, DESC without EVENT_IDX) always: a spurious
 * notification is harmless, a missed one hangs the other side.
 */
export function packedNeedNotify(word: number, old: number, next: number, size: number, eventIdx: boolean): boolean {
  const flags = (word >>> 16) & 3;
  if (flags === RING_EVENT_FLAGS_DISABLE) return false;
  if (flags !== RING_EVENT_FLAGS_DESC || !eventIdx) return true;
  return packedEventPassed(word & 0xffff, old, next, size);
}

/** The AVAIL/USED bits that mark a descriptor available with this wrap counter (2.8.1). */
export const packedAvailFlags = (wrap: boolean): number => (wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED);
/** The AVAIL/USED bits that mark a descriptor used with this wrap counter (2.8.1). */
export const packedUsedFlags = (wrap: boolean): number => (wrap ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0);
const BOTH = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
/** Flags say available for this wrap counter: AVAIL == wrap and USED != wrap. */
export const packedIsAvail = (flags: number, wrap: boolean): boolean => (flags & BOTH) === packedAvailFlags(wrap);
/** Flags say used for this wrap counter: AVAIL == USED == wrap. */
export const packedIsUsed = (flags: number, wrap: boolean): boolean => (flags & BOTH) === packedUsedFlags(wrap);

/**
 * Typed-array indices of one packed ring (2.8), computed once from a
 * validated QueueState: the descriptor ring, the Driver Event Suppression
 * structure (driver area, `state.avail`) and the Device Event Suppression
 * structure (device area, `state.used`).
 */
export class PackedRingLayout {
  readonly size: number;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  /** u32 index of descriptor 0 (4 words: addr lo, addr hi, len, id | flags << 16). */
  readonly desc32: number;
  /** u16 index of descriptor 0 (8 half-words; id at +6, flags at +7). */
  readonly desc16: number;
  /** u32 index of the Driver Event Suppression word (off_wrap | flags << 16) in driverEventU32: written by the driver. */
  readonly driverEvent32: number;
  /** u32 index of the Device Event Suppression word in deviceEventU32: written by the device. */
  readonly deviceEvent32: number;
  /**
   * Views of the event structures' regions: the descriptor ring's u32 when
   * they share its buffer; each may sit in any region (Linux allocates the
   * three parts apart).
   */
  readonly driverEventU32: Uint32Array;
  readonly deviceEventU32: Uint32Array;

  constructor(memory: GuestMemory, state: QueueState) {
    const size = state.size;
    const d = memory.region(state.desc, packedDescBytes(size));
    const a = memory.region(state.avail, PACKED_EVENT_SIZE);
    const u = memory.region(state.used, PACKED_EVENT_SIZE);
    this.size = size;
    this.u8 = d.u8;
    this.u16 = d.u16;
    this.u32 = d.u32;
    this.desc32 = (state.desc + d.bias) >>> 2;
    this.desc16 = (state.desc + d.bias) >>> 1;
    this.driverEvent32 = (state.avail + a.bias) >>> 2;
    this.deviceEvent32 = (state.used + u.bias) >>> 2;
    this.driverEventU32 = a.u32;
    this.deviceEventU32 = u.u32;
  }

  /** u16 index of descriptor i's flags. */
  flags16(i: number): number {
    return this.desc16 + 8 * i + 7;
  }
}
