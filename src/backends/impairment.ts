import { randomInt } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import type { SharedArena } from '../memory/arena.js';
import { copyBytes } from '../memory/guest-memory.js';
import { type ArenaMemory, adoptArenaMemory } from '../memory/wasm-copy.js';
import { NET_HDR_SIZE } from '../spec/net.js';
import { recordNetHdr } from '../net/net-port.js';

/**
 * What a link does to frames on their way (netem's knobs, Firecracker's rate
 * limiter). All optional; an impairment with none set does nothing.
 */
export interface ImpairmentOptions {
  /** Fixed one-way delay in milliseconds. */
  delayMs?: number;
  /** Extra delay drawn uniformly from [0, jitterMs) per frame; frames are never reordered by it. */
  jitterMs?: number;
  /** Share of frames lost, 0..100, drawn from a seeded generator. */
  lossPercent?: number;
  /** Token bucket rate limit in bits per second of frame bytes; unlimited when absent. */
  rateBitsPerSec?: number;
  /** Token bucket size in bytes; default 10 ms at the rate, at least one 1518-byte frame. */
  burstBytes?: number;
  /** Seed of the loss generator; default a random one (see Impairment.seed). */
  seed?: number;
  /**
   * Bytes of the private queue that holds delayed or rate-limited frames
   * (rounded up to a power of two); default 1 MiB. It bounds the
   * bandwidth-delay product: when it is full the sender waits.
   */
  queueBytes?: number;
}

/** Plain-data form of an impairment, to rebuild it in a worker. */
export interface ImpairmentSpec {
  delayMs: number;
  jitterMs: number;
  lossPercent: number;
  /** 0: unlimited. */
  rateBitsPerSec: number;
  burstBytes: number;
  seed: number;
  /** The queue (delay line) in shared memory; null when only loss is asked for. */
  line: { buffer: SharedArrayBuffer; offset: number; capacity: number; wasm?: ArenaMemory } | null;
}

/**
 * A delay-line record: u32 length, u32 pad, f64 due time (ms), the 12-byte
 * virtio_net_hdr right before the frame (as in a port channel, so
 * recordNetHdr() finds it), then the frame, 8-aligned.
 */
const LINE_RECORD_HEADER = 32;
const LINE_DUE = 8;
const LINE_NET_HDR = LINE_RECORD_HEADER - NET_HDR_SIZE;
const WRAP = 0xffffffff;
const lineRecordBytes = (len: number): number => (len + LINE_RECORD_HEADER + 7) & ~7;
const DEFAULT_QUEUE_BYTES = 1 << 20;
const MIN_BURST = 1518;
const BURST_WINDOW_MS = 10;

function check(name: string, v: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max)) {
    throw new InvalidArgumentError(`impairment ${name} ${String(v)} must be a number in [${min}, ${max}]`);
  }
}

/**
 * Validate `options` and lay out the impairment's queue in `arena` (so a
 * frame moves channel -> queue -> channel by copyWithin on one buffer).
 * Returns null when the options ask for nothing.
 */
export function planImpairment(arena: SharedArena, options: ImpairmentOptions, maxFrame: number): ImpairmentSpec | null {
  validateImpairment(options);
  const delayMs = options.delayMs ?? 0;
  const jitterMs = options.jitterMs ?? 0;
  const lossPercent = options.lossPercent ?? 0;
  const rate = options.rateBitsPerSec ?? 0;
  if (delayMs === 0 && jitterMs === 0 && lossPercent === 0 && rate === 0) return null;
  const burstBytes = options.burstBytes ?? Math.max(MIN_BURST, Math.ceil((rate / 8) * (BURST_WINDOW_MS / 1000)));
  let line: ImpairmentSpec['line'] = null;
  if (delayMs > 0 || jitterMs > 0 || rate > 0) {
    let capacity = 1 << Math.ceil(Math.log2(Math.max(options.queueBytes ?? DEFAULT_QUEUE_BYTES, 4096)));
    // Like a port channel: at least two of the largest records, never split.
    while (capacity < 2 * lineRecordBytes(maxFrame)) capacity *= 2;
    line = { buffer: arena.buffer, offset: arena.alloc(capacity, 64), capacity, wasm: arena.wasm };
  }
  return { delayMs, jitterMs, lossPercent, rateBitsPerSec: rate, burstBytes, seed: options.seed ?? randomInt(0x7fffffff), line };
}

