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
import { DescriptorChain } from './chain.js';
import { addDescriptorSegment, descriptorRegion } from './descriptor-segment.js';
import { PackedRingLayout, packedIsAvail, packedEncode, packedNeedNotify, packedPosition, packedUsedFlags } from './packed-layout.js';
import { type QueueState, validateQueueState } from './queue-state.js';
import type { VirtqDevice } from './virtqueue.js';

const TWO_32 = 0x1_0000_0000;
/** Buffer ids are any u16 (2.8.13 leaves them to the driver): per-id tables grow to this on the first id >= size. */
const ID_SPACE = 0x10000;

/** pushUsed() of an id that no popped, unpushed buffer has. */
function notInFlight(head: number): InvalidArgumentError {
  return new InvalidArgumentError(`pushUsed(${head}): no popped buffer in flight has that id`);
}

/** 2.8.6: a chain popped with a buffer id still in flight. */
function idInFlight(headIdx: number, id: number): VirtqueueError {
  return new VirtqueueError('PACKED_ID_IN_FLIGHT', `chain from ring index ${headIdx} has buffer id ${id}, which names a buffer still in flight`, id);
}

/**
 * The device side of a packed virtqueue (2.8): reads available descriptors
 * in ring order by their AVAIL/USED flags, validates every chain, and writes
 * used descriptors sequentially at its own used position.
 *
 * Positions are numbers in [0, 2 * size) (see packedPosition): index =
 * pos mod size, wrap counter = pos < size. The device tracks, per buffer id
 * popped, how many ring descriptors the chain took (1 for an indirect chain),
 * because the used position moves on by that count (2.8.6).
 *
 * Nothing the driver wrote is trusted: a chain that breaks a rule throws a
 * VirtqueueError with the offending value before the queue moves.
 *
 * Memory order: the first descriptor's flags are read with Atomics.load, the
 * rest of the chain after it; a used descriptor's id, len and (plain) flags
 * are written together, except the flags of a batch's first used
 * descriptor, which publishUsed() writes last with one Atomics.store
 * (2.8.11 "Multi-buffer requests": the driver never sees a partial batch).
 *
 * The last used descriptor pushed is written only when the next push takes
 * another slot, or at publishUsed(): in order, a run of buffers used
 * completely (a transmit batch) shares one slot (2.8.9), and that slot is
 * the batch's first, whose cache line a polling driver is reading. Written
 * once per batch instead of once per buffer, it takes all but one of the
 * batch's stores off that line.
 */
export class PackedQueueDevice implements VirtqDevice {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** VIRTIO_F_IN_ORDER: pushUsed() must follow pop() order, and runs of buffers used completely share one used descriptor. */
  readonly inOrder: boolean;
  private readonly ring: PackedRingLayout;
  private readonly two: number;
  /** Position of the next descriptor to read. */
  private availPos: number;
  /** Position of the next used descriptor to write that the driver may see (everything before it is published). */
  private usedPos: number;
  /** Position after the used descriptors pushed so far: usedPos plus the ring descriptors of the buffers pushed and not published. */
  private writePos: number;
  /** Flags of the used descriptor at usedPos, stored by publishUsed(). */
  private firstFlags = 0;
  /** The last used descriptor pushed and not yet written: its position (-1: none), buffer id and length. */
  private pendingAt = -1;
  private pendingId = 0;
  private pendingLen = 0;
  /** In-order: where the last pushed buffer's used descriptor is, and whether that buffer was used completely (the next one may take its place, 2.8.9). */
  private lastSlot = 0;
  private lastFull = false;
  /** In-order: where the oldest buffer popped and not pushed starts. */
  private orderPos: number;
  /**
   * Per buffer id in flight: its ring descriptors (bits 0-15; 0: not in
   * flight) and the ring index of its last descriptor (bits 16-30). Grows
   * to ID_SPACE on the first id >= size.
   */
  private idInfo: Uint32Array;
  /** In-order: per buffer id in flight, its writable bytes. */
  private idCap: Float64Array;
  /**
   * Per ring index: the buffer id (bits 0-15) and ring descriptors (bits
   * 16-31) of the last chain popped that ended there. unpop() walks these
   * back from the avail position; nothing else reads them.
   */
  private readonly endInfo: Uint32Array;
  /** What available() learned: `scanCount` chains of `scanDescs` descriptors from availPos, ending at scanPos. */
  private scanPos: number;
  private scanCount = 0;
  private scanDescs = 0;
  /** The scan stopped at a broken chain (counted, so that pop() reaches it and throws). */
  private scanStuck = false;

