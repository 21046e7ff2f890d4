import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { flowHash } from '../backends/flow-hash.js';
import { connectNics } from '../backends/link.js';
import { InvalidArgumentError } from '../errors.js';
import { F_RING_PACKED, type FeatureSet, bit, hasFeature } from '../spec/features.js';
import { SharedArena } from '../memory/arena.js';
import { parseMac } from '../net/mac.js';
import { VirtioNetDevice } from '../net/net-device.js';
import { NET_DEFAULT_FEATURES, newInterruptWord, setupNetDriver } from '../net/net-driver.js';
import { NET_HDR_SIZE, netRxQueue, netTxQueue } from '../spec/net.js';
import type { QueueStats } from '../stats/queue-stats.js';
import { workerFile } from '../transport/worker-file.js';
import { PUMP_COUNTERS, PUMP_DONE, PUMP_RECEIVED, PUMP_SENT, PUMP_SEQ_ERRORS, PUMP_STOP, PUMP_T_FIRST, PUMP_T_LAST, type PumpGuestData } from './pump-protocol.js';

/** Options of the packet pump. */
export interface PumpOptions {
  /** Frames to move per queue pair (default 10 M); 0 runs until `seconds` pass. */
  frames?: number;
  /** Stop after this many seconds even if frames remain (default: no limit). */
  seconds?: number;
  /** Ethernet frame size in bytes, >= 18 (default 64). */
  frameSize?: number;
  /** Ring size of every queue (default 1024: a 64-byte stream drains 256 entries faster than a sleeping thread wakes). */
  queueSize?: number;
  /** Queue pairs per NIC, each stream on its own guest thread (default 1). */
  pairs?: number;
  /** Microseconds every thread polls before sleeping (default 30). */
  spinUs?: number;
  /** Features both drivers ask for (default NET_DEFAULT_FEATURES: mergeable receive buffers, control queue). */
  features?: FeatureSet;
  /** Ring format of every queue: 'split' (default) or 'packed' (VIRTIO_F_RING_PACKED, 2.8). */
  ring?: 'split' | 'packed';
  /**
   * Runs alongside the traffic once it flows (control-plane operations under
   * load: stop / restart queues, link changes). The pump still checks that
   * every frame arrives once and in order.
   */
  during?: (nics: { a: VirtioNetDevice; b: VirtioNetDevice }) => Promise<void>;
  /** Called about every `tickMs` with the figures so far. */
  onTick?: (tick: PumpTick) => void;
  tickMs?: number;
}

/** Live figures. */
export interface PumpTick {
  seconds: number;
  sent: number;
  received: number;
  /** Frames and payload bits per second over the last interval. */
  pps: number;
  gbps: number;
  /** Frames received per queue pair so far. */
  perPair: number[];
}

/** What a pump run measured. */
export interface PumpResult {
  frames: number;
  frameSize: number;
  pairs: number;
  /** The ring format the queues ran on. */
  ring: 'split' | 'packed';
  sent: number;
  received: number;
  /** Frames that arrived out of order, duplicated, or with the wrong length. */
  sequenceErrors: number;
  /** Sent but never received: must be 0 unless counted as a drop below. */
  lost: number;
  seconds: number;
  pps: number;
  gbps: number;
  /** Busy threads (a guest, a tx worker and an rx worker per pair) and the cores they shared. */
  busyThreads: number;
  cores: number;
  node: string;
  /** Device counters of a's transmit queues and b's receive queues, by pair. */
  txQueues: QueueStats[];
  rxQueues: QueueStats[];
  /** Frames received per pair. */
  perPair: number[];
}

/** The receiver's MAC; stream sources are 52:54:00:00:XX:YY chosen per pair. */
const MAC_A = '52:54:00:00:00:0a';
const MAC_B = '52:54:00:00:00:0b';

/**
 * Move numbered frames from NIC a to NIC b through real queue workers: for
 * each queue pair a guest thread runs a's transmit side and b's receive side;
 * a's tx workers put frames on the link, b's rx workers write them into b's
 * posted buffers. Each stream's source MAC is chosen so that b's flow
 * steering puts it on the same pair, so every guest sees its own frames and
 * checks that each arrives once and in order.
 */
