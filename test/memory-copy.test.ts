import { afterAll, describe, expect, it } from 'vitest';
import { CopySite, copyBytes, wordView } from '../src/memory/copy.js';
import { registerMappedBuffer } from '../src/memory/native-copy.js';
import { SharedArena } from '../src/memory/arena.js';
import { GuestMemory } from '../src/memory/guest-memory.js';
import { adoptArenaMemory, arenaCopyBetween, newArenaMemory } from '../src/memory/wasm-copy.js';
import { allocNetChannel } from '../src/net/net-port.js';
import * as libc from '../src/os/libc.js';

/** What memmove leaves in `mem` after moving `len` bytes from absolute offset `from` to `to`. */
function memmove(mem: Uint8Array, from: number, to: number, len: number): Uint8Array {
  const want = Uint8Array.from(mem);
  want.set(mem.slice(from, from + len), to);
  return want;
}

const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

describe('copyBytes: every size around the word-loop crossover, every alignment', () => {
  const lens = [0, 1, 3, 4, 11, 12, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1500];
  it('copies like memmove between disjoint ranges of one view, of two views of one buffer, and of two buffers', () => {
    for (const len of lens) {
      for (let sa = 0; sa < 4; sa++) {
        for (let da = 0; da < 4; da++) {
          const size = 2 * len + 64;
          const sab = new SharedArrayBuffer(size);
          const u8 = new Uint8Array(sab);
          u8.set(pattern(size));
          const from = 8 + sa;
          const to = len + 24 + da;
          const want = memmove(u8, from, to, len);
          copyBytes(u8, from, new Uint8Array(sab), to, len);
          expect(u8).toEqual(want);
          const plain = new Uint8Array(size);
          copyBytes(u8, from, plain, to, len);
          expect(plain.subarray(to, to + len)).toEqual(u8.subarray(from, from + len));
        }
      }
    }
  });

  it('copies like memmove when views of one buffer with different byte offsets overlap in memory (index ranges apart)', () => {
    for (const len of lens.filter((n) => n > 0)) {
      for (const shift of [4, 8, -4, -8]) {
        const size = 2 * len + 128;
        const sab = new SharedArrayBuffer(size);
        const whole = new Uint8Array(sab);
        whole.set(pattern(size));
        // src index 40 of a view at 64 is byte 104; dst index 100 + shift of the whole buffer overlaps it.
        const src = new Uint8Array(sab, 64);
        const want = memmove(whole, 64 + 40, 104 + shift, len);
        copyBytes(src, 40, whole, 104 + shift, len);
        expect(whole).toEqual(want);
      }
    }
  });

  it('copies a whole view into an overlapping range of its own buffer like memmove, both directions, short and long, new views each time', () => {
    for (const len of [16, 64, 65, 256, 1500]) {
      for (const shift of [-8, -1, 1, 8]) {
        const size = len + 64;
        const sab = new SharedArrayBuffer(size);
        const whole = new Uint8Array(sab);
        whole.set(pattern(size));
        const want = memmove(whole, 24, 24 + shift, len);
        copyBytes(new Uint8Array(sab, 24, len), 0, new Uint8Array(sab), 24 + shift, len);
        expect(whole, `${len} bytes shifted by ${shift}`).toEqual(want);
      }
    }
  });

  it('keeps copying right while more views take turns than it caches word views for (a pair whose source is cached and destination is new)', () => {
    // Six plain buffers, pairs in an order that makes a cached source meet a new destination.
    const views = Array.from({ length: 6 }, (_, i) => Uint8Array.from(pattern(256), (b) => b ^ i));
    const want = views.map((v) => Uint8Array.from(v));
    let x = 7;
    for (let step = 0; step < 400; step++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const s = x % 6;
      const d = (s + 1 + ((x >>> 8) % 5)) % 6;
      const len = [4, 12, 16, 64, 65][(x >>> 12) % 5];
      const from = 4 * ((x >>> 16) % 16);
      const to = 4 * ((x >>> 20) % 16);
      copyBytes(views[s], from, views[d], to, len);
      want[d].set(want[s].slice(from, from + len), to);
      expect(views[d], `step ${step}: ${len} bytes from view ${s}@${from} to view ${d}@${to}`).toEqual(want[d]);
    }
  });
  it('keeps copying right when two pairs take turns and others cut in (the pair it remembers besides the last)', () => {
    // Views at 4-aligned and odd offsets of one buffer and of plain buffers:
    // the two remembered pairs lose their cached slots to the others.
    const sab = new SharedArrayBuffer(4096);
    const views = [new Uint8Array(sab, 0, 1024), new Uint8Array(sab, 1024, 1024), new Uint8Array(sab, 2049, 1000), new Uint8Array(1024), new Uint8Array(1024), new Uint8Array(sab, 3072, 1024)];
    views.forEach((v, i) => v.set(pattern(v.length).map((b) => b ^ i)));
    const want = views.map((v) => Uint8Array.from(v));
    let last: [number, number] = [0, 3];
    let before: [number, number] = [1, 5];
    let x = 11;
    for (let step = 0; step < 2000; step++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      // Half the time the pair before the last (the remembered one) comes back.
      let pair: [number, number] = before;
      if ((x >>> 4) % 2 === 0) {
        const s = (x >>> 8) % 6;
        pair = [s, (s + 1 + ((x >>> 12) % 5)) % 6];
      }
      before = last;
      last = pair;
      const [s, d] = pair;
      const len = [12, 64, 3, 16][(x >>> 16) % 4];
      const from = 4 * ((x >>> 20) % 50);
      const to = 4 * ((x >>> 26) % 50);
      copyBytes(views[s], from, views[d], to, len);
      want[d].set(want[s].slice(from, from + len), to);
      expect(views[d], `step ${step}: ${len} bytes from view ${s}@${from} to view ${d}@${to}`).toEqual(want[d]);
    }
  });
});

