/**
 * A virtio-vsock device with real queue workers, driven by a raw hand-written
 * driver (PciDriver for the init sequence, the independent MiniDriver of
 * test/support for the rings) and raw channel ends on the host side
 * (PortChannelConsumer / PortChannelProducer over hostPort).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type FeatureSet, GuestAllocator, type GuestMemory, PciCommonConfig, PciDriver, type QueueErrorEvent, SharedArena, VirtioVsockDevice, type VsockDeviceOptions, type VsockDeviceStats, type VsockTransportResetEvent, featureSet } from '../../../src/index.js';
import { PortChannelConsumer, PortChannelProducer } from '../../../src/port/port-channel.js';
import { ring } from '../../../src/notify/notify-area.js';
import type { QueueState } from '../../../src/ring/queue-state.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, VSOCK_F_SEQPACKET, VSOCK_F_STREAM } from '../../../src/spec/features.js';
import { VSOCK_CID_HOST, VSOCK_HDR_SIZE, VSOCK_OP_RW, VSOCK_TYPE_STREAM } from '../../../src/spec/vsock.js';
import { VsockHeader } from '../../../src/vsock/vsock-header.js';
import { MiniDriver } from '../../../src/testing/mini-driver.js';
import type { Segment } from '../../../src/testing/split-ring.js';

/** What a rig driver accepts unless told otherwise: both socket types, no mergeable buffers. */
export const BASE_FEATURES: FeatureSet = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, VSOCK_F_STREAM, VSOCK_F_SEQPACKET);
export const GUEST_CID = 3;
/** Bytes of one transmit slot: the largest packet plus room for extra bytes after it. */
const TX_SLOT = 44 + 65536 + 4096;

/** One ring as the raw driver sees it. */
export interface GuestRing {
  q: number;
  state: QueueState;
  mini: MiniDriver;
  /** Publish what was offered and ring the queue's doorbell. */
  kick(): void;
}

export interface RigOptions {
  /** Features the driver accepts (of those offered). */
  features?: FeatureSet;
  device?: Partial<VsockDeviceOptions>;
  /** Ring size of every queue (default 64). */
  queueSize?: number;
}

/** A received buffer: its head, used length and the bytes written. */
export interface RxBuffer {
  id: number;
  len: number;
  bytes: Uint8Array;
}

export class VsockRig {
  readonly errors: QueueErrorEvent[] = [];
  readonly resets: VsockTransportResetEvent[] = [];
  rx!: GuestRing;
  tx!: GuestRing;
  ev!: GuestRing;
  toHost: PortChannelConsumer;
  toGuest: PortChannelProducer;
  private txSeq = 0;
  private readonly txArea: number;
  private readonly tables: number;
  private readonly posted = new Map<string, { addr: number; len: number }>();

  constructor(
    readonly device: VirtioVsockDevice,
    readonly memory: GuestMemory,
    readonly alloc: GuestAllocator,
    rings: GuestRing[],
    private readonly options: RigOptions,
  ) {
    this.useRings(rings);
    this.txArea = alloc.alloc(256 * TX_SLOT, 64);
    this.tables = alloc.alloc(256 * 16 * 64, 16);
    const port = device.hostPort;
    this.toHost = new PortChannelConsumer(port.toHost);
    this.toGuest = new PortChannelProducer(port.toGuest);
    device.on('queue-error', (e: QueueErrorEvent) => this.errors.push(e));
    device.on('transportReset', (e: VsockTransportResetEvent) => this.resets.push(e));
  }

  private useRings(rings: GuestRing[]): void {
    [this.rx, this.tx, this.ev] = rings;
    this.txSeq = 0;
    this.posted.clear();
  }

  /** Reset the device and bring it up again through a fresh raw driver (new rings); host ends rebuilt. */
  async reopen(features?: FeatureSet): Promise<void> {
    this.useRings(await setupDriver(this.device, this.memory, this.alloc, { ...this.options, features: features ?? this.options.features }));
    this.reattachHost();
  }

  /** Build fresh host channel ends (after a device reset). */
  reattachHost(): void {
    const port = this.device.hostPort;
    this.toHost = new PortChannelConsumer(port.toHost);
    this.toGuest = new PortChannelProducer(port.toGuest);
  }

  // ---- guest transmit ----

  /**
   * Offer one transmit chain holding `bytes`, cut into descriptors at `cuts`
   * (offsets into bytes; repeats make empty descriptors), optionally through
   * an indirect table. Does not kick. Returns the head.
   */
  offerTx(bytes: Uint8Array, cuts: readonly number[] = [], indirect = false): number {
    if (bytes.length > TX_SLOT) throw new Error(`tx packet of ${bytes.length} bytes is larger than a slot`);
    const slot = this.txSeq++ % 256;
    const base = this.txArea + slot * TX_SLOT;
    this.memory.write(base, bytes, 0, bytes.length);
    const points = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
    const segs: Segment[] = [];
    for (let i = 0; i + 1 < points.length; i++) segs.push({ addr: base + points[i], len: points[i + 1] - points[i], write: false });
    const head = this.tx.mini.addChain(segs, indirect ? { table: this.tables + slot * 16 * 64 } : {});
    if (head === undefined) throw new Error('tx ring has no free descriptors');
    return head;
  }

  /** Offer one packet and kick. */
  sendTx(bytes: Uint8Array, cuts: readonly number[] = [], indirect = false): number {
    const head = this.offerTx(bytes, cuts, indirect);
    this.tx.kick();
    return head;
  }

  // ---- guest receive ----