export async function runPump(options: PumpOptions = {}): Promise<PumpResult> {
  const frames = options.frames ?? 10_000_000;
  const frameSize = options.frameSize ?? 64;
  const queueSize = options.queueSize ?? 1024;
  const spinUs = options.spinUs ?? 30;
  const pairs = options.pairs ?? 1;
  if (frameSize < 18 || frameSize > 9000) throw new InvalidArgumentError(`frame size ${frameSize} must be in [18, 9000]`);
  if (!Number.isInteger(pairs) || pairs < 1 || pairs > 64) throw new InvalidArgumentError(`queue pairs ${pairs} must be an integer in [1, 64]`);
  if (frames === 0 && options.seconds === undefined) throw new InvalidArgumentError('frames 0 (unbounded) needs a time limit in seconds');
  // Receive pages (mergeable: one 4 KiB page per slot), tx slots, rings, per pair.
  const memSize = pairs * (queueSize * 4096 + queueSize * (128 + Math.max(frameSize, 1518))) + (2 << 20);
  const arena = new SharedArena(2 * memSize + pairs * (4 << 20));
  const a = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize, spinUs, mac: MAC_A, queuePairs: pairs });
  const b = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize, spinUs, mac: MAC_B, queuePairs: pairs });
  connectNics(arena, a, b);
  const interrupt = newInterruptWord();
  const bufferSize = NET_HDR_SIZE + Math.max(frameSize, 1518);
  const counters = new SharedArrayBuffer(8 * PUMP_COUNTERS * pairs);
  const c = new Float64Array(counters);
  const sum = (field: number): number => Array.from({ length: pairs }, (_, p) => c[p * PUMP_COUNTERS + field]).reduce((x, y) => x + y, 0);
  const guests: Worker[] = [];
  try {
    const ring = options.ring ?? 'split';
    const wanted = options.features ?? NET_DEFAULT_FEATURES;
    const features = ring === 'packed' ? wanted | bit(F_RING_PACKED) : wanted & ~bit(F_RING_PACKED);
    const sender = await setupNetDriver(a, { queueSize, bufferSize, interrupt, queuePairs: pairs, features });
    const receiver = await setupNetDriver(b, { queueSize, bufferSize, interrupt, queuePairs: pairs, features });
    if (hasFeature(BigInt(`0x${sender.features}`), F_RING_PACKED) !== (ring === 'packed')) {
      throw new InvalidArgumentError(`the NICs did not negotiate ${ring} rings (VIRTIO_F_RING_PACKED ${ring === 'packed' ? 'not offered' : 'forced'})`);
    }
    const t0 = performance.now();
    const exited: Promise<void>[] = [];
    for (let pair = 0; pair < pairs; pair++) {
      const data: PumpGuestData = { sender, receiver, pair, srcMac: streamMac(pair, pairs), frames, frameSize, counters, spinUs };
      const guest = new Worker(workerFile('pump-guest'), { workerData: data });
      guests.push(guest);
      exited.push(
        new Promise<void>((resolve, reject) => {
          guest.once('error', reject);
          guest.once('exit', () => resolve());
        }),
      );
    }
    let last = { t: t0, received: 0 };
    const tickMs = options.tickMs ?? 500;
    const timer = setInterval(() => {
      const t = performance.now();
      const received = sum(PUMP_RECEIVED);
      const pps = ((received - last.received) * 1000) / (t - last.t);
      last = { t, received };
      const perPair = Array.from({ length: pairs }, (_, p) => c[p * PUMP_COUNTERS + PUMP_RECEIVED]);
      options.onTick?.({ seconds: (t - t0) / 1000, sent: sum(PUMP_SENT), received, pps, gbps: (pps * frameSize * 8) / 1e9, perPair });
      if (options.seconds !== undefined && t - t0 >= options.seconds * 1000) c[PUMP_STOP] = 1;
    }, tickMs);
    try {
      await Promise.all([...exited, options.during?.({ a, b })]);
    } finally {
      clearInterval(timer);
    }
    if (sum(PUMP_DONE) !== pairs) throw new InvalidArgumentError('a pump guest thread ended before finishing');
    const received = sum(PUMP_RECEIVED);
    const sent = sum(PUMP_SENT);
    // Timed by the guests, first send to last receive: thread start-up is not traffic.
    const first = Math.min(...Array.from({ length: pairs }, (_, p) => c[p * PUMP_COUNTERS + PUMP_T_FIRST]));
    const lastT = Math.max(...Array.from({ length: pairs }, (_, p) => c[p * PUMP_COUNTERS + PUMP_T_LAST]));
    const seconds = (lastT - first) / 1000;
    const txQueues = Array.from({ length: pairs }, (_, p) => a.queueStats(netTxQueue(p)));
    const rxQueues = Array.from({ length: pairs }, (_, p) => b.queueStats(netRxQueue(p)));
    const drops = [...txQueues, ...rxQueues].reduce((n, q) => n + q.dropsTooBig + q.dropsMalformed + q.dropsBadHeader + q.dropsFiltered, 0);
    return {
      frames,
      frameSize,
      pairs,
      ring,
      sent,
      received,
      sequenceErrors: sum(PUMP_SEQ_ERRORS),
      lost: sent - received - drops,
      seconds,
      pps: received / seconds,
      gbps: (received * frameSize * 8) / seconds / 1e9,
      busyThreads: 3 * pairs,
      cores: availableParallelism(),
      node: process.version,
      txQueues,
      rxQueues,
      perPair: Array.from({ length: pairs }, (_, p) => c[p * PUMP_COUNTERS + PUMP_RECEIVED]),
    };
  } finally {
    await Promise.all(guests.map((g) => g.terminate()));
    await Promise.all([a.close(), b.close()]);
  }
}

/**
 * A source MAC for stream `pair` whose frames the receiver steers to rx
 * queue `pair` (flow hash over the MACs of a non-IP frame).
 */
function streamMac(pair: number, pairs: number): string {
  if (pairs === 1) return MAC_A;
  const probe = new Uint8Array(14);
  probe.set(parseMac(MAC_B), 0);
  for (let k = 0; k < 0x10000; k++) {
    const mac = `52:54:00:00:${(k >>> 8).toString(16).padStart(2, '0')}:${(k & 0xff).toString(16).padStart(2, '0')}`;
    probe.set(parseMac(mac), 6);
    if (flowHash(probe, 0, 14) % pairs === pair) return mac;
  }
  throw new InvalidArgumentError(`no source MAC steers to queue ${pair} of ${pairs}`);
}
