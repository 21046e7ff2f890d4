import { InvalidArgumentError } from '../errors.js';
import { GuestAllocator } from '../memory/allocator.js';
import { GuestMemory, type MemoryRegionSpec } from '../memory/guest-memory.js';
import { type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { createQueueDriver } from '../ring/create-queue.js';
import {
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  F_VERSION_1,
  type FeatureSet,
  NET_F_CSUM,
  NET_F_CTRL_RX,
  NET_F_CTRL_VQ,
  NET_F_GUEST_CSUM,
  NET_F_MAC,
  NET_F_MQ,
  NET_F_MRG_RXBUF,
  NET_F_MTU,
  NET_F_STATUS,
  featureSet,
  hasFeature,
} from '../spec/features.js';
import { ETH_MAX_FRAME, NET_CFG_MAC, NET_CFG_MTU, NET_HDR_SIZE, netRxQueue, netTxQueue } from '../spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../spec/status.js';
import { PciCommonConfig } from '../transport/pci-common-config.js';
import { PciDriver } from '../transport/pci-driver.js';
import { type RecvConfig, type RecvPoolSpec, allocRecvPool, recvPoolSize } from '../virtskb/index.js';
import { netRecvConfig } from './recv-config.js';
import { NET_CTRL_BUFFER_BYTES, type NetCtrlBufferSpec, NetCtrlDriver } from './ctrl/index.js';
import { formatMac } from './mac.js';
import type { VirtioNetDevice } from './net-device.js';
import { type BufferPool, NetPairDriver, TX_HEADER_AT } from './net-pair-driver.js';

/** What setupNetDriver() asks for unless told otherwise (intersected with the device's offer). */
export const NET_DEFAULT_FEATURES: FeatureSet = featureSet(
  F_VERSION_1,
  F_EVENT_IDX,
  F_INDIRECT_DESC,
  NET_F_MAC,
  NET_F_STATUS,
  NET_F_MTU,
  NET_F_MRG_RXBUF,
  NET_F_CSUM,
  NET_F_GUEST_CSUM,
  NET_F_CTRL_VQ,
  NET_F_CTRL_RX,
  NET_F_MQ,
);

/** Big receive chains posted at most (each holds a 64 KiB packet: 17 pages). */
const MAX_BIG_BUFFERS = 64;

/** One queue pair of a driver, as plain data. */
export interface NetPairSpec {
  rx: QueueState;
  tx: QueueState;
  rxPool: RecvPoolSpec;
  /** Indirect tables for big receive chains, when used. */
  rxIndirect?: { base: number; maxEntries: number };
  txBuffers: BufferPool;
  rxKick: WordRef;
  txKick: WordRef;
}

/**
 * Everything a NetDriver needs, as plain data: build it on the main thread
 * with setupNetDriver() and hand it to the thread that runs the guest side.
 */
export interface NetDriverSpec {
  memory: MemoryRegionSpec[];
  /** Negotiated features, hex. */
  features: string;
  /** The MAC address and MTU the driver read from config space. */
  mac: string;
  mtu: number;
  pairs: NetPairSpec[];
  /** Queue pairs in use (VQ_PAIRS_SET sent when more than 1). */
  activePairs: number;
  /** The control queue, when VIRTIO_NET_F_CTRL_VQ was negotiated. */
  ctrl: { queue: QueueState; buffer: NetCtrlBufferSpec; kick: WordRef } | null;
  /** The word every queue's interrupt (and config changes) ring. */
  interrupt: WordRef;
  /** The device_status word (read-only for the driver): DEVICE_NEEDS_RESET shows there (2.1.2). */
  status: WordRef;
}

/** Options of setupNetDriver(). */
export interface NetDriverOptions {
  /** Features the driver wants (intersected with the offer); default NET_DEFAULT_FEATURES. */
  features?: FeatureSet;
  /** Queue size for every rx/tx queue; default the device's maximum. */
  queueSize?: number;
  /** Queue pairs to use (needs MQ); default all the device has. */
  queuePairs?: number;
  /** Bytes of each tx buffer, header included; default header + 1518. Make it 65562 to send 64 KiB GSO frames. */
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
 * negotiate, rings and buffers in guest memory, vectors, DRIVER_OK, then
 * VQ_PAIRS_SET when several pairs are used) and return the plain-data spec
 * of its driver side. Receive buffers follow the negotiated features as
 * Linux chooses them (virtskb: mergeable, big or small).
 */
export async function setupNetDriver(device: VirtioNetDevice, options: NetDriverOptions = {}): Promise<NetDriverSpec> {
  const memory = device.memory;
  const alloc = options.allocator ?? new GuestAllocator(memory);
  const pci = new PciDriver(new PciCommonConfig(device), memory, alloc);
  const features = await pci.negotiate(options.features ?? NET_DEFAULT_FEATURES);
  const mq = hasFeature(features, NET_F_MQ);
  const pairCount = mq ? (options.queuePairs ?? device.queuePairs) : 1;
  if (!Number.isInteger(pairCount) || pairCount < 1 || pairCount > device.queuePairs) {
    throw new InvalidArgumentError(`queue pairs ${pairCount} must be in [1, ${device.queuePairs}] (MQ ${mq ? '' : 'not '}negotiated)`);
  }
  const mtu = hasFeature(features, NET_F_MTU) ? device.readConfig(NET_CFG_MTU, 2) : 1500;
  const recv = netRecvConfig(features, mtu);
  const interrupt = options.interrupt ?? newInterruptWord();
  // Vector 0: config changes; then one per queue. All routed to one word.
  const queues = 2 * (mq ? device.queuePairs : 1) + 1;
  for (let v = 0; v <= queues; v++) pci.routeVector(v, interrupt);
  pci.setConfigVector(0);
  const bufferSize = options.bufferSize ?? NET_HDR_SIZE + ETH_MAX_FRAME;
  if (bufferSize <= NET_HDR_SIZE) throw new InvalidArgumentError(`buffer size ${bufferSize} leaves no room after the ${NET_HDR_SIZE}-byte header`);
  const stride = Math.ceil((TX_HEADER_AT + bufferSize) / 64) * 64;
  const pairs = Array.from({ length: pairCount }, (_, p) => setupPair(device, pci, alloc, p, recv, stride, options.queueSize));
  // 5.1.2: the control queue comes after every pair the device has, used or not.
  const ctrl = hasFeature(features, NET_F_CTRL_VQ) ? setupCtrlQueue(device, pci, alloc, 2 * (mq ? device.queuePairs : 1), options.queueSize) : null;
  const spec: NetDriverSpec = {
    memory: memory.specs(),
    features: features.toString(16),
    mac: readMac(device),
    mtu,
    pairs,
    activePairs: 1,
    ctrl,
    interrupt,
    status: { buffer: device.notify.spec.buffer, index: device.notify.statusWord },
  };
  pci.driverOk();
  if (pairCount > 1 && ctrl !== null) {
    // 5.1.6.5.5: only the first pair carries traffic until VQ_PAIRS_SET.
    const guest = new GuestMemory(spec.memory);
    const queue = createQueueDriver(guest, ctrl.queue);
    if (!(await ctrlDriver(guest, ctrl, queue).setQueuePairs(pairCount))) throw new InvalidArgumentError(`device refused VQ_PAIRS_SET ${pairCount}`);
    spec.activePairs = pairCount;
    // The NetDriver built from this spec goes on where this command left the ring.
    ctrl.queue = { ...ctrl.queue, nextAvail: queue.nextAvail, nextUsed: queue.nextUsed };
  }
  return spec;
}

/**
 * Queue pair `p`: both rings (each on the vector after its queue index),
 * receive buffers of the negotiated kind (with indirect tables when big
 * buffers can use them), transmit buffers of `stride` bytes.
 */
function setupPair(device: VirtioNetDevice, pci: PciDriver, alloc: GuestAllocator, p: number, recv: RecvConfig, stride: number, queueSize: number | undefined): NetPairSpec {
  const rx = pci.setupQueue(netRxQueue(p), { size: queueSize, vector: 1 + netRxQueue(p) });
  const tx = pci.setupQueue(netTxQueue(p), { size: queueSize, vector: 1 + netTxQueue(p) });
  const indirect = recv.mode === 'big' && rx.indirect;
  const poolQueue = recv.mode === 'big' ? Math.min(rx.size, MAX_BIG_BUFFERS) : rx.size;
  const poolOptions = { ...recv, indirect };
  const rxPool = allocRecvPool(alloc, poolQueue, poolOptions);
  const descs = recvPoolSize(poolQueue, poolOptions).descsPerBuffer;
  return {
    rx,
    tx,
    rxPool,
    ...(indirect ? { rxIndirect: { base: alloc.alloc(rx.size * descs * 16, 16), maxEntries: descs } } : {}),
    txBuffers: { base: alloc.alloc(tx.size * stride, 64), count: tx.size, stride },
    rxKick: device.doorbell(netRxQueue(p)),
    txKick: device.doorbell(netTxQueue(p)),
  };
}

/** The control queue (index `q`, at most 64 entries) and its command buffer. */
function setupCtrlQueue(device: VirtioNetDevice, pci: PciDriver, alloc: GuestAllocator, q: number, queueSize: number | undefined): NonNullable<NetDriverSpec['ctrl']> {
  return {
    queue: pci.setupQueue(q, { size: Math.min(queueSize ?? 64, 64), vector: 1 + q }),
    buffer: { gpa: alloc.alloc(NET_CTRL_BUFFER_BYTES, 64), size: NET_CTRL_BUFFER_BYTES },
    kick: device.doorbell(q),
  };
}

/** Read the MAC from config space as a driver does, retrying if the generation moved (2.5.1). */
function readMac(device: VirtioNetDevice): string {
  for (;;) {
    const gen = device.configGeneration;
    const mac = Uint8Array.from({ length: 6 }, (_, i) => device.readConfig(NET_CFG_MAC + i, 1));
    if (device.configGeneration === gen) return formatMac(mac);
  }
}

function ctrlDriver(memory: GuestMemory, ctrl: NonNullable<NetDriverSpec['ctrl']>, queue = createQueueDriver(memory, ctrl.queue)): NetCtrlDriver {
  const kick = new Int32Array(ctrl.kick.buffer);
  return new NetCtrlDriver({
    memory,
    queue,
    buffer: ctrl.buffer,
    kick: () => ring(kick, ctrl.kick.index),
  });
}

/**
 * The guest side of a virtio-net device: one NetPairDriver per queue pair
 * (transmit buffers, receive buffers through virtskb), and the control queue.
 * Runs on whichever thread owns it; nothing on its hot path allocates. A
 * pair's methods may be used from one thread per pair (build a NetDriver per
 * thread from the same spec with `pairs`).
 */
export class NetDriver {
  readonly memory: GuestMemory;
  readonly features: FeatureSet;
  readonly pairs: NetPairDriver[];
  /** The control queue's driver (rx mode, MAC table, VLANs, queue pairs), or undefined without CTRL_VQ. */
  readonly ctrl: NetCtrlDriver | undefined;
  private readonly irqI32: Int32Array;
  private readonly statusI32: Int32Array;

  /**
   * @param pairs which queue pairs this instance drives (default all); the
   * control queue is driven only by an instance that drives pair 0.
   */
  constructor(
    readonly spec: NetDriverSpec,
    pairs?: readonly number[],
  ) {
    this.memory = new GuestMemory(spec.memory);
    this.features = BigInt(`0x${spec.features}`);
    const chosen = pairs ?? spec.pairs.map((_, i) => i);
    for (const p of chosen) if (!(p >= 0 && p < spec.pairs.length)) throw new InvalidArgumentError(`queue pair ${p} not set up (driver has ${spec.pairs.length})`);
    this.pairs = chosen.map((p) => new NetPairDriver(this.memory, this.features, spec.mtu, spec.pairs[p]));
    this.ctrl = spec.ctrl !== null && chosen.includes(0) ? ctrlDriver(this.memory, spec.ctrl) : undefined;
    this.irqI32 = new Int32Array(spec.interrupt.buffer);
    this.statusI32 = new Int32Array(spec.status.buffer);
  }

  /** device_status as the driver reads it now. */
  get deviceStatus(): number {
    return Atomics.load(this.statusI32, this.spec.status.index) & 0xff;
  }

  /**
   * True once the device set DEVICE_NEEDS_RESET (a queue worker died or found
   * a broken chain; the config interrupt that came with it rang this driver's
   * interrupt word). The device's queues cannot be trusted until a reset:
   * bring the device up again with setupNetDriver() (it resets first) and
   * build a new NetDriver from the spec it returns. Frames posted on the old
   * rings and not completed are gone with them.
   */
  get needsReset(): boolean {
    return (this.deviceStatus & STATUS_DEVICE_NEEDS_RESET) !== 0;
  }

  /** Pair 0 (the one every driver has). */
  get pair(): NetPairDriver {
    return this.pairs[0];
  }

  /** Byte view of the guest memory holding pair 0's tx buffers. */
  get u8(): Uint8Array {
    return this.pairs[0].u8;
  }

  get maxFrame(): number {
    return this.pairs[0].maxFrame;
  }

  /** The interrupt word's current value (sleep on it with Atomics.wait after re-enabling interrupts). */
  interruptSeq(): number {
    return Atomics.load(this.irqI32, this.spec.interrupt.index);
  }

  /** The interrupt word, to wait on. */
  get interruptWord(): { i32: Int32Array; index: number } {
    return { i32: this.irqI32, index: this.spec.interrupt.index };
  }

  // ---- pair 0 shortcuts (the single-queue API) ----------------------------

  reserveTx(): number {
    return this.pairs[0].reserveTx();
  }

  commitTx(len: number): void {
    this.pairs[0].commitTx(len);
  }

  send(frame: Uint8Array): boolean {
    return this.pairs[0].send(frame);
  }

  flushTx(): void {
    this.pairs[0].flushTx();
  }

  sendBatch(frames: readonly Uint8Array[]): number {
    return this.pairs[0].sendBatch(frames);
  }

  reclaimTx(): number {
    let n = 0;
    for (const p of this.pairs) n += p.reclaimTx();
    return n;
  }

  /** Post receive buffers on every pair and kick where needed (call once after setup). */
  fillRx(): void {
    for (const p of this.pairs) p.fillRx();
  }

  /**
   * Deliver up to `max` received packets from every pair to `onPacket`, then
   * repost their buffers. The packet (and its views of guest memory) is valid
   * during the call; p.hold() keeps its buffers until released.
   */
  receive(onPacket: Parameters<NetPairDriver['receive']>[0], max = 0x7fffffff): number {
    let n = 0;
    for (const p of this.pairs) n += p.receive(onPacket, max - n);
    return n;
  }

  /**
   * Received frames as an async iterator of copies (for main-thread code that
   * prefers `for await` over callbacks; allocates one array per frame).
   * Ends when `signal` aborts.
   */
  async *frames(signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const queue: Uint8Array[] = [];
    const take = (p: { length: number; copyTo(dst: Uint8Array, at?: number): number }): void => {
      const f = new Uint8Array(p.length);
      p.copyTo(f, 0);
      queue.push(f);
    };
    while (signal?.aborted !== true) {
      if (this.receive(take) === 0 && queue.length === 0) await this.waitForInterrupt(50);
      while (queue.length !== 0) yield queue.shift()!;
    }
  }

  // ---- interrupts ----------------------------------------------------------

  /** Ask for interrupts on every queue before sleeping; true means work is already waiting. */
  enableInterrupts(): boolean {
    let ready = false;
    for (const p of this.pairs) if (p.enableInterrupts()) ready = true;
    return ready;
  }

  disableInterrupts(): void {
    for (const p of this.pairs) p.disableInterrupts();
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

  /** Driver-side counters of every pair (packets, bytes, errors the driver saw). */
  stats(): ReturnType<NetPairDriver['stats']>[] {
    return this.pairs.map((p) => p.stats());
  }
}
