import { GuestMemory } from '../memory/guest-memory.js';
import { registerMappedBuffer } from '../memory/native-copy.js';
import * as libc from '../os/libc.js';
import { type MemRegion, VhostUserProtocolError } from './protocol.js';

const PAGE = 4096n;
/** Guest addresses are JavaScript numbers in GuestMemory: regions must end below 2^53. */
const MAX_GPA = BigInt(Number.MAX_SAFE_INTEGER);
const U64_END = 1n << 64n;

/** One mapped region as plain data: enough for any thread of this process to view it. */
export interface MappedRegionSpec {
  gpa: number;
  size: number;
  /** Address of the mapping (page-aligned) and its length. */
  address: bigint;
  mapLength: number;
  /** Where the region starts in the mapping. */
  byteOffset: number;
}

interface Mapped extends MappedRegionSpec {
  uva: bigint;
}

/**
 * Largest view of a mapping: a typed array (and koffi's view) holds less than
 * 4 GiB, so bigger regions (an 8 GiB guest's RAM) are viewed as chunks of at
 * most 1 GiB, each a GuestMemory region of its own. Chunk edges sit at
 * multiples of 1 GiB in guest-physical space (not of the region's start), so
 * a naturally aligned guest allocation (a ring, a page-sized buffer) never
 * crosses one. A buffer that does cross one is split per chunk when popped
 * (adjacent regions are one range); a ring part must lie in one chunk.
 */
const VIEW_CHUNK = 1 << 30;

/** Guest memory over the mapped regions of `specs`, viewed from the calling thread. */
export function viewMappedMemory(specs: readonly MappedRegionSpec[]): GuestMemory {
  return new GuestMemory(
    specs.flatMap((r) => {
      const chunks = [];
      for (let off = 0; off < r.size; ) {
        const edge = (Math.floor((r.gpa + off) / VIEW_CHUNK) + 1) * VIEW_CHUNK;
        const size = Math.min(edge - (r.gpa + off), r.size - off);
        const address = r.address + BigInt(r.byteOffset + off);
        const buffer = libc.viewOf(address, size);
        // Copies between this memory and lab channels go by address (no view per copy).
        registerMappedBuffer(buffer, Number(address));
        chunks.push({ gpa: r.gpa + off, size, buffer, byteOffset: 0 });
        off += size;
      }
      return chunks;
    }),
  );
}

/**
 * The front end's memory table (SET_MEM_TABLE), mapped into this process.
 * Every region is checked before anything is mapped: a size of 0, an
 * overflow, an overlap with another region (in guest-physical or in the
 * front end's virtual space), or a range past the end of its fd is refused.
 * The region fds are closed once mapped (the mappings keep the memory).
 * Ring addresses arrive as front-end virtual addresses: uvaToGpa translates
 * them through the same table.
 */
export class FrontEndMemory {
  private readonly regions: Mapped[];
  /** Guest memory as the control plane's thread sees it. */
  readonly memory: GuestMemory;
  private unmapped = false;

  private constructor(regions: Mapped[]) {
    this.regions = regions;
    this.memory = viewMappedMemory(regions);
  }

  /**
   * Validate and map `table`; closes every fd in it whatever happens.
   * `allowUnsealed`: map fds not sealed against shrinking (see checkSealed).
   */
  static map(table: readonly MemRegion[], options: { allowUnsealed: boolean }): FrontEndMemory {
    const mapped: Mapped[] = [];
    try {
      checkTable(table);
      if (!options.allowUnsealed) for (const r of table) checkSealed(r);
      for (const r of table) mapped.push(mapRegion(r));
      return new FrontEndMemory(mapped);
    } catch (e) {
      for (const m of mapped) libc.munmap(m.address, m.mapLength);
      throw e;
    } finally {
      for (const r of table) libc.close(r.fd);
    }
  }

  /** The regions as plain data, for queue workers to view. */
  get specs(): MappedRegionSpec[] {
    return this.regions.map(({ gpa, size, address, mapLength, byteOffset }) => ({ gpa, size, address, mapLength, byteOffset }));
  }

  /** Total bytes mapped. */
  get size(): number {
    return this.regions.reduce((n, r) => n + r.size, 0);
  }

