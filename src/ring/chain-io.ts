import { copyBytes } from '../memory/copy.js';
import type { MemoryRegion } from '../memory/guest-memory.js';
import type { DescriptorChain } from './chain.js';

/**
 * Byte-stream cursors over a chain's readable or writable half. They cross
 * descriptor boundaries at any byte, so device code never depends on how a
 * driver split a header from its payload (Linux >= 6.1 puts both in one
 * descriptor; older drivers used two). Reused across chains: reset() per chain.
 */
abstract class ChainCursor {
  protected chain!: DescriptorChain;
  protected seg = 0;
  protected off = 0;
  /** Bytes left in this half of the chain. */
  remaining = 0;
  /** Region and buffer index of the span that take() returned last. */
  protected spanRegion!: MemoryRegion;
  protected spanIdx = 0;

  protected start(chain: DescriptorChain, first: number, bytes: number): void {
    this.chain = chain;
    this.seg = first;
    this.off = 0;
    this.remaining = bytes;
  }

  /**
   * Take the next contiguous span of at most `max` bytes (max <= remaining):
   * sets spanRegion / spanIdx and returns the span's length.
   */
  protected take(max: number): number {
    const c = this.chain;
    while (this.off >= c.segLen[this.seg]) {
      this.seg++;
      this.off = 0;
    }
    const step = Math.min(max, c.segLen[this.seg] - this.off);
    this.spanRegion = c.segRegion[this.seg];
    this.spanIdx = c.segIdx[this.seg] + this.off;
    this.off += step;
    this.remaining -= step;
    return step;
  }

  /**
   * When the next `n` bytes (n <= remaining) lie in the current span, move
   * past them and return the buffer index of the first (in `claimedRegion`);
   * else -1 and nothing moves (also for n = 0). The one-descriptor fast path of the copies.
   */
  protected claimSpan(n: number): number {
    const c = this.chain;
    const seg = this.seg;
    const off = this.off;
    if (n === 0 || n > this.remaining || off + n > c.segLen[seg]) return -1;
    this.spanRegion = c.segRegion[seg];
    this.off = off + n;
    this.remaining -= n;
    return c.segIdx[seg] + off;
  }

  /** The region of the span claimSpan() / claim() returned last. */
  get claimedRegion(): MemoryRegion {
    return this.spanRegion;
  }

  /** Move the cursor `n` bytes on (clamped to what is left); returns the bytes skipped. */
  skip(n: number): number {
    const total = Math.min(n, this.remaining);
    for (let left = total; left > 0; ) left -= this.take(left);
    return total;
  }
}

/** Reads the device-readable half of a chain. */
export class ChainReader extends ChainCursor {
  reset(chain: DescriptorChain): this {
    this.start(chain, 0, chain.readableBytes);
    return this;
  }

  /** One byte, or -1 at the end. */
  readU8(): number {
    if (this.remaining < 1) return -1;
    this.take(1);
    return this.spanRegion.u8[this.spanIdx];
  }

  /** Little-endian u16, or -1 when fewer than 2 bytes are left. */
  readU16(): number {
    if (this.remaining < 2) return -1;
    return this.readU8() | (this.readU8() << 8);
  }

  /** Little-endian u32, or -1 when fewer than 4 bytes are left. */
  readU32(): number {
    if (this.remaining < 4) return -1;
    return (this.readU16() | (this.readU16() << 16)) >>> 0;
  }

  /** Copy up to `n` bytes into `dst` at `dstIdx`; returns the bytes copied. */
  copyTo(dst: Uint8Array, dstIdx: number, n: number): number {
    const at = this.claimSpan(n);
    if (at >= 0) {
      copyBytes(this.spanRegion.u8, at, dst, dstIdx, n);
      return n;
    }
    const total = Math.min(n, this.remaining);
    for (let left = total; left > 0; ) {
      const step = this.take(left);
      copyBytes(this.spanRegion.u8, this.spanIdx, dst, dstIdx, step);
      dstIdx += step;
      left -= step;
    }
    return total;
  }
}

/** Writes the device-writable half of a chain; `written` is the used length. */
export class ChainWriter extends ChainCursor {
  written = 0;

  reset(chain: DescriptorChain): this {
    this.start(chain, chain.readable, chain.writableBytes);
    this.written = 0;
    return this;
  }

  writeU8(v: number): boolean {
    if (this.remaining < 1) return false;
    this.take(1);
    this.spanRegion.u8[this.spanIdx] = v;
    this.written++;
    return true;
  }

  /** Little-endian u16; false (nothing written) when fewer than 2 bytes are left. */
  writeU16(v: number): boolean {
    if (this.remaining < 2) return false;
    this.writeU8(v & 0xff);
    this.writeU8((v >>> 8) & 0xff);
    return true;
  }

  /** Little-endian u32; false (nothing written) when fewer than 4 bytes are left. */
  writeU32(v: number): boolean {
    if (this.remaining < 4) return false;
    this.writeU16(v & 0xffff);
    this.writeU16(v >>> 16);
    return true;
  }

  /** Write `n` zero bytes (clamped); returns the bytes written. */
  zero(n: number): number {
    const total = Math.min(n, this.remaining);
    for (let left = total; left > 0; ) {
      const step = this.take(left);
      this.spanRegion.u8.fill(0, this.spanIdx, this.spanIdx + step);
      left -= step;
    }
    this.written += total;
    return total;
  }

  /**
   * Reserve the next `n` bytes for the caller to write in place when they lie
   * in one span: returns their buffer index in `claimedRegion` (counted as
   * written), or -1 (nothing moves; write them with the other methods).
   */
  claim(n: number): number {
    const at = this.claimSpan(n);
    if (at >= 0) this.written += n;
    return at;
  }

  /** Copy up to `n` bytes from `src` at `srcIdx`; returns the bytes copied. */
  copyFrom(src: Uint8Array, srcIdx: number, n: number): number {
    const at = this.claimSpan(n);
    if (at >= 0) {
      copyBytes(src, srcIdx, this.spanRegion.u8, at, n);
      this.written += n;
      return n;
    }
    const total = Math.min(n, this.remaining);
    for (let left = total; left > 0; ) {
      const step = this.take(left);
      copyBytes(src, srcIdx, this.spanRegion.u8, this.spanIdx, step);
      srcIdx += step;
      left -= step;
    }
    this.written += total;
    return total;
  }
}
