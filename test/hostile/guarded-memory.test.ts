/** Guard regions: what HostileDriver's "nothing written / read outside guest memory" checks rest on. */
import { describe, expect, it } from 'vitest';
import { GuestMemoryError } from '../../src/index.js';
import { GUARD_BYTES, GuardedMemory, POISON, carriesPoison } from '../../src/hostile/guarded-memory.js';

describe('GuardedMemory', () => {
  it('starts intact; a byte changed in any guard is counted, repoison() restores it', () => {
    const g = new GuardedMemory(1 << 16);
    expect(g.guardViolations()).toBe(0);
    const { main, second } = g.layout;
    // Guest writes to the first and last byte of each region touch no guard.
    for (const at of [main.gpa, main.gpa + main.size - 1, second.gpa, second.gpa + second.size - 1]) g.memory.writeU8(at, 0x42);
    expect(g.guardsIntact()).toBe(true);
    // The guard right after the main region, written the way a device that skipped its bounds check would.
    const r = g.memory.regions[0];
    r.u8[main.gpa + main.size + r.bias] ^= 0xff;
    r.u8[main.gpa + main.size + r.bias + GUARD_BYTES - 1] ^= 0xff;
    expect(g.guardViolations()).toBe(2);
    g.repoison();
    expect(g.guardsIntact()).toBe(true);
  });

  it('the two regions touch in guest-physical space but not in the arena: an access across the boundary reads each side from its region, never the guard', () => {
    const g = new GuardedMemory(1 << 16);
    const { main, second } = g.layout;
    expect(second.gpa).toBe(main.gpa + main.size);
    g.memory.write(second.gpa - 4, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    const back = new Uint8Array(8);
    g.memory.read(second.gpa - 4, back);
    expect([...back]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(g.guardsIntact()).toBe(true);
    // Translating only the start would have read the guard: 8 bytes of poison.
    const r = g.memory.regions[0];
    expect(carriesPoison(r.u8.subarray(main.gpa + main.size + r.bias, main.gpa + main.size + r.bias + 8))).toBe(true);
    // Off the end of the last region is still outside memory.
    expect(() => g.memory.read(second.gpa + second.size - 4, new Uint8Array(8))).toThrow(GuestMemoryError);
  });

  it('carriesPoison finds the pattern at any phase and offset, and nothing in bytes that merely share some of it', () => {
    for (let phase = 0; phase < POISON.length; phase++) {
      const b = new Uint8Array(40).fill(7);
      for (let k = 0; k < 8; k++) b[13 + k] = POISON[(phase + k) % POISON.length];
      expect(carriesPoison(b)).toBe(true);
    }
    const partial = new Uint8Array(32);
    partial.set(POISON.subarray(0, 7), 3);
    expect(carriesPoison(partial)).toBe(false);
    expect(carriesPoison(new Uint8Array(0))).toBe(false);
  });
});
