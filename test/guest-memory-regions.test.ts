/**
 * Guest memory in several regions. The spec has no regions: buffer and ring
 * addresses are guest-physical (virtio 1.2 2.7.5, 2.8.13), so regions that
 * are adjacent in guest-physical space act as one range. A buffer may run
 * from one region into the next (split into one segment per region when
 * popped); each ring part may lie in any region, within one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuestMemory, GuestMemoryError, QueueStateError, VirtqueueError } from '../src/index.js';
import { ChainReader, ChainWriter } from '../src/ring/chain-io.js';
import { createQueueDevice, createQueueDriver } from '../src/ring/create-queue.js';
import { type QueueState, validateQueueState } from '../src/ring/queue-state.js';

/** Regions [gpa, gpa + size), each in a buffer of its own, the buffer's bytes before it filled with 0xee as a guard. */
function regions(layout: ReadonlyArray<[number, number]>): { memory: GuestMemory; buffers: SharedArrayBuffer[] } {
  const buffers = layout.map(([, size]) => new SharedArrayBuffer(size + 64));
  for (const b of buffers) new Uint8Array(b, 0, 64).fill(0xee);
  const memory = new GuestMemory(layout.map(([gpa, size], i) => ({ gpa, size, buffer: buffers[i], byteOffset: 64 })));
  return { memory, buffers };
}

const guardsIntact = (buffers: SharedArrayBuffer[]): boolean => buffers.every((b) => new Uint8Array(b, 0, 64).every((x) => x === 0xee));

describe('GuestMemory: adjacent regions are one range', () => {
  // Three regions: [0x1000, 0x2000) and [0x2000, 0x2800) adjacent, then a gap, then [0x4000, 0x5000).
  const layout: Array<[number, number]> = [
    [0x1000, 0x1000],
    [0x2000, 0x800],
    [0x4000, 0x1000],
  ];

  it('contains() spans the edge of adjacent regions but not a gap; inOneRegion() and region() do not span', () => {
    const { memory } = regions(layout);
    expect(memory.contains(0x1ff0, 0x20)).toBe(true);
    expect(memory.contains(0x1000, 0x1800)).toBe(true);
    expect(memory.contains(0x1000, 0x1801)).toBe(false); // into the gap
    expect(memory.contains(0x27f0, 0x20)).toBe(false);
    expect(memory.contains(0x3ff0, 0x20)).toBe(false);
    expect(memory.inOneRegion(0x1ff0, 0x20)).toBe(false);
    expect(memory.inOneRegion(0x1ff0, 0x10)).toBe(true);
    expect(() => memory.region(0x1ff0, 0x20)).toThrow(GuestMemoryError);
    expect(memory.regionAt(0x2000)?.gpa).toBe(0x2000);
    expect(memory.regionAt(0x1fff)?.gpa).toBe(0x1000);
    expect(memory.regionAt(0x2800)).toBeUndefined();
  });

  it('read / write / fill and every integer width work across the edge, byte for byte, touching nothing else', () => {
    const { memory, buffers } = regions(layout);
    const data = Uint8Array.from({ length: 100 }, (_, i) => i + 1);
    memory.write(0x2000 - 37, data);
    const back = new Uint8Array(100);
    memory.read(0x2000 - 37, back);
    expect(back).toEqual(data);
    // The bytes really are split between the two buffers.
    expect(new Uint8Array(buffers[0], 64 + 0x1000 - 37, 37)).toEqual(data.subarray(0, 37));
    expect(new Uint8Array(buffers[1], 64, 63)).toEqual(data.subarray(37));
    for (let at = 0x2000 - 7; at < 0x2000; at++) {
      memory.writeU64(at, 0x1234_5678_9abc);
      expect(memory.readU64(at)).toBe(0x1234_5678_9abc);
      memory.writeU32(at, 0xdeadbeef);
      expect(memory.readU32(at)).toBe(0xdeadbeef);
      memory.writeU16(at, 0xbeef);
      expect(memory.readU16(at)).toBe(0xbeef);
    }
    memory.fill(0x1ff0, 0x5a, 0x20);
    const filled = new Uint8Array(0x20);
    memory.read(0x1ff0, filled);
    expect(filled.every((x) => x === 0x5a)).toBe(true);
    expect(guardsIntact(buffers)).toBe(true);
  });

  it('an access reaching a gap or past memory is a GuestMemoryError and writes nothing', () => {
    const { memory, buffers } = regions(layout);
    for (const [gpa, len] of [
      [0x27f8, 16],
      [0x1ff8, 0x810],
      [0x4ffc, 8],
    ] as const) {
      expect(() => memory.write(gpa, new Uint8Array(len).fill(0xff))).toThrow(GuestMemoryError);
      expect(() => memory.fill(gpa, 0xff, len)).toThrow(GuestMemoryError);
    }
    expect(() => memory.readU32(0x27fe)).toThrow(GuestMemoryError);
    const all = new Uint8Array(0x1800);
    memory.read(0x1000, all);
    expect(all.every((x) => x === 0)).toBe(true);
    expect(guardsIntact(buffers)).toBe(true);
  });
});

