import { threadId } from 'node:worker_threads';

/**
 * Copies inside an arena backed by a shared WebAssembly.Memory, with wasm's
 * memory.copy. V8 copies a SharedArrayBuffer's bytes through its
 * relaxed-atomic memmove, a word at a time (1500 bytes: about 85 ns with
 * copyWithin); memory.copy moves the same bytes as libc's memmove does
 * (about 25 ns), and a call into wasm costs a few ns, not the 15-30 of a
 * typed-array builtin.
 *
 * A buffer counts as arena memory in a thread once adoptArenaMemory() has
 * seen it arrive with its WebAssembly.Memory (in one message they keep their
 * identity: memory.buffer === buffer). Two buffers are the same memory when
 * they carry the same arena id: a buffer posted twice arrives as two
 * objects over the same bytes, and offsets into either are the same
 * addresses for memory.copy.
 */

/** A shared WebAssembly.Memory, as far as arenas use one (the project's type libraries declare no WebAssembly). */
export interface SharedWasmMemory {
  readonly buffer: SharedArrayBuffer;
}

/** The WebAssembly.Memory behind an arena's buffer, and an id that names that memory in every thread. */
export interface ArenaMemory {
  memory: SharedWasmMemory;
  id: number;
}

/** The parts of the WebAssembly global used here. */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => SharedWasmMemory;
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** memory.copy(dst, src, len) over the arena's memory (addresses are byte offsets into its buffer). */
export type ArenaCopy = (dst: number, src: number, len: number) => void;

/** Largest shared memory wasm32 addresses: 65536 pages of 64 KiB. */
const MAX_PAGES = 0x10000;
const PAGE = 0x10000;

/**
 * A module that imports a shared memory (env.mem, 1 to 65536 pages) and
 * exports copy(dst, src, len) = memory.copy. Written out by hand: one
 * function, no toolchain for it.
 */
const MODULE_BYTES = new Uint8Array([
  // magic, version 1
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type section: one type, (i32, i32, i32) -> ()
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00,
  // import section: env.mem, a memory, shared with a maximum (flags 3), min 1, max 65536 (LEB128 0x80 0x80 0x04)
  0x02, 0x0f, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x03, 0x01, 0x80, 0x80, 0x04,
  // function section: one function of type 0
  0x03, 0x02, 0x01, 0x00,
  // export section: "copy" = function 0
  0x07, 0x08, 0x01, 0x04, 0x63, 0x6f, 0x70, 0x79, 0x00, 0x00,
  // code section: one body, no locals: local.get 0, 1, 2; memory.copy 0 0; end
  0x0a, 0x0e, 0x01, 0x0c, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfc, 0x0a, 0x00, 0x00, 0x0b,
]);

let compiled: object | null | undefined;

/** The module, compiled once per thread; null where this Node has no wasm or no shared memory. */
function copyModule(): object | null {
  if (compiled === undefined) {
    try {
      compiled = wasm === undefined ? null : new wasm.Module(MODULE_BYTES);
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

let arenasMade = 0;

/**
 * A shared WebAssembly.Memory of at least `byteLength` bytes for a new
 * arena, or undefined where wasm cannot give one (over 4 GiB, no shared wasm
 * memory, or the address space for it refused): the arena then takes a plain
 * SharedArrayBuffer and copies as before.
 */
export function newArenaMemory(byteLength: number): ArenaMemory | undefined {
  const pages = Math.ceil(byteLength / PAGE);
  if (pages > MAX_PAGES || wasm === undefined || copyModule() === null) return undefined;
  try {
    const memory = new wasm.Memory({ initial: pages, maximum: pages, shared: true });
    // Unique in the process: this thread's id, then its count of arenas.
    const arena = { memory, id: threadId * 2 ** 32 + ++arenasMade };
    adoptArenaMemory(memory.buffer, arena);
    return arena;
  } catch {
    return undefined;
  }
}

/** This thread's copy function per Memory object (an instance each). */
const copies = new WeakMap<SharedWasmMemory, ArenaCopy>();
/** Buffers known to be arena memory in this thread: their arena's id and copy function. */
const adopted = new WeakMap<ArrayBufferLike, { id: number; copy: ArenaCopy }>();

/**
 * Record that `buffer` is the bytes of `arena` (when it is: it must be that
 * memory's own buffer object, as it is when both came in one message).
 * Anything else is left alone and copies as a plain buffer.
 */
export function adoptArenaMemory(buffer: ArrayBufferLike, arena: ArenaMemory | undefined): void {
  if (arena === undefined || adopted.has(buffer) || arena.memory.buffer !== buffer) return;
  const module = copyModule();
  if (module === null || wasm === undefined) return;
  let copy = copies.get(arena.memory);
  if (copy === undefined) {
    const instance = new wasm.Instance(module, { env: { mem: arena.memory } });
    copy = instance.exports.copy as ArenaCopy;
    copies.set(arena.memory, copy);
  }
  adopted.set(buffer, { id: arena.id, copy });
}

/** memory.copy for copies from buffer `a` to buffer `b` when both are the same arena memory, else undefined. */
export function arenaCopyBetween(a: ArrayBufferLike, b: ArrayBufferLike): ArenaCopy | undefined {
  const x = adopted.get(a);
  if (x === undefined) return undefined;
  return a === b || adopted.get(b)?.id === x.id ? x.copy : undefined;
}