  constructor(
    private readonly memory: GuestMemory,
    state: QueueState,
  ) {
    validateQueueState({ ...state, packed: true }, memory);
    this.ring = new PackedRingLayout(memory, state);
    const size = state.size;
    this.size = size;
    this.two = 2 * size;
    this.eventIdx = state.eventIdx;
    this.indirect = state.indirect;
    this.inOrder = state.inOrder === true;
    this.availPos = packedPosition(state.nextAvail, size);
    this.usedPos = packedPosition(state.nextUsed, size);
    this.writePos = this.usedPos;
    this.orderPos = this.availPos;
    this.scanPos = this.availPos;
    this.idInfo = new Uint32Array(size);
    this.idCap = new Float64Array(this.inOrder ? size : 0);
    this.endInfo = new Uint32Array(size);
  }

  /** Next descriptor to read, vhost encoding (index | wrap counter << 15). */
  get nextAvail(): number {
    return packedEncode(this.availPos, this.size);
  }

  /** Next used descriptor to write (published so far), vhost encoding. */
  get nextUsed(): number {
    return packedEncode(this.usedPos, this.size);
  }

  /**
   * The state to hand back on stop (vhost GET_VRING_BASE, wrap counters in
   * bit 15). Used entries pushed and not published are not in it: publish first.
   */
  state(base: QueueState): QueueState {
    return { ...base, packed: true, nextAvail: this.nextAvail, nextUsed: this.nextUsed };
  }

  newChain(): DescriptorChain {
    return new DescriptorChain(this.size);
  }

  /** Ring descriptors between the used position and the next to read: popped and not published used. */
  private inFlightDescs(): number {
    const d = this.availPos - this.usedPos;
    return d < 0 ? d + this.two : d;
  }

  /**
   * Chains made available and not popped: found by walking descriptor flags
   * from the next to read, at most the ring room the driver can own (size
   * minus descriptors in flight). The count is cached while non-zero, so a
   * busy ring is not rewalked; the walk resumes where it stopped.
   */
  available(): number {
    if (this.scanCount !== 0) return this.scanCount;
    return this.scan();
  }

  /** Continue the walk from where the last one stopped; returns the chains known available. */
  private scan(): number {
    if (this.scanStuck) return this.scanCount;
    const r = this.ring;
    const size = this.size;
    const two = this.two;
    let left = size - this.inFlightDescs() - this.scanDescs;
    let pos = this.scanPos;
    // Counted in locals, stored once: the loop runs once per chain of a batch.
    let count = this.scanCount;
    let descs = this.scanDescs;
    while (left > 0) {
      const idx = pos < size ? pos : pos - size;
      let f = Atomics.load(r.u16, r.desc16 + 8 * idx + 7);
      if (!packedIsAvail(f, pos < size)) break;
      let n = 1;
      let p = pos;
      while ((f & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) === VIRTQ_DESC_F_NEXT) {
        if (++p === two) p = 0;
        const i = p < size ? p : p - size;
        f = r.u16[r.desc16 + 8 * i + 7];
        if (n === left || !packedIsAvail(f, p < size)) {
          // Too long for the room, or not made available in the middle: pop() throws on it.
          this.scanStuck = true;
          this.scanCount = count + 1;
          this.scanDescs = descs;
          this.scanPos = pos;
          return count + 1;
        }
        n++;
      }
      count++;
      descs += n;
      left -= n;
      pos = p + 1 === two ? 0 : p + 1;
    }
    this.scanCount = count;
    this.scanDescs = descs;
    this.scanPos = pos;
    return count;
  }

  private resetScan(): void {
    this.scanPos = this.availPos;
    this.scanCount = 0;
    this.scanDescs = 0;
    this.scanStuck = false;
  }

