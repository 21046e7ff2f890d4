import { InvalidArgumentError } from '../errors.js';
import { GuestMemory } from './guest-memory.js';

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * One SharedArrayBuffer from which a lab carves guest memories, port channels
 * and notification areas. Everything in one buffer means every copy between a
 * guest and a channel is a copyWithin on one view: no allocation per frame.
 * Guest memories stay isolated by their region tables, not by the buffer.
 */
export class SharedArena {
  readonly buffer: SharedArrayBuffer;
  readonly u8: Uint8Array;
  private next = 0;

  constructor(byteLength: number) {
    if (!Number.isSafeInteger(byteLength) || byteLength <= 0) throw new InvalidArgumentError(`arena size ${byteLength} must be a positive integer`);
    this.buffer = new SharedArrayBuffer(align(byteLength, 4096));
    this.u8 = new Uint8Array(this.buffer);
  }

  /** Reserve `size` bytes aligned to `alignment`; returns the byte offset. */
  alloc(size: number, alignment = 64): number {
    const off = align(this.next, alignment);
    if (off + size > this.buffer.byteLength) {
      throw new InvalidArgumentError(`arena of ${this.buffer.byteLength} bytes cannot fit ${size} more bytes (used ${this.next})`);
    }
    this.next = off + size;
    return off;
  }

  /** Bytes handed out so far. */
  get used(): number {
    return this.next;
  }

  /** A one-region guest memory of `size` bytes at guest address `gpa`. */
  guestMemory(size: number, gpa = 0): GuestMemory {
    const byteOffset = this.alloc(size, 4096);
    return new GuestMemory([{ gpa, size, buffer: this.buffer, byteOffset }]);
  }
}
