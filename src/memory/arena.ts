import { InvalidArgumentError } from '../errors.js';
import { GuestMemory } from './guest-memory.js';
import { type ArenaMemory, newArenaMemory } from './wasm-copy.js';

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Options of a SharedArena. */
export interface SharedArenaOptions {
  /**
   * Back the arena with a shared WebAssembly.Memory where wasm gives one
   * (default true); false: a plain SharedArrayBuffer, copied with V8's
   * builtins (to compare the two, or where address space for wasm memories
   * is scarce).
   */
  wasm?: boolean;
}

/**
 * One SharedArrayBuffer from which a lab carves guest memories, port channels
 * and notification areas. Everything in one buffer means every copy between a
 * guest and a channel stays inside one memory: no allocation per frame.
 * Guest memories stay isolated by their region tables, not by the buffer.
 *
 * The buffer is a shared WebAssembly.Memory's where wasm can give one (up
 * to 4 GiB): copies inside it then go through wasm's memory.copy in every
 * thread the specs reach (wasm-copy.ts), 3-4x faster than V8's copies of
 * shared memory for a 1500-byte frame. Otherwise a plain SharedArrayBuffer.
 */
export class SharedArena {
  readonly buffer: SharedArrayBuffer;
  readonly u8: Uint8Array;
  /** The WebAssembly.Memory behind `buffer` (undefined for a plain SharedArrayBuffer): specs carry it with the buffer. */
  readonly wasm: ArenaMemory | undefined;
  private next = 0;

  /**
   * @param byteLength Bytes the arena holds (rounded up to 4 KiB; to 64 KiB for a wasm memory).
   * @param options `wasm: false` for a plain SharedArrayBuffer instead of a shared WebAssembly.Memory's buffer.
   * @throws InvalidArgumentError when `byteLength` is not a positive integer.
   */
  constructor(byteLength: number, options: SharedArenaOptions = {}) {
    if (!Number.isSafeInteger(byteLength) || byteLength <= 0) throw new InvalidArgumentError(`arena size ${byteLength} must be a positive integer`);
    this.wasm = options.wasm === false ? undefined : newArenaMemory(align(byteLength, 4096));
    this.buffer = this.wasm?.memory.buffer ?? new SharedArrayBuffer(align(byteLength, 4096));
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
    return new GuestMemory([{ gpa, size, buffer: this.buffer, byteOffset, wasm: this.wasm }]);
  }
}
