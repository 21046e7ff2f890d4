import { InvalidArgumentError, VirtqueueError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { VirtqDriver } from '../ring/virtqueue.js';
import { RX_DATA_ALIGN, RX_DEFAULT_PAGE_SIZE, type RecvLayout, type RecvLayoutOptions, type RecvPoolSpec, recvLayout, recvPoolBuffers } from './layout.js';
import { RxPacket, type RxPacketOwner } from './rx-packet.js';

/** Options of RecvBuffers: the layout, plus how to read and check what the device wrote. */
export interface RecvBuffersOptions<P extends RxPacket = RxPacket> extends RecvLayoutOptions {
  /**
   * Offset of the le16 num_buffers field in the header (virtio-net: 10), or
   * -1 when the header has none. Required in mergeable mode; ignored otherwise
   * (the packet reports numBuffers = 1).
   */
  numBuffersAt?: number;
  /**
   * Shortest frame (after the header) to deliver; shorter ones are counted in
   * rxLengthErrors and dropped. Default 0: a header-only packet is delivered
   * (virtio-vsock control packets have no payload). Linux virtio-net uses 14
   * (ETH_HLEN).
   */
  minLength?: number;
  /** The packet class handed to onPacket (e.g. NetRxPacket for virtio_net_hdr fields); default RxPacket. */
  packetType?: new (maxSegments: number) => P;
}

/**
 * What the driver saw the device do, counted (private memory of the driver's
 * thread). Every error drops the packet it hit: its buffers go back to the pool.
 */
export interface RecvStats {
  /** Packets handed to onPacket, and their frame bytes. */
  packets: number;
  bytes: number;
  /**
   * Used length shorter than the header (+ minLength), or longer than the
   * buffer posted (USED_LEN_TOO_LARGE: the queue is then broken, see RecvBuffers.broken).
   * Linux: rx_length_errors.
   */
  rxLengthErrors: number;
  /**
   * Mergeable: num_buffers of 0, larger than the chains in flight, or larger
   * than the used entries that follow the first (5.1.6.4: the device uses
   * num_buffers consecutive entries, published together). Linux counts these
   * as rx_length_errors too.
   */
  rxNumBuffersErrors: number;
  /** A used id that names no chain in flight (USED_ID_OUT_OF_RANGE / USED_ID_NOT_IN_FLIGHT); the queue is broken. */
  rxBadIdErrors: number;
  /** used.idx moved past what was in flight (USED_INDEX_JUMP); the queue is broken. */
  rxIndexErrors: number;
}

const SMALL = 0;
const BIG = 1;
const MERGEABLE = 2;

// State of the packet being delivered.
const IDLE = 0;
const DELIVERING = 1;
const HELD = 2;
const RELEASED = 3;

const MAX_PACKETS = 0x7fffffff;

/**
 * How many buffers of `layout` the pool holds, after checking that it is a
 * usable one: aligned, at least one buffer, each buffer's chain fitting in a
 * queue of `queueSize` (2.7.5.3.1).
 * @throws InvalidArgumentError naming the value that is wrong.
 */
function poolBuffers(pool: RecvPoolSpec, layout: RecvLayout, queueSize: number): number {
  if (!(Number.isSafeInteger(pool.base) && pool.base >= 0 && pool.base % RX_DATA_ALIGN === 0)) {
    throw new InvalidArgumentError(`receive pool base 0x${pool.base.toString(16)} must be a ${RX_DATA_ALIGN}-aligned guest address`);
  }
  if (!(Number.isSafeInteger(pool.pages) && pool.pages > 0)) throw new InvalidArgumentError(`receive pool of ${pool.pages} pages: need at least one`);
  const buffers = recvPoolBuffers(layout, pool.pages);
  if (buffers === 0) throw new InvalidArgumentError(`a receive pool of ${pool.pages} pages holds no ${layout.mode} buffer (${layout.unitBytes} bytes each)`);
  if (layout.descsPerBuffer > queueSize) {
    throw new InvalidArgumentError(`a ${layout.mode} receive buffer takes ${layout.descsPerBuffer} descriptors; queue size ${queueSize} is smaller (2.7.5.3.1)`);
  }
  return buffers;
}

/**
 * The driver side of a receive queue shared by virtio-net and virtio-vsock
 * (after Linux's add_recvbuf_{small,big,mergeable} and
 * receive_{small,big,mergeable}): it keeps a driver-side queue (split or packed) full of buffers
 * from a page pool in guest memory, and rebuilds each packet the device wrote
 * as header + frame segments over those buffers, handed to a callback with no
 * copy and no allocation per packet.
 *
 * Pool buffers cycle free -> posted -> (delivered) -> free, or -> held ->
 * release() -> free. Free buffers are posted by refill() (or addRecvbuf*()).
 *
 * It trusts the device no more than the device trusts the driver: lengths and
 * num_buffers are checked and bad packets counted in `stats` and dropped
 * (Linux rx length errors). What the queue's getUsed() rejects itself
 * (a used id naming no chain in flight, a used length over the chain's
 * writable bytes, a used.idx jump) it throws without consuming the entry, so
 * the ring cannot move past it: RecvBuffers counts it, sets `broken` (Linux
 * marks the virtqueue broken: BAD_RING) and from then on receives and posts
 * nothing; the owner resets the device.
 *
 * One thread owns it (the one that owns the queue).
 */
export class RecvBuffers<P extends RxPacket = RxPacket> implements RxPacketOwner {
  readonly layout: RecvLayout;
  /** Buffers in the pool (small slots, big chains, mergeable pages). */
  readonly buffers: number;
  /** The one packet object handed to every callback. */
  readonly packet: P;
  readonly stats: RecvStats = { packets: 0, bytes: 0, rxLengthErrors: 0, rxNumBuffersErrors: 0, rxBadIdErrors: 0, rxIndexErrors: 0 };
  /** What the last publish() (or refill()) decided: ring the device's doorbell (the caller does it). */
  kickNeeded = false;
  /** The ring error that stopped this queue, or null. */
  broken: VirtqueueError | null = null;

  private readonly kind: number;
  private readonly u8: Uint8Array;
  /** Guest address and u8 index of the pool's first byte. */
  private readonly gpa0: number;
  private readonly idx0: number;
  private readonly unitBytes: number;
  private readonly hdrSize: number;
  private readonly hdrAt: number;
  private readonly dataAt: number;
  private readonly pageSize: number;
  private readonly bufferBytes: number;
  private readonly numBuffersAt: number;
  private readonly minLength: number;
  /** Pool units not posted and not held (a stack: the last freed is posted first, still warm). */
  private readonly freeUnits: Uint32Array;
  private freeCount: number;
  /** Big mode: the chain's descriptor addresses (rewritten per post), lengths and offsets in a unit. */
  private readonly bigAddrs: Float64Array;
  private readonly bigLens: Uint32Array;
  private readonly bigOffsets: Float64Array;
  /** Units of the packet being delivered. */
  private readonly cur: Uint32Array;
  private curCount = 0;
  private state = IDLE;
  private curHandle = -1;
  /** Held packets: slot -> first unit (-1 free) and generation; units linked by unitNext. */
  private readonly unitNext: Int32Array;
  private readonly holdHead: Int32Array;
  private readonly holdGen: Float64Array;
  private readonly holdFree: Uint32Array;
  private holdFreeCount: number;
  private heldUnits = 0;

  constructor(
    readonly queue: VirtqDriver,
    memory: GuestMemory,
    pool: RecvPoolSpec,
    options: RecvBuffersOptions<P>,
  ) {
    const layout = recvLayout(options, pool.pageSize ?? RX_DEFAULT_PAGE_SIZE);
    this.layout = layout;
    const buffers = poolBuffers(pool, layout, queue.size);
    const numBuffersAt = options.numBuffersAt ?? -1;
    if (layout.mode === 'mergeable' && !(Number.isInteger(numBuffersAt) && numBuffersAt >= 0 && numBuffersAt + 2 <= layout.hdrSize)) {
      throw new InvalidArgumentError(`mergeable buffers need the num_buffers field inside the ${layout.hdrSize}-byte header; numBuffersAt is ${numBuffersAt}`);
    }
    const minLength = options.minLength ?? 0;
    if (!(Number.isInteger(minLength) && minLength >= 0)) throw new InvalidArgumentError(`minLength ${minLength} must be a non-negative integer`);
    const region = memory.region(pool.base, pool.pages * layout.pageSize, 'receive buffer pool');
    this.kind = layout.mode === 'small' ? SMALL : layout.mode === 'big' ? BIG : MERGEABLE;
    this.buffers = buffers;
    this.u8 = region.u8;
    this.gpa0 = pool.base;
    this.idx0 = pool.base + region.bias;
    this.unitBytes = layout.unitBytes;
    this.hdrSize = layout.hdrSize;
    this.hdrAt = layout.hdrAt;
    this.dataAt = layout.dataAt;
    this.pageSize = layout.pageSize;
    this.bufferBytes = layout.bufferBytes;
    this.numBuffersAt = numBuffersAt;
    this.minLength = minLength;

    this.freeUnits = new Uint32Array(buffers);
    for (let k = 0; k < buffers; k++) this.freeUnits[k] = buffers - 1 - k;
    this.freeCount = buffers;

    const descs = this.kind === BIG ? layout.descsPerBuffer : 0;
    this.bigAddrs = new Float64Array(descs);
    this.bigLens = new Uint32Array(descs);
    this.bigOffsets = new Float64Array(descs);
    if (descs !== 0) {
      // sg[0]: the header at the start of the first page; sg[1]: the rest of
      // that page from the 64-aligned data start; then one per further page.
      this.bigLens[0] = layout.hdrSize;
      this.bigOffsets[1] = layout.dataAt;
      this.bigLens[1] = layout.pageSize - layout.dataAt;
      for (let k = 2; k < descs; k++) {
        this.bigOffsets[k] = (k - 1) * layout.pageSize;
        this.bigLens[k] = layout.pageSize;
      }
    }

    const perPacket = this.kind === MERGEABLE ? queue.size : 1;
    this.cur = new Uint32Array(perPacket);
    const Packet = options.packetType ?? (RxPacket as unknown as new (maxSegments: number) => P);
    this.packet = new Packet(this.kind === MERGEABLE ? queue.size : 2);
    this.packet.attach(this);

    this.unitNext = new Int32Array(buffers);
    this.holdHead = new Int32Array(buffers).fill(-1);
    this.holdGen = new Float64Array(buffers);
    this.holdFree = new Uint32Array(buffers);
    for (let k = 0; k < buffers; k++) this.holdFree[k] = buffers - 1 - k;
    this.holdFreeCount = buffers;
  }

  /** Pool buffers neither posted nor held: what refill() can post. */
  get freeBuffers(): number {
    return this.freeCount;
  }

  /** Pool buffers kept by held packets. */
  get heldBuffers(): number {
    return this.heldUnits;
  }

  // ---- posting ------------------------------------------------------------

  /**
   * Post one small buffer: [slot + hdrAt, + bufferBytes), header and frame in
   * one descriptor. Returns false when the ring or the pool is full. Visible
   * to the device at the next publish() / refill().
   */
  addRecvbufSmall(): boolean {
    this.expect(SMALL, 'addRecvbufSmall');
    return this.postOne();
  }

  /**
   * Post one big chain (header descriptor, then its pages): one ring slot
   * through an indirect table when the queue has them, else descsPerBuffer
   * ring descriptors. Returns false when the ring or the pool is full.
   */
  addRecvbufBig(): boolean {
    this.expect(BIG, 'addRecvbufBig');
    return this.postBig();
  }

  /** Post one mergeable buffer: [page + hdrAt, page end). Returns false when the ring or the pool is full. */
  addRecvbufMergeable(): boolean {
    this.expect(MERGEABLE, 'addRecvbufMergeable');
    return this.postOne();
  }

  /**
   * Post free pool buffers until the ring or the pool is full, then publish.
   * Returns how many it posted; `kickNeeded` says whether the device wants a
   * kick (ring the doorbell after, outside any critical section). Posts nothing
   * once the queue is broken.
   */
  refill(): number {
    let n = 0;
    if (this.broken === null) {
      if (this.kind === BIG) while (this.postBig()) n++;
      else while (this.postOne()) n++;
    }
    this.publish();
    return n;
  }

  /** Make buffers posted since the last publish visible; returns (and stores in kickNeeded) whether to kick. */
  publish(): boolean {
    this.kickNeeded = this.queue.publish();
    return this.kickNeeded;
  }

  private postOne(): boolean {
    if (this.freeCount === 0) return false;
    const u = this.freeUnits[this.freeCount - 1];
    if (!this.queue.addBuffer(this.gpa0 + u * this.unitBytes + this.hdrAt, this.bufferBytes, true, u)) return false;
    this.freeCount--;
    return true;
  }

  private postBig(): boolean {
    if (this.freeCount === 0) return false;
    const u = this.freeUnits[this.freeCount - 1];
    const gpa = this.gpa0 + u * this.unitBytes;
    const addrs = this.bigAddrs;
    for (let k = 0; k < addrs.length; k++) addrs[k] = gpa + this.bigOffsets[k];
    if (!this.queue.addChain(addrs, this.bigLens, 0, addrs.length, u)) return false;
    this.freeCount--;
    return true;
  }

  private putUnit(u: number): void {
    this.freeUnits[this.freeCount++] = u;
  }

  private putCur(): void {
    for (let k = 0; k < this.curCount; k++) this.freeUnits[this.freeCount++] = this.cur[k];
    this.curCount = 0;
  }

  // ---- receiving ----------------------------------------------------------

  /**
   * Deliver up to `max` received packets to `onPacket` in the queue's mode;
   * returns how many were delivered. Their buffers go back to the pool (to be
   * reposted by refill()) unless the callback held them. Packets the device
   * got wrong are counted in `stats` and dropped.
   * @throws InvalidArgumentError when called from inside onPacket; whatever onPacket throws (the packet counts as delivered).
   */
  receive(onPacket: (p: P) => void, max = MAX_PACKETS): number {
    if (this.kind === SMALL) return this.receiveSmall(onPacket, max);
    if (this.kind === BIG) return this.receiveBig(onPacket, max);
    return this.receiveMergeable(onPacket, max);
  }

  /** Small mode: one used entry is one packet, header and frame in one buffer. */
  receiveSmall(onPacket: (p: P) => void, max = MAX_PACKETS): number {
    return this.enter(SMALL, 'receiveSmall') ? this.receiveSingle(onPacket, max) : 0;
  }

  /**
   * Big mode: one used entry is one packet over a chain of pages. The pages of
   * a chain are contiguous, so the frame is at most two segments: the rest of
   * the first page, then everything after it.
   */
  receiveBig(onPacket: (p: P) => void, max = MAX_PACKETS): number {
    return this.enter(BIG, 'receiveBig') ? this.receiveSingle(onPacket, max) : 0;
  }

  /** Small and big: one used entry per packet. */
  private receiveSingle(onPacket: (p: P) => void, max: number): number {
    const { queue } = this;
    const shortest = this.hdrSize + this.minLength;
    let n = 0;
    while (n < max) {
      const u = this.take();
      if (u < 0) break;
      const len = queue.usedLen;
      if (len < shortest) {
        this.stats.rxLengthErrors++;
        this.putUnit(u);
        continue;
      }
      if (this.kind === BIG) this.describeBig(u, len);
      else this.describeSmall(u, len);
      this.cur[0] = u;
      this.curCount = 1;
      this.deliver(onPacket);
      n++;
    }
    return n;
  }

  /** The packet in small unit `u`: header, then the frame right after it. */
  private describeSmall(u: number, len: number): void {
    const hdr = this.hdrSize;
    const h = this.idx0 + u * this.unitBytes + this.hdrAt;
    this.packet.begin(this.u8, h, hdr, 1);
    if (len > hdr) this.packet.addSegment(this.u8, h + hdr, len - hdr);
  }

  /** The packet in big unit `u`: header at the first page's start, frame from dataAt on. */
  private describeBig(u: number, len: number): void {
    const { u8, packet } = this;
    const base = this.idx0 + u * this.unitBytes;
    packet.begin(u8, base, this.hdrSize, 1);
    let rest = len - this.hdrSize;
    if (rest <= 0) return;
    const firstData = this.pageSize - this.dataAt;
    const first = rest < firstData ? rest : firstData;
    packet.addSegment(u8, base + this.dataAt, first);
    rest -= first;
    if (rest > 0) packet.addSegment(u8, base + this.pageSize, rest);
  }

  /**
   * Mergeable mode: a packet is num_buffers consecutive used entries (5.1.6.4);
   * the first buffer starts with the header, the others hold only frame bytes.
   * A num_buffers of 0 or more than the chains in flight drops only the first
   * buffer; entries missing after it (not yet published: the device must
   * publish a packet's entries together, as QEMU and vhost do) drop the ones
   * taken (Linux "buffers out of ... missing").
   */
  receiveMergeable(onPacket: (p: P) => void, max = MAX_PACKETS): number {
    if (!this.enter(MERGEABLE, 'receiveMergeable')) return 0;
    const { u8, packet, queue, cur } = this;
    const hdr = this.hdrSize;
    const nbAt = this.numBuffersAt;
    let n = 0;
    while (n < max) {
      const u = this.take();
      if (u < 0) break;
      const len = queue.usedLen;
      if (len < hdr) {
        this.stats.rxLengthErrors++;
        this.putUnit(u);
        continue;
      }
      const h = this.idx0 + u * this.unitBytes + this.hdrAt;
      const num = u8[h + nbAt] | (u8[h + nbAt + 1] << 8);
      if (num === 0 || num - 1 > queue.pending) {
        this.stats.rxNumBuffersErrors++;
        this.putUnit(u);
        continue;
      }
      packet.begin(u8, h, hdr, num);
      if (len > hdr) packet.addSegment(u8, h + hdr, len - hdr);
      cur[0] = u;
      this.curCount = 1;
      while (this.curCount < num) {
        const v = this.take();
        if (v < 0) break;
        cur[this.curCount++] = v;
        const l = queue.usedLen;
        if (l > 0) packet.addSegment(u8, this.idx0 + v * this.unitBytes + this.hdrAt, l);
      }
      if (this.curCount < num) {
        if (this.broken !== null) {
          this.putCur();
          break;
        }
        this.stats.rxNumBuffersErrors++;
        this.putCur();
        continue;
      }
      if (packet.length < this.minLength) {
        this.stats.rxLengthErrors++;
        this.putCur();
        continue;
      }
      this.deliver(onPacket);
      n++;
    }
    return n;
  }

  private expect(kind: number, what: string): void {
    if (this.kind !== kind) throw new InvalidArgumentError(`${what}() on a receive queue in ${this.layout.mode} mode`);
  }

  /** Checks common to the receive paths; false when the queue is broken. */
  private enter(kind: number, what: string): boolean {
    this.expect(kind, what);
    if (this.state !== IDLE) throw new InvalidArgumentError(`${what}() from inside an onPacket callback`);
    return this.broken === null;
  }

  /** The next used entry's token (pool unit), or -1: none ready, or the ring is broken. */
  private take(): number {
    try {
      return this.queue.getUsed();
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.fail(e);
      return -1;
    }
  }

  private fail(e: VirtqueueError): void {
    const s = this.stats;
    if (e.code === 'USED_LEN_TOO_LARGE') s.rxLengthErrors++;
    else if (e.code === 'USED_INDEX_JUMP') s.rxIndexErrors++;
    else s.rxBadIdErrors++;
    this.broken = e;
  }

  private deliver(onPacket: (p: P) => void): void {
    const p = this.packet;
    this.stats.packets++;
    this.stats.bytes += p.length;
    this.state = DELIVERING;
    try {
      onPacket(p);
    } finally {
      if (this.state === DELIVERING) this.putCur();
      this.curCount = 0;
      this.state = IDLE;
      this.curHandle = -1;
    }
  }

  // ---- holding --------------------------------------------------------------

  /** RxPacket.hold(): keep the packet being delivered out of the pool. */
  holdCurrent(p: RxPacket): number {
    if (p !== this.packet || this.state === IDLE) throw new InvalidArgumentError('hold() is only valid inside onPacket, on the packet being delivered');
    if (this.state === HELD) return this.curHandle;
    if (this.state === RELEASED) throw new InvalidArgumentError(`hold() on a packet whose handle ${this.curHandle} was already released`);
    // Each hold keeps at least one unit, so a free slot always exists.
    const slot = this.holdFree[--this.holdFreeCount];
    let head = -1;
    for (let k = this.curCount - 1; k >= 0; k--) {
      const u = this.cur[k];
      this.unitNext[u] = head;
      head = u;
    }
    this.holdHead[slot] = head;
    const gen = ++this.holdGen[slot];
    const handle = gen * this.buffers + slot;
    this.heldUnits += this.curCount;
    this.state = HELD;
    this.curHandle = handle;
    return handle;
  }

  /**
   * Give a held packet's buffers back to the pool (posted again by the next
   * refill()). May be called inside a callback, for any handle.
   * @throws InvalidArgumentError for a handle that is not held: unknown, or released already.
   */
  release(handle: number): void {
    const cap = this.buffers;
    const slot = handle % cap;
    if (!(Number.isSafeInteger(handle) && handle >= cap && this.holdHead[slot] >= 0 && this.holdGen[slot] === (handle - slot) / cap)) {
      throw new InvalidArgumentError(`release(${handle}): no packet is held under this handle (never handed out, or released already)`);
    }
    for (let u = this.holdHead[slot]; u >= 0; ) {
      const next = this.unitNext[u];
      this.freeUnits[this.freeCount++] = u;
      this.heldUnits--;
      u = next;
    }
    this.holdHead[slot] = -1;
    this.holdFree[this.holdFreeCount++] = slot;
    if (handle === this.curHandle && this.state === HELD) this.state = RELEASED;
  }
}
