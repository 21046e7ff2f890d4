import { InvalidArgumentError } from '../errors.js';
import type { SharedArena } from '../memory/arena.js';
import { type ArenaMemory, adoptArenaMemory } from '../memory/wasm-copy.js';
import { type WordRef, ring } from '../notify/notify-area.js';

/** Int32 words per cache line; each index of the channel gets its own line. */
const LINE = 16;
const HEADER_BYTES = 4 * LINE * 4;
const TAIL = 0;
const HEAD = LINE;
const CONSUMER_EVENT = 2 * LINE;
const PRODUCER_EVENT = 3 * LINE;
/** Length word that says "the next record starts at the beginning of the data area". */
const WRAP = 0xffffffff;
/** Largest meta block a channel carries (a virtio_vsock_hdr is 44 bytes). */
export const PORT_MAX_META = 64;

/**
 * A record is a header and the frame, padded to 8. The header is the u32
 * frame length, the u32 progress of the consumer on this record, and the
 * channel's meta bytes (what the device that made the frame says about it:
 * net's virtio_net_hdr, vsock's virtio_vsock_hdr), which end exactly where
 * the frame starts: meta then frame is one run of bytes, as a tap device's
 * vnet header and frame are. The header is padded (before the meta) so the
 * frame starts 8-aligned, as frames in guest buffers do: V8 copies shared
 * memory word by word only when source and destination share their
 * alignment, byte by byte otherwise (several times slower for 1500 B).
 */
const recordHeaderBytes = (metaBytes: number): number => (8 + metaBytes + 7) & ~7;
const recordBytes = (headerBytes: number, len: number): number => (len + headerBytes + 7) & ~7;

/**
 * Two spare words of the consumer's own line that name the consumer end
 * serving the channel now (0: none said): a transmit queue on the same
 * thread finds its receiver by them (net/direct-link.ts).
 */
const CONSUMER_TAG = CONSUMER_EVENT + 1;

/** Say which consumer end serves the channel now (`tag` a non-zero u32 pair: owner, serial). */
export function setConsumerTag(spec: PortChannelSpec, owner: number, serial: number): void {
  const i32 = new Int32Array(spec.buffer, spec.offset, HEADER_BYTES >>> 2);
  Atomics.store(i32, CONSUMER_TAG, owner | 0);
  Atomics.store(i32, CONSUMER_TAG + 1, serial | 0);
}

/** The serial of the channel's consumer tag when its owner is `owner`, else 0. */
export function consumerSerial(spec: PortChannelSpec, owner: number): number {
  const i32 = new Int32Array(spec.buffer, spec.offset, HEADER_BYTES >>> 2);
  return Atomics.load(i32, CONSUMER_TAG) === (owner | 0) ? Atomics.load(i32, CONSUMER_TAG + 1) >>> 0 : 0;
}

/** Same test as the virtqueue event index, on 32-bit byte counters. */
const needEvent32 = (event: number, next: number, old: number): boolean => ((next - event - 1) >>> 0) < ((next - old) >>> 0);

/**
 * Plain-data description of a port channel: where it lives and which words to
 * ring to wake its consumer (new frames) and its producer (space freed).
 */
export interface PortChannelSpec {
  buffer: SharedArrayBuffer;
  /** Byte offset of the channel header in `buffer`. */
  offset: number;
  /** Bytes of the data area: a power of two. */
  capacity: number;
  /** Largest frame the channel carries. */
  maxFrame: number;
  /** Meta bytes every record carries before its frame (0 to PORT_MAX_META). */
  metaBytes: number;
  wakeConsumer: WordRef;
  wakeProducer: WordRef;
  /** The WebAssembly.Memory whose buffer `buffer` is (the arena's), so that copies in it use memory.copy. */
  wasm?: ArenaMemory;
}

/**
 * Lay out a channel in an arena: records of up to `maxFrame` frame bytes,
 * each with `metaBytes` of meta. Wake words are set by whoever connects its ends.
 */
export function allocPortChannel(arena: SharedArena, capacity: number, maxFrame: number, metaBytes: number, wakeConsumer: WordRef, wakeProducer: WordRef): PortChannelSpec {
  if (!Number.isInteger(metaBytes) || metaBytes < 0 || metaBytes > PORT_MAX_META) {
    throw new InvalidArgumentError(`channel meta of ${metaBytes} bytes: must be an integer from 0 to ${PORT_MAX_META}`);
  }
  if ((capacity & (capacity - 1)) !== 0 || capacity < 2 * recordBytes(recordHeaderBytes(metaBytes), maxFrame)) {
    throw new InvalidArgumentError(`channel capacity ${capacity} must be a power of two of at least twice a ${maxFrame}-byte frame record`);
  }
  const offset = arena.alloc(HEADER_BYTES + capacity, 64);
  return { buffer: arena.buffer, offset, capacity, maxFrame, metaBytes, wakeConsumer, wakeProducer, wasm: arena.wasm };
}

