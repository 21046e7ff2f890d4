import { InvalidArgumentError } from '../errors.js';
import { copyBytes } from '../memory/guest-memory.js';

/** The side an RxPacket asks when its callback holds it: the RecvBuffers that delivered it. */
export interface RxPacketOwner {
  holdCurrent(packet: RxPacket): number;
}

const NO_BYTES = new Uint8Array(0);

/**
 * One received packet, handed to the onPacket callback of RecvBuffers: its
 * header and its frame as segments of guest memory (zero copy). The object is
 * reused for every packet: its fields and the memory they point at are valid
 * only during the callback, unless the callback calls hold() (the memory then
 * stays untouched until release(handle); copy the segment triples out if you
 * need them later).
 */
export class RxPacket {
  /** Byte view holding the header (guest memory); the header is hdr[hdrIdx, hdrIdx + hdrSize). */
  hdr: Uint8Array = NO_BYTES;
  hdrIdx = 0;
  hdrSize = 0;
  /** Buffers the packet spanned: num_buffers in mergeable mode, else 1. */
  numBuffers = 1;
  /** Bytes of the frame (after the header), the sum of the segment lengths. */
  length = 0;
  /** The frame is segment s = segU8[s][segIdx[s], segIdx[s] + segLen[s]) for s < segCount, in order. */
  segCount = 0;
  readonly segU8: Uint8Array[];
  readonly segIdx: Float64Array;
  readonly segLen: Uint32Array;
  private owner: RxPacketOwner | null = null;

  constructor(readonly maxSegments: number) {
    this.segU8 = new Array<Uint8Array>(maxSegments).fill(NO_BYTES);
    this.segIdx = new Float64Array(maxSegments);
    this.segLen = new Uint32Array(maxSegments);
  }

  /** Bind the packet to the RecvBuffers that delivers it (done by RecvBuffers' constructor). */
  attach(owner: RxPacketOwner): void {
    if (this.owner !== null && this.owner !== owner) throw new InvalidArgumentError('this RxPacket already belongs to another RecvBuffers');
    this.owner = owner;
  }

  /**
   * Keep this packet's buffers out of the ring after the callback returns;
   * returns the handle to give to RecvBuffers.release(). Only inside the
   * callback; a second call in the same callback returns the same handle.
   * @throws InvalidArgumentError outside the callback, or after its handle was released.
   */
  hold(): number {
    if (this.owner === null) throw new InvalidArgumentError('hold() on an RxPacket that no RecvBuffers delivered');
    return this.owner.holdCurrent(this);
  }

  /**
   * Copy the frame into `dst` from `dstIdx`; returns the bytes copied (length).
   * @throws InvalidArgumentError when it does not fit (nothing is copied).
   */
  copyTo(dst: Uint8Array, dstIdx = 0): number {
    if (!(Number.isInteger(dstIdx) && dstIdx >= 0 && dstIdx + this.length <= dst.length)) {
      throw new InvalidArgumentError(`a ${this.length}-byte frame does not fit at ${dstIdx} of a ${dst.length}-byte array`);
    }
    let at = dstIdx;
    for (let s = 0; s < this.segCount; s++) {
      const n = this.segLen[s];
      copyBytes(this.segU8[s], this.segIdx[s], dst, at, n);
      at += n;
    }
    return this.length;
  }

  /** Start describing a new packet (RecvBuffers' use). */
  begin(hdr: Uint8Array, hdrIdx: number, hdrSize: number, numBuffers: number): void {
    this.hdr = hdr;
    this.hdrIdx = hdrIdx;
    this.hdrSize = hdrSize;
    this.numBuffers = numBuffers;
    this.length = 0;
    this.segCount = 0;
  }

  /** Append a non-empty segment (RecvBuffers' use; it sized the arrays). */
  addSegment(u8: Uint8Array, idx: number, len: number): void {
    const s = this.segCount++;
    this.segU8[s] = u8;
    this.segIdx[s] = idx;
    this.segLen[s] = len;
    this.length += len;
  }
}
