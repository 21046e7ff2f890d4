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
  /**
   * Segment s is bytes [segIdx[s], segIdx[s] + segLen[s]) of segRegion[s].
   * A descriptor is one segment, or one per region when its buffer crosses
   * into an adjacent region, so a chain of at most queue-size descriptors
   * may have more segments: the arrays grow then (and stay grown).
   */
  segIdx: Float64Array;
  segLen: Uint32Array;
  segRegion: MemoryRegion[];

  constructor(capacity: number) {
    this.segIdx = new Float64Array(capacity);
    this.segLen = new Uint32Array(capacity);
    this.segRegion = new Array<MemoryRegion>(capacity);
  }

  /** Segments the arrays hold now. */
  get capacity(): number {
    return this.segLen.length;
  }

  reset(head: number): void {
    this.head = head;
    this.descCount = 0;
    this.readable = 0;
    this.writable = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  /**
   * Make this the chain of one descriptor, `head`, whose buffer is bytes
   * [idx, idx + len) of `region` (len > 0): reset() and push() in one step,
   * for the pop fast paths.
   */
  setOne(head: number, region: MemoryRegion, idx: number, len: number, writable: boolean): void {
    this.head = head;
    this.descCount = 1;
    this.segIdx[0] = idx;
    this.segLen[0] = len;
    this.segRegion[0] = region;
    if (writable) {
      this.readable = 0;
      this.writable = 1;
      this.readableBytes = 0;
      this.writableBytes = len;
    } else {
      this.readable = 1;
      this.writable = 0;
      this.readableBytes = len;
      this.writableBytes = 0;
    }
  }

  /** Append a translated segment. */
  push(region: MemoryRegion, idx: number, len: number, writable: boolean): void {
    const n = this.readable + this.writable;
    if (n === this.segLen.length) this.grow();
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

  private grow(): void {
    const n = this.segLen.length;
    const idx = new Float64Array(2 * n + 1);
    const len = new Uint32Array(2 * n + 1);
    idx.set(this.segIdx);
    len.set(this.segLen);
    this.segIdx = idx;
    this.segLen = len;
    this.segRegion.length = 2 * n + 1;
  }
}
