import { DeviceNeedsResetError, InvalidArgumentError, type VirtqueueError } from '../errors.js';
import { GuestAllocator } from '../memory/allocator.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import { createQueueDriver } from '../ring/create-queue.js';
import type { VirtqDriver } from '../ring/virtqueue.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, type FeatureSet, VSOCK_F_MRG_RXBUF, VSOCK_F_SEQPACKET, VSOCK_F_STREAM, featureSet, hasFeature } from '../spec/features.js';
import {
  VSOCK_CFG_GUEST_CID,
  VSOCK_CID_HOST,
  VSOCK_EVENT_QUEUE,
  VSOCK_EVENT_SIZE,
  VSOCK_EVENT_TRANSPORT_RESET,
  VSOCK_HDR_NUM_BUFFERS,
  VSOCK_HDR_SIZE,
  VSOCK_MAX_PKT_PAYLOAD,
  VSOCK_MRG_HDR_SIZE,
  VSOCK_RX_BUF_SIZE,
  VSOCK_RX_QUEUE,
  VSOCK_TX_QUEUE,
} from '../spec/vsock.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../spec/status.js';
import { PciCommonConfig } from '../transport/pci-common-config.js';
import { PciDriver } from '../transport/pci-driver.js';
import { RecvBuffers, type RecvStats, type RxPacket, allocRecvPool } from '../virtskb/index.js';
import { GuestTxPort, vsockTxStride } from './guest-tx-port.js';
import { RxPayloadParts } from './rx-payload-parts.js';
import { ServiceLoop } from './service-loop.js';
import { type VsockOnread, type VsockSeqpacketSocket, type VsockServer, type VsockSocket, VsockStack, type VsockStackOptions } from './stack/index.js';
import type { VirtioVsockDevice } from './vsock-device.js';
import { VsockHeader } from './vsock-header.js';

/** What VsockDriver.open() asks for unless told otherwise (intersected with the device's offer). */
export const VSOCK_DRIVER_FEATURES: FeatureSet = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, VSOCK_F_STREAM, VSOCK_F_SEQPACKET, VSOCK_F_MRG_RXBUF);

/** Event buffers kept posted on the event queue (Linux posts 8). */
const EVENT_BUFFERS = 8;
/** The payload of a header-only packet. */
const NO_PAYLOAD = new Uint8Array(0);

/** Options of VsockDriver.open(). */
export interface VsockDriverOptions extends Omit<VsockStackOptions, 'localCid' | 'seqpacket'> {
  /** Features the driver wants (intersected with the offer); default VSOCK_DRIVER_FEATURES. */
  features?: FeatureSet;
  /** Size of the rx and tx queues; default the device's maximum. */
  queueSize?: number;
  /** Largest payload of one transmitted packet; default 64 KiB (Linux's). */
  maxPayload?: number;
  /** Where rings and buffers go; default a fresh allocator over the device's guest memory. */
  allocator?: GuestAllocator;
}

/** Driver-side counters: what the guest sent and received, and what it caught the device doing wrong. */
export interface VsockDriverStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** virtskb's checks on what the device wrote (length, num_buffers, ids). */
  rx: RecvStats;
  /** Packets whose header len disagrees with the bytes the device wrote (dropped). */
  rxHeaderLengthErrors: number;
  /** TRANSPORT_RESET events seen (5.10.6.6). */
  transportResets: number;
  /** Event buffers the device used with an unknown id or fewer than 4 bytes. */
  badEvents: number;
}

/**
 * The guest side of a virtio-vsock device, on the thread that calls open()
 * (the one that owns the device's control plane): negotiation, the rx queue
 * kept full by virtskb (small 4 KiB buffers, or mergeable pages with
 * VSOCK_F_MRG_RXBUF), the tx queue, the event queue, and a VsockStack whose
 * sockets (`connect()`, `listen()`) are the guest's AF_VSOCK sockets. A
 * TRANSPORT_RESET event resets every connection and re-reads guest_cid
 * (5.10.6.6). close() ends the service loop and resets every connection; it
 * does not reset the device.
 */
