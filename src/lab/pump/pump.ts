import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { flowHash } from '../../wire/flow-hash.js';
import { connectNics } from '../../backends/link.js';
import { NetSwitch } from '../../backends/switch.js';
import { InvalidArgumentError } from '../../errors.js';
import { F_RING_PACKED, type FeatureSet, NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_HOST_TSO4, bit, featureSet, hasFeature } from '../../spec/features.js';
import { GuestAllocator } from '../../memory/allocator.js';
import { SharedArena } from '../../memory/arena.js';
import { parseMac } from '../../net/mac.js';
import { VirtioNetDevice } from '../../net/net-device.js';
import { NET_DEFAULT_FEATURES, type NetDriverSpec, newInterruptWord, setupNetDriver } from '../../net/net-driver.js';
import type { WordRef } from '../../notify/notify-area.js';
import { NET_HDR_SIZE, netRxQueue, netTxQueue } from '../../spec/net.js';
import type { NetQueueStats } from '../../net/net-counters.js';
import { QueueThreadPool } from '../../transport/queue-thread-pool.js';
import { THREAD_MAPPING_NAMES, type ThreadMapping } from '../../transport/thread-mapping.js';
import { workerFile } from '../../transport/worker-file.js';
import { type LatencyPercentiles, latencyPercentiles, mergeEncodedHistograms } from './latency-histogram.js';
import { GSO_SEQ_AT, MAX_GSO_FRAME, MAX_PLAIN_FRAME, MIN_FRAME, PLAIN_SEQ_AT, STAMP_BYTES, templateLayout } from './frames.js';
import {
  PUMP_COUNTERS,
  PUMP_DONE,
  PUMP_RECEIVED,
  PUMP_SENT,
  PUMP_SEQ_ERRORS,
  PUMP_SKIPPED,
  PUMP_STOP,
  PUMP_T_FIRST,
  PUMP_T_LAST,
  type PumpGuestData,
  type PumpGuestReport,
} from './pump-protocol.js';

/** Options of the packet pump. */
export interface PumpOptions {
  /** Frames to move per queue pair (default 10 M); 0 runs until `seconds` pass or `signal` aborts. */
  frames?: number;
  /** Stop after this many seconds, counted from the first frame sent, even if frames remain (default: no limit). */
  seconds?: number;
  /**
   * Leave the first this many seconds of traffic out of `steady` (default 0:
   * no `steady` figure): while the threads' code warms up a run moves
   * frames at about half its later rate, as testpmd's own loop does before
   * its first window. The mark is taken at the first tick past it.
   */
  warmupSeconds?: number;
  /** Ethernet frame size in bytes, >= 18 (default 64); with `gso` up to 65549. */
  frameSize?: number;
  /** Frame sizes cycled by sequence number (a size mix, see sizeSchedule()); overrides `frameSize`. */
  sizes?: number[];
  /** Frames per second each pair offers, paced (default 0: as fast as the rings take them). Frames due while the tx ring is full are skipped and counted. */
  ratePps?: number;
  /** Time every Nth frame from commit to receive into an HDR histogram (default 0: none). Frames must be >= 26 bytes. */
  latencyEvery?: number;
  /** Timed frames sent in the first this many seconds are not recorded (default 0). */
  latencyAfterSeconds?: number;
  /**
   * Send TSO frames: IPv4 / TCP with a virtio_net_hdr asking for TCPV4
   * segmentation (gso_size 1448) and a partial checksum. The sender
   * negotiates HOST_TSO4 and the receiver GUEST_TSO4, so each frame passes
   * through the device whole (5.1.6.4), as between two Linux guests. One pair only.
   */
  gso?: boolean;
  /**
   * Each guest stops offering frames this many seconds after its first one
   * (timed by the guest itself, so a paced stream offers rate x seconds
   * frames); `seconds` is the main thread's cut-off, checked every tick.
   */
  guestSeconds?: number;
  /** What joins the NICs: a direct link (default) or a learning switch (NetSwitch, on its own worker). */
  via?: 'link' | 'switch';
  /** Ring size of every queue (default 1024: a 64-byte stream drains 256 entries faster than a sleeping thread wakes). */
  queueSize?: number;
  /** Queue pairs per NIC, each stream on its own guest thread (default 1). */
  pairs?: number;
  /** Microseconds every thread polls before sleeping (default 30). */
  spinUs?: number;
  /** How often sleeping queue threads look at their queues, for a second after their last work, in milliseconds (default 0: never; QueueThreadPoolOptions.idlePollMs). */
  idlePollMs?: number;
  /** Features both drivers ask for (default NET_DEFAULT_FEATURES: mergeable receive buffers, control queue). */
  features?: FeatureSet;
  /** Ring format of every queue: 'split' (default) or 'packed' (VIRTIO_F_RING_PACKED, 2.8). */
  ring?: 'split' | 'packed';
  /**
   * How the NICs' queues map onto queue threads (see PumpThreads); default
   * 'auto': 'per-queue' where the machine has a core for each of the
   * 3 busy threads per pair, else 'guest'.
   */
  threads?: PumpThreads;
  /**
   * Runs alongside the traffic once it flows (control-plane operations under
   * load: stop / restart queues, link changes). The pump still checks that
   * every frame arrives once and in order.
   */
  during?: (nics: { a: VirtioNetDevice; b: VirtioNetDevice }) => Promise<void>;
  /** Called about every `tickMs` with the figures so far. */
  onTick?: (tick: PumpTick) => void;
  tickMs?: number;
  /** Aborting stops the traffic: the guests drain what is in flight and runPump resolves with what was moved. */
  signal?: AbortSignal;
}

