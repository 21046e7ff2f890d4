import { SharedArena } from '../memory/arena.js';
import { GuestMemory } from '../memory/guest-memory.js';

/**
 * Guest memory between two guard areas of the same buffer: tests check the
 * guards afterwards to prove nothing outside guest memory was written.
 */
export interface GuardedMemory {
  memory: GuestMemory;
  arena: SharedArena;
  /** True when both guard areas still hold their pattern. */
  guardsIntact(): boolean;
}

const GUARD = 4096;
const PATTERN = 0xa5;

export function guardedMemory(size: number, gpa = 0): GuardedMemory {
  const arena = new SharedArena(size + 2 * GUARD + 8192);
  const before = arena.alloc(GUARD, 4096);
  const offset = arena.alloc(size, 4096);
  const after = arena.alloc(GUARD, 4096);
  arena.u8.fill(PATTERN, before, before + GUARD);
  arena.u8.fill(PATTERN, after, after + GUARD);
  const memory = new GuestMemory([{ gpa, size, buffer: arena.buffer, byteOffset: offset, wasm: arena.wasm }]);
  const intact = (start: number): boolean => arena.u8.subarray(start, start + GUARD).every((b) => b === PATTERN);
  return { memory, arena, guardsIntact: () => intact(before) && intact(after) };
}
