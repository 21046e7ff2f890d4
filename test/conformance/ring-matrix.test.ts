/**
 * The ring conformance matrix: {split, packed} x {event idx on/off} x
 * {indirect on/off} x {in-order on/off} x ring sizes (packed: odd sizes
 * too, 2.8.10.1). Every cell runs the
 * same property through the one ring interface (createQueueDriver /
 * createQueueDevice over one guarded memory): random chain shapes, random
 * completion order (pop order with in-order), unpop, index wrap; every token
 * comes back once with the length and bytes the device wrote, no wake-up is
 * lost on either side, and nothing outside the rings and buffers is touched.
 * The format-specific cross-checks against independent mini drivers and
 * devices live in split-ring.* and packed-ring.*. The matrix is printed.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { GuestAllocator } from '../../src/memory/index.js';
import { ChainWriter, type QueueState, createQueueDevice, createQueueDriver } from '../../src/ring/index.js';
import { guardedMemory } from '../../src/testing/guest.js';
import { pattern } from '../../src/testing/split-ring.js';

type Format = 'split' | 'packed';
interface Cell {
  format: Format;
  eventIdx: boolean;
  indirect: boolean;
  inOrder: boolean;
  size: number;
}

const SIZES = [1, 16, 256];
/** A packed ring may have any size (2.8.10.1): odd ones too. */
const PACKED_SIZES = [...SIZES, 3, 100];
const CELLS: Cell[] = [];
for (const format of ['split', 'packed'] as const)
  for (const eventIdx of [false, true])
    for (const indirect of [false, true])
      for (const inOrder of [false, true]) for (const size of format === 'packed' ? PACKED_SIZES : SIZES) CELLS.push({ format, eventIdx, indirect, inOrder, size });

const MAX_SEGS = 4;
const results = new Map<string, string>();
const cellName = (c: Cell): string => `${c.format} evidx=${c.eventIdx ? 1 : 0} indirect=${c.indirect ? 1 : 0} in-order=${c.inOrder ? 1 : 0} size=${c.size}`;

function rig(c: Cell) {
  const g = guardedMemory(1 << 20, 0);
  const alloc = new GuestAllocator(g.memory);
  const packed = c.format === 'packed';
  const desc = alloc.alloc(16 * c.size, 16);
  const avail = packed ? alloc.alloc(4, 4) : alloc.alloc(6 + 2 * c.size, 2);
  const used = packed ? alloc.alloc(4, 4) : alloc.alloc(6 + 8 * c.size, 4);
  // Split rings start near the u16 wrap; packed ones at index 0 with wrap counter 1 (2.8.1).
  const start = packed ? 0x8000 : 0xfff0;
  if (!packed) {
    g.memory.writeU16(avail + 2, start);
    g.memory.writeU16(used + 2, start);
  }
  const state: QueueState = { size: c.size, desc, avail, used, nextAvail: start, nextUsed: start, eventIdx: c.eventIdx, indirect: c.indirect, packed, inOrder: c.inOrder };
  const tables = c.indirect ? { indirectTables: { base: alloc.alloc(c.size * MAX_SEGS * 16, 16), maxEntries: MAX_SEGS } } : {};
  const data = alloc.alloc(c.size * MAX_SEGS * 64, 64);
  return { ...g, driver: createQueueDriver(g.memory, state, tables), device: createQueueDevice(g.memory, state), data };
}

const shapeArb = fc.record({ nOut: fc.integer({ min: 0, max: 2 }), nIn: fc.integer({ min: 0, max: 2 }), lens: fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 4, maxLength: 4 }) }).filter((s) => s.nOut + s.nIn > 0);
const stepArb = fc.record({ add: fc.array(shapeArb, { maxLength: 6 }), complete: fc.nat(6), order: fc.array(fc.nat(), { minLength: 6, maxLength: 6 }), unpop: fc.boolean(), sleepDevice: fc.boolean(), sleepDriver: fc.boolean() });