/**
 * Queue threads of a pump: the device mappings of ThreadMapping;
 * `'link'`: one thread per pair serving a's transmit queue and b's receive
 * queue of that pair (one worker per link direction), so a pair runs two
 * busy threads (its guest and that worker) instead of three; and
 * `'guest'`: that thread also runs the pair's guest side (run to completion:
 * a frame goes from a's tx ring through both devices into b's buffers on
 * one thread, as one DPDK lcore drives both ends of testpmd's loop), one
 * busy thread per pair.
 */
export type PumpThreads = (typeof PUMP_THREADS)[number];

/** Every PumpThreads value. */
export const PUMP_THREADS = [...THREAD_MAPPING_NAMES, 'link', 'guest'] as const;

/** Live figures. */
export interface PumpTick {
  /** Seconds since the first frame was sent (0 until then). */
  seconds: number;
  sent: number;
  received: number;
  /** Frames and payload bits per second over the last interval. */
  pps: number;
  gbps: number;
  /** Frames received per queue pair so far. */
  perPair: number[];
  /** Paced frames skipped so far (tx ring full when due). */
  skipped: number;
}

/** The part of a run after its warm-up. */
export interface PumpSteady {
  /** Frames received from the warm-up's mark to the last one. */
  frames: number;
  seconds: number;
  pps: number;
  /** Payload bits per second (the mean of the size cycle). */
  gbps: number;
}

/** What a pump run measured. */
export interface PumpResult {
  frames: number;
  /** The frame size (the largest, with a size mix). */
  frameSize: number;
  /** The cycle of frame sizes sent. */
  sizes: number[];
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
  /** The frames received after `warmupSeconds` and their rate; undefined without a warm-up, or when the run ended before it did. */
  steady: PumpSteady | undefined;
  /** Frames whose turn came (sent + skipped); equals `sent` unless paced. */
  offered: number;
  /** Paced frames not sent because the tx ring was full when they were due. */
  skipped: number;
  /** Frames the device or the switch dropped and counted (bad header, too big, filtered, switch egress full). */
  drops: number;
  /** Latency of the timed frames (commit on the sender to the receive callback, same thread clock), when `latencyEvery` > 0. */
  latency: LatencyPercentiles | undefined;
  /** Each guest thread's heap (bytes used) before its first frame and after its last. */
  guestHeap: { before: number; after: number }[];
  /** The queue-thread mapping the pump ran ('auto' resolved). */
  threads: Exclude<PumpThreads, 'auto'>;
  /** Busy threads (the guests and the queue threads that move frames) and the cores they shared. */
  busyThreads: number;
  cores: number;
  node: string;
  /** Device counters of a's transmit queues and b's receive queues, by pair. */
  txQueues: NetQueueStats[];
  rxQueues: NetQueueStats[];
  /** Frames received per pair. */
  perPair: number[];
}

/** The receiver's MAC; stream sources are 52:54:00:00:XX:YY chosen per pair. */
const MAC_A = '52:54:00:00:00:0a';
const MAC_B = '52:54:00:00:00:0b';

