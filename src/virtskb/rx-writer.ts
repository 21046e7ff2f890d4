import { InvalidArgumentError, VirtqueueError } from '../errors.js';
import { CopySite, copyBytes, wordView } from '../memory/copy.js';
import type { MemoryRegion } from '../memory/guest-memory.js';
import { DescriptorChain } from '../ring/chain.js';
import { ChainWriter } from '../ring/chain-io.js';
import type { VirtqDevice } from '../ring/virtqueue.js';
import type { RxBufferMode } from './mode.js';

/** write(): the ring has too few buffers for the packet now; nothing was consumed: keep the packet and wait for a kick. */
export const RX_NO_BUFFERS = 0;
/** write(): the packet can never fit the driver's buffers; the buffers were given back unused: drop the packet and count it. */
export const RX_TOO_BIG = -1;
/**
 * write(), mergeable mode: a posted buffer is shorter than the header. The
 * driver broke 5.1.6.3.1 ("each buffer MUST be at least the size of the
 * struct virtio_net_hdr"); the buffers were given back unused and the ring is
 * stuck on that buffer: treat it as a driver error (DEVICE_NEEDS_RESET).
 */
export const RX_SHORT_BUFFER = -2;

/** Options of RxWriter: the header it writes in front of every packet. */
export interface RxWriterOptions {
  /** small and big: one chain per packet; mergeable: as many as the packet needs. */
  mode: RxBufferMode;
  /** Bytes of the header (virtio-net 10 or 12, virtio-vsock 44). */
  hdrSize: number;
  /**
   * Offset of the le16 num_buffers field in the header, or -1 (default) when
   * there is none. Required in mergeable mode. When set, the writer fills it
   * in every mode: the chains used (1 without mergeable buffers, 5.1.6.4.1).
   */
  numBuffersAt?: number;
}

/** A header of this size (virtio_net_hdr with num_buffers) at aligned ends is written as three words. */
const WORD_HEADER = 12;

/** First size of the scatter list for packets over several buffers; it doubles when a packet needs more. */
const INITIAL_SEGMENTS = 64;

/**
 * The device side of a receive queue, shared by virtio-net and virtio-vsock:
 * writes one packet (a header of hdrSize bytes, then the frame) into posted
 * chains through ChainWriter, so any descriptor layout the driver chose works
 * (header and frame in one descriptor or split at any byte, direct or
 * indirect).
 *
 * One chain per packet in small and big mode. In mergeable mode it takes
 * chains until their writable bytes hold the packet, fills all but the last
 * completely and writes num_buffers = chains used (5.1.6.4). Nothing is
 * written until every chain the packet needs is popped, so a packet that
 * cannot be placed leaves the ring and the buffers exactly as they were.
 *
 * Used entries are pushed but not published: call
 * VirtqDevice.publishUsed() once per batch. No allocation per packet;
 * the scatter list grows (doubling) only for packets over buffers with more
 * segments than it has ever seen, bounded by the packet's bytes.
 */
export class RxWriter {
  readonly hdrSize: number;
  readonly mergeable: boolean;
  readonly numBuffersAt: number;
  /** Outcomes of write() so far (the caller may copy them into shared stats). */
  packets = 0;
  tooBig = 0;
  noBuffers = 0;
  /** Mergeable buffers shorter than the header seen (RX_SHORT_BUFFER). */
  shortBuffers = 0;
  /**
   * Set when write() returns RX_TOO_BIG (0 after any other outcome): the
   * writable bytes, header included, of the buffers that were too small: the
   * one chain (small and big mode), or every chain the ring could give
   * (mergeable mode). A packet of at most this many bytes fits those same
   * buffers, which are still at the head of the ring, so a caller that splits
   * packets (virtio-vsock, as Linux vhost_transport_do_send_pkt does) knows
   * how much to send now.
   */
  lastChainBytes = 0;
  private readonly chain: DescriptorChain;
  private readonly writer = new ChainWriter();
  /** The writable segments of all chains of a multi-buffer packet, as one chain for ChainWriter. */
  private list: DescriptorChain;
  /** Head and used length of each chain of the packet being placed. */
  private readonly heads: Uint16Array;
  private readonly lens: Uint32Array;
  /** The view headers came from last, and its word view (undefined when it does not start on a word). */
  private hdrSrc: Uint8Array | undefined;
  private hdrSrc32: Int32Array | undefined;
  /** The frame copy into one writable segment. */
  private readonly frameCopy = new CopySite();

