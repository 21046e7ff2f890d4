import type { GuestMemory } from '../memory/guest-memory.js';
import { needEvent } from './event-idx.js';
import type { QueueState } from './queue-state.js';

/**
 * Typed-array indices of one split ring's fields (2.7), computed once from a
 * validated QueueState. Both sides use it; neither does address arithmetic
 * per item.
 */
export class SplitRingLayout {
  readonly size: number;
  readonly mask: number;
  /**
   * Views of each part's region: the same objects when the parts share a
   * buffer; a part may sit in any region (Linux allocates them apart).
   */
  readonly descU32: Uint32Array;
  readonly availU16: Uint16Array;
  readonly usedU16: Uint16Array;
  readonly usedU32: Uint32Array;
  /** u32 index of descriptor 0 (4 words per descriptor). */
  readonly desc32: number;
  /** availU16 indices in the avail ring. */
  readonly availFlags: number;
  readonly availIdx: number;
  readonly availRing: number;
  readonly usedEvent: number;
  /** usedU16 indices of used.flags / used.idx and the avail_event word. */
  readonly usedFlags: number;
  readonly usedIdx: number;
  readonly availEvent: number;
  /** usedU32 index of used.ring[0].id (len follows; 2 words per element). */
  readonly usedRing32: number;

  constructor(memory: GuestMemory, state: QueueState) {
    const size = state.size;
    // validateQueueState() guaranteed each area lies in one region.
    const d = memory.region(state.desc, 16 * size);
    const a = memory.region(state.avail, 6 + 2 * size);
    const u = memory.region(state.used, 6 + 8 * size);
    this.size = size;
    this.mask = size - 1;
    this.descU32 = d.u32;
    this.availU16 = a.u16;
    this.usedU16 = u.u16;
    this.usedU32 = u.u32;
    this.desc32 = (state.desc + d.bias) >>> 2;
    const avail16 = (state.avail + a.bias) >>> 1;
    this.availFlags = avail16;
    this.availIdx = avail16 + 1;
    this.availRing = avail16 + 2;
    this.usedEvent = avail16 + 2 + size;
    const used16 = (state.used + u.bias) >>> 1;
    this.usedFlags = used16;
    this.usedIdx = used16 + 1;
    this.availEvent = used16 + 2 + 4 * size;
    this.usedRing32 = ((state.used + u.bias) >>> 2) + 1;
  }

  /**
   * Publish a producer index (avail.idx or used.idx) in `index` with one
   * store, then decide (from the other part's view, `peer`) whether the consumer asked to be notified of the move from `old` to
   * `next`: by its event word with event idx (2.7.10), else by its
   * suppression flag. The store and the load are both Atomics (sequentially
   * consistent), which is the barrier the spec puts between them.
   */
  publishIndex(index: Uint16Array, indexWord: number, next: number, old: number, eventIdx: boolean, peer: Uint16Array, eventWord: number, flagsWord: number, suppressFlag: number): boolean {
    Atomics.store(index, indexWord, next);
    if (eventIdx) return needEvent(Atomics.load(peer, eventWord), next, old);
    return (Atomics.load(peer, flagsWord) & suppressFlag) === 0;
  }
}