/** PumpOptions checked, with their defaults. */
interface PumpPlan {
  frames: number;
  sizes: number[];
  frameSize: number;
  gso: boolean;
  latencyEvery: number;
  ratePps: number;
  queueSize: number;
  spinUs: number;
  idlePollMs: number;
  pairs: number;
  ring: 'split' | 'packed';
  /** 0: no steady figure. */
  warmupSeconds: number;
}

function pumpPlan(options: PumpOptions): PumpPlan {
  const sizes = options.sizes ?? [options.frameSize ?? 64];
  const plan: PumpPlan = {
    frames: options.frames ?? 10_000_000,
    sizes,
    frameSize: Math.max(...sizes),
    gso: options.gso === true,
    latencyEvery: options.latencyEvery ?? 0,
    ratePps: options.ratePps ?? 0,
    queueSize: options.queueSize ?? 1024,
    spinUs: options.spinUs ?? 30,
    idlePollMs: options.idlePollMs ?? 0,
    pairs: options.pairs ?? 1,
    ring: options.ring ?? 'split',
    warmupSeconds: options.warmupSeconds ?? 0,
  };
  const { gso, latencyEvery, ratePps, pairs, warmupSeconds } = plan;
  const minSize = latencyEvery > 0 ? (gso ? GSO_SEQ_AT : PLAIN_SEQ_AT) + 4 + STAMP_BYTES : MIN_FRAME;
  const maxSize = gso ? MAX_GSO_FRAME : MAX_PLAIN_FRAME;
  for (const size of sizes) if (!(Number.isInteger(size) && size >= minSize && size <= maxSize)) throw new InvalidArgumentError(`frame size ${size} must be an integer in [${minSize}, ${maxSize}]`);
  if (gso && pairs !== 1) throw new InvalidArgumentError('GSO frames run on one queue pair');
  if (!(ratePps >= 0 && Number.isFinite(ratePps))) throw new InvalidArgumentError(`rate ${ratePps} must be a non-negative number of frames per second`);
  if (!(Number.isInteger(latencyEvery) && latencyEvery >= 0)) throw new InvalidArgumentError(`latencyEvery ${latencyEvery} must be a non-negative integer`);
  if (!Number.isInteger(pairs) || pairs < 1 || pairs > 64) throw new InvalidArgumentError(`queue pairs ${pairs} must be an integer in [1, 64]`);
  if (!(warmupSeconds >= 0 && Number.isFinite(warmupSeconds))) throw new InvalidArgumentError(`warm-up ${warmupSeconds} must be a non-negative number of seconds`);
  if (plan.frames === 0 && options.seconds === undefined && options.guestSeconds === undefined && options.signal === undefined) {
    throw new InvalidArgumentError('frames 0 (unbounded) needs a time limit in seconds or an AbortSignal');
  }
  return plan;
}

/** The counters the pump guests write (pump-protocol.ts), PUMP_COUNTERS per pair, read across the pairs. */
class PumpCounters {
  readonly buffer: SharedArrayBuffer;
  private readonly c: Float64Array;

  constructor(private readonly pairs: number) {
    this.buffer = new SharedArrayBuffer(8 * PUMP_COUNTERS * pairs);
    this.c = new Float64Array(this.buffer);
  }

  /** Counter `field` of each pair. */
  perPair(field: number): number[] {
    return Array.from({ length: this.pairs }, (_, p) => this.c[p * PUMP_COUNTERS + field]);
  }

  sum(field: number): number {
    return this.perPair(field).reduce((x, y) => x + y, 0);
  }

  /** The guests poll the stop word: they finish what is in flight and end. */
  stop(): void {
    this.c[PUMP_STOP] = 1;
  }

  /** Epoch milliseconds of the first frame any guest sent (Infinity before): the run's clock starts there, not at thread start-up. */
  firstFrameAt(): number {
    let t = Number.POSITIVE_INFINITY;
    for (const v of this.perPair(PUMP_T_FIRST)) if (v > 0 && v < t) t = v;
    return t;
  }
}

/**
 * Set up both drivers on the ring format asked (with TSO when `gso`); checks
 * what they negotiated. Room for the streams' frame templates is taken from
 * the sender's guest memory after its rings and buffers.
 */
