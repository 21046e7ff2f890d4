/**
 * Rings with a receive pool for the virtskb tests: one guarded guest memory,
 * a split ring, our driver side (SplitQueueDriver + RecvBuffers) and a device
 * side (the mini device for cross-checks, or SplitQueueDevice for RxWriter).
 */
import { SplitQueueDevice } from '../../src/ring/split-device.js';
import { SplitQueueDriver } from '../../src/ring/split-driver.js';
import { NetRxPacket } from '../../src/net/net-rx-packet.js';
import {
  RecvBuffers,
  type RecvPoolSpec,
  type RxBufferMode,
  RxWriter,
  allocRecvPool,
  recvPoolSize,
} from '../../src/virtskb/index.js';
import { MiniDevice } from '../../src/testing/mini-device.js';
import { type RingRig, indirectTables, ringRig } from '../../src/testing/split-ring.js';

export interface RecvRigOptions {
  mode: RxBufferMode;
  size: number;
  hdrSize?: number;
  /** Default 10 when hdrSize >= 12, else -1. */
  numBuffersAt?: number;
  indirect?: boolean;
  pageSize?: number;
  smallBufferSize?: number;
  bigPayload?: number;
  spare?: number;
  start?: number;
  eventIdx?: boolean;
  minLength?: number;
  /** Extra guest memory after the pool (for a spec driver's own buffers). */
  extra?: number;
}

export interface RecvRig {
  rig: RingRig;
  driver: SplitQueueDriver;
  recv: RecvBuffers<NetRxPacket>;
  pool: RecvPoolSpec;
  /** The independent device side. */
  mini: MiniDevice;
  /** Our device side over the same ring, and a writer in the same mode. */
  device: SplitQueueDevice;
  writer: RxWriter;
  hdrSize: number;
  numBuffersAt: number;
}

export function recvRig(o: RecvRigOptions): RecvRig {
  const hdrSize = o.hdrSize ?? 12;
  const numBuffersAt = o.numBuffersAt ?? (hdrSize >= 12 ? 10 : -1);
  const pageSize = o.pageSize ?? 4096;
  const layoutOpts = { mode: o.mode, hdrSize, pageSize, smallBufferSize: o.smallBufferSize, bigPayload: o.bigPayload, indirect: o.indirect, spare: o.spare };
  const need = recvPoolSize(o.size, layoutOpts);
  const tables = o.indirect === true ? o.size * need.descsPerBuffer * 16 : 0;
  const memSize = Math.ceil((need.bytes + tables + o.size * 32 + 3 * pageSize + (o.extra ?? 0) + 65536) / 4096) * 4096;
  const rig = ringRig(o.size, { memSize, indirect: o.indirect, start: o.start, eventIdx: o.eventIdx });
  const driver = new SplitQueueDriver(rig.memory, rig.state, o.indirect === true ? { indirectTables: indirectTables(rig, need.descsPerBuffer) } : {});
  const pool = allocRecvPool(rig.alloc, o.size, layoutOpts);
  const recv = new RecvBuffers(driver, rig.memory, pool, { ...layoutOpts, numBuffersAt, minLength: o.minLength, packetType: NetRxPacket });
  const device = new SplitQueueDevice(rig.memory, rig.state);
  const writer = new RxWriter(device, { mode: o.mode, hdrSize, numBuffersAt });
  return { rig, driver, recv, pool, mini: new MiniDevice(rig.memory, rig.ring, o.eventIdx), device, writer, hdrSize, numBuffersAt };
}

/** A guarded ring for RxWriter against a spec driver: our device and a writer. */
export function writerRig(o: { mode: RxBufferMode; size: number; hdrSize: number; numBuffersAt: number; indirect?: boolean; memSize: number; start?: number }) {
  const rig = ringRig(o.size, { memSize: o.memSize, indirect: o.indirect, start: o.start });
  const device = new SplitQueueDevice(rig.memory, rig.state);
  const writer = new RxWriter(device, { mode: o.mode, hdrSize: o.hdrSize, numBuffersAt: o.numBuffersAt });
  return { rig, device, writer };
}

/** Everything of the used ring and the device's indices, to compare before/after a write that must change nothing. */
export function ringSnapshot(r: { rig: RingRig; device: SplitQueueDevice }): { nextAvail: number; nextUsed: number; used: number[]; avail: number[] } {
  const { memory, ring } = r.rig;
  const used: number[] = [];
  for (let i = 0; i < 4 + 8 * ring.size + 2; i++) used.push(memory.readU8(ring.used + i));
  const avail: number[] = [];
  for (let i = 0; i < 6 + 2 * ring.size; i++) avail.push(memory.readU8(ring.avail + i));
  return { nextAvail: r.device.nextAvail, nextUsed: r.device.nextUsed, used, avail };
}

/** Where two byte arrays first differ (a length mismatch counts at the shorter length), or -1 when equal. Faster than a deep equal on 64 KiB. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