  /**
   * Pop the next available chain into `chain` (chain.head = its buffer id,
   * the id of its last descriptor, 2.8.6). False when none is available. On a
   * broken chain it throws and leaves the queue where it was.
   *
   * The common chain (one descriptor whose buffer lies in one memory region)
   * is taken here in one step; everything else goes to popChain(). Kept
   * small so that V8 inlines it into the callers' loops.
   */
  pop(chain: DescriptorChain): boolean {
    const size = this.size;
    const start = this.availPos;
    const headIdx = start < size ? start : start - size;
    if (this.scanCount === 0 && !this.headAvailable(start, headIdx)) return false;
    // The head's flags were read with Atomics.load (by the scan or headAvailable(): the
    // acquire that makes the driver's writes before its publishing store visible): plain reads from here on.
    const u32 = this.ring.u32;
    const w = this.ring.desc32 + 4 * headIdx;
    const word3 = u32[w + 3];
    const headFlags = word3 >>> 16;
    const id = word3 & 0xffff;
    const len = u32[w + 2];
    if ((headFlags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) === 0 && len !== 0 && packedIsAvail(headFlags, start < size)) {
      const hi = u32[w + 1];
      const addr = hi === 0 ? u32[w] : u32[w] + hi * TWO_32;
      const region = this.memory.regionIfOne(addr, len);
      if (region !== undefined) {
        chain.setOne(id, region, addr + region.bias, len, (headFlags & VIRTQ_DESC_F_WRITE) !== 0);
        this.markInFlight(chain, id, 1, headIdx);
        this.availPos = start + 1 === this.two ? 0 : start + 1;
        this.popped(1);
        return true;
      }
    }
    return this.popChain(chain, start, headIdx, word3);
  }

  /** pop() of anything but the common chain: a list, an indirect table, a buffer across regions, or one that breaks a rule (it throws). */
  private popChain(chain: DescriptorChain, start: number, headIdx: number, word3: number): boolean {
    const headFlags = word3 >>> 16;
    if (!packedIsAvail(headFlags, start < this.size)) {
      this.resetScan();
      return false;
    }
    let n = 1;
    let id = word3 & 0xffff;
    chain.reset(0);
    if ((headFlags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) === 0) {
      // One descriptor the fast path did not take: zero length or across regions, with their errors.
      const u32 = this.ring.u32;
      const w = this.ring.desc32 + 4 * headIdx;
      chain.descCount = 1;
      addDescriptorSegment(this.memory, chain, headIdx, u32[w] + u32[w + 1] * TWO_32, u32[w + 2], headFlags);
    } else {
      const walked = this.walk(chain, start, headIdx, headFlags);
      n = walked >>> 16;
      id = walked & 0xffff;
    }
    this.markInFlight(chain, id, n, headIdx);
    const end = start + n;
    this.availPos = end < this.two ? end : end - this.two;
    this.popped(n);
    return true;
  }

  /** A chain of `n` ring descriptors was popped: the scan's count goes down by it, or the scan starts over. */
  private popped(n: number): void {
    if (this.scanCount > 1 && this.scanDescs > n) {
      this.scanCount--;
      this.scanDescs -= n;
    } else {
      this.resetScan();
    }
  }

  /**
   * Nothing known ahead (no scan): whether the head at position `start` is
   * available, by its flags alone (Atomics.load), without walking ahead as
   * the scan does (a receive queue popping one chain per packet would read
   * each descriptor twice). With no room (every descriptor in flight) the
   * descriptor there is one in flight, whatever its flags say.
   */
  private headAvailable(start: number, headIdx: number): boolean {
    const r = this.ring;
    return this.inFlightDescs() !== this.size && packedIsAvail(Atomics.load(r.u16, r.desc16 + 8 * headIdx + 7), start < this.size);
  }