async function pumpDrivers(
  a: VirtioNetDevice,
  b: VirtioNetDevice,
  plan: PumpPlan,
  wanted: FeatureSet,
  interrupt: WordRef,
): Promise<{ sender: NetDriverSpec; receiver: NetDriverSpec; templates: { gpa: number; bytes: number } }> {
  const { ring, gso, queueSize, pairs } = plan;
  const bufferSize = NET_HDR_SIZE + Math.max(plan.frameSize, 1518);
  const features = ring === 'packed' ? wanted | bit(F_RING_PACKED) : wanted & ~bit(F_RING_PACKED);
  // TSO: the sender hands 64 KiB frames over, the receiver takes them whole.
  const tso = gso ? { tx: featureSet(NET_F_CSUM, NET_F_HOST_TSO4), rx: featureSet(NET_F_GUEST_CSUM, NET_F_GUEST_TSO4) } : { tx: 0n, rx: 0n };
  const senderMemory = new GuestAllocator(a.memory);
  const sender = await setupNetDriver(a, { queueSize, bufferSize, interrupt, queuePairs: pairs, features: features | tso.tx, allocator: senderMemory });
  const { bytes } = templateLayout(plan.sizes);
  const templates = { gpa: senderMemory.alloc(pairs * bytes, 64), bytes };
  const receiver = await setupNetDriver(b, { queueSize, bufferSize, interrupt, queuePairs: pairs, features: features | tso.rx });
  if (gso && !hasFeature(BigInt(`0x${receiver.features}`), NET_F_GUEST_TSO4)) throw new InvalidArgumentError('the receiver did not negotiate GUEST_TSO4');
  if (hasFeature(BigInt(`0x${sender.features}`), F_RING_PACKED) !== (ring === 'packed')) {
    throw new InvalidArgumentError(`the NICs did not negotiate ${ring} rings (VIRTIO_F_RING_PACKED ${ring === 'packed' ? 'not offered' : 'forced'})`);
  }
  return { sender, receiver, templates };
}

/** Start the guest of each pair as a task of the queue thread serving the pair; resolves when all have finished (rejects when a thread exits first). */
function startGuestTasks(data: Omit<PumpGuestData, 'pair' | 'srcMac'>, pairs: number, pool: QueueThreadPool, reports: PumpGuestReport[]): Promise<void[]> {
  const done: Promise<void>[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    const task: PumpGuestData = { ...data, pair, srcMac: streamMac(pair, pairs) };
    done.push(pool.runTask(pair, task).then((r) => void reports.push(r as PumpGuestReport)));
  }
  return Promise.all(done);
}

/** Start the guest thread of each pair; resolves when all have exited (rejects on a thread's error). */
function startGuests(data: Omit<PumpGuestData, 'pair' | 'srcMac'>, pairs: number, guests: Worker[], reports: PumpGuestReport[]): Promise<void[]> {
  const exited: Promise<void>[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    const guest = new Worker(workerFile('pump-guest'), { workerData: { ...data, pair, srcMac: streamMac(pair, pairs) } satisfies PumpGuestData });
    guests.push(guest);
    guest.on('message', (r: PumpGuestReport) => reports.push(r));
    exited.push(
      new Promise<void>((resolve, reject) => {
        guest.once('error', reject);
        guest.once('exit', () => resolve());
      }),
    );
  }
  return Promise.all(exited);
}

/**
 * Move numbered frames from NIC a to NIC b through real queue workers: for
 * each queue pair a guest thread runs a's transmit side and b's receive side;
 * a's tx workers put frames on the link, b's rx workers write them into b's
 * posted buffers. Each stream's source MAC is chosen so that b's flow
 * steering puts it on the same pair, so every guest sees its own frames and
 * checks that each arrives once and in order.
 */
