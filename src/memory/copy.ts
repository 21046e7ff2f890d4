/**
 * Copies between byte views on the data path, each done the cheapest way for
 * its size and alignment. Calls into typed-array builtins cost 15-35 ns
 * before the first byte moves, so short copies are loops: 4-aligned ones
 * move u32 words through a word view of the same buffer (one view per
 * buffer, made when a new buffer is first seen, never per copy).
 */

/**
 * Byte views seen last and a u32 view over each: a queue worker copies
 * between two or three views all day (guest memory, its channels), a thread
 * running several stages between a few more.
 */
const VIEWS = 4;
const seenU8: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(VIEWS).fill(undefined);
const seenU32: Array<Uint32Array | undefined> = new Array<Uint32Array | undefined>(VIEWS).fill(undefined);
let seenNext = 0;

/**
 * A u32 view of the buffer behind `u8` whose index i is byte 4 * i of `u8`,
 * or undefined when `u8` does not start on a word of its buffer. Made once
 * per view (while it is among the last few seen), never per copy.
 */
export function wordView(u8: Uint8Array): Uint32Array | undefined {
  for (let k = 0; k < VIEWS; k++) if (seenU8[k] === u8) return seenU32[k];
  const u32 = (u8.byteOffset & 3) === 0 ? new Uint32Array(u8.buffer, u8.byteOffset, u8.length >>> 2) : undefined;
  const k = seenNext;
  seenNext = k + 1 === VIEWS ? 0 : k + 1;
  seenU8[k] = u8;
  seenU32[k] = u32;
  return u32;
}

/** Unaligned copies shorter than this are byte loops (a builtin's call costs more). */
const BYTE_LOOP = 16;
/**
 * Largest 4-aligned copy done as a u32 loop. Measured on Node 20 (2 vCPU,
 * shared-memory views): 64 B as words 13 ns vs copyWithin 23-35 ns and set()
 * 14 ns; 128 B 25 vs 55; at 256 B both ~65 ns; 512 B the builtin wins (87 vs
 * 119), 1500 B copyWithin 118-127 ns.
 */
const WORD_LOOP = 256;

/** The last pair of views copyBytes() sent to a builtin, and whether they share their bytes. */
let lastSrc: Uint8Array | undefined;
let lastDst: Uint8Array | undefined;
let lastShared = false;

/**
 * Copy `len` bytes from src[srcIdx..] to dst[dstIdx..] (overlapping ranges
 * of one buffer copy as memmove does). Short copies are loops: u32 words
 * when both ends are 4-aligned (a 12-byte header is three word moves), else
 * bytes; longer ones go to copyWithin when both are
 * whole-buffer views of one buffer (no allocation: the fast path when guest
 * memories and channels share an arena), else to set() (a temporary view).
 * Whether two views share a buffer is remembered for the last pair: reading
 * `.buffer` of a shared-memory view costs more than a 64-byte copy.
 * V8's builtins copy shared memory word by word only when source and
 * destination share their alignment, byte by byte otherwise.
 */
export function copyBytes(src: Uint8Array, srcIdx: number, dst: Uint8Array, dstIdx: number, len: number): void {
  // Byte ranges that may overlap (same offsets into their buffers, which may be one) go
  // to the builtins, which move as memmove does; `.buffer` is too dear to ask.
  const s0 = src.byteOffset + srcIdx;
  const d0 = dst.byteOffset + dstIdx;
  if (len <= WORD_LOOP && (s0 + len <= d0 || d0 + len <= s0)) {
    if (((srcIdx | dstIdx) & 3) === 0) {
      const s32 = wordView(src);
      const d32 = wordView(dst);
      if (s32 !== undefined && d32 !== undefined) {
        const s = srcIdx >>> 2;
        const d = dstIdx >>> 2;
        const words = len >>> 2;
        for (let k = 0; k < words; k++) d32[d + k] = s32[s + k];
        for (let k = words << 2; k < len; k++) dst[dstIdx + k] = src[srcIdx + k];
        return;
      }
    }
    if (len < BYTE_LOOP) {
      for (let k = 0; k < len; k++) dst[dstIdx + k] = src[srcIdx + k];
      return;
    }
  }
  if (src !== lastSrc || dst !== lastDst) {
    lastSrc = src;
    lastDst = dst;
    lastShared = src.buffer === dst.buffer && src.byteOffset === dst.byteOffset;
  }
  if (lastShared) {
    dst.copyWithin(dstIdx, srcIdx, srcIdx + len);
  } else if (srcIdx === 0 && len === src.length) {
    dst.set(src, dstIdx);
  } else {
    dst.set(src.subarray(srcIdx, srcIdx + len), dstIdx);
  }
}