/** Throw InvalidArgumentError when an option is out of range. */
export function validateImpairment(options: ImpairmentOptions): void {
  check('delayMs', options.delayMs, 0);
  check('jitterMs', options.jitterMs, 0);
  check('lossPercent', options.lossPercent, 0, 100);
  if (options.rateBitsPerSec !== undefined) check('rateBitsPerSec', options.rateBitsPerSec, 1);
  if (options.burstBytes !== undefined) check('burstBytes', options.burstBytes, 1);
  if (options.seed !== undefined && !Number.isInteger(options.seed)) throw new InvalidArgumentError(`impairment seed ${options.seed} must be an integer`);
  check('queueBytes', options.queueBytes, 1, 1 << 30);
}

/**
 * A seeded generator of uniform numbers in [0, 1): a Weyl sequence
 * (golden-ratio increment) through a 32-bit avalanche mix. Small, fast,
 * no allocation, and the same sequence for the same seed on every run.
 */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed | 0;
  }

  next(): number {
    this.state = (this.state + 0x9e3779b9) | 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / 4294967296;
  }
}

/**
 * One direction's impairment, run by whoever forwards the frames (a switch
 * port's egress, one direction of a relay), on that thread only.
 *
 * - Loss: each offered frame is lost with probability lossPercent / 100.
 * - Delay: a frame is copied into a private queue (the delay line, in
 *   shared memory) stamped with its due time, now + delay + [0, jitter);
 *   due times never go backwards, so jitter does not reorder.
 * - Rate: a token bucket of `burstBytes` refilled at the rate; the frame at
 *   the head of the queue leaves once it is due and the bucket holds its
 *   length (a frame larger than the bucket leaves when the bucket is full
 *   and drives it negative, so the long-run rate still holds). Frames are
 *   never dropped for rate: they wait, and a full queue makes the sender
 *   wait (back-pressure), as Firecracker's rate limiter does.
 *
 * Time is milliseconds from one clock (performance.now() of the thread),
 * read by the caller once per batch.
 */
export class Impairment {
  /** The seed the loss generator started from (reported so a run can be repeated). */
  readonly seed: number;
  /** True when frames go through the queue (delay, jitter or rate); false for loss only. */
  readonly queued: boolean;
  /** Length of the frame head() returned. */
  len = 0;
  private readonly lossP: number;
  private readonly delayMs: number;
  private readonly jitterMs: number;
  private readonly rng: SeededRandom;
  private readonly jitterRng: SeededRandom;
  private readonly bytesPerMs: number;
  private readonly burst: number;
  private tokens: number;
  private lastRefill = -1;
  private lastDue = 0;
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;
  private readonly base: number;
  private readonly capacity: number;
  private readonly mask: number;
  private first = 0;
  private tail = 0;
  private frames = 0;
  private bytes = 0;

  constructor(spec: ImpairmentSpec) {
    this.seed = spec.seed;
    this.lossP = spec.lossPercent / 100;
    this.delayMs = spec.delayMs;
    this.jitterMs = spec.jitterMs;
    this.rng = new SeededRandom(spec.seed);
    this.jitterRng = new SeededRandom(spec.seed ^ 0x5bd1e995);
    this.bytesPerMs = spec.rateBitsPerSec / 8000;
    this.burst = spec.burstBytes;
    this.tokens = spec.burstBytes;
    const line = spec.line;
    this.queued = line !== null;
    const buffer = line?.buffer ?? new SharedArrayBuffer(8);
    adoptArenaMemory(buffer, line?.wasm);
    this.u8 = new Uint8Array(buffer);
    this.u32 = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    this.f64 = new Float64Array(buffer, 0, buffer.byteLength >>> 3);
    this.base = line?.offset ?? 0;
    this.capacity = line?.capacity ?? 0;
    this.mask = this.capacity - 1;
  }