export async function runPump(options: PumpOptions = {}): Promise<PumpResult> {
  const plan = pumpPlan(options);
  const { pairs, spinUs, idlePollMs, queueSize, frameSize } = plan;
  // Receive pages (mergeable: one 4 KiB page per slot), tx slots, rings, per pair.
  const memSize = pairs * (queueSize * 4096 + queueSize * (128 + Math.max(frameSize, 1518))) + (2 << 20);
  const arena = new SharedArena(2 * memSize + pairs * (4 << 20));
  const threads = pumpThreads(options.threads ?? 'auto', pairs);
  // 'link' and 'guest': thread p serves pair p of both NICs, so a.tx(p) and b.rx(p) share it ('guest': and p's guest side).
  const linkPool = threads === 'link' || threads === 'guest' ? new QueueThreadPool({ threads: pairs, spinUs, idlePollMs, entry: threads === 'guest' ? 'pump-queue-worker' : undefined }) : undefined;
  const mapping: ThreadMapping = linkPool === undefined ? (threads as ThreadMapping) : { pool: linkPool, thread: (q) => Math.min(q >>> 1, pairs - 1) };
  // The devices offer a power of two (4.1.4.3.2); the drivers take `queueSize`, which a packed ring allows to be any size (2.8.10.1).
  const maxQueueSize = 2 ** Math.ceil(Math.log2(queueSize));
  const a = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize: maxQueueSize, spinUs, idlePollMs, mac: MAC_A, queuePairs: pairs, threads: mapping });
  const b = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize: maxQueueSize, spinUs, idlePollMs, mac: MAC_B, queuePairs: pairs, threads: mapping });
  const sw = options.via === 'switch' ? new NetSwitch(arena) : undefined;
  if (sw !== undefined) {
    sw.connect(a);
    sw.connect(b);
    sw.start();
  } else connectNics(arena, a, b);
  const counters = new PumpCounters(pairs);
  const guests: Worker[] = [];
  const reports: PumpGuestReport[] = [];
  const stop = (): void => counters.stop();
  if (options.signal?.aborted === true) stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    const { sender, receiver, templates } = await pumpDrivers(a, b, plan, options.features ?? NET_DEFAULT_FEATURES, newInterruptWord());
    const { frames, sizes, ratePps, latencyEvery, gso } = plan;
    const durationMs = options.guestSeconds === undefined ? 0 : options.guestSeconds * 1000;
    const guestData = { sender, receiver, templates, frames, sizes, ratePps, latencyEvery, latencyAfterMs: (options.latencyAfterSeconds ?? 0) * 1000, gso, learn: sw !== undefined, durationMs, counters: counters.buffer, spinUs };
    const exited = threads === 'guest' && linkPool !== undefined ? startGuestTasks(guestData, pairs, linkPool, reports) : startGuests(guestData, pairs, guests, reports);
    let last = { t: performance.now(), received: 0 };
    // Epoch ms and frames received at the first tick past the warm-up.
    let warm: { at: number; received: number } | undefined;
    const meanSize = cycleMeanSize(sizes);
    const timer = setInterval(() => {
      const t = performance.now();
      const received = counters.sum(PUMP_RECEIVED);
      const pps = ((received - last.received) * 1000) / (t - last.t);
      last = { t, received };
      const running = Math.max(0, performance.timeOrigin + t - counters.firstFrameAt()) / 1000;
      if (warm === undefined && plan.warmupSeconds > 0 && running >= plan.warmupSeconds) warm = { at: performance.timeOrigin + t, received };
      options.onTick?.({ seconds: running, sent: counters.sum(PUMP_SENT), received, pps, gbps: (pps * meanSize * 8) / 1e9, perPair: counters.perPair(PUMP_RECEIVED), skipped: counters.sum(PUMP_SKIPPED) });
      if (options.seconds !== undefined && running >= options.seconds) stop();
    }, options.tickMs ?? 500);
    try {
      await Promise.all([exited, options.during?.({ a, b })]);
    } finally {
      clearInterval(timer);
    }
    if (counters.sum(PUMP_DONE) !== pairs) throw new InvalidArgumentError('a pump guest thread ended before finishing');
    return pumpResult(plan, counters, a, b, sw, reports, threads, warm);
  } finally {
    options.signal?.removeEventListener('abort', stop);
    await Promise.all(guests.map((g) => g.terminate()));
    await Promise.all([a.close(), b.close(), sw?.close()]);
    await linkPool?.close();
  }
}

