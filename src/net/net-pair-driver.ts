import { InvalidArgumentError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { ring } from '../notify/notify-area.js';
import { createQueueDriver } from '../ring/create-queue.js';
import type { VirtqDriver } from '../ring/virtqueue.js';
import type { FeatureSet } from '../spec/features.js';
import { NET_HDR_SIZE } from '../spec/net.js';
import { RecvBuffers } from '../virtskb/index.js';
import { NetRxPacket } from './net-rx-packet.js';
import { netRecvConfig } from './recv-config.js';
import type { NetPairSpec } from './net-driver.js';
import type { NetHdr } from './offload/index.js';

/**
 * A pool of equal transmit slots in guest memory. Slot b starts at
 * base + b * stride (a multiple of 64); its virtio_net_hdr sits at the end of
 * the slot's first cache line (TX_HEADER_AT) so the frame starts on a line
 * of its own.
 */
export interface BufferPool {
  base: number;
  count: number;
  stride: number;
}

/** Offset of the header in a tx slot: the frame then starts at offset 64. */
export const TX_HEADER_AT = 64 - NET_HDR_SIZE;

/** Driver-side counters of one queue pair (private to the driver's thread). */
export interface NetPairStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** What the driver caught the device doing wrong on receive (virtskb RecvStats). */
  rxLengthErrors: number;
  rxNumBuffersErrors: number;
  rxBadIdErrors: number;
  rxIndexErrors: number;
}

/**
 * The guest side of one virtio-net queue pair: transmit slots with their
 * headers (offloads per frame), and receive buffers kept posted by virtskb in
 * the negotiated mode (small, big or mergeable). Used from one thread.
 */
export class NetPairDriver {
  /** Byte view of the guest memory holding the tx buffers. */
  readonly u8: Uint8Array;
  readonly rx: VirtqDriver;
  readonly tx: VirtqDriver;
  readonly recv: RecvBuffers<NetRxPacket>;
  private readonly txGpa: number;
  private readonly txBase: number;
  private readonly stride: number;
  private readonly txFree: Uint16Array;
  private txFreeCount: number;
  private txReserved = -1;
  private readonly rxKickI32: Int32Array;
  private readonly txKickI32: Int32Array;
  private txPackets = 0;
  private txBytes = 0;

  constructor(
    memory: GuestMemory,
    features: FeatureSet,
    mtu: number,
    readonly spec: NetPairSpec,
  ) {
    this.rx = createQueueDriver(memory, spec.rx, spec.rxIndirect === undefined ? {} : { indirectTables: spec.rxIndirect });
    this.tx = createQueueDriver(memory, spec.tx);
    const recv = netRecvConfig(features, mtu);
    this.recv = new RecvBuffers(this.rx, memory, spec.rxPool, { ...recv, minLength: 14, packetType: NetRxPacket });
    const pool = spec.txBuffers;
    const txr = memory.region(pool.base, pool.count * pool.stride, 'tx buffers');
    this.u8 = txr.u8;
    this.txGpa = pool.base;
    this.txBase = pool.base + TX_HEADER_AT + txr.bias;
    this.stride = pool.stride;
    this.txFree = new Uint16Array(pool.count);
    for (let i = 0; i < this.txFree.length; i++) this.txFree[i] = i;
    this.txFreeCount = this.txFree.length;
    // Headers start all zero (no offload); commitTx(len, hdr) writes one when asked.
    for (let b = 0; b < pool.count; b++) this.u8.fill(0, this.txBase + b * this.stride, this.txBase + b * this.stride + NET_HDR_SIZE);
    this.rxKickI32 = new Int32Array(spec.rxKick.buffer);
    this.txKickI32 = new Int32Array(spec.txKick.buffer);
  }

  /** Largest frame one tx buffer holds. */
  get maxFrame(): number {
    return this.stride - TX_HEADER_AT - NET_HDR_SIZE;
  }

  // ---- transmit ----------------------------------------------------------