/**
 * Empty a channel: both indices and both event words back to 0. Only while
 * neither end is in use; ends made afterwards start from the empty channel.
 */
export function resetPortChannel(spec: PortChannelSpec): void {
  const i32 = new Int32Array(spec.buffer, spec.offset, HEADER_BYTES >>> 2);
  for (let i = 0; i < i32.length; i++) Atomics.store(i32, i, 0);
}

/**
 * Bytes of records published into the channel and not yet released by its
 * consumer (record headers and padding included): 0 when nothing waits.
 * A snapshot of two indices, readable from any thread.
 */
export function portChannelBacklog(spec: PortChannelSpec): number {
  const i32 = new Int32Array(spec.buffer, spec.offset, HEADER_BYTES >>> 2);
  return (Atomics.load(i32, TAIL) - Atomics.load(i32, HEAD)) >>> 0;
}

/**
 * One end of a single-producer single-consumer frame channel in shared
 * memory: the port between a NIC's tx worker and a peer's rx worker (or a
 * switch). Records (see recordHeaderBytes) are never split at the end of the
 * data area. Both ends cache the other's index and publish their
 * own once per batch; each end asks to be woken with an event index, as a
 * virtqueue does, so a busy channel costs no wake-ups.
 */
abstract class PortChannelEnd {
  readonly u8: Uint8Array;
  protected readonly i32: Int32Array;
  readonly u32: Uint32Array;
  protected readonly hdr: number;
  /** u8 index of the first data byte. */
  protected readonly data: number;
  protected readonly mask: number;
  readonly maxFrame: number;
  /** Bytes from a record's start to its frame. */
  protected readonly headerBytes: number;
  /** Bytes from a record's meta to its frame. */
  protected readonly metaBytes: number;

  constructor(readonly spec: PortChannelSpec) {
    adoptArenaMemory(spec.buffer, spec.wasm);
    this.u8 = new Uint8Array(spec.buffer);
    this.i32 = new Int32Array(spec.buffer);
    this.u32 = new Uint32Array(spec.buffer);
    this.hdr = spec.offset >>> 2;
    this.data = spec.offset + HEADER_BYTES;
    this.mask = spec.capacity - 1;
    this.maxFrame = spec.maxFrame;
    this.metaBytes = spec.metaBytes;
    this.headerBytes = recordHeaderBytes(spec.metaBytes);
  }

  /** u8 index of the meta bytes of the record whose frame starts at `at` (they end at `at`). */
  metaAt(at: number): number {
    return at - this.metaBytes;
  }

  /** u32 index of the progress word of the record whose frame starts at `at`. */
  protected progressWord(at: number): number {
    return (at - this.headerBytes + 4) >>> 2;
  }

  protected load(word: number): number {
    return Atomics.load(this.i32, this.hdr + word) >>> 0;
  }

  protected store(word: number, v: number): void {
    Atomics.store(this.i32, this.hdr + word, v | 0);
  }
}

/** The producer end: reserve, fill, commit, and publish once per batch. */
export class PortChannelProducer extends PortChannelEnd {
  private tail: number;
  private published: number;
  private headCache: number;
  private reserved = 0;
  /** u8 index of the reserved frame. */
  private reservedAt = 0;
  /** Bytes the reserved record skips at the end of the data area (its WRAP), added to the tail by commit(). */
  private skip = 0;
  private readonly wakeI32: Int32Array;

  constructor(spec: PortChannelSpec) {
    super(spec);
    this.tail = this.load(TAIL);
    this.published = this.tail;
    this.headCache = this.load(HEAD);
    this.wakeI32 = new Int32Array(spec.wakeConsumer.buffer);
  }

  /**
   * Room for a frame of `len` bytes: returns the u8 index to write it at, or
   * -1 when the channel is full. Its meta goes at metaAt() of that index;
   * its progress starts at 0. Call commit() once the bytes are written.
   */
  reserve(len: number): number {
    if (!this.room(len)) return -1;
    let pos = this.tail & this.mask;
    this.skip = 0;
    if (pos + recordBytes(this.headerBytes, len) > this.spec.capacity) {
      // The tail moves past the end only at commit(): a reservation that is
      // never committed (a frame dropped after all) must leave the tail on a
      // record boundary, or the consumer would follow the WRAP into stale data.
      this.u32[(this.data + pos) >>> 2] = WRAP;
      this.skip = this.spec.capacity - pos;
      pos = 0;
    }
    this.reserved = len;
    this.u32[(this.data + pos) >>> 2] = len;
    this.u32[((this.data + pos) >>> 2) + 1] = 0;
    this.reservedAt = this.data + pos + this.headerBytes;
    return this.reservedAt;
  }

