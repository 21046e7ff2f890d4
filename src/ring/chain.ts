import type { MemoryRegion } from '../memory/guest-memory.js';

/**
 * A validated descriptor chain as the device sees it: readable segments first,
 * then writable ones (2.7.4.2 guarantees the order; the walker enforced it).
 * Each segment is already translated: bytes [idx, idx + len) of its region's
 * views. One chain object is reused for every pop: no allocation per chain.
 */
export class DescriptorChain {
  /** Head descriptor index: the id to put in the used ring. */
  head = 0;
  /** Descriptors walked, indirect table entries included. */
  descCount = 0;
  readable = 0;
  writable = 0;
  readableBytes = 0;
  writableBytes = 0;
  readonly segIdx: Float64Array;
  readonly segLen: Uint32Array;
  readonly segRegion: MemoryRegion[];

  constructor(readonly capacity: number) {
    this.segIdx = new Float64Array(capacity);
    this.segLen = new Uint32Array(capacity);
    this.segRegion = new Array<MemoryRegion>(capacity);
  }

  reset(head: number): void {
    this.head = head;
    this.descCount = 0;
    this.readable = 0;
    this.writable = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  /** Append a translated segment. The walker checks the capacity before calling. */
  push(region: MemoryRegion, idx: number, len: number, writable: boolean): void {
    const n = this.readable + this.writable;
    this.segIdx[n] = idx;
    this.segLen[n] = len;
    this.segRegion[n] = region;
    if (writable) {
      this.writable++;
      this.writableBytes += len;
    } else {
      this.readable++;
      this.readableBytes += len;
    }
  }
}
