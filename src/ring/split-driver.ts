import { InvalidArgumentError, VirtqueueError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY } from '../spec/ring.js';
import type { QueueState } from './queue-state.js';
import { validateQueueState } from './queue-state.js';
import { chainWritableBytes, checkChainFits, goesIndirect } from './chain-request.js';
import { SplitRingLayout } from './split-layout.js';

const TWO_32 = 0x1_0000_0000;

/** Options of a driver-side queue. */
export interface SplitDriverOptions {
  /**
   * Guest addresses of one indirect table per descriptor slot, each with room
   * for `indirectMax` entries (allocate with GuestAllocator). When set, chains
   * of more than one segment go through an indirect table.
   */
  indirectTables?: { base: number; maxEntries: number };
}

/**
 * The driver side of a split virtqueue (2.7.13): adds chains, publishes the
 * avail index once per batch, decides kicks, and reaps used entries. Its own
 * bookkeeping (free list, chain lengths, tokens) is private memory the device
 * cannot touch, as in Linux's desc_extra; what the device wrote is validated.
 */
export class SplitQueueDriver {
  readonly size: number;
  readonly eventIdx: boolean;
  /** Length the device reported for the entry the last getUsed() returned. */
  usedLen = 0;
  private readonly ring: SplitRingLayout;
  private readonly nextFree: Uint16Array;
  private readonly chainDescs: Uint16Array;
  private readonly capacity: Uint32Array;
  private readonly tokens: Float64Array;
  private readonly inFlight: Uint8Array;
  private freeHead = 0;
  private numFreeDescs: number;
  private availIdx: number;
  private published: number;
  private lastUsed: number;
  private usedCache: number;
  private readonly indirect?: { base: number; maxEntries: number; region: ReturnType<GuestMemory['region']> };

  constructor(
    private readonly memory: GuestMemory,
    state: QueueState,
    options: SplitDriverOptions = {},
  ) {
    validateQueueState(state, memory);
    this.ring = new SplitRingLayout(memory, state);
    this.size = state.size;
    this.eventIdx = state.eventIdx;
    this.nextFree = new Uint16Array(this.size);
    for (let i = 0; i < this.size; i++) this.nextFree[i] = (i + 1) & 0xffff;
    this.numFreeDescs = this.size;
    this.chainDescs = new Uint16Array(this.size);
    this.capacity = new Uint32Array(this.size);
    this.tokens = new Float64Array(this.size);
    this.inFlight = new Uint8Array(this.size);
    this.availIdx = state.nextAvail;
    this.published = state.nextAvail;
    this.lastUsed = state.nextUsed;
    this.usedCache = state.nextUsed;
    const ind = options.indirectTables;
    if (ind !== undefined) {
      if (!state.indirect) throw new InvalidArgumentError('indirect tables given but VIRTIO_F_INDIRECT_DESC is not negotiated');
      const region = memory.region(ind.base, this.size * ind.maxEntries * 16, 'indirect tables');
      this.indirect = { ...ind, region };
    }
  }

  /** Descriptors free for new chains. */
  get numFree(): number {
    return this.numFreeDescs;
  }

  /** The next avail ring index this driver writes (free-running u16). */
  get nextAvail(): number {
    return this.availIdx;
  }

  /** The next used ring index this driver reads (free-running u16). */
  get nextUsed(): number {
    return this.lastUsed;
  }

  /** Chains added and not yet returned by the device. */
  get pending(): number {
    return (this.availIdx - this.lastUsed) & 0xffff;
  }

  /** Add a one-buffer chain; returns false when the ring is full. */
  addBuffer(gpa: number, len: number, writable: boolean, token: number): boolean {
    if (this.numFreeDescs === 0) return false;
    const head = this.freeHead;
    this.freeHead = this.nextFree[head];
    this.numFreeDescs--;
    this.writeDesc(head, gpa, len, writable ? VIRTQ_DESC_F_WRITE : 0, 0);
    this.capacity[head] = writable ? len : 0;
    this.finish(head, 1, token);
    return true;
  }

