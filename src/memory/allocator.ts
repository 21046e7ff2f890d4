import { InvalidArgumentError } from '../errors.js';
import type { GuestMemory } from './guest-memory.js';

/**
 * The driver's bump allocator over guest-physical space, for rings and buffer
 * pools laid out once at setup. It never frees single blocks: drivers recycle
 * their buffers instead; `reset()` starts over (device reset).
 */
export class GuestAllocator {
  private next: number;

  constructor(
    private readonly memory: GuestMemory,
    private readonly start = memory.regions[0].gpa,
    private readonly end = memory.regions[0].end,
  ) {
    this.next = start;
  }

  /** Reserve `size` bytes aligned to `alignment`; returns the guest address. */
  alloc(size: number, alignment = 16): number {
    if (!(size > 0) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
      throw new InvalidArgumentError(`alloc(${size}, ${alignment}): size must be > 0 and alignment a power of two`);
    }
    const gpa = Math.ceil(this.next / alignment) * alignment;
    if (gpa + size > this.end || !this.memory.contains(gpa, size)) {
      throw new InvalidArgumentError(`guest memory exhausted: ${size} bytes do not fit (${this.end - this.next} left)`);
    }
    this.next = gpa + size;
    return gpa;
  }

  /** Bytes not yet handed out. */
  get free(): number {
    return this.end - this.next;
  }

  reset(): void {
    this.next = this.start;
  }
}
