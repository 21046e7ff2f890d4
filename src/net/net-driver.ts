import { InvalidArgumentError } from '../errors.js';
import { GuestAllocator } from '../memory/allocator.js';
import { GuestMemory, type MemoryRegionSpec } from '../memory/guest-memory.js';
import { type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { SplitQueueDriver } from '../ring/split-driver.js';
import { type FeatureSet } from '../spec/features.js';
import { ETH_MAX_FRAME, NET_CFG_MAC, NET_HDR_SIZE, netRxQueue, netTxQueue } from '../spec/net.js';
import { PciCommonConfig } from '../transport/pci-common-config.js';
import { PciDriver } from '../transport/pci-driver.js';
import { formatMac } from './mac.js';
import { NET_DEFAULT_FEATURES, type VirtioNetDevice } from './net-device.js';

/**
 * A pool of equal buffer slots in guest memory. Slot b starts at
 * base + b * stride (a multiple of 64); its virtio_net_hdr sits at the end of
 * the slot's first cache line (HEADER_AT) so the frame starts on a line of
 * its own: a tx header, written once, never shares a line with frame bytes
 * that move between threads on every packet.
 */
export interface BufferPool {
  base: number;
  count: number;
  stride: number;
}

/** Offset of the header in a slot: the frame then starts at offset 64. */
const HEADER_AT = 64 - NET_HDR_SIZE;

/**
 * Everything a NetDriver needs, as plain data: build it on the main thread
 * with setupNetDriver() and hand it to the thread that runs the guest side.
 */
export interface NetDriverSpec {
  memory: MemoryRegionSpec[];
  /** Negotiated features, hex. */
  features: string;
  /** The MAC address the driver read from config space. */
  mac: string;
  rx: QueueState;
  tx: QueueState;
  rxBuffers: BufferPool;
  txBuffers: BufferPool;
  /** Doorbells of the rx and tx queues (the device's notify area). */
  rxKick: WordRef;
  txKick: WordRef;
  /** The word both queues' interrupts (and config changes) ring. */
  interrupt: WordRef;
}

/** Options of setupNetDriver(). */
export interface NetDriverOptions {
  /** Features the driver wants (intersected with the offer); default NET_DEFAULT_FEATURES. */
  features?: FeatureSet;
  /** Queue size for rx and tx; default the device's maximum. */
  queueSize?: number;
  /** Bytes of each rx/tx buffer, header included; default header + 1518. */
  bufferSize?: number;
  /** Word to route the interrupts to; default a new one. Share one to sleep on several NICs. */
  interrupt?: WordRef;
  /** Where rings and buffers go in guest memory; default a fresh allocator over the first region. */
  allocator?: GuestAllocator;
}

/** A fresh interrupt word for a driver thread to sleep on. */
export function newInterruptWord(): WordRef {
  return { buffer: new SharedArrayBuffer(64), index: 0 };
}

/**
 * Bring up a virtio-net device the way a guest driver does (reset,
 * negotiate, rings and buffers in guest memory, vectors, DRIVER_OK) and
 * return the plain-data spec of its driver side.
 */
export async function setupNetDriver(device: VirtioNetDevice, options: NetDriverOptions = {}): Promise<NetDriverSpec> {
  const memory = device.memory;
  const alloc = options.allocator ?? new GuestAllocator(memory);
  const pci = new PciDriver(new PciCommonConfig(device), memory, alloc);
  const features = await pci.negotiate(options.features ?? NET_DEFAULT_FEATURES);
  const interrupt = options.interrupt ?? newInterruptWord();
  // Vector 0: config changes; 1: rx; 2: tx. All routed to one word.
  for (const v of [0, 1, 2]) pci.routeVector(v, interrupt);
  pci.setConfigVector(0);
  const size = options.queueSize;
  const rx = pci.setupQueue(netRxQueue(0), { size, vector: 1 });
  const tx = pci.setupQueue(netTxQueue(0), { size, vector: 2 });
  const bufferSize = options.bufferSize ?? NET_HDR_SIZE + ETH_MAX_FRAME;
  if (bufferSize <= NET_HDR_SIZE) throw new InvalidArgumentError(`buffer size ${bufferSize} leaves no room after the ${NET_HDR_SIZE}-byte header`);
  const stride = Math.ceil((HEADER_AT + bufferSize) / 64) * 64;
  const pool = (count: number): BufferPool => ({ base: alloc.alloc(count * stride, 64), count, stride });
  const spec: NetDriverSpec = {
    memory: memory.specs(),
    features: features.toString(16),
    mac: readMac(device),
    rx,
    tx,
    rxBuffers: pool(rx.size),
    txBuffers: pool(tx.size),
    rxKick: device.wakeWords.rx,
    txKick: device.wakeWords.tx,
    interrupt,
  };
  pci.driverOk();
  return spec;
}

/** Read the MAC from config space as a driver does, retrying if the generation moved (2.5.1). */
function readMac(device: VirtioNetDevice): string {
  for (;;) {
    const gen = device.configGeneration;
    const mac = Uint8Array.from({ length: 6 }, (_, i) => device.readConfig(NET_CFG_MAC + i, 1));
    if (device.configGeneration === gen) return formatMac(mac);
  }
}

/**
 * The guest side of a virtio-net device with one queue pair, small receive
 * buffers (one buffer per frame, 5.1.6.3.1) and one buffer per transmitted
 * frame. Runs on whichever thread owns it; nothing on its hot path allocates.
 * Frames are handed to the user as (bytes, index, length) over guest memory.
 */
export class NetDriver {
  readonly memory: GuestMemory;
  /** Byte view of the guest memory holding the buffers. */
  readonly u8: Uint8Array;
  readonly rx: SplitQueueDriver;
  readonly tx: SplitQueueDriver;
  /** u8 index of rx / tx slot 0's header. */
  private readonly rxBase: number;
  private readonly txBase: number;
  private readonly stride: number;
  private readonly txFree: Uint16Array;
  private txFreeCount: number;
  private txReserved = -1;
  private readonly rxKickI32: Int32Array;
  private readonly txKickI32: Int32Array;
  private readonly irqI32: Int32Array;

  constructor(readonly spec: NetDriverSpec) {
    this.memory = new GuestMemory(spec.memory);
    this.rx = new SplitQueueDriver(this.memory, spec.rx);
    this.tx = new SplitQueueDriver(this.memory, spec.tx);
    const rxr = this.memory.region(spec.rxBuffers.base, spec.rxBuffers.count * spec.rxBuffers.stride, 'rx buffers');
    const txr = this.memory.region(spec.txBuffers.base, spec.txBuffers.count * spec.txBuffers.stride, 'tx buffers');
    if (rxr !== txr) throw new InvalidArgumentError('rx and tx buffers must share one guest memory region');
    this.u8 = rxr.u8;
    this.rxBase = spec.rxBuffers.base + HEADER_AT + rxr.bias;
    this.txBase = spec.txBuffers.base + HEADER_AT + txr.bias;
    this.stride = spec.rxBuffers.stride;
    this.txFree = new Uint16Array(spec.txBuffers.count);
    for (let i = 0; i < this.txFree.length; i++) this.txFree[i] = i;
    this.txFreeCount = this.txFree.length;
    // No offloads: every tx header is all zero, written once (the device never writes tx buffers).
    for (let b = 0; b < spec.txBuffers.count; b++) this.u8.fill(0, this.txBase + b * this.stride, this.txBase + b * this.stride + NET_HDR_SIZE);
    this.rxKickI32 = new Int32Array(spec.rxKick.buffer);
    this.txKickI32 = new Int32Array(spec.txKick.buffer);
    this.irqI32 = new Int32Array(spec.interrupt.buffer);
  }

  /** Largest frame one buffer holds. */
  get maxFrame(): number {
    return this.stride - HEADER_AT - NET_HDR_SIZE;
  }

  /** The interrupt word's current value (sleep on it with Atomics.wait after re-enabling interrupts). */
  interruptSeq(): number {
    return Atomics.load(this.irqI32, this.spec.interrupt.index);
  }

  /** The interrupt word, to wait on. */
  get interruptWord(): { i32: Int32Array; index: number } {
    return { i32: this.irqI32, index: this.spec.interrupt.index };
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

  /** Queue the reserved buffer holding a `len`-byte frame. Visible to the device at flushTx(). */
  commitTx(len: number): void {
    const b = this.txReserved;
    if (b < 0) throw new InvalidArgumentError('commitTx() without reserveTx()');
    if (!(len > 0 && len <= this.maxFrame)) throw new InvalidArgumentError(`frame length ${len} not in [1, ${this.maxFrame}]`);
    this.txReserved = -1;
    this.tx.addBuffer(this.spec.txBuffers.base + b * this.stride + HEADER_AT, NET_HDR_SIZE + len, false, b);
  }

  /** Copy `frame` into a tx buffer and queue it; false when no buffer is free. */
  send(frame: Uint8Array): boolean {
    const at = this.reserveTx();
    if (at < 0) return false;
    this.u8.set(frame, at);
    this.commitTx(frame.length);
    return true;
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

  /** Post every rx buffer not yet posted and kick if needed (call once after setup). */
  fillRx(): void {
    for (let b = 0; b < this.spec.rxBuffers.count && this.rx.numFree > 0; b++) this.postRx(b);
    this.flushRx();
  }

  private postRx(b: number): void {
    this.rx.addBuffer(this.spec.rxBuffers.base + b * this.stride + HEADER_AT, this.stride - HEADER_AT, true, b);
  }

  private flushRx(): void {
    if (this.rx.publish()) ring(this.rxKickI32, this.spec.rxKick.index);
  }

  /**
   * Deliver up to `max` received frames to `onFrame(bytes, index, length)`
   * (a view valid only during the call), then repost their buffers.
   * Returns how many frames were delivered.
   */
  receive(onFrame: (bytes: Uint8Array, index: number, length: number) => void, max = 0x7fffffff): number {
    let n = 0;
    while (n < max) {
      const b = this.rx.getUsed();
      if (b < 0) break;
      const len = this.rx.usedLen - NET_HDR_SIZE;
      if (len > 0) onFrame(this.u8, this.rxBase + b * this.stride + NET_HDR_SIZE, len);
      this.postRx(b);
      n++;
    }
    if (n !== 0) this.flushRx();
    return n;
  }

  // ---- interrupts ----------------------------------------------------------

  /**
   * Ask for interrupts on both queues before sleeping; true means used
   * entries are already waiting and the caller must not sleep.
   */
  enableInterrupts(): boolean {
    const rxReady = this.rx.enableInterrupts();
    const txReady = this.tx.enableInterrupts();
    return rxReady || txReady;
  }

  disableInterrupts(): void {
    this.rx.disableInterrupts();
    this.tx.disableInterrupts();
  }

  /**
   * For drivers on the main thread: re-enable interrupts and, unless work is
   * already waiting, wait for one without blocking the event loop. Resolves
   * true when woken (or work was waiting), false on timeout.
   */
  async waitForInterrupt(timeoutMs: number): Promise<boolean> {
    const seen = this.interruptSeq();
    const ready = this.enableInterrupts();
    const woken = ready || (await waitAsync(this.irqI32, this.spec.interrupt.index, seen, timeoutMs));
    this.disableInterrupts();
    return woken;
  }
}