describe('CopySite: one call site that remembers its last views copies as copyBytes does', () => {
  it('copies like memmove while its views stay, change every copy, overlap in one buffer, or start off a word', () => {
    const sab = new SharedArrayBuffer(4096);
    const whole = new Uint8Array(sab);
    // Views of one buffer at word and odd offsets (some overlapping in memory), and plain buffers.
    const views = [whole, new Uint8Array(sab, 512, 1024), new Uint8Array(sab, 1024, 1024), new Uint8Array(sab, 2049, 1000), new Uint8Array(1024), new Uint8Array(1024)];
    whole.set(pattern(4096));
    views[4].set(pattern(1024).reverse());
    views[5].set(pattern(1024).map((b) => b ^ 0x5a));
    const site = new CopySite();
    let x = 5;
    for (let step = 0; step < 3000; step++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      // Runs of the same pair (word views made on the second copy), then a change.
      const run = (x >>> 4) % 4 !== 0;
      const s = run ? step % 2 : (x >>> 8) % 6;
      const d = run ? 1 + (step % 2) : (x >>> 12) % 6;
      const len = [4, 12, 16, 60, 64, 66, 192, 200][(x >>> 16) % 8];
      const from = 4 * ((x >>> 20) % 64) + ((x >>> 28) % 4 === 0 ? 1 : 0);
      const to = 4 * ((x >>> 24) % 64);
      const src = views[s];
      const dst = views[d];
      // What memmove leaves: the source bytes read before any is written.
      const want = dst.slice();
      want.set(src.slice(from, from + len), to);
      const before = Uint8Array.from(whole);
      site.copy(src, from, dst, to, len);
      // toEqual only on a difference: 3000 deep compares of 4 KiB take seconds.
      if (Buffer.compare(dst, want) !== 0) expect(dst, `step ${step}: ${len} bytes from view ${s}@${from} to view ${d}@${to}`).toEqual(want);
      if (dst.buffer !== sab && Buffer.compare(whole, before) !== 0) expect(whole, `step ${step}: shared buffer untouched`).toEqual(before);
    }
  });

  it('moves an overlapping pair of views of one buffer as memmove does, on every copy of a run (word views made)', () => {
    const sab = new SharedArrayBuffer(1024);
    const whole = new Uint8Array(sab);
    const at16 = new Uint8Array(sab, 16);
    for (const [from, to, src, dst, srcIdx, dstIdx] of [
      // Bytes [16, 80) down to [8, 72), then [8, 72) up to [16, 80): a forward word loop would smear the second.
      [16, 8, at16, whole, 0, 8],
      [8, 16, whole, at16, 8, 0],
    ] as const) {
      const site = new CopySite();
      for (let round = 0; round < 4; round++) {
        whole.set(pattern(1024));
        const want = memmove(whole, from, to, 64);
        site.copy(src, srcIdx, dst, dstIdx, 64);
        expect(whole, `${from} -> ${to}, round ${round}`).toEqual(want);
      }
    }
  });
});