export class VsockDriver {
  readonly stack: VsockStack;
  readonly features: FeatureSet;
  readonly recv: RecvBuffers;
  private readonly txPort: GuestTxPort;
  private readonly rx: VirtqDriver;
  private readonly tx: VirtqDriver;
  private readonly events: VirtqDriver;
  private readonly loop: ServiceLoop;
  private readonly hdr = new VsockHeader();
  /** For packets spread over several mergeable buffers: their payload read in place. */
  private readonly parts = new RxPayloadParts();
  private readonly irq: Int32Array;
  private readonly counters = { rxHeaderLengthErrors: 0, transportResets: 0, badEvents: 0, rxPackets: 0, rxBytes: 0 };
  private readonly onPacket = (p: RxPacket): void => this.deliver(p);

  /**
   * Bring the device up as a guest driver does (reset, ACKNOWLEDGE, DRIVER,
   * features, FEATURES_OK, rx / tx / event queues, DRIVER_OK), post receive
   * and event buffers, and start serving.
   */
  static async open(device: VirtioVsockDevice, options: VsockDriverOptions = {}): Promise<VsockDriver> {
    const memory = device.memory;
    const alloc = options.allocator ?? new GuestAllocator(memory);
    const pci = new PciDriver(new PciCommonConfig(device), memory, alloc);
    const features = await pci.negotiate(options.features ?? VSOCK_DRIVER_FEATURES);
    const maxPayload = options.maxPayload ?? VSOCK_MAX_PKT_PAYLOAD;
    if (!(Number.isInteger(maxPayload) && maxPayload >= 64 && maxPayload <= VSOCK_MAX_PKT_PAYLOAD)) {
      throw new InvalidArgumentError(`maxPayload ${maxPayload} must be an integer in [64, ${VSOCK_MAX_PKT_PAYLOAD}]`);
    }
    const interrupt: WordRef = { buffer: new SharedArrayBuffer(64), index: 0 };
    for (let v = 0; v <= 3; v++) pci.routeVector(v, interrupt);
    pci.setConfigVector(0);
    const rx = pci.setupQueue(VSOCK_RX_QUEUE, { size: options.queueSize, vector: 1 });
    const tx = pci.setupQueue(VSOCK_TX_QUEUE, { size: options.queueSize, vector: 2 });
    const ev = pci.setupQueue(VSOCK_EVENT_QUEUE, { size: EVENT_BUFFERS, vector: 3 });
    const mergeable = hasFeature(features, VSOCK_F_MRG_RXBUF);
    const hdrSize = mergeable ? VSOCK_MRG_HDR_SIZE : VSOCK_HDR_SIZE;
    const recv = { mode: mergeable ? ('mergeable' as const) : ('small' as const), hdrSize, smallBufferSize: hdrSize + VSOCK_RX_BUF_SIZE };
    const rxPool = allocRecvPool(alloc, rx.size, recv);
    const stride = vsockTxStride(maxPayload);
    const txPool = { base: alloc.alloc(tx.size * stride, 64), count: tx.size, stride };
    const eventBase = alloc.alloc(EVENT_BUFFERS * 64, 64);
    pci.driverOk();
    const rxQ = createQueueDriver(memory, rx);
    const recvBuffers = new RecvBuffers(rxQ, memory, rxPool, { ...recv, numBuffersAt: mergeable ? VSOCK_HDR_NUM_BUFFERS : -1 });
    const doorbell = (q: number): (() => void) => {
      const word = device.doorbell(q);
      const i32 = new Int32Array(word.buffer);
      return () => ring(i32, word.index);
    };
    const driver = new VsockDriver(device, memory, features, options, {
      rx: rxQ,
      recv: recvBuffers,
      tx: createQueueDriver(memory, tx),
      txPool,
      events: createQueueDriver(memory, ev),
      eventBase,
      interrupt,
      kick: { rx: doorbell(VSOCK_RX_QUEUE), tx: doorbell(VSOCK_TX_QUEUE), events: doorbell(VSOCK_EVENT_QUEUE) },
    });
    driver.start();
    // A new queue thread boots in tens of milliseconds of CPU: a driver that
    // returned before would have its first connections wait for that boot
    // and compete with it for the CPU.
    await Promise.all([device.queueStarted(VSOCK_RX_QUEUE), device.queueStarted(VSOCK_TX_QUEUE)]);
    return driver;
  }