/**
 * A queue whose ring parts lie in different regions (different buffers), and
 * buffers that straddle region edges, moved by the library's own driver and
 * device. Regions: eight of 4 KiB, adjacent, each its own buffer.
 */
const REGION = 0x1000;
const BASE = 0x10_0000;
function multiRegionMemory(): GuestMemory {
  return regions(Array.from({ length: 8 }, (_, i) => [BASE + i * REGION, REGION] as [number, number])).memory;
}

function stateOf(packed: boolean, size: number): QueueState {
  // Each part in a region of its own: desc in region 0, driver area in 2, device area in 3.
  return {
    size,
    desc: BASE,
    avail: BASE + 2 * REGION + (packed ? 0x100 : 0),
    used: BASE + 3 * REGION + (packed ? 0x200 : 0),
    nextAvail: packed ? 0x8000 : 0,
    nextUsed: packed ? 0x8000 : 0,
    eventIdx: true,
    indirect: false,
    packed,
  };
}

describe('rings over several regions (2.7.5, 2.8.13: addresses are guest-physical)', () => {
  for (const packed of [false, true]) {
    const name = packed ? 'packed' : 'split';

    it(`${name}: ring parts in three different buffers work; buffers straddling region edges are read and written in order`, () => {
      const memory = multiRegionMemory();
      const state = stateOf(packed, 16);
      validateQueueState(state, memory);
      const driver = createQueueDriver(memory, state);
      const device = createQueueDevice(memory, state);
      const chain = device.newChain();
      const reader = new ChainReader();
      const writer = new ChainWriter();
      // Buffers in regions 4..7; each straddles an edge (some cross two edges).
      const out = { gpa: BASE + 5 * REGION - 100, len: 300 };
      const big = { gpa: BASE + 5 * REGION + 10, len: 2 * REGION + 50 }; // regions 5, 6, 7
      const payload = Uint8Array.from({ length: out.len }, (_, i) => (i * 7 + 3) & 0xff);
      memory.write(out.gpa, payload);
      expect(driver.addChain([out.gpa, big.gpa], [out.len, big.len], 1, 1, 42)).toBe(true);
      driver.publish();
      expect(device.pop(chain)).toBe(true);
      // One readable descriptor in 2 segments, one writable in 3.
      expect([chain.readable, chain.writable, chain.descCount]).toEqual([2, 3, 2]);
      expect([chain.readableBytes, chain.writableBytes]).toEqual([out.len, big.len]);
      const got = new Uint8Array(out.len);
      expect(reader.reset(chain).copyTo(got, 0, out.len)).toBe(out.len);
      expect(got).toEqual(payload);
      const answer = Uint8Array.from({ length: big.len }, (_, i) => (i * 13 + 1) & 0xff);
      expect(writer.reset(chain).copyFrom(answer, 0, big.len)).toBe(big.len);
      device.pushUsed(chain.head, big.len);
      device.publishUsed();
      expect(driver.getUsed()).toBe(42);
      expect(driver.usedLen).toBe(big.len);
      const back = new Uint8Array(big.len);
      memory.read(big.gpa, back);
      expect(back).toEqual(answer);
    });

    it(`${name}: a chain of queue-size descriptors, each straddling an edge, pops whole (segments beyond the queue size)`, () => {
      const memory = multiRegionMemory();
      const size = 4;
      const state = stateOf(packed, size);
      const driver = createQueueDriver(memory, state);
      const device = createQueueDevice(memory, state);
      const chain = device.newChain();
      const addrs = [4, 5, 6, 7].map((r) => BASE + r * REGION - 8);
      expect(driver.addChain(addrs, [16, 16, 16, 16], 4, 0, 7)).toBe(true);
      driver.publish();
      expect(device.pop(chain)).toBe(true);
      expect(chain.descCount).toBe(size);
      // Each of the four crosses the edge below regions 4..7: two segments each.
      expect(chain.readable).toBe(2 * size);
      expect(chain.readableBytes).toBe(64);
    });

    it(`${name}: a buffer that runs from a region into a gap is DESC_ADDRESS_OUT_OF_BOUNDS`, () => {
      const memory = multiRegionMemory();
      const state = stateOf(packed, 16);
      const driver = createQueueDriver(memory, state);
      const device = createQueueDevice(memory, state);
      const end = BASE + 8 * REGION;
      expect(driver.addBuffer(end - 16, 32, true, 1)).toBe(true);
      driver.publish();
      const err = (() => {
        try {
          device.pop(device.newChain());
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(VirtqueueError);
      expect((err as VirtqueueError).code).toBe('DESC_ADDRESS_OUT_OF_BOUNDS');
    });

    it(`${name}: a ring part that itself crosses a region edge is refused with a QueueStateError naming the part`, () => {
      const memory = multiRegionMemory();
      const state = { ...stateOf(packed, 16), desc: BASE + REGION - 64 };
      expect(() => validateQueueState(state, memory)).toThrow(QueueStateError);
      expect(() => validateQueueState(state, memory)).toThrow(/descriptor (table|ring) .* crosses the edge between two memory regions/);
    });

    it(`${name}: random buffers anywhere in the eight regions come back byte for byte (property)`, () => {
      fc.assert(
        fc.property(
          fc.array(fc.record({ start: fc.integer({ min: 4 * REGION, max: 8 * REGION - 1 }), len: fc.integer({ min: 1, max: 3 * REGION }) }), { minLength: 1, maxLength: 8 }),
          (bufs) => {
            const memory = multiRegionMemory();
            const state = stateOf(packed, 16);
            const driver = createQueueDriver(memory, state);
            const device = createQueueDevice(memory, state);
            const chain = device.newChain();
            const reader = new ChainReader();
            const fitted = bufs.map((b) => ({ gpa: BASE + b.start, len: Math.min(b.len, 8 * REGION - b.start) }));
            const total = fitted.reduce((n, b) => n + b.len, 0);
            const bytes = Uint8Array.from({ length: total }, (_, i) => (i * 31 + total) & 0xff);
            // Buffers may overlap: write each, then expect what the reader sees to be what memory holds.
            let at = 0;
            for (const b of fitted) {
              memory.write(b.gpa, bytes, at, b.len);
              at += b.len;
            }
            const expected = new Uint8Array(total);
            at = 0;
            for (const b of fitted) {
              memory.read(b.gpa, expected, at, b.len);
              at += b.len;
            }
            expect(driver.addChain(fitted.map((b) => b.gpa), fitted.map((b) => b.len), fitted.length, 0, 1)).toBe(true);
            driver.publish();
            expect(device.pop(chain)).toBe(true);
            expect(chain.readableBytes).toBe(total);
            const got = new Uint8Array(total);
            expect(reader.reset(chain).copyTo(got, 0, total)).toBe(total);
            // Buffer.equals: a deep toEqual of 30 KB arrays costs seconds.
            expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
          },
        ),
        { numRuns: 50 },
      );
    });
  }
});