describe('ring conformance matrix (split / packed x event idx x indirect x in-order x size)', () => {
  afterAll(() => {
    const rows = CELLS.map((c) => `  ${cellName(c).padEnd(52)} ${results.get(cellName(c)) ?? 'not run'}`);
    console.log(`ring conformance matrix (${CELLS.length} cells):\n${rows.join('\n')}`);
  });

  it.each(CELLS.map((c) => [cellName(c), c] as const))('%s: every chain comes back once with its length and bytes, no wake-up is lost, nothing outside is touched', (name, c) => {
    let chains = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 12 }), (steps) => {
        const r = rig(c);
        const { driver, device } = r;
        const chain = device.newChain();
        const writer = new ChainWriter();
        /** token -> the writable segments the driver gave, and the data slot it used. */
        const given = new Map<number, { segs: Array<{ addr: number; len: number }>; slot: number }>();
        /** Guest address of a chain's first writable byte -> what the device wrote there. */
        const wrote = new Map<number, Uint8Array>();
        const popped: Array<{ head: number; len: number }> = [];
        const slotFree: number[] = Array.from({ length: c.size }, (_, i) => c.size - 1 - i);
        let nextToken = 1;
        let seq = 1;

        /** The device fills the popped chain's writable bytes (some of them) and remembers what. */
        const fill = (): number => {
          if (chain.writable === 0) return 0;
          const w = chain.readable;
          const first = chain.segIdx[w] - chain.segRegion[w].bias;
          const len = 1 + ((seq++ * 7919) % chain.writableBytes);
          const bytes = pattern(len, seq);
          writer.reset(chain).copyFrom(bytes, 0, len);
          wrote.set(first, bytes);
          return len;
        };

        for (const step of steps) {
          let added = 0;
          for (const s of step.add) {
            const n = s.nOut + s.nIn;
            if (n > c.size) continue; // no chain may be longer than the queue (2.7.5.3.1): addChain throws
            if (slotFree.length === 0) break;
            const slot = slotFree[slotFree.length - 1];
            const addrs = s.lens.slice(0, n).map((_, k) => r.data + (slot * MAX_SEGS + k) * 64);
            const lens = s.lens.slice(0, n);
            const token = nextToken++;
            const ok = n === 1 ? driver.addBuffer(addrs[0], lens[0], s.nIn === 1, token) : driver.addChain(addrs, lens, s.nOut, s.nIn, token);
            if (!ok) break;
            slotFree.pop();
            given.set(token, { segs: addrs.slice(s.nOut).map((addr, k) => ({ addr, len: lens[s.nOut + k] })), slot });
            added++;
          }
          if (step.sleepDevice && device.available() === 0 && !device.armForMoreThan(0)) {
            // The device is about to sleep: the driver's next publish of anything must kick it.
            const kick = driver.publish();
            if (added > 0) expect(kick, `${name}: kick lost`).toBe(true);
          } else driver.publish();
          device.disableNotify();
          let poppedNow = 0;
          while (device.pop(chain)) {
            popped.push({ head: chain.head, len: fill() });
            poppedNow++;
          }
          if (step.unpop && poppedNow > 0) {
            // Give the last chain back unprocessed; the next pop is the same chain.
            const last = popped.pop()!;
            device.unpop(1);
            expect(device.pop(chain)).toBe(true);
            expect(chain.head).toBe(last.head);
            popped.push({ head: chain.head, len: fill() });
          }
          // Complete some: in pop order with in-order, else in a random order.
          const k = Math.min(step.complete, popped.length);
          for (let i = 0; i < k; i++) {
            const d = popped.splice(c.inOrder ? 0 : step.order[i] % popped.length, 1)[0];
            device.pushUsed(d.head, d.len);
          }
          if (step.sleepDriver && driver.usedAvailable() === 0 && !driver.enableInterrupts()) {
            // The driver is about to sleep: the device's next publish of anything must interrupt it.
            const irq = device.publishUsed();
            if (k > 0) expect(irq, `${name}: interrupt lost`).toBe(true);
          } else device.publishUsed();
          driver.disableInterrupts();
          for (let t = driver.getUsed(); t >= 0; t = driver.getUsed()) {
            const g = given.get(t);
            expect(g, `${name}: token ${t} returned twice or never given`).toBeDefined();
            const capacity = g!.segs.reduce((n, x) => n + x.len, 0);
            expect(driver.usedLen).toBeLessThanOrEqual(capacity);
            if (capacity > 0) {
              const want = wrote.get(g!.segs[0].addr)!;
              expect(driver.usedLen).toBe(want.length);
              let off = 0;
              for (const x of g!.segs) {
                const n = Math.min(x.len, want.length - off);
                if (n <= 0) break;
                const got = new Uint8Array(n);
                r.memory.read(x.addr, got, 0, n);
                expect(got).toEqual(want.subarray(off, off + n));
                off += n;
              }
            } else expect(driver.usedLen).toBe(0);
            given.delete(t);
            slotFree.push(g!.slot);
            chains++;
          }
        }
        expect(r.guardsIntact()).toBe(true);
      }),
      { numRuns: 20 },
    );
    results.set(name, `ok (${chains} chains)`);
  });
});
