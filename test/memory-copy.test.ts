import { describe, expect, it } from 'vitest';
import { copyBytes, wordView } from '../src/memory/copy.js';

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

  it('wordView: index i is byte 4i of the view; undefined for a view that does not start on a word', () => {
    const sab = new SharedArrayBuffer(64);
    const at8 = new Uint8Array(sab, 8);
    const w = wordView(at8);
    expect(w).toBeDefined();
    w![1] = 0x04030201;
    expect(Array.from(at8.subarray(4, 8))).toEqual([1, 2, 3, 4]);
    expect(wordView(at8)).toBe(w);
    expect(wordView(new Uint8Array(sab, 2))).toBeUndefined();
  });
});
