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
 * rest of the chain after it; used descriptors are written id and len first,
 * and a batch becomes visible with one Atomics.store of the flags of its first
 * used descriptor (2.8.11 "Multi-buffer requests": the driver never sees a
 * partial batch).
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
  /** Position of the next used descriptor to write (everything before it is published). */
  private usedPos: number;
  /** Per buffer id: ring descriptors of the chain in flight under that id (0: none), and its pop serial. */
  private idDescs: Uint16Array;
  private idSerial: Float64Array;
  private serial = 0;
  /** The last chains popped, newest last (a ring of `size`): for unpop(). */
  private readonly histId: Uint16Array;
  private readonly histDescs: Uint16Array;
  private readonly histSerial: Float64Array;
  private histEnd = 0;
  private histLen = 0;
  /** In-order: chains popped and not pushed, oldest first (a ring of `size`). */
  private readonly fifoId: Uint16Array;
  private readonly fifoCap: Float64Array;
  private fifoHead = 0;
  private fifoLen = 0;
  /** Used entries pushed and not yet published. */
  private readonly pendId: Uint16Array;
  private readonly pendLen: Uint32Array;
  private readonly pendDescs: Uint16Array;
  private readonly pendCap: Float64Array;
  private pendCount = 0;
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
    this.scanPos = this.availPos;
    this.idDescs = new Uint16Array(size);
    this.idSerial = new Float64Array(size);
    this.histId = new Uint16Array(size);
    this.histDescs = new Uint16Array(size);
    this.histSerial = new Float64Array(size);
    this.fifoId = new Uint16Array(size);
    this.fifoCap = new Float64Array(size);
    this.pendId = new Uint16Array(size);
    this.pendLen = new Uint32Array(size);
    this.pendDescs = new Uint16Array(size);
    this.pendCap = new Float64Array(size);
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
          this.scanCount++;
          this.scanPos = pos;
          return this.scanCount;
        }
        n++;
      }
      this.scanCount++;
      this.scanDescs += n;
      left -= n;
      pos = p + 1 === two ? 0 : p + 1;
    }
    this.scanPos = pos;
    return this.scanCount;
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
   */
  pop(chain: DescriptorChain): boolean {
    if (this.available() === 0) return false;
    const r = this.ring;
    const size = this.size;
    const two = this.two;
    const start = this.availPos;
    const headIdx = start < size ? start : start - size;
    // The scan read this head's flags with Atomics.load (the acquire that makes the
    // driver's writes before its publishing store visible): plain reads from here on.
    const headFlags = r.u16[r.desc16 + 8 * headIdx + 7];
    if (!packedIsAvail(headFlags, start < size)) {
      this.resetScan();
      return false;
    }
    const room = size - this.inFlightDescs();
    chain.reset(0);
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
      if (++pos === two) pos = 0;
    }
    this.markInFlight(chain, word3 & 0xffff, n, headIdx);
    const next = start + n;
    this.availPos = next < two ? next : next - two;
    if (this.scanCount > 1 && this.scanDescs > n) {
      this.scanCount--;
      this.scanDescs -= n;
    } else {
      this.resetScan();
    }
    return true;
  }

  /**
   * Take buffer id `id` (a chain of `n` descriptors from ring index
   * `headIdx`) into flight: refused while that id is still in flight
   * (2.8.6), recorded in the pop history that unpop() rewinds and, with
   * VIRTIO_F_IN_ORDER, in the order pushUsed() must complete in.
   */
  private markInFlight(chain: DescriptorChain, id: number, n: number, headIdx: number): void {
    const size = this.size;
    if (id >= this.idDescs.length) this.growIds();
    if (this.idDescs[id] !== 0) {
      throw new VirtqueueError('PACKED_ID_IN_FLIGHT', `chain from ring index ${headIdx} has buffer id ${id}, which names a buffer still in flight`, id);
    }
    chain.head = id;
    const serial = ++this.serial;
    this.idDescs[id] = n;
    this.idSerial[id] = serial;
    const h = this.histEnd;
    this.histId[h] = id;
    this.histDescs[h] = n;
    this.histSerial[h] = serial;
    this.histEnd = h + 1 === size ? 0 : h + 1;
    if (this.histLen < size) this.histLen++;
    if (this.inOrder) {
      const t = this.fifoHead + this.fifoLen;
      const f = t < size ? t : t - size;
      this.fifoId[f] = id;
      this.fifoCap[f] = chain.writableBytes;
      this.fifoLen++;
    }
  }

  private growIds(): void {
    const d = new Uint16Array(ID_SPACE);
    d.set(this.idDescs);
    const s = new Float64Array(ID_SPACE);
    s.set(this.idSerial);
    this.idDescs = d;
    this.idSerial = s;
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
   * @throws InvalidArgumentError when fewer than `count` chains are remembered (at most the queue size) or one was pushed used.
   */
  unpop(count = 1): void {
    if (!(Number.isInteger(count) && count >= 0 && count <= this.histLen)) {
      throw new InvalidArgumentError(`unpop(${count}): count must be an integer in [0, ${this.histLen}] (chains popped and remembered)`);
    }
    const size = this.size;
    let descs = 0;
    for (let k = 0, h = this.histEnd; k < count; k++) {
      h = h === 0 ? size - 1 : h - 1;
      const id = this.histId[h];
      if (this.idDescs[id] === 0 || this.idSerial[id] !== this.histSerial[h]) {
        throw new InvalidArgumentError(`unpop(${count}): the chain with buffer id ${id}, popped ${k + 1} back, was already pushed used`);
      }
      descs += this.histDescs[h];
    }
    for (let k = 0; k < count; k++) {
      this.histEnd = this.histEnd === 0 ? size - 1 : this.histEnd - 1;
      this.idDescs[this.histId[this.histEnd]] = 0;
    }
    this.histLen -= count;
    if (this.inOrder) this.fifoLen -= count; // unpushed chains popped last are the FIFO's tail
    this.availPos = (this.availPos - descs + this.two) % this.two;
    this.resetScan();
  }

  /**
   * Return the buffer `head` (its buffer id) with `len` bytes written.
   * Published by publishUsed().
   * @throws InvalidArgumentError when no popped, unpushed buffer has that id, or (in order) it is not the oldest one.
   */
  pushUsed(head: number, len: number): void {
    if (!(Number.isInteger(head) && head >= 0 && head < this.idDescs.length) || this.idDescs[head] === 0) {
      throw new InvalidArgumentError(`pushUsed(${head}): no popped buffer in flight has that id`);
    }
    const k = this.pendCount++;
    this.pendId[k] = head;
    this.pendLen[k] = len;
    this.pendDescs[k] = this.idDescs[head];
    if (this.inOrder) {
      const oldest = this.fifoId[this.fifoHead];
      if (oldest !== head) {
        this.pendCount--;
        throw new InvalidArgumentError(`pushUsed(${head}): VIRTIO_F_IN_ORDER needs buffers used in the order popped; buffer ${oldest} is next`);
      }
      this.pendCap[k] = this.fifoCap[this.fifoHead];
      this.fifoHead = this.fifoHead + 1 === this.size ? 0 : this.fifoHead + 1;
      this.fifoLen--;
    }
    this.idDescs[head] = 0;
  }

  /**
   * Write the used descriptors of everything pushed since the last call, then
   * decide whether the driver wants an interrupt (2.8.10, Driver Event
   * Suppression). Each buffer gets a used descriptor at the used position,
   * which then moves on by the buffer's ring descriptors; with in-order, a
   * buffer used completely (len == its writable bytes) is folded into the
   * next one's used descriptor (2.8.9: skipped buffers are assumed used
   * completely), so a batch of such buffers costs one used descriptor.
   */
  publishUsed(): boolean {
    const n = this.pendCount;
    if (n === 0) return false;
    const r = this.ring;
    const size = this.size;
    const two = this.two;
    const old = this.usedPos;
    let pos = old;
    let skip = 0;
    let firstFlags = -1;
    for (let k = 0; k < n; k++) {
      skip += this.pendDescs[k];
      if (this.inOrder && k + 1 < n && this.pendLen[k] === this.pendCap[k]) continue;
      const i = pos < size ? pos : pos - size;
      const len = this.pendLen[k];
      const w = r.desc32 + 4 * i;
      r.u32[w + 2] = len;
      r.u16[r.desc16 + 8 * i + 6] = this.pendId[k];
      // 2.8.3: WRITE in a used descriptor says whether anything was written.
      const flags = packedUsedFlags(pos < size) | (len !== 0 ? VIRTQ_DESC_F_WRITE : 0);
      // 2.8.21: the batch's first flags word is the release store, written last;
      // the others are plain stores before it (the driver reads them after acquiring it).
      if (firstFlags < 0) firstFlags = flags;
      else r.u16[r.desc16 + 8 * i + 7] = flags;
      pos += skip;
      if (pos >= two) pos -= two;
      skip = 0;
    }
    const firstIdx = old < size ? old : old - size;
    Atomics.store(r.u16, r.desc16 + 8 * firstIdx + 7, firstFlags);
    this.usedPos = pos;
    this.pendCount = 0;
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