  /**
   * Add a chain of `nOut` device-readable then `nIn` device-writable segments
   * (addresses and lengths in `addrs`/`lens`); returns false when there is no
   * room now. With indirect tables configured, a multi-segment chain costs one slot.
   * @throws InvalidArgumentError for an empty chain, or one longer than the queue (it could never be added).
   */
  addChain(addrs: ArrayLike<number>, lens: ArrayLike<number>, nOut: number, nIn: number, token: number): boolean {
    const n = nOut + nIn;
    const writableBytes = chainWritableBytes(lens, nOut, nIn);
    const ind = this.indirect;
    if (ind !== undefined && goesIndirect(ind, n, this.size)) {
      if (this.numFreeDescs === 0) return false;
      const head = this.takeFree();
      const table = ind.base + head * ind.maxEntries * 16;
      for (let k = 0; k < n; k++) {
        const flags = (k < nOut ? 0 : VIRTQ_DESC_F_WRITE) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
        this.writeIndirectEntry(table + 16 * k, addrs[k], lens[k], flags, k + 1);
      }
      this.writeDesc(head, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
      this.capacity[head] = writableBytes;
      this.finish(head, 1, token);
      return true;
    }
    checkChainFits(n, this.size);
    if (n > this.numFreeDescs) return false;
    const head = this.freeHead;
    let i = head;
    for (let k = 0; k < n; k++) {
      const next = this.nextFree[i];
      const flags = (k < nOut ? 0 : VIRTQ_DESC_F_WRITE) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
      this.writeDesc(i, addrs[k], lens[k], flags, k + 1 < n ? next : 0);
      if (k + 1 < n) i = next;
    }
    this.freeHead = this.nextFree[i];
    this.numFreeDescs -= n;
    this.capacity[head] = writableBytes;
    this.finish(head, n, token);
    return true;
  }

  private takeFree(): number {
    const head = this.freeHead;
    this.freeHead = this.nextFree[head];
    this.numFreeDescs--;
    return head;
  }

  private finish(head: number, descs: number, token: number): void {
    this.chainDescs[head] = descs;
    this.tokens[head] = token;
    this.inFlight[head] = 1;
    const r = this.ring;
    r.availU16[r.availRing + (this.availIdx & r.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  private writeDesc(i: number, gpa: number, len: number, flags: number, next: number): void {
    const r = this.ring;
    const w = r.desc32 + 4 * i;
    r.descU32[w] = gpa >>> 0;
    // Addresses below 4 GiB (the common case) skip the division.
    r.descU32[w + 1] = gpa < TWO_32 ? 0 : Math.floor(gpa / TWO_32);
    r.descU32[w + 2] = len;
    r.descU32[w + 3] = (flags | (next << 16)) >>> 0;
  }

  private writeIndirectEntry(gpa: number, addr: number, len: number, flags: number, next: number): void {
    const m = this.memory;
    m.writeU32(gpa, addr >>> 0);
    m.writeU32(gpa + 4, Math.floor(addr / TWO_32));
    m.writeU32(gpa + 8, len);
    m.writeU32(gpa + 12, (flags | (next << 16)) >>> 0);
  }

  /**
   * Make every chain added since the last call visible with one store of
   * avail.idx, and decide whether the device needs a kick (Linux
   * virtqueue_kick_prepare). Ring the doorbell after, outside any lock.
   */
  publish(): boolean {
    const old = this.published;
    const next = this.availIdx;
    if (old === next) return false;
    const r = this.ring;
    this.published = next;
    return r.publishIndex(r.availU16, r.availIdx, next, old, this.eventIdx, r.usedU16, r.availEvent, r.usedFlags, VIRTQ_USED_F_NO_NOTIFY);
  }

  /** Used entries the device has published and the driver has not reaped. */
  usedAvailable(): number {
    const n = (this.usedCache - this.lastUsed) & 0xffff;
    if (n !== 0) return n;
    const idx = Atomics.load(this.ring.usedU16, this.ring.usedIdx);
    const fresh = (idx - this.lastUsed) & 0xffff;
    // The device can only have used chains it was shown: those published, not merely added.
    const shown = (this.published - this.lastUsed) & 0xffff;
    if (fresh > shown) {
      throw new VirtqueueError('USED_INDEX_JUMP', `device moved used.idx to ${idx}, ${fresh} entries past the driver's ${this.lastUsed} with ${shown} published in flight`, idx);
    }
    this.usedCache = idx;
    return fresh;
  }

  /**
   * Reap one used entry: returns its token (and sets usedLen), or -1 when
   * none is ready. Frees the chain's descriptors.
   */
  getUsed(): number {
    if (this.usedAvailable() === 0) return -1;
    const r = this.ring;
    const e = r.usedRing32 + 2 * (this.lastUsed & r.mask);
    const id = r.usedU32[e];
    const len = r.usedU32[e + 1];
    if (id >= this.size) throw new VirtqueueError('USED_ID_OUT_OF_RANGE', `used entry names descriptor ${id}, queue size is ${this.size}`, id);
    if (this.inFlight[id] === 0) throw new VirtqueueError('USED_ID_NOT_IN_FLIGHT', `used entry names descriptor ${id}, which is not the head of a chain in flight`, id);
    if (len > this.capacity[id]) {
      throw new VirtqueueError('USED_LEN_TOO_LARGE', `device wrote ${len} bytes into chain ${id} with ${this.capacity[id]} writable`, len);
    }
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    this.inFlight[id] = 0;
    this.usedLen = len;
    this.release(id);
    return this.tokens[id];
  }

  private release(head: number): void {
    // A chain took its descriptors in free-list order, so the private next
    // links still run head -> tail (the device-visible table is never read back).
    let tail = head;
    for (let n = this.chainDescs[head]; n > 1; n--) tail = this.nextFree[tail];
    this.nextFree[tail] = this.freeHead;
    this.freeHead = head;
    this.numFreeDescs += this.chainDescs[head];
  }

  /**
   * Ask for an interrupt on the next used entry (event idx: used_event =
   * last reaped). Returns true when entries are already waiting, in which case
   * the caller must not sleep (the re-check before sleeping).
   */
  enableInterrupts(): boolean {
    const r = this.ring;
    if (this.eventIdx) Atomics.store(r.availU16, r.usedEvent, this.lastUsed);
    else Atomics.store(r.availU16, r.availFlags, 0);
    return this.usedAvailable() !== 0;
  }

  /** Tell the device not to interrupt while the driver polls. */
  disableInterrupts(): void {
    if (!this.eventIdx) Atomics.store(this.ring.availU16, this.ring.availFlags, VIRTQ_AVAIL_F_NO_INTERRUPT);
  }
}
