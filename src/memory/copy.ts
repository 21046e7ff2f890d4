import { copyAt, pairAddresses } from './native-copy.js';
import { type ArenaCopy, arenaCopyBetween } from './wasm-copy.js';

/**
 * Copies between byte views on the data path, each done the cheapest way for
 * its size and alignment. Calls into typed-array builtins cost 15-35 ns
 * before the first byte moves, so short copies are loops: 4-aligned ones
 * move Int32 words through a word view of each byte view (made once per
 * view, never per copy).
 */

/**
 * Byte views seen last, with their byteOffset and an Int32 view over each
 * (undefined for a view that does not start on a word): a queue worker
 * copies between two or three views all day (guest memory, its channels), a
 * thread running several stages between a few more. Reading `byteOffset`
 * (or `buffer`) of a shared-memory view costs more than a 64-byte copy, so
 * both are read once per view here.
 */
const VIEWS = 4;
const seenU8: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(VIEWS).fill(undefined);
const seenOffset = new Float64Array(VIEWS);
const seenI32: Array<Int32Array | undefined> = new Array<Int32Array | undefined>(VIEWS).fill(undefined);
/** 1 while slot k's view has had no aligned copy since it took the slot. */
const seenFresh = new Uint8Array(VIEWS);
let seenNext = 0;

/** The cache slot of `u8`, filled on a miss (round robin, never taking slot `keep`). */
function slotOf(u8: Uint8Array, keep: number): number {
  for (let k = 0; k < VIEWS; k++) if (seenU8[k] === u8) return k;
  let k = seenNext;
  if (k === keep) k = k + 1 === VIEWS ? 0 : k + 1;
  seenNext = k + 1 === VIEWS ? 0 : k + 1;
  const offset = u8.byteOffset;
  seenU8[k] = u8;
  seenOffset[k] = offset;
  seenI32[k] = undefined;
  seenFresh[k] = 1;
  return k;
}

/**
 * Word views made so far, by byte view (null: the view does not start on a
 * word). Kept for the life of the byte view, so a view that drops out of the
 * slots above and comes back (more views taking turns than there are slots)
 * finds its word view again instead of making a new one per copy.
 */
const wordViews = new WeakMap<Uint8Array, Int32Array | null>();

/**
 * An Int32 view over the bytes of `u8` (index i is byte 4 * i of it), made
 * once per byte view; undefined when `u8` does not start on a word of its
 * buffer. For code that moves a few aligned words itself (a 12-byte header)
 * rather than through copyBytes.
 */
export function wordView(u8: Uint8Array): Int32Array | undefined {
  let w = wordViews.get(u8);
  if (w === undefined) {
    const offset = u8.byteOffset;
    w = (offset & 3) === 0 ? new Int32Array(u8.buffer, offset, u8.length >>> 2) : null;
    wordViews.set(u8, w);
  }
  return w ?? undefined;
}

/**
 * The word view of slot k's byte view, looked up on first use so that copies
 * which need none look up none; undefined when the view does not start on a
 * word of its buffer, and for the first aligned copy through a view new to
 * the slots. A caller that copies from a new view every time (a user's
 * payload, a datagram) then never makes or registers a word view: done per
 * copy that cost 2 us (a WeakMap entry and a view for every buffer, which the
 * collector then has to walk), measured, where the builtin costs 15-30 ns.
 */
function wordsOf(k: number): Int32Array | undefined {
  const w = seenI32[k];
  if (w !== undefined) return w;
  if ((seenOffset[k] & 3) !== 0) return undefined;
  if (seenFresh[k] === 1) {
    seenFresh[k] = 0;
    return undefined;
  }
  return (seenI32[k] = wordView(seenU8[k]!));
}

/** Unaligned copies shorter than this are byte loops (a builtin's call costs more). */
const BYTE_LOOP = 16;
/**
 * Largest 4-aligned copy done as a word loop. Measured (Node 20.20, 2 shared
 * vCPUs, wall ns per copy within one SharedArrayBuffer, median of 3 rounds of
 * 1 M copies): the loop unrolled by four against copyWithin, 64 B 13.5 vs
 * 26.9, 128 B 19.9 vs 26.1, 192 B 27.5 vs 28.3, 256 B 34.9 vs 30.9, 384 B
 * 60.3 vs 35.8: the builtin wins from about 200 B.
 */
const WORD_LOOP = 192;

/**
 * `words` Int32 words from s32[s..] to d32[d..], four per step (16 words:
 * 16 ns instead of 25 for the plain loop, measured). A function of its own:
 * V8 compiles the loop about twice as fast here as inline in copyBytes.
 */
