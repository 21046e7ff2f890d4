import { describe, expect, it } from 'vitest';
import { GuestAllocator, GuestMemory, GuestMemoryError, InvalidArgumentError, VirtioNetDevice } from '../src/index.js';
import { copyBytes } from '../src/memory/copy.js';
import { guardedMemory } from '../src/testing/guest.js';

describe('GuestMemory', () => {
  it('reads and writes little-endian values inside a region', () => {
    const { memory } = guardedMemory(4096, 0x10000);
    memory.writeU64(0x10008, 0x1234_5678_9abc);
    expect(memory.readU64(0x10008)).toBe(0x1234_5678_9abc);
    expect(memory.readU16(0x10008)).toBe(0x9abc);
    memory.writeU32(0x10100, 0xdeadbeef);
    expect(memory.readU32(0x10100)).toBe(0xdeadbeef);
  });

  it('rejects an access outside every region with a named error carrying address and length, touching nothing', () => {
    const g = guardedMemory(4096, 0x10000);
    const cases: Array<[number, number]> = [
      [0xfff8, 8], // before the region
      [0x10ffc, 8], // straddles its end
      [0x11000, 1], // just past it
      [2 ** 53, 4], // beyond any safe address
    ];
    for (const [gpa, len] of cases) {
      const err = (() => {
        try {
          g.memory.write(gpa, new Uint8Array(len).fill(0xff));
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(GuestMemoryError);
      expect((err as GuestMemoryError).address).toBe(gpa);
      expect((err as GuestMemoryError).length).toBe(len);
      expect((err as GuestMemoryError).code).toBe('GUEST_MEMORY_OUT_OF_BOUNDS');
    }
    expect(g.guardsIntact()).toBe(true);
  });

  it('rejects overlapping and misaligned regions', () => {
    const buffer = new SharedArrayBuffer(1 << 16);
    expect(
      () =>
        new GuestMemory([
          { gpa: 0, size: 8192, buffer, byteOffset: 0 },
          { gpa: 4096, size: 4096, buffer, byteOffset: 16384 },
        ]),
    ).toThrow(InvalidArgumentError);
    expect(() => new GuestMemory([{ gpa: 3, size: 16, buffer, byteOffset: 0 }])).toThrow(InvalidArgumentError);
  });

  it('translates across several regions in different buffers', () => {
    const a = new SharedArrayBuffer(8192);
    const b = new ArrayBuffer(8192); // a non-shared region (e.g. externally mapped memory)
    const memory = new GuestMemory([
      { gpa: 0x100000, size: 4096, buffer: b, byteOffset: 4096 },
      { gpa: 0, size: 8192, buffer: a, byteOffset: 0 },
    ]);
    memory.writeU32(0x100010, 7);
    memory.writeU32(0x10, 9);
    expect(new Uint32Array(b)[(4096 + 0x10) / 4]).toBe(7);
    expect(new Uint32Array(a)[0x10 / 4]).toBe(9);
    expect(() => memory.readU32(0x2000)).toThrow(GuestMemoryError);
  });

  it('allocator hands out aligned blocks and refuses when full', () => {
    const { memory } = guardedMemory(4096);
    const alloc = new GuestAllocator(memory);
    expect(alloc.alloc(10, 16)).toBe(0);
    expect(alloc.alloc(16, 64)).toBe(64);
    expect(() => alloc.alloc(8192)).toThrow(InvalidArgumentError);
  });
});

describe('guest memory shared with queue workers', () => {
  it('a device refuses memory it cannot share with its workers (a plain ArrayBuffer would be copied)', () => {
    const memory = new GuestMemory([{ gpa: 0, size: 1 << 16, buffer: new ArrayBuffer(1 << 16), byteOffset: 0 }]);
    expect(() => new VirtioNetDevice(memory)).toThrow(/not a SharedArrayBuffer/);
  });
});

describe('copyBytes', () => {
  const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
  for (const len of [0, 1, 12, 15, 16, 64, 1500]) {
    it(`moves ${len} bytes like memmove: overlapping both ways in one view, across views of one buffer, across buffers`, () => {
      const size = 4 * len + 64;
      for (const [from, to] of [[8, 8 + (len >> 1)], [8 + (len >> 1), 8], [0, 2 * len + 32]]) {
        const sab = new SharedArrayBuffer(size);
        const u8 = new Uint8Array(sab);
        u8.set(pattern(size));
        const want = Uint8Array.from(u8);
        want.set(want.slice(from, from + len), to);
        copyBytes(u8, from, u8, to, len);
        expect(u8).toEqual(want);
        // Another whole-buffer view of the same memory, then a different buffer.
        const other = new Uint8Array(sab);
        copyBytes(other, to, u8, from, len);
        want.set(want.slice(to, to + len), from);
        expect(u8).toEqual(want);
        const plain = new Uint8Array(size);
        copyBytes(u8, from, plain, to, len);
        expect(plain.subarray(to, to + len)).toEqual(want.subarray(from, from + len));
      }
    });
  }
});
