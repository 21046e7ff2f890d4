import { GuestMemoryError, InvalidArgumentError, assertLittleEndianHost } from '../errors.js';
import { copyBytes } from './copy.js';
import { type ArenaMemory, adoptArenaMemory } from './wasm-copy.js';

// Callers that took copyBytes from here keep working.
export { copyBytes } from './copy.js';

/** Where a region of guest-physical memory lives (plain data: it can be posted to a worker). */
export interface MemoryRegionSpec {
  /** Guest-physical address of the first byte. */
  gpa: number;
  size: number;
  /** A SharedArrayBuffer in process, or any ArrayBuffer (e.g. externally mapped memory). */
  buffer: ArrayBufferLike;
  /** Offset of the region's first byte in `buffer`. */
  byteOffset: number;
  /** The WebAssembly.Memory whose buffer `buffer` is (an arena's), so that copies in it use memory.copy. */
  wasm?: ArenaMemory;
}

/** Regions start 8-aligned in guest and backing space so ring views stay aligned. */
const REGION_ALIGN = 8;

/**
 * One region with views over its whole backing buffer. A guest address `a`
 * in the region is byte `a + bias` of `u8`; views are made once here so that
 * hot paths index them directly.
 */
export class MemoryRegion {
  readonly gpa: number;
  readonly size: number;
  readonly end: number;
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  /** Buffer index of guest address a is a + bias. */
  readonly bias: number;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  private readonly wasm: ArenaMemory | undefined;

  constructor(spec: MemoryRegionSpec) {
    const { gpa, size, buffer, byteOffset } = spec;
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(size) || size <= 0) {
      throw new InvalidArgumentError(`memory region gpa 0x${gpa.toString(16)} size ${size}: both must be non-negative safe integers, size > 0`);
    }
    if (gpa % REGION_ALIGN !== 0 || byteOffset % REGION_ALIGN !== 0) {
      throw new InvalidArgumentError(`memory region gpa 0x${gpa.toString(16)} / offset ${byteOffset} must be ${REGION_ALIGN}-aligned`);
    }
    if (byteOffset < 0 || byteOffset + size > buffer.byteLength) {
      throw new InvalidArgumentError(`memory region [${byteOffset}, ${byteOffset + size}) exceeds its buffer of ${buffer.byteLength} bytes`);
    }
    this.gpa = gpa;
    this.size = size;
    this.end = gpa + size;
    this.buffer = buffer;
    this.byteOffset = byteOffset;
    this.bias = byteOffset - gpa;
    this.u8 = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer, 0, buffer.byteLength >>> 1);
    this.u32 = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    this.wasm = spec.wasm;
    adoptArenaMemory(buffer, spec.wasm);
  }

  spec(): MemoryRegionSpec {
    return { gpa: this.gpa, size: this.size, buffer: this.buffer, byteOffset: this.byteOffset, wasm: this.wasm };
  }
}

/**
 * Guest-physical memory: a table of non-overlapping regions. The spec knows
 * no regions (2.7.5, 2.8.13: addresses are guest-physical): regions are how
 * this process views the memory (separate buffers, or 1 GiB views of a big
 * mapping), so regions adjacent in guest-physical space form one range.
 * read / write / fill and the integer accessors work across such an edge;
 * `region()` hands out the one region holding a range, for code that indexes
 * a region's views directly. An access that reaches a gap or leaves memory
 * is a GuestMemoryError and touches nothing.
 *
 * Only the region table is trusted. Addresses come from the guest.
 */
export class GuestMemory {
  readonly regions: readonly MemoryRegion[];
  /** Per region: where the run of adjacent regions it belongs to ends. */
  private readonly runEnd: Float64Array;
  private last: MemoryRegion;