function copyWords(s32: Int32Array, s: number, d32: Int32Array, d: number, words: number): void {
  const end4 = s + (words & ~3);
  for (; s < end4; s += 4, d += 4) {
    d32[d] = s32[s];
    d32[d + 1] = s32[s + 1];
    d32[d + 2] = s32[s + 2];
    d32[d + 3] = s32[s + 3];
  }
  for (const end = end4 + (words & 3); s < end; s++, d++) d32[d] = s32[s];
}

/** The last pair of views copyBytes() sent past the loops, and whether they share their bytes. */
let lastSrc: Uint8Array | undefined;
let lastDst: Uint8Array | undefined;
let lastShared = false;
/** memory.copy when that pair lies in one arena's wasm memory (wasm-copy.ts), with the views' offsets there. */
let lastWasm: ArenaCopy | undefined;
let lastSrcBase = 0;
let lastDstBase = 0;
/** That pair's addresses when it is copied by memcpy (NaN: by builtins), and its lengths (the bounds memcpy needs checked). */
const lastAddr = new Float64Array(2);
let lastNative = false;
let lastSrcLen = 0;
let lastDstLen = 0;

/**
 * Copy `len` bytes from src[srcIdx..] to dst[dstIdx..] (overlapping ranges
 * of one buffer copy as memmove does). Short copies are loops: Int32 words
 * when both ends are 4-aligned (a 12-byte header is three word moves), else
 * bytes; longer ones go to wasm's memory.copy when both views are of one
 * arena's wasm memory (wasm-copy.ts: the fast path when guest memories and
 * channels share an arena, in any thread), to copyWithin when both are
 * whole-buffer views of one plain buffer (no allocation), to memcpy at
 * addresses found once per pair when one side is mapped front-end memory
 * (vhost-user: no view per copy, see native-copy.ts), else to set() (a
 * temporary view).
 * How a pair copies is worked out for the last pair only: reading `.buffer`
 * of a shared-memory view costs more than a 64-byte copy.
 * V8's builtins copy shared memory word by word only when source and
 * destination share their alignment, byte by byte otherwise.
 */
export function copyBytes(src: Uint8Array, srcIdx: number, dst: Uint8Array, dstIdx: number, len: number): void {
  if (len <= WORD_LOOP) {
    // Each view's cache slot, looked up per copy: copies that take turns
    // between pairs of views (a header that is not word-aligned and its frame,
    // a vsock header and its payload) made a remembered last pair cost more
    // on every change (about 60 ns a frame, measured) than these two short
    // searches, which cost the same-pair case about nothing (paired runs).
    const ks = slotOf(src, -1);
    // The destination must not take the source's slot (a miss goes round robin).
    const kd = slotOf(dst, ks);
    // Byte ranges that may overlap (the same offsets into their buffers, which
    // may be one) go to the builtins, which move as memmove does.
    const s0 = seenOffset[ks] + srcIdx;
    const d0 = seenOffset[kd] + dstIdx;
    if (s0 + len <= d0 || d0 + len <= s0) {
      if (((srcIdx | dstIdx) & 3) === 0) {
        const s32 = wordsOf(ks);
        const d32 = wordsOf(kd);
        if (s32 !== undefined && d32 !== undefined) {
          copyWords(s32, srcIdx >>> 2, d32, dstIdx >>> 2, len >>> 2);
          for (let k = len & ~3; k < len; k++) dst[dstIdx + k] = src[srcIdx + k];
          return;
        }
      }
      if (len < BYTE_LOOP) {
        for (let k = 0; k < len; k++) dst[dstIdx + k] = src[srcIdx + k];
        return;
      }
    }
  }
  if (src !== lastSrc || dst !== lastDst) {
    // A whole view into a new pair (a user's frame or payload, new per call):
    // set() makes no view and moves as memmove does, and classifying the pair
    // (its buffers, their addresses) would cost 100 ns more than the copy.
    if (srcIdx === 0 && len === src.length) {
      dst.set(src, dstIdx);
      return;
    }
    classifyPair(src, dst);
  }
  if (lastWasm !== undefined || lastNative) {
    checkBounds(len, srcIdx, lastSrcLen, dstIdx, lastDstLen);
    if (lastWasm !== undefined) lastWasm(lastDstBase + dstIdx, lastSrcBase + srcIdx, len);
    else copyAt(lastAddr[1] + dstIdx, lastAddr[0] + srcIdx, len);
  } else if (lastShared) {
    dst.copyWithin(dstIdx, srcIdx, srcIdx + len);
  } else if (srcIdx === 0 && len === src.length) {
    dst.set(src, dstIdx);
  } else {
    dst.set(src.subarray(srcIdx, srcIdx + len), dstIdx);
  }
}

/**
 * Before a copy by address: memory.copy checks only the whole memory's
 * bounds, memcpy none. Throws the RangeError a typed-array copy of views of
 * these lengths would have met.
 */