  /** Draw once: true when the frame is to be lost. */
  lose(): boolean {
    return this.lossP > 0 && this.rng.next() < this.lossP;
  }

  /** Frames and bytes waiting in the queue. */
  get queuedFrames(): number {
    return this.frames;
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  /** True when the queue can take a frame of `len` bytes now. */
  room(len: number): boolean {
    const need = lineRecordBytes(len);
    const pos = this.tail & this.mask;
    const skip = pos + need > this.capacity ? this.capacity - pos : 0;
    return this.capacity - ((this.tail - this.first) >>> 0) >= skip + need;
  }

  /**
   * Copy the channel record whose frame is u8[at, at+len) (its
   * virtio_net_hdr included) into the queue, due at now + delay + jitter.
   * Call only after room(len) said yes.
   */
  enqueue(src: Uint8Array, at: number, len: number, now: number): void {
    const need = lineRecordBytes(len);
    let pos = this.tail & this.mask;
    if (pos + need > this.capacity) {
      this.u32[(this.base + pos) >>> 2] = WRAP;
      this.tail = (this.tail + this.capacity - pos) >>> 0;
      pos = 0;
    }
    const rec = this.base + pos;
    let due = now + this.delayMs;
    if (this.jitterMs > 0) due += this.jitterRng.next() * this.jitterMs;
    if (due < this.lastDue) due = this.lastDue;
    this.lastDue = due;
    this.u32[rec >>> 2] = len;
    this.f64[(rec + LINE_DUE) >>> 3] = due;
    copyBytes(src, recordNetHdr(at), this.u8, rec + LINE_NET_HDR, NET_HDR_SIZE);
    copyBytes(src, at, this.u8, rec + LINE_RECORD_HEADER, len);
    this.tail = (this.tail + need) >>> 0;
    this.frames++;
    this.bytes += len;
  }

  /** The queue's bytes (frames returned by head() index into this array). */
  get buffer(): Uint8Array {
    return this.u8;
  }

  /**
   * The u8 index of the frame at the head of the queue when it may leave at
   * `now` (due, and the bucket holds enough), with its length in `len` and
   * its virtio_net_hdr at recordNetHdr(index); -1 otherwise.
   */
  head(now: number): number {
    const rec = this.peek();
    if (rec < 0 || this.f64[(rec + LINE_DUE) >>> 3] > now) return -1;
    if (this.bytesPerMs > 0) {
      this.refill(now);
      if (this.tokens < Math.min(this.len, this.burst)) return -1;
    }
    return rec + LINE_RECORD_HEADER;
  }

  /** The frame head() returned has left: drop it from the queue and pay its tokens. */
  dequeue(): void {
    this.first = (this.first + lineRecordBytes(this.len)) >>> 0;
    this.frames--;
    this.bytes -= this.len;
    if (this.bytesPerMs > 0) this.tokens -= this.len;
  }

  /**
   * When the head frame can leave (its due time, or when the bucket will
   * hold its length, whichever is later): Infinity when the queue is empty.
   */
  nextEventMs(now: number): number {
    const rec = this.peek();
    if (rec < 0) return Infinity;
    let t = this.f64[(rec + LINE_DUE) >>> 3];
    if (this.bytesPerMs > 0) {
      this.refill(now);
      const missing = Math.min(this.len, this.burst) - this.tokens;
      if (missing > 0) t = Math.max(t, now + missing / this.bytesPerMs);
    }
    return t;
  }

  /** u8 index of the head record, skipping a wrap marker; -1 when empty. */
  private peek(): number {
    if (this.first === this.tail) return -1;
    let pos = this.first & this.mask;
    let len = this.u32[(this.base + pos) >>> 2];
    if (len === WRAP) {
      this.first = (this.first + this.capacity - pos) >>> 0;
      pos = 0;
      len = this.u32[this.base >>> 2];
    }
    this.len = len;
    return this.base + pos;
  }

  private refill(now: number): void {
    if (this.lastRefill < 0) this.lastRefill = now;
    if (now > this.lastRefill) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.lastRefill) * this.bytesPerMs);
      this.lastRefill = now;
    }
  }
}