  constructor(specs: readonly MemoryRegionSpec[]) {
    assertLittleEndianHost();
    if (specs.length === 0) throw new InvalidArgumentError('guest memory needs at least one region');
    const regions = specs.map((s) => new MemoryRegion(s)).sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < regions.length; i++) {
      if (regions[i].gpa < regions[i - 1].end) {
        throw new InvalidArgumentError(`memory regions at 0x${regions[i - 1].gpa.toString(16)} and 0x${regions[i].gpa.toString(16)} overlap`);
      }
    }
    this.regions = regions;
    this.runEnd = new Float64Array(regions.length);
    for (let i = regions.length - 1; i >= 0; i--) {
      const next = regions[i + 1];
      this.runEnd[i] = next !== undefined && next.gpa === regions[i].end ? this.runEnd[i + 1] : regions[i].end;
    }
    this.last = regions[0];
  }

  /** The plain-data description of this memory, to rebuild it in another thread. */
  specs(): MemoryRegionSpec[] {
    return this.regions.map((r) => r.spec());
  }

  /** Total bytes of guest memory. */
  get size(): number {
    let n = 0;
    for (const r of this.regions) n += r.size;
    return n;
  }

  /**
   * The one region holding all of [gpa, gpa + len), or a GuestMemoryError
   * (also for a range that crosses into an adjacent region: split it with
   * regionAt). `gpa` may be any number the guest wrote (up to 2^64 read as
   * two u32).
   */
  region(gpa: number, len: number, what?: string): MemoryRegion {
    const r = this.last;
    if (gpa >= r.gpa && gpa + len <= r.end) return r;
    return this.lookup(gpa, len, what);
  }

  /** True when [gpa, gpa + len) is guest memory: inside one region, or across regions adjacent in guest-physical space. */
  contains(gpa: number, len: number): boolean {
    if (this.find(gpa, len) !== undefined) return true;
    const i = this.indexAt(gpa);
    return i >= 0 && gpa + len <= this.runEnd[i];
  }

  /** region() without the error: the one region holding [gpa, gpa + len), or undefined. */
  regionIfOne(gpa: number, len: number): MemoryRegion | undefined {
    const r = this.last;
    if (gpa >= r.gpa && gpa + len <= r.end) return r;
    const found = this.find(gpa, len);
    if (found !== undefined) this.last = found;
    return found;
  }

  /** True when [gpa, gpa + len) lies inside one region (one backing buffer). */
  inOneRegion(gpa: number, len: number): boolean {
    return this.find(gpa, len) !== undefined;
  }

  /** The region holding byte `gpa`, or undefined. */
  regionAt(gpa: number): MemoryRegion | undefined {
    const i = this.indexAt(gpa);
    return i < 0 ? undefined : this.regions[i];
  }

  private indexAt(gpa: number): number {
    if (!(gpa >= 0)) return -1;
    const regions = this.regions;
    for (let i = 0; i < regions.length; i++) if (gpa >= regions[i].gpa && gpa < regions[i].end) return i;
    return -1;
  }

  /**
   * The region holding [gpa, gpa + len) for an access of a few bytes, or
   * null when the range crosses into an adjacent region (the caller goes
   * byte by byte); a GuestMemoryError when it is not guest memory.
   */
  private small(gpa: number, len: number): MemoryRegion | null {
    const r = this.last;
    if (gpa >= r.gpa && gpa + len <= r.end) return r;
    if (this.find(gpa, len) === undefined && this.contains(gpa, len)) return null;
    return this.lookup(gpa, len);
  }

  private lookup(gpa: number, len: number, what?: string): MemoryRegion {
    const r = this.find(gpa, len);
    if (r === undefined) throw new GuestMemoryError(gpa, len, what);
    this.last = r;
    return r;
  }

  private find(gpa: number, len: number): MemoryRegion | undefined {
    if (!(len >= 0) || !(gpa >= 0)) return undefined;
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa + len <= r.end) return r;
    }
    return undefined;
  }

  readU8(gpa: number): number {
    const r = this.region(gpa, 1);
    return r.u8[gpa + r.bias];
  }

  readU16(gpa: number): number {
    const r = this.small(gpa, 2);
    if (r === null) return this.readU8(gpa) | (this.readU8(gpa + 1) << 8);
    const i = gpa + r.bias;
    return r.u8[i] | (r.u8[i + 1] << 8);
  }

  readU32(gpa: number): number {
    const r = this.small(gpa, 4);
    if (r === null) return (this.readU16(gpa) | (this.readU16(gpa + 2) << 16)) >>> 0;
    const i = gpa + r.bias;
    return (r.u8[i] | (r.u8[i + 1] << 8) | (r.u8[i + 2] << 16) | (r.u8[i + 3] << 24)) >>> 0;
  }

  /** A little-endian u64 as a number (exact below 2^53; larger values are outside any memory anyway). */
  readU64(gpa: number): number {
    return this.readU32(gpa) + this.readU32(gpa + 4) * 0x1_0000_0000;
  }

  writeU8(gpa: number, v: number): void {
    const r = this.region(gpa, 1);
    r.u8[gpa + r.bias] = v;
  }

  writeU16(gpa: number, v: number): void {
    const r = this.small(gpa, 2);
    if (r === null) {
      this.writeU8(gpa, v);
      this.writeU8(gpa + 1, v >>> 8);
      return;
    }
    const i = gpa + r.bias;
    r.u8[i] = v;
    r.u8[i + 1] = v >>> 8;
  }

  writeU32(gpa: number, v: number): void {
    const r = this.small(gpa, 4);
    if (r === null) {
      this.writeU16(gpa, v);
      this.writeU16(gpa + 2, v >>> 16);
      return;
    }
    const i = gpa + r.bias;
    r.u8[i] = v;
    r.u8[i + 1] = v >>> 8;
    r.u8[i + 2] = v >>> 16;
    r.u8[i + 3] = v >>> 24;
  }

  writeU64(gpa: number, v: number): void {
    if (!this.contains(gpa, 8)) throw new GuestMemoryError(gpa, 8);
    this.writeU32(gpa, v >>> 0);
    this.writeU32(gpa + 4, Math.floor(v / 0x1_0000_0000) >>> 0);
  }

  /** Copy `len` bytes from guest memory into `dst` at `dstOff`. */
  read(gpa: number, dst: Uint8Array, dstOff = 0, len = dst.length - dstOff): void {
    this.copy(gpa, dst, dstOff, len, false, 'read');
  }

  /** Copy `len` bytes of `src` from `srcOff` into guest memory. */
  write(gpa: number, src: Uint8Array, srcOff = 0, len = src.length - srcOff): void {
    this.copy(gpa, src, srcOff, len, true, 'write');
  }

  /** Fill `len` bytes of guest memory with `value`. */
  fill(gpa: number, value: number, len: number): void {
    if (!this.contains(gpa, len)) throw new GuestMemoryError(gpa, len, 'fill');
    for (let a = gpa, left = len; left > 0; ) {
      const r = this.regionAt(a)!;
      const n = Math.min(left, r.end - a);
      r.u8.fill(value, a + r.bias, a + r.bias + n);
      a += n;
      left -= n;
    }
  }

  /** read / write: one copy within a region, or one per region the range crosses. */
  private copy(gpa: number, buf: Uint8Array, off: number, len: number, toGuest: boolean, what: string): void {
    let r: MemoryRegion | undefined = this.last;
    if (!(gpa >= r.gpa && gpa + len <= r.end)) r = this.find(gpa, len);
    if (r !== undefined) {
      this.last = r;
      if (toGuest) copyBytes(buf, off, r.u8, gpa + r.bias, len);
      else copyBytes(r.u8, gpa + r.bias, buf, off, len);
      return;
    }
    if (!this.contains(gpa, len)) throw new GuestMemoryError(gpa, len, what);
    for (let a = gpa, o = off, left = len; left > 0; ) {
      const p = this.regionAt(a)!;
      const n = Math.min(left, p.end - a);
      if (toGuest) copyBytes(buf, o, p.u8, a + p.bias, n);
      else copyBytes(p.u8, a + p.bias, buf, o, n);
      a += n;
      o += n;
      left -= n;
    }
  }
}