  private constructor(
    private readonly device: VirtioVsockDevice,
    private readonly memory: GuestMemory,
    features: FeatureSet,
    private readonly options: VsockDriverOptions,
    private readonly q: {
      rx: VirtqDriver;
      recv: RecvBuffers;
      tx: VirtqDriver;
      txPool: { base: number; count: number; stride: number };
      events: VirtqDriver;
      eventBase: number;
      interrupt: WordRef;
      kick: { rx: () => void; tx: () => void; events: () => void };
    },
  ) {
    this.features = features;
    this.rx = q.rx;
    this.recv = q.recv;
    this.tx = q.tx;
    this.events = q.events;
    this.irq = new Int32Array(q.interrupt.buffer);
    this.txPort = new GuestTxPort(q.tx, memory, q.txPool, q.kick.tx);
    const { features: _f, queueSize: _q, maxPayload: _m, allocator: _a, ...stackOptions } = options;
    this.stack = new VsockStack(this.txPort, { ...stackOptions, localCid: this.readGuestCid(), seqpacket: hasFeature(features, VSOCK_F_SEQPACKET) });
    this.loop = new ServiceLoop(
      () => this.round(),
      (ms) => this.sleep(ms),
      () => ring(this.irq, q.interrupt.index),
      () => this.stack,
    );
  }

  /**
   * What stopped this driver, or null: a VirtqueueError (the device broke a
   * ring rule: a used id or length it cannot have written) or a
   * DeviceNeedsResetError (the device set DEVICE_NEEDS_RESET: a queue worker
   * died or met a broken chain). Every connection was reset then; reopen()
   * resets the device and opens a new driver.
   */
  get broken(): VirtqueueError | DeviceNeedsResetError | null {
    return this.loop.broken;
  }

  /**
   * Recover from a broken driver (or start over): close this one (its
   * connections are reset), reset the device and open a new driver with the
   * same options. Listeners are not carried over: listen again on the new one.
   */
  async reopen(): Promise<VsockDriver> {
    await this.close();
    return VsockDriver.open(this.device, this.options);
  }

  /** The guest's CID as config space says now. */
  get guestCid(): number {
    return this.stack.localCid;
  }

  /** Open a stream (or, with type 'seqpacket', a seqpacket) connection to a host port; `onread`: the reader's own receive buffer (VsockOnread). */
  connect(port: number, options?: { type?: 'stream'; timeoutMs?: number; localPort?: number; onread?: VsockOnread }): VsockSocket;
  connect(port: number, options: { type: 'seqpacket'; timeoutMs?: number; localPort?: number }): VsockSeqpacketSocket;
  connect(port: number, options?: { type?: 'stream' | 'seqpacket'; timeoutMs?: number; localPort?: number; onread?: VsockOnread }): VsockSocket | VsockSeqpacketSocket {
    return this.stack.connect(VSOCK_CID_HOST, port, options as { type: 'seqpacket' });
  }

  /** Accept connections from the host on a guest port. */
  listen(port: number, options?: Parameters<VsockStack['listen']>[1]): VsockServer {
    return this.stack.listen(port, options);
  }

  stats(): VsockDriverStats {
    return { txPackets: this.txPort.packets, txBytes: this.txPort.bytes, ...this.counters, rx: { ...this.recv.stats } };
  }

