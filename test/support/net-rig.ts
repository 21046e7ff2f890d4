/**
 * Two virtio-net NICs on one cable, each with its own device options and its
 * own driver options (features, queue pairs, buffer sizes), both drivers on
 * this thread; and a transfer that carries a virtio_net_hdr with every frame
 * and records the header each received packet came with.
 */
import { type FeatureSet, type Link, type LinkOptions, type NetDeviceOptions, NetDriver, type NetDriverOptions, type NetRxPacket, type QueueErrorEvent, SharedArena, VirtioNetDevice, connectNics, featureSet, newInterruptWord, setupNetDriver } from '../../src/index.js';
import type { NetHdr } from '../../src/net/offload/net-hdr.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, NET_F_MAC, NET_F_MTU, NET_F_STATUS } from '../../src/spec/features.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { withTestRing } from './test-ring.js';
import { until } from './net-pair.js';

export { until };

/** Features every rig driver takes unless told otherwise: no offloads, no control queue. */
export const BASE_FEATURES: FeatureSet = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, NET_F_MAC, NET_F_STATUS, NET_F_MTU);

/** Bytes of a tx buffer that holds a 64 KiB GSO frame (header + NET_MAX_TX_FRAME). */
export const GSO_BUFFER = 12 + 65550;

/** One NIC of a rig: how its device is built and how its driver sets it up. */
export interface NicSpec {
  device?: Omit<NetDeviceOptions, 'spinUs'>;
  driver?: NetDriverOptions;
  /** Bytes of its guest memory; default 16 MiB. */
  memory?: number;
  /** Post the driver's receive buffers after setup (default true; false for a test that posts its own). */
  fill?: boolean;
}

export interface NetRig {
  a: VirtioNetDevice;
  b: VirtioNetDevice;
  da: NetDriver;
  db: NetDriver;
  link: Link;
  /** Reset a NIC and bring it up through a fresh driver with its spec's options (or `driver`). */
  reopen(which: 'a' | 'b', driver?: NetDriverOptions): Promise<NetDriver>;
  close(): Promise<void>;
}

/** Build two NICs, connect them, set both up and post their receive buffers. */
export async function netRig(sa: NicSpec = {}, sb: NicSpec = {}, link: LinkOptions = {}): Promise<NetRig> {
  const pa = sa.device?.queuePairs ?? 1;
  const pb = sb.device?.queuePairs ?? 1;
  const capacity = link.capacity ?? (pa > 1 || pb > 1 ? 1 << 18 : 1 << 20);
  const memA = sa.memory ?? 16 << 20;
  const memB = sb.memory ?? 16 << 20;
  const arena = new SharedArena(memA + memB + 2 * pa * pb * (capacity + 4096) + (1 << 20));
  const a = new VirtioNetDevice(arena.guestMemory(memA), { queueSize: 64, ...sa.device, spinUs: 20 });
  const b = new VirtioNetDevice(arena.guestMemory(memB), { queueSize: 64, ...sb.device, spinUs: 20 });
  const cable = connectNics(arena, a, b, { ...link, capacity });
  const interrupt = newInterruptWord();
  const open = async (dev: VirtioNetDevice, spec: NicSpec, driver?: NetDriverOptions, fill = true): Promise<NetDriver> => {
    const options = { features: BASE_FEATURES, ...(driver ?? spec.driver), interrupt };
    const d = new NetDriver(await setupNetDriver(dev, { ...options, features: withTestRing(options.features) }));
    deviceOf.set(d, dev);
    if (fill) d.fillRx();
    return d;
  };
  for (const [name, dev] of [['a', a], ['b', b]] as const) dev.on('queue-error', (e: QueueErrorEvent) => queueErrors.set(dev, `${name} queue ${e.queue}: ${e.error.message}`));
  const rig: NetRig = {
    a,
    b,
    link: cable,
    da: await open(a, sa, undefined, sa.fill ?? true),
    db: await open(b, sb, undefined, sb.fill ?? true),
    reopen: async (which, driver) => {
      const d = await open(rig[which], which === 'a' ? sa : sb, driver);
      rig[which === 'a' ? 'da' : 'db'] = d;
      return d;
    },
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await cable.close();
    },
  };
  return rig;
}

/** The device behind each rig driver, and the last queue error each device reported (for timeout messages). */
const deviceOf = new WeakMap<NetDriver, VirtioNetDevice>();
const queueErrors = new WeakMap<VirtioNetDevice, string>();