  constructor(
    private readonly device: VirtqDevice,
    options: RxWriterOptions,
  ) {
    const { hdrSize } = options;
    const numBuffersAt = options.numBuffersAt ?? -1;
    if (!(Number.isInteger(hdrSize) && hdrSize >= 1 && hdrSize <= 0xffff)) throw new InvalidArgumentError(`header size ${hdrSize} must be an integer in [1, 65535]`);
    if (!(Number.isInteger(numBuffersAt) && numBuffersAt >= -1 && numBuffersAt + 2 <= hdrSize)) {
      throw new InvalidArgumentError(`numBuffersAt ${numBuffersAt} must be -1 or an offset with room for a u16 in the ${hdrSize}-byte header`);
    }
    this.mergeable = options.mode === 'mergeable';
    if (this.mergeable && numBuffersAt < 0) throw new InvalidArgumentError('mergeable receive buffers need the num_buffers field (numBuffersAt)');
    this.hdrSize = hdrSize;
    this.numBuffersAt = numBuffersAt;
    this.chain = device.newChain();
    this.list = new DescriptorChain(this.mergeable ? INITIAL_SEGMENTS : 1);
    const most = this.mergeable ? device.size : 1;
    this.heads = new Uint16Array(most);
    this.lens = new Uint32Array(most);
  }

  /**
   * Write one packet: the header from hdrSrc[hdrIdx, hdrIdx + hdrSize) (its
   * num_buffers field, if any, is written by the writer) and the frame from
   * src[frameIdx, frameIdx + frameLen). Header and frame are copied in
   * separate steps, so an 8-aligned frame lands on the driver's 64-aligned data
   * start in one aligned copy.
   *
   * Returns the chains used (>= 1, pushed used), or RX_NO_BUFFERS, RX_TOO_BIG,
   * RX_SHORT_BUFFER (nothing consumed, nothing written).
   * @throws InvalidArgumentError for a negative frameLen.
   * @throws VirtqueueError for a broken chain (from pop()), with every chain of the packet given back first.
   */
  write(hdrSrc: Uint8Array, hdrIdx: number, src: Uint8Array, frameIdx: number, frameLen: number): number {
    const device = this.device;
    const chain = this.chain;
    if (!(frameLen >= 0)) throw new InvalidArgumentError(`frame length ${frameLen} must be >= 0`);
    const need = this.hdrSize + frameLen;
    this.lastChainBytes = 0;
    if (!device.pop(chain)) {
      this.noBuffers++;
      return RX_NO_BUFFERS;
    }
    if (chain.writableBytes >= need) {
      if (chain.writable === 1) {
        // One writable segment holds the packet (small and mergeable buffers as drivers post them): no cursor.
        const s = chain.readable;
        const region = chain.segRegion[s];
        const i = chain.segIdx[s];
        this.putHeader(region, i, hdrSrc, hdrIdx, 1);
        this.frameCopy.copy(src, frameIdx, region.u8, i + this.hdrSize, frameLen);
      } else {
        const w = this.writer.reset(chain);
        this.writeHeader(w, hdrSrc, hdrIdx, 1);
        w.copyFrom(src, frameIdx, frameLen);
      }
      device.pushUsed(chain.head, need);
      this.packets++;
      return 1;
    }
    if (!this.mergeable) {
      // One chain per packet, and this one cannot hold it: give it back, never truncate.
      device.unpop(1);
      this.tooBig++;
      this.lastChainBytes = chain.writableBytes;
      return RX_TOO_BIG;
    }
    return this.gather(hdrSrc, hdrIdx, src, frameIdx, frameLen, need);
  }