describe('wordView: one Int32 view per byte view', () => {
  it('hands out the same word view for a byte view every time, over the same bytes, and none for a view that does not start on a word', () => {
    const sab = new SharedArrayBuffer(64);
    const at8 = new Uint8Array(sab, 8, 16);
    const w = wordView(at8)!;
    expect(wordView(at8)).toBe(w);
    w[1] = 0x04030201;
    expect([...at8.subarray(4, 8)]).toEqual([1, 2, 3, 4]);
    expect(w.length).toBe(4);
    expect(wordView(new Uint8Array(sab, 6, 16))).toBeUndefined();
  });
});

describe('copyBytes between mapped memory (vhost-user front-end memory) and a SharedArrayBuffer: memcpy by address, no view per copy', () => {
  const lens = [1, 15, 16, 17, 63, 64, 65, 72, 255, 256, 1500, 4000];
  const maps: [bigint, number][] = [];
  afterAll(() => {
    for (const [address, size] of maps.splice(0)) libc.munmap(address, size);
  });
  function mapping(size: number): Uint8Array {
    const address = libc.mmapScratch(size);
    maps.push([address, size]);
    const buffer = libc.viewOf(address, size);
    registerMappedBuffer(buffer, Number(address));
    return new Uint8Array(buffer);
  }

  it('copies every size and alignment both ways byte for byte', () => {
    const size = 16384;
    const mapped = mapping(size);
    const sab = new Uint8Array(new SharedArrayBuffer(size));
    for (const len of lens) {
      for (const [sa, da] of [
        [0, 0],
        [1, 3],
        [4, 8],
        [12, 2],
      ]) {
        mapped.set(pattern(size));
        sab.fill(0);
        copyBytes(mapped, 100 + sa, sab, 4096 + da, len);
        expect(sab.subarray(4096 + da, 4096 + da + len)).toEqual(mapped.subarray(100 + sa, 100 + sa + len));
        expect(sab[4096 + da - 1], 'nothing before the range').toBe(0);
        expect(sab[4096 + da + len], 'nothing after the range').toBe(0);
        sab.set(pattern(size).reverse());
        copyBytes(sab, 8000 + sa, mapped, 300 + da, len);
        expect(mapped.subarray(300 + da, 300 + da + len)).toEqual(sab.subarray(8000 + sa, 8000 + sa + len));
      }
    }
    // A sub-view of the mapping: its byteOffset is part of the address.
    const part = mapped.subarray(1000, 3000);
    sab.set(pattern(size));
    copyBytes(sab, 0, part, 8, 500);
    expect(mapped.subarray(1008, 1508)).toEqual(sab.subarray(0, 500));
  });

  it('a range past either end throws RangeError naming it (memcpy itself checks nothing)', () => {
    const mapped = mapping(4096);
    const sab = new Uint8Array(new SharedArrayBuffer(4096));
    expect(() => copyBytes(mapped, 4000, sab, 0, 200)).toThrow(/copy of 200 bytes from 4000 \(of 4096\)/);
    expect(() => copyBytes(sab, 0, mapped, 3990, 200)).toThrow(/to 3990 \(of 4096\) is out of bounds/);
    expect(() => copyBytes(sab, -1, mapped, 0, 100)).toThrow(RangeError);
  });
});