function checkBounds(len: number, srcIdx: number, srcLen: number, dstIdx: number, dstLen: number): void {
  if (srcIdx >= 0 && dstIdx >= 0 && len >= 0 && srcIdx + len <= srcLen && dstIdx + len <= dstLen) return;
  throw new RangeError(`copy of ${len} bytes from ${srcIdx} (of ${srcLen}) to ${dstIdx} (of ${dstLen}) is out of bounds`);
}

/** Work out how copies from `src` to `dst` go (kept out of copyBytes, which runs per copy). */
function classifyPair(src: Uint8Array, dst: Uint8Array): void {
  lastSrc = src;
  lastDst = dst;
  lastSrcLen = src.length;
  lastDstLen = dst.length;
  lastWasm = arenaCopyBetween(src.buffer, dst.buffer);
  lastSrcBase = src.byteOffset;
  lastDstBase = dst.byteOffset;
  lastShared = lastWasm === undefined && src.buffer === dst.buffer && src.byteOffset === dst.byteOffset;
  lastNative = false;
  if (lastWasm !== undefined || lastShared) return;
  pairAddresses(src, dst, lastAddr);
  lastNative = !Number.isNaN(lastAddr[0]);
}

/**
 * One copy site's own memory of the views it copied between last: a queue's
 * frame copy sees the same source and destination views all day, and
 * comparing two references is cheaper than copyBytes' search of its shared
 * slots (cpu case, 64 B, paired: 4-11 % of a frame's cost). Word copies as
 * copyBytes makes them; everything else (unaligned, long, overlapping, a view
 * seen for the first time) goes to copyBytes. A view gets its word view on
 * its second copy in a row here, so a site fed a new view per copy makes none.
 * A pair of views of one arena's wasm memory (wasm-copy.ts) is copied with
 * memory.copy from then on, at any size (64 B: about 5 ns against the word
 * loop's 8; cpu case 4-8 % a frame, paired).
 * The source and destination checks are written out side by side in fields:
 * the same logic as a method over two-entry arrays measured 4-9 % slower on
 * the channel path (paired cpu runs).
 */
export class CopySite {
  private src: Uint8Array | undefined;
  private srcOffset = 0;
  private src32: Int32Array | undefined;
  private srcNew = false;
  private dst: Uint8Array | undefined;
  private dstOffset = 0;
  private dst32: Int32Array | undefined;
  private dstNew = false;
  /** memory.copy when both views are of one arena's wasm memory (looked up on a pair's second copy), with their lengths. */
  private wasm: ArenaCopy | undefined;
  private srcLen = 0;
  private dstLen = 0;

  /** Copy `len` bytes from src[srcIdx..] to dst[dstIdx..], as copyBytes does. */
  copy(src: Uint8Array, srcIdx: number, dst: Uint8Array, dstIdx: number, len: number): void {
    const w = this.wasm;
    if (w !== undefined && src === this.src && dst === this.dst) {
      checkBounds(len, srcIdx, this.srcLen, dstIdx, this.dstLen);
      w(this.dstOffset + dstIdx, this.srcOffset + srcIdx, len);
      return;
    }
    if (len <= WORD_LOOP && ((srcIdx | dstIdx) & 3) === 0) {
      let s32 = this.src32;
      if (src !== this.src) {
        this.src = src;
        this.srcOffset = src.byteOffset;
        this.src32 = s32 = undefined;
        this.srcNew = true;
        this.wasm = undefined;
      } else if (s32 === undefined && this.srcNew) {
        this.srcNew = false;
        this.src32 = s32 = wordView(src);
      }
      let d32 = this.dst32;
      if (dst !== this.dst) {
        this.dst = dst;
        this.dstOffset = dst.byteOffset;
        this.dst32 = d32 = undefined;
        this.dstNew = true;
        this.wasm = undefined;
      } else if (d32 === undefined && this.dstNew) {
        this.dstNew = false;
        this.dst32 = d32 = wordView(dst);
        if (s32 !== undefined && d32 !== undefined) this.useWasm(src, dst);
      }
      const s0 = this.srcOffset + srcIdx;
      const d0 = this.dstOffset + dstIdx;
      // Ranges at overlapping offsets (into what may be one buffer) go to copyBytes, which moves as memmove does.
      if (s32 !== undefined && d32 !== undefined && (s0 + len <= d0 || d0 + len <= s0)) {
        copyWords(s32, srcIdx >>> 2, d32, dstIdx >>> 2, len >>> 2);
        for (let k = len & ~3; k < len; k++) dst[dstIdx + k] = src[srcIdx + k];
        return;
      }
    }
    copyBytes(src, srcIdx, dst, dstIdx, len);
  }

  /** A pair copied twice in a row: from now on memory.copy when both views are of one arena. */
  private useWasm(src: Uint8Array, dst: Uint8Array): void {
    this.wasm = arenaCopyBetween(src.buffer, dst.buffer);
    this.srcLen = src.length;
    this.dstLen = dst.length;
  }
}
