import { InvalidArgumentError, VirtqueueError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from '../spec/ring.js';
import { DescriptorChain } from './chain.js';
import { addDescriptorSegment, descriptorRegion } from './descriptor-segment.js';
import { type QueueState, validateQueueState } from './queue-state.js';
import { SplitRingLayout } from './split-layout.js';

const TWO_32 = 0x1_0000_0000;

/**
 * The device side of a split virtqueue (2.7): pops validated descriptor chains
 * from the avail ring and returns them through the used ring.
 *
 * Nothing the driver wrote is trusted: every head, next index, address and
 * length is checked, and a chain that breaks a rule throws a VirtqueueError
 * with the offending value before the queue moves. The caller (a queue worker)
 * counts it and marks the device DEVICE_NEEDS_RESET.
 *
 * Memory order: avail.idx is read with Atomics.load before the entries it
 * guards; used entries are written plainly and published by one Atomics.store
 * of used.idx per batch (the JS form of virtio_rmb / virtio_wmb).
 */
export class SplitQueueDevice {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** Next avail slot to read (free-running u16). */
  nextAvail: number;
  /** Next used slot to write (free-running u16). */
  nextUsed: number;
  private readonly ring: SplitRingLayout;
  private availCache: number;
  private usedPublished: number;

  constructor(
    private readonly memory: GuestMemory,
    state: QueueState,
  ) {
    validateQueueState(state, memory);
    this.ring = new SplitRingLayout(memory, state);
    this.size = state.size;
    this.eventIdx = state.eventIdx;
    this.indirect = state.indirect;
    this.nextAvail = state.nextAvail;
    this.nextUsed = state.nextUsed;
    this.availCache = state.nextAvail;
    this.usedPublished = state.nextUsed;
  }

  /** The state to hand back on stop (vhost GET_VRING_BASE): plain data. */
  state(base: QueueState): QueueState {
    return { ...base, nextAvail: this.nextAvail, nextUsed: this.nextUsed };
  }

  /** A chain object big enough for any chain this queue accepts. */
  newChain(): DescriptorChain {
    return new DescriptorChain(this.size);
  }

  /**
   * Chains the driver has made available and the device has not popped. Loads
   * avail.idx only when the cached value is used up.
   * @throws VirtqueueError AVAIL_INDEX_JUMP when the driver moved avail.idx more than the queue size ahead.
   */
  available(): number {
    const n = (this.availCache - this.nextAvail) & 0xffff;
    if (n !== 0) return n;
    return this.reloadAvailable();
  }

  /** Load avail.idx now (the cache may be stale) and return what is available. */
  private reloadAvailable(): number {
    const idx = Atomics.load(this.ring.availU16, this.ring.availIdx);
    const fresh = (idx - this.nextAvail) & 0xffff;
    if (fresh > this.size) {
      throw new VirtqueueError('AVAIL_INDEX_JUMP', `driver moved avail.idx to ${idx}, ${fresh} past the device's ${this.nextAvail} (queue size ${this.size})`, idx);
    }
    this.availCache = idx;
    return fresh;
  }

  /**
   * Pop the next available chain into `chain`. Returns false when none is
   * available. On a broken chain it throws and leaves nextAvail unchanged.
   */
  pop(chain: DescriptorChain): boolean {
    if (this.available() === 0) return false;
    const r = this.ring;
    const head = r.availU16[r.availRing + (this.nextAvail & r.mask)];
    if (head >= this.size) {
      throw new VirtqueueError('AVAIL_HEAD_OUT_OF_RANGE', `avail ring slot ${this.nextAvail & r.mask} names descriptor ${head}, queue size is ${this.size}`, head);
    }
    if (!this.popOne(chain, head)) {
      chain.reset(head);
      this.walk(chain, head);
    }
    this.nextAvail = (this.nextAvail + 1) & 0xffff;
    return true;
  }

  /**
   * The common chain, one direct descriptor whose buffer lies in one memory
   * region, without the walk. False for anything else (nothing changed): the
   * walk takes it, with every rule and its error.
   */
  private popOne(chain: DescriptorChain, head: number): boolean {
    const r = this.ring;
    const d = r.descU32;
    const w = r.desc32 + 4 * head;
    const flags = d[w + 3];
    if ((flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) !== 0) return false;
    const len = d[w + 2];
    if (len === 0) return false;
    const addr = d[w] + d[w + 1] * TWO_32;
    const region = this.memory.regionIfOne(addr, len);
    if (region === undefined) return false;
    chain.setOne(head, region, addr + region.bias, len, (flags & VIRTQ_DESC_F_WRITE) !== 0);
    return true;
  }

  /**
   * Walk a chain from the descriptor table, following NEXT and at most one
   * indirect table, which must be the chain's last descriptor (2.7.5.3).
   */
  private walk(chain: DescriptorChain, head: number): void {
    const r = this.ring;
    const d = r.descU32;
    let i = head;
    for (;;) {
      if (++chain.descCount > this.size) {
        // A loop or an over-long chain: 2.7.5.3.1 caps a chain at the queue size.
        throw new VirtqueueError('CHAIN_TOO_LONG', `chain from head ${head} is longer than the queue size ${this.size} (a loop?)`, head);
      }
      const w = r.desc32 + 4 * i;
      const addr = d[w] + d[w + 1] * TWO_32;
      const len = d[w + 2];
      const flags = d[w + 3] & 0xffff;
      const next = d[w + 3] >>> 16;
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        this.walkIndirect(chain, i, addr, len, flags);
        return;
      }
      addDescriptorSegment(this.memory, chain, i, addr, len, flags);
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return;
      if (next >= this.size) {
        throw new VirtqueueError('DESC_INDEX_OUT_OF_RANGE', `descriptor ${i} chains to ${next}, queue size is ${this.size}`, next);
      }
      i = next;
    }
  }

  private walkIndirect(chain: DescriptorChain, i: number, addr: number, len: number, flags: number): void {
    if (!this.indirect) {
      throw new VirtqueueError('INDIRECT_NOT_NEGOTIATED', `descriptor ${i} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`, i);
    }
    if ((flags & VIRTQ_DESC_F_NEXT) !== 0) {
      throw new VirtqueueError('INDIRECT_WITH_NEXT', `descriptor ${i} sets both INDIRECT and NEXT (2.7.5.3.1)`, i);
    }
    if (len === 0 || len % 16 !== 0) {
      throw new VirtqueueError('INDIRECT_BAD_LENGTH', `indirect table of descriptor ${i} has length ${len}, not a non-zero multiple of 16`, len);
    }
    const count = len / 16;
    const region = descriptorRegion(this.memory, addr, len, i);
    // The table is read byte-wise through the region so that an unaligned
    // table (legal, if odd) needs no special case.
    const u8 = region.u8;
    const base = addr + region.bias;
    let j = 0;
    chain.descCount--; // the indirect descriptor itself is replaced by its table
    for (;;) {
      if (++chain.descCount > this.size) {
        throw new VirtqueueError('CHAIN_TOO_LONG', `chain from head ${chain.head} with its indirect table is longer than the queue size ${this.size}`, chain.head);
      }
      const b = base + 16 * j;
      const lo = (u8[b] | (u8[b + 1] << 8) | (u8[b + 2] << 16) | (u8[b + 3] << 24)) >>> 0;
      const hi = (u8[b + 4] | (u8[b + 5] << 8) | (u8[b + 6] << 16) | (u8[b + 7] << 24)) >>> 0;
      const dlen = (u8[b + 8] | (u8[b + 9] << 8) | (u8[b + 10] << 16) | (u8[b + 11] << 24)) >>> 0;
      const dflags = u8[b + 12] | (u8[b + 13] << 8);
      const next = u8[b + 14] | (u8[b + 15] << 8);
      if ((dflags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        throw new VirtqueueError('INDIRECT_IN_INDIRECT', `entry ${j} of the indirect table of descriptor ${i} is itself indirect (2.7.5.3.1)`, j);
      }
      addDescriptorSegment(this.memory, chain, j, lo + hi * TWO_32, dlen, dflags);
      if ((dflags & VIRTQ_DESC_F_NEXT) === 0) return;
      if (next >= count) {
        throw new VirtqueueError('DESC_INDEX_OUT_OF_RANGE', `indirect entry ${j} chains to ${next}, the table has ${count} entries`, next);
      }
      j = next;
    }
  }


  /**
   * Give back the last `count` chains pop() returned, unprocessed and in one
   * step: the next pop() walks the first of them again (vhost's
   * discard_vq_desc(vq, n)). Used when their bytes have nowhere to go, e.g. a
   * packet that needs several mergeable buffers when the ring runs out part
   * way. The chains must not have been pushed used; nothing in guest memory
   * changes (only nextAvail moves back).
   * @throws InvalidArgumentError when `count` is not an integer in [0, size].
   */
  unpop(count = 1): void {
    if (!(Number.isInteger(count) && count >= 0 && count <= this.size)) {
      throw new InvalidArgumentError(`unpop(${count}): count must be an integer in [0, ${this.size}] (the queue size)`);
    }
    this.nextAvail = (this.nextAvail - count) & 0xffff;
  }

  /** Return a chain to the driver with `len` bytes written (2.7.8). Published by publishUsed(). */
  pushUsed(head: number, len: number): void {
    const r = this.ring;
    const e = r.usedRing32 + 2 * (this.nextUsed & r.mask);
    r.usedU32[e] = head;
    r.usedU32[e + 1] = len;
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
  }

  /**
   * Publish every used entry pushed since the last call with one store of
   * used.idx, and decide whether the driver wants an interrupt (the "prepare"
   * half: the caller raises it outside any critical section).
   */
  publishUsed(): boolean {
    const old = this.usedPublished;
    const next = this.nextUsed;
    if (old === next) return false;
    const r = this.ring;
    this.usedPublished = next;
    return r.publishIndex(r.usedU16, r.usedIdx, next, old, this.eventIdx, r.availU16, r.usedEvent, r.availFlags, VIRTQ_AVAIL_F_NO_INTERRUPT);
  }

  /**
   * Ask the driver to kick on the next buffer, or with `ahead` on the first
   * buffer beyond the `ahead` already available (a device that needs more
   * than are posted). The caller must check available() again afterwards
   * before it sleeps (the driver may have added a buffer before it saw this).
   */
  enableNotify(ahead = 0): void {
    const r = this.ring;
    if (this.eventIdx) Atomics.store(r.usedU16, r.availEvent, (this.nextAvail + ahead) & 0xffff);
    else Atomics.store(r.usedU16, r.usedFlags, 0);
  }

  /**
   * Before sleeping on a ring that holds too few buffers for the item at
   * hand: ask for a kick when the driver adds to the `posted` available now
   * (2.7.10 avail_event), so the device does not spin on the ones that are,
   * then look again. Returns true when more than `posted` are available
   * already (do not sleep).
   */
  armForMoreThan(posted: number): boolean {
    this.enableNotify(posted);
    // Reload: a cached count equal to `posted` would hide chains added just before the event word was set.
    return this.reloadAvailable() > posted;
  }

  /**
   * Tell the driver not to kick while the device is polling. With event idx
   * nothing is written: avail_event stays behind and the driver's test fails.
   */
  disableNotify(): void {
    if (!this.eventIdx) Atomics.store(this.ring.usedU16, this.ring.usedFlags, VIRTQ_USED_F_NO_NOTIFY);
  }
}