  /** The guest-physical address of front-end virtual address `uva` (with `len` bytes inside one region). */
  uvaToGpa(uva: bigint, len: number, what: string): number {
    for (const r of this.regions) {
      if (uva >= r.uva && uva + BigInt(len) <= r.uva + BigInt(r.size)) return r.gpa + Number(uva - r.uva);
    }
    throw new VhostUserProtocolError(`${what} at front-end address 0x${uva.toString(16)} (${len} bytes) is in no memory region`);
  }

  /** Undo the mappings. No thread may use a view of them afterwards (stop every queue first). */
  unmap(): void {
    if (this.unmapped) return;
    this.unmapped = true;
    for (const r of this.regions) libc.munmap(r.address, r.mapLength);
  }
}

/**
 * Most front-end memory one session maps (64 GiB): every region is mapped
 * into this process and viewed in 1 GiB chunks, so a table of sparse
 * terabyte memfds would otherwise cost address space and thousands of views.
 */
export const MAX_FRONT_END_MEMORY = 64 * 2 ** 30;

function checkTable(table: readonly MemRegion[]): void {
  const total = table.reduce((n, r) => n + r.size, 0n);
  if (total > BigInt(MAX_FRONT_END_MEMORY)) throw new VhostUserProtocolError(`memory table of 0x${total.toString(16)} bytes: more than the ${MAX_FRONT_END_MEMORY / 2 ** 30} GiB a session may map`);
  for (const r of table) {
    const where = `memory region gpa 0x${r.gpa.toString(16)} size 0x${r.size.toString(16)}`;
    if (r.size === 0n) throw new VhostUserProtocolError(`${where}: empty`);
    if (r.gpa + r.size > MAX_GPA) throw new VhostUserProtocolError(`${where}: ends above 2^53`);
    if (r.uva + r.size > U64_END || r.mmapOffset + r.size > U64_END) throw new VhostUserProtocolError(`${where}: wraps around 2^64`);
    if (r.gpa % 8n !== 0n || r.mmapOffset % 8n !== 0n) throw new VhostUserProtocolError(`${where}: gpa and mmap offset must be 8-aligned`);
  }
  for (let i = 0; i < table.length; i++) {
    for (let j = i + 1; j < table.length; j++) {
      const a = table[i];
      const b = table[j];
      if (a.gpa < b.gpa + b.size && b.gpa < a.gpa + a.size) throw new VhostUserProtocolError(`memory regions ${i} and ${j} overlap in guest-physical space`);
      if (a.uva < b.uva + b.size && b.uva < a.uva + a.size) throw new VhostUserProtocolError(`memory regions ${i} and ${j} overlap in front-end virtual space`);
    }
  }
}

/**
 * A region's fd must be sealed against shrinking (F_SEAL_SHRINK): the front
 * end shares the file, and one it truncates under our mapping turns the next
 * access to the lost pages into SIGBUS, which kills the whole process (no
 * thread of Node can catch it). QEMU's memfd backend seals by default; an
 * fd that is not sealed, or cannot be (a plain or hugetlbfs file), is refused
 * unless the server trusts its front end (allowUnsealedMemory).
 */
function checkSealed(r: MemRegion): void {
  const seals = libc.seals(r.fd);
  if (seals >= 0 && (seals & libc.F_SEAL_SHRINK) !== 0) return;
  const why = seals >= 0 ? 'is not sealed against shrinking (F_SEAL_SHRINK)' : 'cannot be sealed (not a memfd)';
  throw new VhostUserProtocolError(
    `memory region gpa 0x${r.gpa.toString(16)}: its fd (${libc.describeFd(r.fd)}) ${why}: the front end could truncate it under the mapping (SIGBUS); seal it, or serve with allowUnsealedMemory to trust the front end`,
  );
}

function mapRegion(r: MemRegion): Mapped {
  const fileBytes = BigInt(libc.fileSize(r.fd));
  if (r.mmapOffset + r.size > fileBytes) {
    throw new VhostUserProtocolError(`memory region gpa 0x${r.gpa.toString(16)}: offset 0x${r.mmapOffset.toString(16)} + size 0x${r.size.toString(16)} is past the end of its fd (0x${fileBytes.toString(16)} bytes)`);
  }
  const start = (r.mmapOffset / PAGE) * PAGE;
  const byteOffset = Number(r.mmapOffset - start);
  const mapLength = byteOffset + Number(r.size);
  const address = libc.mmapShared(r.fd, mapLength, Number(start));
  return { gpa: Number(r.gpa), size: Number(r.size), uva: r.uva, address, mapLength, byteOffset };
}