/** What the pump measured, from the guests' counters and the devices' (and switch's) own. */
function pumpResult(
  plan: PumpPlan,
  counters: PumpCounters,
  a: VirtioNetDevice,
  b: VirtioNetDevice,
  sw: NetSwitch | undefined,
  reports: PumpGuestReport[],
  threads: Exclude<PumpThreads, 'auto'>,
  warm: { at: number; received: number } | undefined,
): PumpResult {
  const { pairs, latencyEvery } = plan;
  const received = counters.sum(PUMP_RECEIVED);
  const sent = counters.sum(PUMP_SENT);
  // Timed by the guests, first send to last receive: thread start-up is not traffic.
  const lastAt = Math.max(...counters.perPair(PUMP_T_LAST));
  const seconds = (lastAt - Math.min(...counters.perPair(PUMP_T_FIRST))) / 1000;
  const txQueues = Array.from({ length: pairs }, (_, p) => a.queueStats(netTxQueue(p)));
  const rxQueues = Array.from({ length: pairs }, (_, p) => b.queueStats(netRxQueue(p)));
  const switchDrops = sw === undefined ? 0 : sw.stats().ports.reduce((n, p) => n + p.dropsEgressFull + p.dropsBad + p.dropsFiltered + p.dropsLoss, 0);
  const drops = switchDrops + [...txQueues, ...rxQueues].reduce((n, q) => n + q.dropsTooBig + q.dropsMalformed + q.dropsBadHeader + q.dropsFiltered, 0);
  const skipped = counters.sum(PUMP_SKIPPED);
  const rxBytes = rxQueues.reduce((n, q) => n + q.bytes, 0);
  let latency: LatencyPercentiles | undefined;
  if (latencyEvery > 0) {
    const merged = mergeEncodedHistograms(reports.flatMap((r) => (r.latency === undefined ? [] : [r.latency])));
    latency = latencyPercentiles(merged);
    merged.destroy();
  }
  return {
    frames: plan.frames,
    frameSize: plan.frameSize,
    sizes: plan.sizes,
    pairs,
    ring: plan.ring,
    sent,
    received,
    sequenceErrors: counters.sum(PUMP_SEQ_ERRORS),
    lost: sent - received - drops,
    seconds,
    pps: received / seconds,
    gbps: (rxBytes * 8) / seconds / 1e9,
    steady: steadyPart(plan, warm, received, lastAt),
    offered: sent + skipped,
    skipped,
    drops,
    latency,
    guestHeap: reports.map((r) => ({ before: r.heapBefore, after: r.heapAfter })),
    threads,
    busyThreads: pairs + busyQueueThreads(threads, pairs) + (sw === undefined ? 0 : 1),
    cores: availableParallelism(),
    node: process.version,
    txQueues,
    rxQueues,
    perPair: counters.perPair(PUMP_RECEIVED),
  };
}

/** The frames after the warm-up's mark, when the run went on past it. */
function steadyPart(plan: PumpPlan, warm: { at: number; received: number } | undefined, received: number, lastAt: number): PumpSteady | undefined {
  if (warm === undefined || received <= warm.received || lastAt <= warm.at) return undefined;
  const frames = received - warm.received;
  const seconds = (lastAt - warm.at) / 1000;
  return { frames, seconds, pps: frames / seconds, gbps: (frames * cycleMeanSize(plan.sizes) * 8) / seconds / 1e9 };
}

/** Bytes per frame over the size cycle (frames.ts's meanFrameSize() is the same over a weighted mix). */
const cycleMeanSize = (sizes: number[]): number => sizes.reduce((x, y) => x + y, 0) / sizes.length;

/**
 * 'auto' resolved: a thread per queue where 3 busy threads per pair fit the
 * cores, else one thread per pair running its guest and its queues
 * ('guest'). On 2 vCPUs 'guest' moved 1.05-1.22x the frames of 'link' with
 * one pair and 1.41-1.44x with two (medians of 5 alternated rounds): a
 * thread that has its core to itself beats two that take turns on it.
 */
function pumpThreads(threads: PumpThreads, pairs: number): Exclude<PumpThreads, 'auto'> {
  if (threads !== 'auto') return threads;
  return availableParallelism() >= 3 * pairs ? 'per-queue' : 'guest';
}

/** Queue threads that move the pump's frames: a's transmit side and b's receive side. */
function busyQueueThreads(threads: Exclude<PumpThreads, 'auto'>, pairs: number): number {
  switch (threads) {
    case 'per-queue':
    case 'per-pair':
      return 2 * pairs;
    case 'per-device':
      return 2;
    case 'link':
      return pairs;
    case 'guest':
      return 0; // the guests' own threads move the frames
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
