import { InvalidArgumentError, VirtqueueError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../spec/ring.js';
import { chainWritableBytes, checkChainFits, goesIndirect } from './chain-request.js';
import { PackedRingLayout, packedAvailFlags, packedIsUsed, packedEncode, packedNeedNotify, packedPosition } from './packed-layout.js';
import { type QueueState, validateQueueState } from './queue-state.js';
import type { SplitDriverOptions } from './split-driver.js';
import type { VirtqDriver } from './virtqueue.js';

const TWO_32 = 0x1_0000_0000;

/** Options of a packed driver-side queue: the same as the split driver's (one indirect table per buffer id). */
export type PackedDriverOptions = SplitDriverOptions;

/**
 * The driver side of a packed virtqueue (2.8.12-2.8.14), after Linux's
 * virtio_ring.c: descriptors are written at consecutive ring positions, a
 * chain's buffer id comes from a free-id list (ids 0..size-1), and `numFree`
 * counts ring descriptors. The device writes used descriptors sequentially at
 * its own used position and skips by the used chain's descriptor count, so
 * the free ring slots are always the `numFree` after the driver's next avail
 * position, whatever order buffers complete in.
 *
 * Chains added are made visible by publish(): every descriptor gets its
 * flags when added (plain stores), except the first of a batch, whose flags
 * publish() stores last (Atomics.store); the device reads in ring order and
 * stops there, so it sees the whole batch or none of it.
 *
 * With VIRTIO_F_IN_ORDER (state.inOrder) a used descriptor with id x
 * completes every chain up to and including x, in the order added; the
 * skipped ones are reported with usedLen = their writable bytes (2.8.9: they
 * are "assumed to have been used completely").
 */
export class PackedQueueDriver implements VirtqDriver {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly inOrder: boolean;
  /** Bytes the device wrote into the chain getUsed() returned last (0 when the used descriptor has no WRITE flag, 2.8.4). */
  usedLen = 0;
  private readonly ring: PackedRingLayout;
  private readonly two: number;
  private availPos: number;
  private publishedPos: number;
  /** Where the next used descriptor will be (Linux last_used_idx with its wrap counter). */
  private usedPos: number;
  private numFreeDescs: number;
  private inFlight = 0;
  /** Free buffer ids, linked through nextFreeId. */
  private readonly nextFreeId: Uint16Array;
  private freeId = 0;
  /**
   * Per buffer id: ring descriptors (0: not in flight), writable bytes,
   * token, add serial. One array each: ids mostly come back in runs, which
   * then read consecutive entries.
   */
  private readonly idDescs: Uint16Array;
  private readonly idCap: Float64Array;
  private readonly idToken: Float64Array;
  private readonly idSerial: Float64Array;
  /** In-order: per buffer id, its start position. */
  private readonly idStart: Uint32Array;
  private serial = 0;
  /** Serial of the last chain publish() showed to the device: a used id added after it is one the device cannot know. */
  private shownSerial = 0;
  /** In-order: per ring index, the buffer id of the chain added there last (chains in flight follow each other in ring order). */
  private readonly startId: Uint16Array;
  /** In-order: chains of the current batch still to return, where the next of them starts, and the last one's length. */
  private batchLeft = 0;
  private batchPos = 0;
  private batchLastLen = 0;
  /** u16 index and value of the flags of the first descriptor added since the last publish() (-1: none). */
  private firstAt = -1;
  private firstFlags = 0;
  private readonly indirectTables?: { base: number; maxEntries: number };

  constructor(
    private readonly memory: GuestMemory,
    state: QueueState,
    options: PackedDriverOptions = {},
  ) {
    validateQueueState({ ...state, packed: true }, memory);
    this.ring = new PackedRingLayout(memory, state);
    const size = state.size;
    this.size = size;
    this.two = 2 * size;
    this.eventIdx = state.eventIdx;
    this.inOrder = state.inOrder === true;
    this.availPos = packedPosition(state.nextAvail, size);
    this.publishedPos = this.availPos;
    this.usedPos = packedPosition(state.nextUsed, size);
    // Descriptors between the used position and the avail position belong to chains this driver never saw.
    this.numFreeDescs = size - ((this.availPos - this.usedPos + this.two) % this.two);
    this.nextFreeId = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.nextFreeId[i] = i + 1;
    this.idDescs = new Uint16Array(size);
    this.idCap = new Float64Array(size);
    this.idToken = new Float64Array(size);
    this.idSerial = new Float64Array(size);
    this.idStart = new Uint32Array(this.inOrder ? size : 0);
    this.startId = new Uint16Array(this.inOrder ? size : 0);
    const ind = options.indirectTables;
    if (ind !== undefined) {
      if (!state.indirect) throw new InvalidArgumentError('indirect tables given but VIRTIO_F_INDIRECT_DESC is not negotiated');
      memory.region(ind.base, size * ind.maxEntries * 16, 'indirect tables');
      this.indirectTables = { base: ind.base, maxEntries: ind.maxEntries };
    }
  }

  /** Ring descriptors free for new chains. */
  get numFree(): number {
    return this.numFreeDescs;
  }

  /** Chains added and not yet returned by getUsed(). */
  get pending(): number {
    return this.inFlight;
  }

  /** Next ring position to write, vhost encoding (index | wrap counter << 15). */
  get nextAvail(): number {
    return packedEncode(this.availPos, this.size);
  }

  /** Where the next used descriptor is expected, vhost encoding. */
  get nextUsed(): number {
    return packedEncode(this.usedPos, this.size);
  }

  addBuffer(gpa: number, len: number, writable: boolean, token: number): boolean {
    if (this.numFreeDescs === 0) return false;
    const id = this.takeId();
    const pos = this.availPos;
    this.writeDesc(pos, gpa, len, id, writable ? VIRTQ_DESC_F_WRITE : 0);
    this.finish(id, pos, 1, writable ? len : 0, token);
    return true;
  }

  /**
   * Add a chain of `nOut` device-readable then `nIn` device-writable segments
   * at consecutive ring positions (or, with indirect tables configured and
   * more than one segment, as one indirect descriptor); false when there is
   * no room now.
   * @throws InvalidArgumentError for an empty chain, or one longer than the queue (it could never be added).
   */
  addChain(addrs: ArrayLike<number>, lens: ArrayLike<number>, nOut: number, nIn: number, token: number): boolean {
    const n = nOut + nIn;
    const writableBytes = chainWritableBytes(lens, nOut, nIn);
    const ind = this.indirectTables;
    if (ind !== undefined && goesIndirect(ind, n, this.size)) {
      if (this.numFreeDescs === 0) return false;
      const id = this.takeId();
      const table = ind.base + id * ind.maxEntries * 16;
      const m = this.memory;
      for (let k = 0; k < n; k++) {
        const e = table + 16 * k;
        m.writeU32(e, addrs[k] >>> 0);
        m.writeU32(e + 4, Math.floor(addrs[k] / TWO_32));
        m.writeU32(e + 8, lens[k]);
        // 2.8.7: WRITE is the only valid flag in an indirect table; the id there is reserved.
        m.writeU32(e + 12, k < nOut ? 0 : VIRTQ_DESC_F_WRITE << 16);
      }
      const pos = this.availPos;
      this.writeDesc(pos, table, 16 * n, id, VIRTQ_DESC_F_INDIRECT);
      this.finish(id, pos, 1, writableBytes, token);
      return true;
    }
    checkChainFits(n, this.size);
    if (n > this.numFreeDescs) return false;
    const id = this.takeId();
    const start = this.availPos;
    // All flags must be right in every descriptor of the list (2.8.6); the head's are written last.
    let pos = start;
    for (let k = 1; k < n; k++) {
      if (++pos === this.two) pos = 0;
      this.writeDesc(pos, addrs[k], lens[k], id, (k < nOut ? 0 : VIRTQ_DESC_F_WRITE) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
    }
    this.writeDesc(start, addrs[0], lens[0], id, (nOut > 0 ? 0 : VIRTQ_DESC_F_WRITE) | (n > 1 ? VIRTQ_DESC_F_NEXT : 0));
    this.finish(id, start, n, writableBytes, token);
    return true;
  }

  private takeId(): number {
    const id = this.freeId;
    this.freeId = this.nextFreeId[id];
    return id;
  }

  /**
   * Descriptor at `pos` (addr, len, id) with `flags` and the AVAIL/USED bits
   * of its wrap counter: written now (plain store), unless it is the first
   * descriptor since the last publish(), whose flags publish() stores.
   */
  private writeDesc(pos: number, gpa: number, len: number, id: number, flags: number): void {
    const r = this.ring;
    const size = this.size;
    const i = pos < size ? pos : pos - size;
    const w = r.desc32 + 4 * i;
    r.u32[w] = gpa >>> 0;
    // Addresses below 4 GiB (the common case) skip the division.
    r.u32[w + 1] = gpa < TWO_32 ? 0 : Math.floor(gpa / TWO_32);
    r.u32[w + 2] = len;
    const f = flags | packedAvailFlags(pos < size);
    if (pos === this.publishedPos) {
      r.u16[r.desc16 + 8 * i + 6] = id;
      this.firstAt = r.desc16 + 8 * i + 7;
      this.firstFlags = f;
    } else {
      r.u32[w + 3] = (id | (f << 16)) >>> 0;
    }
  }

  private finish(id: number, start: number, descs: number, cap: number, token: number): void {
    this.idDescs[id] = descs;
    this.idCap[id] = cap;
    this.idToken[id] = token;
    this.idSerial[id] = ++this.serial;
    if (this.inOrder) {
      this.idStart[id] = start;
      this.startId[start < this.size ? start : start - this.size] = id;
    }
    const next = start + descs;
    this.availPos = next < this.two ? next : next - this.two;
    this.numFreeDescs -= descs;
    this.inFlight++;
  }

  /**
   * Make the chains added since the last call available (their first
   * descriptors' flags, the batch's first chain last) and decide whether the
   * device wants a kick (Device Event Suppression; Linux
   * virtqueue_kick_prepare_packed).
   */
  publish(): boolean {
    if (this.firstAt < 0) return false;
    const r = this.ring;
    // 2.8.22: the flags of the batch's first descriptor are the release store, written
    // last; the others were plain stores before it (the device acquires the first, then reads on).
    Atomics.store(r.u16, this.firstAt, this.firstFlags);
    this.firstAt = -1;
    this.shownSerial = this.serial;
    const old = this.publishedPos;
    const next = this.availPos;
    this.publishedPos = next;
    return packedNeedNotify(Atomics.load(r.deviceEventU32, r.deviceEvent32), old, next, this.size, this.eventIdx);
  }

  /**
   * Used chains ready to reap now, found by walking used descriptors from the
   * next expected one (not cached: a count kept from an earlier walk misses
   * what the device published since, and getUsed() needs none). A used descriptor that names
   * no chain in flight counts as one, so that getUsed() reaches it and throws.
   */
  usedAvailable(): number {
    const r = this.ring;
    const size = this.size;
    let count = this.batchLeft;
    let pos = this.usedPos;
    // In order: the add serial of the first chain after the current batch (chains in flight have consecutive serials).
    let cursor = 0;
    if (this.inOrder && this.inFlight > 0) {
      const o = this.batchLeft > 0 ? this.batchPos : pos;
      cursor = this.idSerial[this.startId[o < size ? o : o - size]] + this.batchLeft;
    }
    for (let steps = 0; steps < size; steps++) {
      const i = pos < size ? pos : pos - size;
      const flags = Atomics.load(r.u16, r.desc16 + 8 * i + 7);
      if (!packedIsUsed(flags, pos < size)) break;
      const id = r.u16[r.desc16 + 8 * i + 6];
      if (id >= size || !this.shownInFlight(id)) {
        count++;
        break;
      }
      if (this.inOrder) {
        const s = this.idSerial[id];
        if (s < cursor) {
          count++;
          break;
        }
        count += s - cursor + 1;
        cursor = s + 1;
        pos = this.idStart[id] + this.idDescs[id];
      } else {
        count++;
        pos += this.idDescs[id];
      }
      if (pos >= this.two) pos -= this.two;
      if (count >= this.inFlight) break;
    }
    return count;
  }

  /**
   * Reap one used chain: its token (usedLen set), or -1 when none is ready.
   * Frees its descriptors and buffer id.
   */
  getUsed(): number {
    if (this.inOrder && this.batchLeft > 0) return this.nextOfBatch();
    const r = this.ring;
    const size = this.size;
    const pos = this.usedPos;
    const i = pos < size ? pos : pos - size;
    // The flags (Atomics.load: the acquire of the device's release store) before the other fields.
    const flags = Atomics.load(r.u16, r.desc16 + 8 * i + 7);
    if (!packedIsUsed(flags, pos < size)) return -1;
    const id = r.u16[r.desc16 + 8 * i + 6];
    // 2.8.4: the length is reserved (ignored) in a used descriptor without WRITE.
    const written = (flags & VIRTQ_DESC_F_WRITE) !== 0 ? r.u32[r.desc32 + 4 * i + 2] : 0;
    if (id >= size || !this.shownInFlight(id) || written > this.idCap[id]) throw this.usedError(i, id, written);
    if (this.inOrder) {
      // A batch of more than the oldest chain in flight; a batch of one goes on as out of order.
      if (id !== this.startId[i]) return this.startBatch(id, written);
    }
    const next = pos + this.idDescs[id];
    this.usedPos = next < this.two ? next : next - this.two;
    this.usedLen = written;
    return this.release(id);
  }

  /**
   * In order: the used descriptor with buffer id `id` completes every chain
   * added before it and not reaped; return the first of them.
   */
  private startBatch(id: number, written: number): number {
    const o = this.usedPos;
    this.batchLeft = this.idSerial[id] - this.idSerial[this.startId[o < this.size ? o : o - this.size]] + 1;
    this.batchPos = o;
    this.batchLastLen = written;
    const next = this.idStart[id] + this.idDescs[id];
    this.usedPos = next < this.two ? next : next - this.two;
    return this.nextOfBatch();
  }

  /** What is wrong with the used descriptor at ring index `i` (kept out of getUsed(), which V8 then inlines). */
  private usedError(i: number, id: number, written: number): VirtqueueError {
    const size = this.size;
    if (id >= size) return new VirtqueueError('USED_ID_OUT_OF_RANGE', `used descriptor ${i} names buffer id ${id}, queue size is ${size}`, id);
    if (!this.shownInFlight(id)) {
      return new VirtqueueError('USED_ID_NOT_IN_FLIGHT', `used descriptor ${i} names buffer id ${id}, which is not a buffer made available and in flight`, id);
    }
    return new VirtqueueError('USED_LEN_TOO_LARGE', `device wrote ${written} bytes into buffer ${id} with ${this.idCap[id]} writable`, written);
  }

  private nextOfBatch(): number {
    const p = this.batchPos;
    const id = this.startId[p < this.size ? p : p - this.size];
    const next = p + this.idDescs[id];
    this.batchPos = next < this.two ? next : next - this.two;
    this.usedLen = --this.batchLeft === 0 ? this.batchLastLen : this.idCap[id];
    return this.release(id);
  }

  /** Buffer id `id` (< size) is in flight and was published: one the device may use. */
  private shownInFlight(id: number): boolean {
    return this.idDescs[id] !== 0 && this.idSerial[id] <= this.shownSerial;
  }

  private release(id: number): number {
    this.numFreeDescs += this.idDescs[id];
    this.idDescs[id] = 0;
    this.nextFreeId[id] = this.freeId;
    this.freeId = id;
    this.inFlight--;
    return this.idToken[id];
  }

  /**
   * Ask for an interrupt on the next used descriptor (EVENT_IDX: DESC at the
   * position where it will be written; else ENABLE). True when used chains
   * are waiting already (do not sleep).
   */
  enableInterrupts(): boolean {
    const r = this.ring;
    if (this.eventIdx) Atomics.store(r.driverEventU32, r.driverEvent32, ((RING_EVENT_FLAGS_DESC << 16) | packedEncode(this.usedPos, this.size)) >>> 0);
    else Atomics.store(r.driverEventU32, r.driverEvent32, RING_EVENT_FLAGS_ENABLE << 16);
    return this.usedAvailable() !== 0;
  }

  /** Tell the device not to interrupt while the driver polls (RING_EVENT_FLAGS_DISABLE). */
  disableInterrupts(): void {
    Atomics.store(this.ring.driverEventU32, this.ring.driverEvent32, RING_EVENT_FLAGS_DISABLE << 16);
  }
}
