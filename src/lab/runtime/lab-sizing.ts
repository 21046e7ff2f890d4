import type { ImpairmentOptions } from '../../backends/impairment.js';
import { NET_CTRL_BUFFER_BYTES } from '../../net/ctrl/index.js';
import { TX_HEADER_AT } from '../../net/net-pair-driver.js';
import { F_INDIRECT_DESC, type FeatureSet, hasFeature } from '../../spec/features.js';
import { splitAvailBytes, splitDescBytes, splitUsedBytes } from '../../spec/ring.js';
import { netRecvConfig } from '../../net/recv-config.js';
import { recvPoolSize } from '../../virtskb/index.js';

/**
 * How big a lab's SharedArena must be. A lab allocates its arena once, at
 * start(), when every NIC, link and port is known: these functions add up
 * what each piece will carve out of it. They mirror the allocations of
 * setupNetDriver(), allocPortChannel() and planImpairment() and round up;
 * an overestimate costs address space only (the pages of a
 * SharedArrayBuffer that are never touched are never made resident).
 */

const PAGE = 4096;
const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Big receive chains setupNetDriver() posts at most (see net-driver.ts). */
const MAX_BIG_BUFFERS = 64;

/** A channel's header (four cache lines of indices) plus its 64-byte alignment, rounded up generously. */
const CHANNEL_OVERHEAD = 1024;

/** Largest frame a port channel or delay line carries (a 64 KiB GSO frame). */
const MAX_FRAME = 65550;
/** Delay-line record header (see impairment.ts). */
const LINE_RECORD_HEADER = 32;

/** Arena bytes kept free beyond the sum, for alignment between pieces. */
export const ARENA_SLACK = 1 << 20;

/** What a NIC's guest memory must hold. */
export interface NicMemoryPlan {
  queueSize: number;
  queuePairs: number;
  mtu: number;
  /** The features the driver will most likely end up with (offer & request). */
  features: FeatureSet;
  /** Bytes of each tx buffer, header included. */
  bufferSize: number;
}

/** Guest-memory bytes for the rings, receive pools, tx buffers and control queue of one NIC's driver. */
export function nicMemoryBytes(p: NicMemoryPlan): number {
  const q = p.queueSize;
  const recv = netRecvConfig(p.features, p.mtu);
  const big = recv.mode === 'big';
  const indirect = big && hasFeature(p.features, F_INDIRECT_DESC);
  const poolQueue = big ? Math.min(q, MAX_BIG_BUFFERS) : q;
  const pool = recvPoolSize(poolQueue, { ...recv, indirect });
  const indirectTables = indirect ? q * pool.descsPerBuffer * 16 : 0;
  const ring = splitDescBytes(q) + splitAvailBytes(q) + splitUsedBytes(q) + 64;
  const stride = roundUp(TX_HEADER_AT + p.bufferSize, 64);
  const perPair = pool.bytes + pool.pageSize + indirectTables + 64 + 2 * ring + q * stride + 64;
  const ctrl = 2 * (splitDescBytes(64) + splitAvailBytes(64) + splitUsedBytes(64)) + NET_CTRL_BUFFER_BYTES + 256;
  return roundUp(p.queuePairs * perPair + ctrl + 64 * 1024, PAGE);
}

/** Arena bytes of `count` port channels of `capacity` bytes. */
export function channelBytes(count: number, capacity: number): number {
  return count * (capacity + CHANNEL_OVERHEAD);
}

/** Arena bytes of the delay line an impairment lays out (0 when it needs none). */
export function impairmentBytes(options: ImpairmentOptions | undefined): number {
  if (options === undefined) return 0;
  if (!((options.delayMs ?? 0) > 0 || (options.jitterMs ?? 0) > 0 || (options.rateBitsPerSec ?? 0) > 0)) return 0;
  let capacity = 1 << Math.ceil(Math.log2(Math.max(options.queueBytes ?? 1 << 20, PAGE)));
  while (capacity < 2 * ((MAX_FRAME + LINE_RECORD_HEADER + 7) & ~7)) capacity *= 2;
  return capacity + 64;
}