  /** Mergeable, the first chain being too small: take more until the packet fits, then write it over all of them. */
  private gather(hdrSrc: Uint8Array, hdrIdx: number, src: Uint8Array, frameIdx: number, frameLen: number, need: number): number {
    const device = this.device;
    const chain = this.chain;
    const hdrSize = this.hdrSize;
    let count = 0;
    let have = 0;
    this.list.reset(0);
    for (;;) {
      const bytes = chain.writableBytes;
      if (bytes < hdrSize) {
        // 5.1.6.3.1: each mergeable buffer MUST hold at least the header.
        device.unpop(count + 1);
        this.shortBuffers++;
        return RX_SHORT_BUFFER;
      }
      const take = Math.min(bytes, need - have);
      this.append(chain, take);
      this.heads[count] = chain.head;
      this.lens[count] = take;
      count++;
      have += take;
      if (have >= need) break;
      if (count === device.size) {
        // A packet may not need more buffers than the ring holds: the driver's
        // buffers are too small for it (or a hostile driver keeps offering tiny ones).
        device.unpop(count);
        this.tooBig++;
        this.lastChainBytes = have;
        return RX_TOO_BIG;
      }
      let popped: boolean;
      try {
        popped = device.pop(chain);
      } catch (e) {
        if (e instanceof VirtqueueError) device.unpop(count);
        throw e;
      }
      if (!popped) {
        device.unpop(count);
        this.noBuffers++;
        return RX_NO_BUFFERS;
      }
    }
    const w = this.writer.reset(this.list);
    this.writeHeader(w, hdrSrc, hdrIdx, count);
    w.copyFrom(src, frameIdx, frameLen);
    for (let k = 0; k < count; k++) device.pushUsed(this.heads[k], this.lens[k]);
    this.packets++;
    return count;
  }

  /** Add the first `upTo` writable bytes of `chain` to the scatter list. */
  private append(chain: DescriptorChain, upTo: number): void {
    const first = chain.readable;
    const end = first + chain.writable;
    for (let s = first; s < end && upTo > 0; s++) {
      const len = Math.min(chain.segLen[s], upTo);
      let list = this.list;
      if (list.readable + list.writable === list.capacity) list = this.grow();
      list.push(chain.segRegion[s], chain.segIdx[s], len, true);
      upTo -= len;
    }
  }

  /**
   * The header at buffer index i of `region`, whose span holds all of it, its
   * num_buffers field (if any) set to `count`: a 12-byte virtio_net_hdr at
   * word-aligned ends is three word moves (not a copy call), then a u16 store.
   */
  private putHeader(region: MemoryRegion, i: number, src: Uint8Array, hdrIdx: number, count: number): void {
    const size = this.hdrSize;
    if (src !== this.hdrSrc) {
      this.hdrSrc = src;
      this.hdrSrc32 = wordView(src);
    }
    const s32 = this.hdrSrc32;
    if (size === WORD_HEADER && s32 !== undefined && ((i | hdrIdx) & 3) === 0) {
      const d = region.u32;
      const w0 = i >>> 2;
      const s0 = hdrIdx >>> 2;
      d[w0] = s32[s0];
      d[w0 + 1] = s32[s0 + 1];
      d[w0 + 2] = s32[s0 + 2];
    } else {
      copyBytes(src, hdrIdx, region.u8, i, size);
    }
    const at = this.numBuffersAt;
    if (at >= 0) {
      const n = i + at;
      if ((n & 1) === 0) region.u16[n >>> 1] = count;
      else {
        region.u8[n] = count;
        region.u8[n + 1] = count >>> 8;
      }
    }
  }

  private grow(): DescriptorChain {
    const old = this.list;
    const list = new DescriptorChain(2 * old.capacity);
    for (let s = 0; s < old.writable; s++) list.push(old.segRegion[s], old.segIdx[s], old.segLen[s], true);
    this.list = list;
    return list;
  }

  /**
   * The header, its num_buffers field (if any) set to `count`. Where the
   * first buffer holds the whole header (every driver we know) it is written
   * in place (putHeader); otherwise through the cursor, across buffers at any byte.
   */
  private writeHeader(w: ChainWriter, src: Uint8Array, hdrIdx: number, count: number): void {
    const at = this.numBuffersAt;
    const size = this.hdrSize;
    const i = w.claim(size);
    if (i >= 0) {
      this.putHeader(w.claimedRegion, i, src, hdrIdx, count);
      return;
    }
    if (at < 0) {
      w.copyFrom(src, hdrIdx, size);
      return;
    }
    w.copyFrom(src, hdrIdx, at);
    w.writeU16(count);
    w.copyFrom(src, hdrIdx + at + 2, size - at - 2);
  }
}