  /**
   * Walk a chain of more than one ring descriptor from position `start`
   * (NEXT links, or one indirect descriptor); returns its buffer id (bits
   * 0-15, the id of its last descriptor) and ring descriptors (bits 16-31).
   */
  private walk(chain: DescriptorChain, start: number, headIdx: number, headFlags: number): number {
    const r = this.ring;
    const size = this.size;
    const room = size - this.inFlightDescs();
    let pos = start;
    let n = 0;
    let word3 = 0;
    for (;;) {
      const i = pos < size ? pos : pos - size;
      if (++n > room) {
        // 2.8.13: no list longer than the queue size; here, longer than the ring the driver owns.
        throw new VirtqueueError('CHAIN_TOO_LONG', `chain from ring index ${headIdx} runs past the ${room} descriptors the driver can have made available (queue size ${size})`, headIdx);
      }
      const w = r.desc32 + 4 * i;
      word3 = r.u32[w + 3];
      const flags = n === 1 ? headFlags : word3 >>> 16;
      if (n > 1 && !packedIsAvail(flags, pos < size)) {
        throw new VirtqueueError('PACKED_DESC_NOT_AVAILABLE', `descriptor ${i} continues the chain from ring index ${headIdx} but is not available (flags 0x${flags.toString(16)}, 2.8.6)`, i);
      }
      const addr = r.u32[w] + r.u32[w + 1] * TWO_32;
      const len = r.u32[w + 2];
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        if (!this.indirect) {
          throw new VirtqueueError('INDIRECT_NOT_NEGOTIATED', `descriptor ${i} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`, i);
        }
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0 || n > 1) {
          throw new VirtqueueError('INDIRECT_WITH_NEXT', `descriptor ${i} is indirect inside a list linked by NEXT (2.8.7.1)`, i);
        }
        this.walkIndirect(chain, i, addr, len);
        break;
      }
      chain.descCount++;
      addDescriptorSegment(this.memory, chain, i, addr, len, flags);
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (++pos === this.two) pos = 0;
    }
    return ((word3 & 0xffff) | (n << 16)) >>> 0;
  }

  /**
   * Take buffer id `id` (a chain of `n` descriptors from ring index
   * `headIdx`) into flight: refused while that id is still in
   * flight (2.8.6). Two words record it: per id (for pushUsed) and per end
   * index (for unpop, which walks back from the avail position).
   */
  private markInFlight(chain: DescriptorChain, id: number, n: number, headIdx: number): void {
    const e = headIdx + n - 1;
    const endIdx = e < this.size ? e : e - this.size;
    if (id >= this.idInfo.length) this.growIds();
    if (this.idInfo[id] !== 0) throw idInFlight(headIdx, id);
    chain.head = id;
    this.idInfo[id] = n | (endIdx << 16);
    this.endInfo[endIdx] = (id | (n << 16)) >>> 0;
    if (this.inOrder) this.idCap[id] = chain.writableBytes;
  }

  private growIds(): void {
    const info = new Uint32Array(ID_SPACE);
    info.set(this.idInfo);
    this.idInfo = info;
    if (this.inOrder) {
      const cap = new Float64Array(ID_SPACE);
      cap.set(this.idCap);
      this.idCap = cap;
    }
  }

  /**
   * An indirect table (2.8.7): len / 16 descriptors used in table order. WRITE
   * is the only valid flag there; NEXT and the id are ignored, INDIRECT is refused.
   */
  private walkIndirect(chain: DescriptorChain, i: number, addr: number, len: number): void {
    if (len === 0 || len % 16 !== 0) {
      throw new VirtqueueError('INDIRECT_BAD_LENGTH', `indirect table of descriptor ${i} has length ${len}, not a non-zero multiple of 16`, len);
    }
    const count = len / 16;
    if (count > this.size) {
      throw new VirtqueueError('CHAIN_TOO_LONG', `indirect table of descriptor ${i} has ${count} entries, more than the queue size ${this.size}`, i);
    }
    const region = descriptorRegion(this.memory, addr, len, i);
    const u8 = region.u8;
    const base = addr + region.bias;
    for (let j = 0; j < count; j++) {
      const b = base + 16 * j;
      const lo = (u8[b] | (u8[b + 1] << 8) | (u8[b + 2] << 16) | (u8[b + 3] << 24)) >>> 0;
      const hi = (u8[b + 4] | (u8[b + 5] << 8) | (u8[b + 6] << 16) | (u8[b + 7] << 24)) >>> 0;
      const dlen = (u8[b + 8] | (u8[b + 9] << 8) | (u8[b + 10] << 16) | (u8[b + 11] << 24)) >>> 0;
      const dflags = u8[b + 14] | (u8[b + 15] << 8);
      if ((dflags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        throw new VirtqueueError('INDIRECT_IN_INDIRECT', `entry ${j} of the indirect table of descriptor ${i} is itself indirect (2.8.7.1)`, j);
      }
      chain.descCount++;
      addDescriptorSegment(this.memory, chain, j, lo + hi * TWO_32, dlen, dflags);
    }
  }

  /**
   * Give back the last `count` chains pop() returned, unprocessed: the next
   * pop() reads the first of them again. They must not have been pushed used.
   * @throws InvalidArgumentError when `count` is not an integer in [0, size], or fewer than `count` chains were popped last and not pushed used.
   */
  unpop(count = 1): void {
    if (!(Number.isInteger(count) && count >= 0 && count <= this.size)) {
      throw new InvalidArgumentError(`unpop(${count}): count must be an integer in [0, ${this.size}] (the queue size)`);
    }
    // Check every chain first, then clear their ids: a refused unpop changes nothing.
    const to = this.unpopWalk(count, false);
    this.unpopWalk(count, true);
    this.availPos = to;
    this.resetScan();
  }

  /**
   * Walk back `count` chains from the avail position by the end-index
   * records (each chain ends where the one after it starts); returns the
   * position the first of them starts at. With `clear`, takes their ids out
   * of flight. A record that is not the chain its id is in flight as (the
   * chain was pushed, or never popped) is refused, as is a walk past the
   * descriptors in flight.
   */
  private unpopWalk(count: number, clear: boolean): number {
    const size = this.size;
    const inFlight = this.inFlightDescs();
    let pos = this.availPos;
    let descs = 0;
    for (let k = 0; k < count; k++) {
      const last = pos === 0 ? this.two - 1 : pos - 1;
      const endIdx = last < size ? last : last - size;
      const rec = this.endInfo[endIdx];
      const id = rec & 0xffff;
      const n = rec >>> 16;
      if (n === 0 || descs + n > inFlight || this.idInfo[id] !== (n | (endIdx << 16))) {
        throw new InvalidArgumentError(`unpop(${count}): the chain popped ${k + 1} back (ending at ring index ${endIdx}) was pushed used already, or was not popped`);
      }
      if (clear) this.idInfo[id] = 0;
      descs += n;
      pos = last - n + 1;
      if (pos < 0) pos += this.two;
    }
    return pos;
  }

  /**
   * Return the buffer `head` (its buffer id) with `len` bytes written: its
   * used descriptor is written now at the used position, visible to the
   * driver after publishUsed().
   * @throws InvalidArgumentError when no popped, unpushed buffer has that id, or (in order) it is not the oldest one.
   */
  pushUsed(head: number, len: number): void {
    // head >>> 0 === head: an integer in [0, 2^32) (NaN, fractions and negatives fail it).
    if (head >>> 0 !== head || head >= this.idInfo.length) throw notInFlight(head);
    const n = this.idInfo[head] & 0xffff;
    if (n === 0) throw notInFlight(head);
    const at = this.inOrder ? this.inOrderSlot(head, len) : this.writePos;
    if (at !== this.pendingAt) this.writePending();
    this.pendingAt = at;
    this.pendingId = head;
    this.pendingLen = len;
    const next = this.writePos + n;
    this.writePos = next < this.two ? next : next - this.two;
    this.idInfo[head] = 0;
  }

  /** Write the used descriptor pushUsed() left pending, if any. */
  private writePending(): void {
    const at = this.pendingAt;
    if (at < 0) return;
    this.pendingAt = -1;
    const size = this.size;
    const r = this.ring;
    const i = at < size ? at : at - size;
    const len = this.pendingLen;
    r.u32[r.desc32 + 4 * i + 2] = len;
    // 2.8.3: WRITE in a used descriptor says whether anything was written.
    const flags = packedUsedFlags(at < size) | (len !== 0 ? VIRTQ_DESC_F_WRITE : 0);
    // 2.8.21: the batch's first flags word is the release store, written by publishUsed();
    // the others are plain stores before it (the driver reads them after acquiring it).
    if (at === this.usedPos) {
      r.u16[r.desc16 + 8 * i + 6] = this.pendingId;
      this.firstFlags = flags;
    } else {
      r.u32[r.desc32 + 4 * i + 3] = (this.pendingId | (flags << 16)) >>> 0;
    }
  }

  /**
   * In order: where buffer `head`'s used descriptor goes (kept out of
   * pushUsed(), which V8 then inlines).
   * @throws InvalidArgumentError when `head` is not the oldest buffer in flight.
   */
  private inOrderSlot(head: number, len: number): number {
    const info = this.idInfo[head];
    const n = info & 0xffff;
    const size = this.size;
    const o = this.orderPos;
    const endIdx = info >>> 16;
    const startIdx = endIdx - n + 1;
    const oldestIdx = o < size ? o : o - size;
    if ((startIdx < 0 ? startIdx + size : startIdx) !== oldestIdx) {
      throw new InvalidArgumentError(`pushUsed(${head}): VIRTIO_F_IN_ORDER needs buffers used in the order popped; the oldest one in flight starts at ring index ${oldestIdx}, buffer ${head} at ${startIdx < 0 ? startIdx + size : startIdx}`);
    }
    const next = o + n;
    this.orderPos = next < this.two ? next : next - this.two;
    // 2.8.9: a buffer used completely needs no used descriptor of its own; the next one of the batch takes its place.
    const at = this.lastFull ? this.lastSlot : this.writePos;
    this.lastSlot = at;
    this.lastFull = len === this.idCap[head];
    return at;
  }

  /**
   * Publish the used descriptors pushed since the last call (one
   * Atomics.store: the flags of the first), then decide whether the driver
   * wants an interrupt (2.8.10, Driver Event Suppression). The used
   * position moves on by the pushed buffers' ring descriptors.
   */
  publishUsed(): boolean {
    const old = this.usedPos;
    const pos = this.writePos;
    if (pos === old) return false;
    this.writePending();
    const r = this.ring;
    const size = this.size;
    Atomics.store(r.u16, r.desc16 + 8 * (old < size ? old : old - size) + 7, this.firstFlags);
    this.usedPos = pos;
    this.lastFull = false;
    return packedNeedNotify(Atomics.load(r.driverEventU32, r.driverEvent32), old, pos, size, this.eventIdx);
  }

  /**
   * Ask for a kick on the next chain, or on the first beyond the `ahead`
   * available now. With EVENT_IDX: DESC at the position after the `ahead`
   * chains the walk knows; chains beyond what it knows count as one
   * descriptor each (a longer chain only brings the kick earlier, never
   * later). Without: ENABLE. Check available() again before sleeping.
   */
  enableNotify(ahead = 0): void {
    if (!(Number.isInteger(ahead) && ahead >= 0)) throw new InvalidArgumentError(`enableNotify(${ahead}): ahead must be a non-negative integer`);
    const r = this.ring;
    if (!this.eventIdx) {
      Atomics.store(r.deviceEventU32, r.deviceEvent32, RING_EVENT_FLAGS_ENABLE << 16);
      return;
    }
    const known = this.scan();
    const pos = ahead >= known ? (this.scanPos + (ahead - known)) % this.two : (this.availPos + ahead) % this.two;
    Atomics.store(r.deviceEventU32, r.deviceEvent32, ((RING_EVENT_FLAGS_DESC << 16) | packedEncode(pos, this.size)) >>> 0);
  }

  /** enableNotify(posted), then true when more than `posted` chains are available already (do not sleep). */
  armForMoreThan(posted: number): boolean {
    this.enableNotify(posted);
    return this.scan() > posted;
  }

  /** Ask the driver not to kick while the device polls (RING_EVENT_FLAGS_DISABLE). */
  disableNotify(): void {
    Atomics.store(this.ring.deviceEventU32, this.ring.deviceEvent32, RING_EVENT_FLAGS_DISABLE << 16);
  }
}