  /** Stop serving and reset every connection (RST to the host). */
  async close(): Promise<void> {
    this.stack.close();
    this.txPort.flush();
    await this.loop.stop();
  }

  private start(): void {
    this.recv.refill();
    if (this.recv.kickNeeded) this.q.kick.rx();
    for (let b = 0; b < EVENT_BUFFERS; b++) this.events.addBuffer(this.q.eventBase + 64 * b, VSOCK_EVENT_SIZE, true, b);
    if (this.events.publish()) this.q.kick.events();
    this.loop.start();
  }

  private readGuestCid(): number {
    // 2.5.1: re-read while the generation moves under us.
    for (;;) {
      const gen = this.device.configGeneration;
      const cid = this.device.readConfig(VSOCK_CFG_GUEST_CID, 4) + this.device.readConfig(VSOCK_CFG_GUEST_CID + 4, 4) * 0x1_0000_0000;
      if (this.device.configGeneration === gen) return cid;
    }
  }

  /** One pass: device status, events, received packets (then refill), reclaimed tx slots. Returns the work done. */
  private round(): number {
    // 2.1.2: the config interrupt that comes with DEVICE_NEEDS_RESET woke this loop.
    if ((this.device.status & STATUS_DEVICE_NEEDS_RESET) !== 0) {
      throw new DeviceNeedsResetError(`virtio-vsock device (guest CID ${this.stack.localCid}) set DEVICE_NEEDS_RESET: its queues stopped, every connection was reset`);
    }
    let n = this.takeEvents();
    const got = this.recv.receive(this.onPacket, 256);
    if (got !== 0) {
      this.recv.refill();
      if (this.recv.kickNeeded) this.q.kick.rx();
      n += got;
    }
    const freed = this.txPort.reclaim();
    if (freed !== 0) {
      this.stack.onWritable();
      n += freed;
    }
    return n;
  }

  private deliver(p: RxPacket): void {
    const hdr = this.hdr.read(p.hdr, p.hdrIdx);
    if (hdr.len !== p.length) {
      this.counters.rxHeaderLengthErrors++;
      return;
    }
    this.counters.rxPackets++;
    this.counters.rxBytes += p.length;
    if (p.segCount === 0) this.stack.receive(hdr, NO_PAYLOAD, 0);
    else if (p.segCount === 1) this.stack.receive(hdr, p.segU8[0], p.segIdx[0]);
    else this.stack.receive(hdr, this.parts.of(p), 0);
  }

  private takeEvents(): number {
    let n = 0;
    for (let b = this.events.getUsed(); b >= 0; b = this.events.getUsed()) {
      n++;
      const id = this.events.usedLen >= VSOCK_EVENT_SIZE ? this.memory.readU32(this.q.eventBase + 64 * b) : -1;
      if (id === VSOCK_EVENT_TRANSPORT_RESET) {
        // 5.10.6.6: every connection is gone; the CID may have changed.
        this.counters.transportResets++;
        this.stack.transportReset();
        this.stack.localCid = this.readGuestCid();
      } else this.counters.badEvents++;
      this.events.addBuffer(this.q.eventBase + 64 * b, VSOCK_EVENT_SIZE, true, b);
    }
    if (n !== 0 && this.events.publish()) this.q.kick.events();
    return n;
  }

  private async sleep(ms: number): Promise<void> {
    const seen = Atomics.load(this.irq, this.q.interrupt.index);
    // Used tx slots matter only to a sender that ran out of them: a tx
    // interrupt for each burst the device took would wake this thread for
    // nothing (the next round reclaims them anyway).
    const ready = this.rx.enableInterrupts() || (this.txPort.blocked && this.tx.enableInterrupts()) || this.events.enableInterrupts();
    if (!ready) await waitAsync(this.irq, this.q.interrupt.index, seen, ms);
    this.rx.disableInterrupts();
    this.tx.disableInterrupts();
    this.events.disableInterrupts();
  }
}