  /** Post `count` device-writable buffers of `len` bytes on ring `r` (default rx) and kick. Returns their heads. */
  post(count: number, len: number, r: GuestRing = this.rx, segLens?: readonly number[]): number[] {
    const heads: number[] = [];
    for (let i = 0; i < count; i++) {
      const addr = this.alloc.alloc(len, 64);
      this.memory.fill(addr, 0xee, len);
      const lens = segLens ?? [len];
      const segs: Segment[] = [];
      let off = 0;
      for (const l of lens) {
        segs.push({ addr: addr + off, len: l, write: true });
        off += l;
      }
      const head = r.mini.addChain(segs);
      if (head === undefined) throw new Error(`queue ${r.q} has no free descriptors`);
      this.posted.set(`${r.q}:${head}`, { addr, len });
      heads.push(head);
    }
    r.kick();
    return heads;
  }

  /** Used buffers of ring `r` (default rx), in used order, with the bytes the device wrote. */
  reap(r: GuestRing = this.rx): RxBuffer[] {
    return r.mini.reap().map(({ id, len }) => {
      const p = this.posted.get(`${r.q}:${id}`);
      if (p === undefined) throw new Error(`used id ${id} was not posted on queue ${r.q}`);
      this.posted.delete(`${r.q}:${id}`);
      const bytes = new Uint8Array(Math.min(len, p.len));
      this.memory.read(p.addr, bytes, 0, bytes.length);
      return { id, len, bytes };
    });
  }

  // ---- host side ----

  /** Every record waiting in toHost, copied, then consumed and released. */
  hostRecv(): Uint8Array[] {
    const out: Uint8Array[] = [];
    const c = this.toHost;
    for (let at = c.peek(); at >= 0; at = c.peek()) {
      // The record's meta (the header) ends where its payload starts: one packet.
      out.push(c.u8.slice(c.metaAt(at), at + c.len));
      c.consume();
    }
    c.release();
    return out;
  }

  /** The progress word of the next toHost record, or undefined when there is none. */
  peekProgress(): number | undefined {
    const at = this.toHost.peek();
    return at < 0 ? undefined : this.toHost.progress(at);
  }

  /** Put one packet (44-byte header + payload) on toGuest and publish. False when the channel is full. */
  hostSend(packet: Uint8Array): boolean {
    const p = this.toGuest;
    const at = p.reserve(packet.length - VSOCK_HDR_SIZE);
    if (at < 0) return false;
    p.u8.set(packet, p.metaAt(at));
    p.commit();
    p.publish();
    return true;
  }

  vsockStats(): VsockDeviceStats {
    return this.device.vsockStats();
  }

  async close(): Promise<void> {
    await this.device.close();
  }
}

/** Build a device with a raw driver that negotiated `features`, set up all three queues and set DRIVER_OK. */
export async function vsockRig(o: RigOptions = {}): Promise<VsockRig> {
  const guestBytes = 48 << 20;
  const arena = new SharedArena(guestBytes + (4 << 20));
  const memory = arena.guestMemory(guestBytes);
  const device = new VirtioVsockDevice(memory, { guestCid: GUEST_CID, queueSize: 256, spinUs: 20, arena, channelBytes: 1 << 20, ...o.device });
  const alloc = new GuestAllocator(memory);
  return new VsockRig(device, memory, alloc, await setupDriver(device, memory, alloc, o), o);
}

/** The raw driver's init sequence (3.1.1) through the common config registers: reset, negotiate, three rings, DRIVER_OK. */
async function setupDriver(device: VirtioVsockDevice, memory: GuestMemory, alloc: GuestAllocator, o: RigOptions): Promise<GuestRing[]> {
  const pci = new PciDriver(new PciCommonConfig(device), memory, alloc);
  await pci.negotiate(o.features ?? BASE_FEATURES);
  const rings = [0, 1, 2].map((q): GuestRing => {
    const state = pci.setupQueue(q, { size: o.queueSize ?? 64 });
    const mini = new MiniDriver(memory, state);
    const doorbell = device.doorbell(q);
    const doorbellI32 = new Int32Array(doorbell.buffer);
    return {
      q,
      state,
      mini,
      kick: () => {
        mini.publish();
        ring(doorbellI32, doorbell.index);
      },
    };
  });
  pci.driverOk();
  return rings;
}

/** A 44-byte virtio_vsock_hdr (defaults: guest -> host RW STREAM) followed by `payload`. */
export function packet(fields: Partial<VsockHeader> = {}, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = Object.assign(new VsockHeader(), { srcCid: GUEST_CID, dstCid: VSOCK_CID_HOST, srcPort: 1024, dstPort: 80, type: VSOCK_TYPE_STREAM, op: VSOCK_OP_RW, bufAlloc: 1 << 18 }, fields);
  if (fields.len === undefined) h.len = payload.length;
  const out = new Uint8Array(VSOCK_HDR_SIZE + payload.length);
  h.write(out, 0);
  out.set(payload, VSOCK_HDR_SIZE);
  return out;
}

/** Deterministic payload bytes, a different stream per seed. */
export function payloadOf(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 24;
  }
  return out;
}

/** The header fields of bytes[0, 44). */
export const headerOf = (bytes: Uint8Array): VsockHeader => new VsockHeader().read(bytes, 0);

/** Wait until `pred` holds, polling every millisecond. */
export async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(1);
  }
}

/** Collect from `poll` until `count` items arrived. */
export async function collect<T>(poll: () => T[], count: number, what: string, ms = 10_000): Promise<T[]> {
  const out: T[] = [];
  await until(() => {
    out.push(...poll());
    return out.length >= count;
  }, `${what} (${out.length} of ${count})`, ms);
  return out;
}

export const concat = (parts: readonly Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
