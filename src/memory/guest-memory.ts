import { GuestMemoryError, InvalidArgumentError, assertLittleEndianHost } from '../errors.js';
import { copyBytes } from './copy.js';

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
  }

  spec(): MemoryRegionSpec {
    return { gpa: this.gpa, size: this.size, buffer: this.buffer, byteOffset: this.byteOffset };
  }
}

/**
 * Guest-physical memory: a table of non-overlapping regions. Every access is
 * bounds-checked against one region; an access that leaves its region (into a
 * gap or another region) is a GuestMemoryError and touches nothing.
 *
 * Only the region table is trusted. Addresses come from the guest.
 */
export class GuestMemory {
  readonly regions: readonly MemoryRegion[];
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
   * The region holding all of [gpa, gpa + len), or a GuestMemoryError. `gpa`
   * may be any number the guest wrote (up to 2^64 read as two u32).
   */
  region(gpa: number, len: number, what?: string): MemoryRegion {
    const r = this.last;
    if (gpa >= r.gpa && gpa + len <= r.end) return r;
    return this.lookup(gpa, len, what);
  }

  /** True when [gpa, gpa + len) lies inside one region. */
  contains(gpa: number, len: number): boolean {
    return this.find(gpa, len) !== undefined;
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
    const r = this.region(gpa, 2);
    const i = gpa + r.bias;
    return r.u8[i] | (r.u8[i + 1] << 8);
  }

  readU32(gpa: number): number {
    const r = this.region(gpa, 4);
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
    const r = this.region(gpa, 2);
    const i = gpa + r.bias;
    r.u8[i] = v;
    r.u8[i + 1] = v >>> 8;
  }

  writeU32(gpa: number, v: number): void {
    const r = this.region(gpa, 4);
    const i = gpa + r.bias;
    r.u8[i] = v;
    r.u8[i + 1] = v >>> 8;
    r.u8[i + 2] = v >>> 16;
    r.u8[i + 3] = v >>> 24;
  }

  writeU64(gpa: number, v: number): void {
    this.region(gpa, 8);
    this.writeU32(gpa, v >>> 0);
    this.writeU32(gpa + 4, Math.floor(v / 0x1_0000_0000) >>> 0);
  }

  /** Copy `len` bytes from guest memory into `dst` at `dstOff`. */
  read(gpa: number, dst: Uint8Array, dstOff = 0, len = dst.length - dstOff): void {
    const r = this.region(gpa, len, 'read');
    copyBytes(r.u8, gpa + r.bias, dst, dstOff, len);
  }

  /** Copy `len` bytes of `src` from `srcOff` into guest memory. */
  write(gpa: number, src: Uint8Array, srcOff = 0, len = src.length - srcOff): void {
    const r = this.region(gpa, len, 'write');
    copyBytes(src, srcOff, r.u8, gpa + r.bias, len);
  }

  /** Fill `len` bytes of guest memory with `value`. */
  fill(gpa: number, value: number, len: number): void {
    const r = this.region(gpa, len, 'fill');
    const i = gpa + r.bias;
    r.u8.fill(value, i, i + len);
  }
}