  /**
   * Take a free tx buffer: returns the index in `u8` where the frame's bytes
   * go, or -1 when every buffer is in flight (reclaimTx() frees them).
   */
  reserveTx(): number {
    if (this.txFreeCount === 0 || this.tx.numFree === 0) return -1;
    const b = this.txFree[--this.txFreeCount];
    this.txReserved = b;
    return this.txBase + b * this.stride + NET_HDR_SIZE;
  }

  /**
   * Queue the reserved buffer holding a `len`-byte frame, with the offloads
   * `hdr` asks for (NEEDS_CSUM, GSO; default none). Visible to the device at
   * flushTx().
   */
  commitTx(len: number, hdr?: NetHdr): void {
    const b = this.txReserved;
    if (b < 0) throw new InvalidArgumentError('commitTx() without reserveTx()');
    if (!(len > 0 && len <= this.maxFrame)) throw new InvalidArgumentError(`frame length ${len} not in [1, ${this.maxFrame}]`);
    this.txReserved = -1;
    const at = this.txBase + b * this.stride;
    if (hdr !== undefined) hdr.write(this.u8, at);
    else if (this.u8[at] !== 0 || this.u8[at + 1] !== 0) this.u8.fill(0, at, at + NET_HDR_SIZE);
    this.tx.addBuffer(this.txGpa + b * this.stride + TX_HEADER_AT, NET_HDR_SIZE + len, false, b);
    this.txPackets++;
    this.txBytes += len;
  }

  /** Copy `frame` into a tx buffer and queue it; false when no buffer is free. */
  send(frame: Uint8Array, hdr?: NetHdr): boolean {
    const at = this.reserveTx();
    if (at < 0) return false;
    this.u8.set(frame, at);
    this.commitTx(frame.length, hdr);
    return true;
  }

  /**
   * Queue as many of `frames` as buffers allow (from the first), publish them
   * with one index store and at most one kick; returns how many were queued.
   */
  sendBatch(frames: readonly Uint8Array[]): number {
    let n = 0;
    while (n < frames.length && this.send(frames[n])) n++;
    this.flushTx();
    return n;
  }

  /** Publish queued frames and kick the device if it asked (prepare, then notify outside). */
  flushTx(): void {
    if (this.tx.publish()) ring(this.txKickI32, this.spec.txKick.index);
  }

  /** Take back the buffers of frames the device has sent; returns how many. */
  reclaimTx(): number {
    let n = 0;
    for (let b = this.tx.getUsed(); b >= 0; b = this.tx.getUsed()) {
      this.txFree[this.txFreeCount++] = b;
      n++;
    }
    return n;
  }

  // ---- receive -----------------------------------------------------------

  /** Post every receive buffer the pool has and kick if needed. */
  fillRx(): void {
    this.recv.refill();
    if (this.recv.kickNeeded) ring(this.rxKickI32, this.spec.rxKick.index);
  }

  /**
   * Deliver up to `max` received packets to `onPacket`, then repost their
   * buffers (unless held) and kick if needed. Returns how many were delivered.
   */
  receive(onPacket: (p: NetRxPacket) => void, max = 0x7fffffff): number {
    const n = this.recv.receive(onPacket, max);
    if (n !== 0) this.fillRx();
    return n;
  }

  // ---- interrupts ----------------------------------------------------------

  /** Ask for interrupts on both queues before sleeping; true means used entries are already waiting. */
  enableInterrupts(): boolean {
    const rxReady = this.rx.enableInterrupts();
    const txReady = this.tx.enableInterrupts();
    return rxReady || txReady;
  }

  disableInterrupts(): void {
    this.rx.disableInterrupts();
    this.tx.disableInterrupts();
  }

  stats(): NetPairStats {
    const r = this.recv.stats;
    return {
      txPackets: this.txPackets,
      txBytes: this.txBytes,
      rxPackets: r.packets,
      rxBytes: r.bytes,
      rxLengthErrors: r.rxLengthErrors,
      rxNumBuffersErrors: r.rxNumBuffersErrors,
      rxBadIdErrors: r.rxBadIdErrors,
      rxIndexErrors: r.rxIndexErrors,
    };
  }
}