/** Status, queue counters and last queue error of the device behind `d`, for a timeout message. */
function describeDevice(d: NetDriver): string {
  const dev = deviceOf.get(d);
  if (dev === undefined) return '';
  const queues = Array.from({ length: dev.numQueues }, (_, q) => q)
    .map((q) => [q, dev.queueStats(q)] as const)
    .filter(([, s]) => s.chains !== 0 || s.errors !== 0)
    .map(([q, s]) => `q${q}${dev.queueRunning(q) ? '' : '(stopped)'}: ${s.chains} chains, ${s.dropsTooBig + s.dropsBadHeader + s.dropsFiltered + s.dropsMalformed} drops`);
  return `status 0x${dev.status.toString(16)}; ${queues.join(', ')}${queueErrors.has(dev) ? `; ${queueErrors.get(dev)}` : ''}`;
}

/** A frame to send, with the offloads it asks for and the pair it leaves on. */
export interface TxItem {
  frame: Uint8Array;
  hdr?: NetHdr;
  pair?: number;
}

/** What a receiving driver got: a copy of the frame and its virtio_net_hdr fields. */
export interface RxItem {
  frame: Uint8Array;
  pair: number;
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
  numBuffers: number;
}

export function copyPacket(p: NetRxPacket, pair: number): RxItem {
  const frame = new Uint8Array(p.length);
  p.copyTo(frame);
  return {
    frame,
    pair,
    flags: p.flags,
    gsoType: p.gsoType,
    hdrLen: p.hdrLen,
    gsoSize: p.gsoSize,
    csumStart: p.csumStart,
    csumOffset: p.csumOffset,
    numBuffers: p.numBuffers,
  };
}

/**
 * Sends TxItems from `tx` (in order, each on its pair) and collects what
 * `rx` receives on every pair, keeping both sides' rings moving.
 */
export class HdrTransfer {
  readonly received: RxItem[] = [];
  sent = 0;

  constructor(
    readonly tx: NetDriver,
    readonly rx: NetDriver,
  ) {}

  /** Queue as many of items[sent..] as fit (stopping at the first that does not), publish, reap, receive. */
  step(items: readonly TxItem[]): number {
    let moved = 0;
    while (this.sent < items.length) {
      const it = items[this.sent];
      if (!this.tx.pairs[it.pair ?? 0].send(it.frame, it.hdr)) break;
      this.sent++;
      moved++;
    }
    for (const p of this.tx.pairs) p.flushTx();
    moved += this.tx.reclaimTx();
    this.rx.pairs.forEach((p, i) => {
      moved += p.receive((pkt) => this.received.push(copyPacket(pkt, i)));
    });
    return moved;
  }

  /**
   * Send every item, then keep going until `expected` packets arrived (default
   * one per item) and the device has completed every tx chain.
   */
  async run(items: readonly TxItem[], expected = items.length, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (this.received.length < expected || this.sent < items.length || this.txPending() !== 0) {
      if (Date.now() > end) {
        throw new Error(
          `timed out after ${ms} ms: sent ${this.sent} of ${items.length}, ${this.received.length} of ${expected} packets arrived, ${this.txPending()} tx chains pending` +
            ` [sender: ${describeDevice(this.tx)}] [receiver: ${describeDevice(this.rx)}]`,
        );
      }
      if (this.step(items) === 0) await this.rx.waitForInterrupt(20);
    }
  }

  /** Move nothing new, but give late packets `ms` to show up (to check that nothing more arrives). */
  async drain(ms = 100): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) if (this.step([]) === 0) await this.rx.waitForInterrupt(10);
  }

  private txPending(): number {
    return this.tx.pairs.reduce((n, p) => n + p.tx.pending, 0);
  }
}

export const RX0 = netRxQueue(0);
export const TX0 = netTxQueue(0);

/** Byte equality of two frames, with the first difference in the message. */
export function sameFrame(got: Uint8Array, want: Uint8Array): string | undefined {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  const a = Buffer.from(got.buffer, got.byteOffset, got.length);
  const b = Buffer.from(want.buffer, want.byteOffset, want.length);
  if (a.equals(b)) return undefined;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `byte ${i} is ${got[i]}, expected ${want[i]}`;
  return 'differs';
}

/** An Ethernet frame to `dst` (a MAC string) with a local ethertype and a sequence number at byte 14 (optionally one 802.1Q tag). */
export function frameTo(dst: string, seq: number, len = 64, vid?: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 13 + seq) & 0xff;
  f.set(dst.split(':').map((h) => parseInt(h, 16)), 0);
  f.set([0x52, 0x54, 0, 0x12, 0x34, 0x56], 6);
  let p = 12;
  if (vid !== undefined) {
    f.set([0x81, 0x00, (vid >>> 8) & 0x0f, vid & 0xff], 12);
    p = 16;
  }
  f.set([0x88, 0xb5], p);
  new DataView(f.buffer).setUint32(p + 2, seq, true);
  return f;
}

/** The sequence number frameTo() put in a frame. */
export function seqOf(f: Uint8Array): number {
  const p = f[12] === 0x81 && f[13] === 0x00 ? 16 : 12;
  return new DataView(f.buffer, f.byteOffset).getUint32(p + 2, true);
}