  /**
   * The reserved frame is `len` bytes, fewer than reserved (a read into the
   * channel came back shorter than the largest frame it made room for).
   */
  shrink(len: number): void {
    this.reserved = len;
    this.u32[(this.reservedAt - this.headerBytes) >>> 2] = len;
  }

  /** True when a frame of `len` bytes fits now (reloads the consumer's index only when needed). */
  room(len: number): boolean {
    const need = recordBytes(this.headerBytes, len);
    const pos = this.tail & this.mask;
    const skip = pos + need > this.spec.capacity ? this.spec.capacity - pos : 0;
    if (this.spec.capacity - ((this.tail - this.headCache) >>> 0) >= skip + need) return true;
    this.headCache = this.load(HEAD);
    return this.spec.capacity - ((this.tail - this.headCache) >>> 0) >= skip + need;
  }

  /** The reserved frame is written: make it part of the next publish(). */
  commit(): void {
    this.tail = (this.tail + this.skip + recordBytes(this.headerBytes, this.reserved)) >>> 0;
    this.skip = 0;
  }

  /** Publish committed frames with one store, waking the consumer if it asked. */
  publish(): void {
    const old = this.published;
    if (old === this.tail) return;
    this.store(TAIL, this.tail);
    this.published = this.tail;
    if (needEvent32(this.load(CONSUMER_EVENT), this.tail, old)) ring(this.wakeI32, this.spec.wakeConsumer.index);
  }

  /**
   * Before sleeping on a full channel: ask to be woken when the consumer frees
   * anything, then look again. Returns true when there is room for `len` now.
   */
  armSpace(len: number): boolean {
    this.store(PRODUCER_EVENT, this.headCache);
    return this.room(len);
  }
}

/** The consumer end: peek, consume, and release once per batch. */
export class PortChannelConsumer extends PortChannelEnd {
  /** Length of the frame peek() found. */
  len = 0;
  private head: number;
  private released: number;
  private tailCache: number;
  private readonly wakeI32: Int32Array;

  constructor(spec: PortChannelSpec) {
    super(spec);
    this.head = this.load(HEAD);
    this.released = this.head;
    this.tailCache = this.load(TAIL);
    this.wakeI32 = new Int32Array(spec.wakeProducer.buffer);
  }

  /**
   * How many times peek() has loaded the producer's index. Frames first seen
   * after this changed were published after anything the reader looked at
   * before it (a consumer that judges frames by shared state re-reads that
   * state when this moves, not per frame).
   */
  tailLoads = 0;

  /** The u8 index of the next frame (length in `len`), or -1 when empty. */
  peek(): number {
    if (this.head === this.tailCache) {
      this.tailLoads++;
      this.tailCache = this.load(TAIL);
      if (this.head === this.tailCache) return -1;
    }
    let pos = this.head & this.mask;
    let len = this.u32[(this.data + pos) >>> 2];
    if (len === WRAP) {
      this.head = (this.head + this.spec.capacity - pos) >>> 0;
      pos = 0;
      len = this.u32[this.data >>> 2];
    }
    this.len = len;
    return this.data + pos + this.headerBytes;
  }

  /**
   * Stream position of the frame peek() returned: a 32-bit byte count that
   * differs for every record within 4 GiB of traffic and stays the same for
   * the same record, even in a restarted consumer.
   */
  get position(): number {
    return this.head;
  }

  /**
   * The consumer's progress on the record whose frame starts at `at` (0 until
   * setProgress()): how far a record that goes out in parts has gone, kept in
   * the record so a later attempt, or a restarted consumer, goes on from there.
   */
  progress(at: number): number {
    return this.u32[this.progressWord(at)];
  }

  /** Note how far the record at `at` has gone (it stays in the channel until consume()). */
  setProgress(at: number, n: number): void {
    this.u32[this.progressWord(at)] = n;
  }

  /** Drop the frame peek() returned. */
  consume(): void {
    this.head = (this.head + recordBytes(this.headerBytes, this.len)) >>> 0;
  }

  /** Publish the consumed space with one store, waking the producer if it asked. */
  release(): void {
    const old = this.released;
    if (old === this.head) return;
    this.store(HEAD, this.head);
    this.released = this.head;
    if (needEvent32(this.load(PRODUCER_EVENT), this.head, old)) ring(this.wakeI32, this.spec.wakeProducer.index);
  }

  /**
   * Before sleeping on an empty channel: ask to be woken by the next publish,
   * then look again. Returns true when a frame is already there.
   */
  armData(): boolean {
    this.release();
    this.store(CONSUMER_EVENT, this.head);
    return this.peek() !== -1;
  }
}

/**
 * The channels one transmit queue sends on: one per receiving queue
 * downstream (every ring and channel has one producer and one consumer, so
 * fan-out is a channel per destination, fan-in a channel per source).
 */
export interface PortOutput {
  channels: PortChannelSpec[];
  /** Word holding how many of `channels` the receiver uses now (its active queue pairs); null: all. */
  active: WordRef | null;
}