describe('copyBytes inside an arena backed by a shared WebAssembly.Memory: memory.copy, in any object over its bytes', () => {
  const lens = [193, 255, 256, 257, 1500, 4000, 65536];

  it('an arena takes a shared wasm memory, and its guest memories and channels carry it with the buffer', () => {
    const arena = new SharedArena(1 << 20);
    expect(arena.wasm, 'this Node gives shared wasm memories').toBeDefined();
    expect(arena.buffer).toBe(arena.wasm?.memory.buffer);
    expect(arena.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(arena.guestMemory(4096).specs()[0].wasm).toBe(arena.wasm);
    const word = { buffer: new SharedArrayBuffer(64), index: 0 };
    expect(allocNetChannel(arena, 1 << 16, 1518, word, word).wasm).toBe(arena.wasm);
    expect(arenaCopyBetween(arena.buffer, arena.buffer)).toBeTypeOf('function');
  });

  it('copies like memmove inside one view, between disjoint and overlapping ranges, every alignment', () => {
    const arena = new SharedArena(1 << 20);
    const u8 = arena.guestMemory(1 << 19).regions[0].u8;
    for (const len of lens) {
      for (const [from, to] of [
        [8, len + 24],
        [9, len + 27],
        [1000, 1000 + 5],
        [1005, 1000],
        [64, 64 + 4],
        [4000, 4000 - 12],
      ]) {
        const span = 2 * len + 8192;
        u8.set(pattern(span), 0);
        const want = memmove(u8.subarray(0, span), from, to, len);
        copyBytes(u8, from, u8, to, len);
        expect(Buffer.compare(u8.subarray(0, span), want), `${len} bytes from ${from} to ${to}`).toBe(0);
      }
    }
  });

  it('copies between two objects over one arena (as two messages deliver its buffer) at the same addresses', () => {
    const arena = new SharedArena(1 << 20);
    const spec = arena.guestMemory(1 << 19, 0x10000).specs()[0];
    const again = structuredClone(spec);
    expect(again.buffer, 'a second object over the same bytes').not.toBe(spec.buffer);
    const a = new GuestMemory([spec]).regions[0];
    const b = new GuestMemory([again]).regions[0];
    expect(arenaCopyBetween(a.buffer, b.buffer), 'both are known as the one arena').toBeTypeOf('function');
    for (const len of lens) {
      a.u8.fill(0);
      b.u8.set(pattern(len), spec.byteOffset + 100);
      copyBytes(b.u8, spec.byteOffset + 100, a.u8, spec.byteOffset + 70_000 + 3, len);
      expect(a.u8.subarray(spec.byteOffset + 70_003, spec.byteOffset + 70_003 + len)).toEqual(pattern(len));
      expect(a.u8[spec.byteOffset + 70_002], 'nothing before the range').toBe(0);
      expect(a.u8[spec.byteOffset + 70_003 + len], 'nothing after the range').toBe(0);
    }
    // Sub-views: their byte offsets are part of the address.
    const part = b.u8.subarray(spec.byteOffset + 200_000, spec.byteOffset + 300_000);
    a.u8.set(pattern(1500), spec.byteOffset + 10);
    copyBytes(a.u8, spec.byteOffset + 10, part, 8, 1500);
    expect(b.u8.subarray(spec.byteOffset + 200_008, spec.byteOffset + 201_508)).toEqual(pattern(1500));
  });

  it('a range past either view’s end throws RangeError naming it (memory.copy checks only the whole memory)', () => {
    const arena = new SharedArena(1 << 20);
    const u8 = arena.u8;
    const part = u8.subarray(4096, 8192);
    expect(() => copyBytes(part, 4000, u8, 0, 200)).toThrow(/copy of 200 bytes from 4000 \(of 4096\)/);
    expect(() => copyBytes(u8, 0, part, 3990, 200)).toThrow(/to 3990 \(of 4096\) is out of bounds/);
    expect(() => copyBytes(u8, -1, part, 0, 300)).toThrow(RangeError);
    expect(u8[4096 + 3990], 'nothing moved').toBe(0);
  });

  it('only the memory’s own buffer object is taken for it, and arenas of other memories stay apart', () => {
    const arena = new SharedArena(1 << 20);
    const stranger = new SharedArrayBuffer(1 << 20);
    adoptArenaMemory(stranger, arena.wasm);
    expect(arenaCopyBetween(stranger, arena.buffer)).toBeUndefined();
    expect(arenaCopyBetween(arena.buffer, new SharedArena(1 << 20).buffer)).toBeUndefined();
    // A copy between two arenas goes by the builtins, and right.
    const other = new SharedArena(1 << 20);
    arena.u8.set(pattern(3000), 500);
    copyBytes(arena.u8, 500, other.u8, 900, 3000);
    expect(other.u8.subarray(900, 3900)).toEqual(pattern(3000));
  });

  it('a CopySite whose pair of views lies in one arena copies by memory.copy from its second copy on: memmove at every size, bounds checked', () => {
    const arena = new SharedArena(1 << 20);
    const spec = arena.guestMemory(1 << 18).specs()[0];
    const a = new GuestMemory([spec]).regions[0].u8;
    const b = new GuestMemory([structuredClone(spec)]).regions[0].u8;
    const site = new CopySite();
    for (let round = 0; round < 3; round++) {
      for (const [len, from, to] of [
        [64, 1024, 8192],
        [12, 2048, 9000],
        [1500, 4096, 4096 + 6],
        [1500, 4096 + 6, 4096],
        [3, 5001, 7003],
        [200, 100, 100],
      ]) {
        a.set(pattern(16384), 0);
        const want = memmove(a.subarray(0, 16384), from, to, len);
        site.copy(a, from, b, to, len);
        expect(Buffer.compare(a.subarray(0, 16384), want), `round ${round}: ${len} bytes from ${from} to ${to}`).toBe(0);
      }
    }
    expect(() => site.copy(a, a.length - 10, b, 0, 64)).toThrow(RangeError);
    expect(() => site.copy(a, 0, b, b.length - 8, 64)).toThrow(RangeError);
    expect(() => site.copy(a, -4, b, 0, 300)).toThrow(RangeError);
  });

  it('an arena asked for a plain SharedArrayBuffer has no wasm memory, and copies in it go by the builtins, right', () => {
    const arena = new SharedArena(1 << 20, { wasm: false });
    expect(arena.wasm).toBeUndefined();
    expect(arena.guestMemory(4096).specs()[0].wasm).toBeUndefined();
    expect(arenaCopyBetween(arena.buffer, arena.buffer)).toBeUndefined();
    const u8 = arena.u8;
    const site = new CopySite();
    for (const len of [64, 1500]) {
      for (let k = 0; k < 3; k++) {
        u8.set(pattern(4096), 0);
        site.copy(u8, 100, u8, 8192, len);
        copyBytes(u8, 200, u8, 16384, len);
        expect(u8.subarray(8192, 8192 + len)).toEqual(pattern(4096).subarray(100, 100 + len));
        expect(u8.subarray(16384, 16384 + len)).toEqual(pattern(4096).subarray(200, 200 + len));
      }
    }
  });

  it('an arena over 4 GiB (past wasm32 memory) gets no wasm memory', () => {
    expect(newArenaMemory(2 ** 32 + 4096)).toBeUndefined();
  });
});
