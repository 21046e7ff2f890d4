import { SharedArena } from '../memory/arena.js';
import { GuestMemory } from '../memory/guest-memory.js';

/** Bytes of each guard area (before, between and after the guest regions). */
export const GUARD_BYTES = 4096;

/** The poison pattern every guard byte holds, repeated (8 bytes; a device that reads a guard copies it). */
export const POISON = Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0x0b, 0x5e, 0xf0, 0x0d);

/** Where a guarded memory's guest regions sit in guest-physical space. */
export interface GuardedLayout {
  /** The main region [0, size): rings and buffers go here. */
  main: { gpa: number; size: number };
  /**
   * A small second region right after `main` in guest-physical space but not
   * in the arena (a guard lies between): a buffer across the boundary is
   * contiguous for the guest and not for the host, so a device must split it
   * per region (one that translated only its start would read the guard).
   */
  second: { gpa: number; size: number };
}

/**
 * Guest memory inside one SharedArena with poison-filled guard areas around
 * and between its two regions: guard | main | guard | second | guard. After
 * anything a device did, `guardsIntact()` proves it wrote nothing outside
 * guest memory, and `carriesPoison(bytes)` on whatever it produced proves it
 * read nothing outside (a read of a guard copies the pattern).
 *
 * The arena has `extraBytes` more for whatever else the lab needs in the same
 * buffer (a peer's memory, channels).
 */
export class GuardedMemory {
  readonly arena: SharedArena;
  readonly memory: GuestMemory;
  readonly layout: GuardedLayout;
  private readonly guards: number[];

  constructor(size: number, extraBytes = 0, secondSize = 0x10000) {
    this.arena = new SharedArena(size + secondSize + 3 * GUARD_BYTES + 4 * 4096 + extraBytes);
    const a = this.arena;
    const g0 = a.alloc(GUARD_BYTES, 4096);
    const main = a.alloc(size, 4096);
    const g1 = a.alloc(GUARD_BYTES, 4096);
    const second = a.alloc(secondSize, 4096);
    const g2 = a.alloc(GUARD_BYTES, 4096);
    this.guards = [g0, g1, g2];
    for (const g of this.guards) for (let i = 0; i < GUARD_BYTES; i++) a.u8[g + i] = POISON[i % POISON.length];
    const secondGpa = size;
    this.layout = { main: { gpa: 0, size }, second: { gpa: secondGpa, size: secondSize } };
    this.memory = new GuestMemory([
      { gpa: 0, size, buffer: a.buffer, byteOffset: main },
      { gpa: secondGpa, size: secondSize, buffer: a.buffer, byteOffset: second },
    ]);
  }

  /** Guard bytes that no longer hold the poison pattern (0: nothing was written outside guest memory). */
  guardViolations(): number {
    const u8 = this.arena.u8;
    let bad = 0;
    for (const g of this.guards) for (let i = 0; i < GUARD_BYTES; i++) if (u8[g + i] !== POISON[i % POISON.length]) bad++;
    return bad;
  }

  guardsIntact(): boolean {
    return this.guardViolations() === 0;
  }

  /** Put the pattern back (after a violation was counted, so the next check starts clean). */
  repoison(): void {
    for (const g of this.guards) for (let i = 0; i < GUARD_BYTES; i++) this.arena.u8[g + i] = POISON[i % POISON.length];
  }
}

/** True when `bytes` holds 8 consecutive bytes of the poison pattern (at any phase): something read a guard. */
export function carriesPoison(bytes: Uint8Array): boolean {
  const n = POISON.length;
  for (let i = 0; i + n <= bytes.length; i++) {
    const phase = POISON.indexOf(bytes[i]);
    if (phase < 0) continue;
    let k = 1;
    while (k < n && bytes[i + k] === POISON[(phase + k) % n]) k++;
    if (k === n) return true;
  }
  return false;
}
