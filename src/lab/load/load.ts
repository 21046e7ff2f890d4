import { InvalidArgumentError } from '../../errors.js';
import type { LatencyPercentiles } from '../pump/latency-histogram.js';
import { type SizeWeight, meanFrameSize, parseSizeMix, sizeSchedule } from '../pump/frames.js';
import { type PumpResult, type PumpThreads, type PumpTick, runPump } from '../pump/pump.js';

/** Options of a load test (runLoad). */
export interface LoadOptions {
  /** Queue pairs per NIC, one guest thread each (default 1). */
  pairs?: number;
  /**
   * Frame size mix: sizes with weights, or their text form "64:7,576:4,1500:1"
   * (the simple IMIX); default 64-byte frames only.
   */
  sizes?: readonly SizeWeight[] | string;
  /** Frames per second offered over all pairs, paced (default 0: as many as the rings take). */
  ratePps?: number;
  /** How long each pair offers frames, in seconds from its first frame (default 5). */
  seconds?: number;
  /** Ring format: 'split' (default) or 'packed'. */
  ring?: 'split' | 'packed';
  /** Ring size of every queue (default 1024). */
  queueSize?: number;
  /** How the queues map onto queue threads, as the pump's (default 'auto'). */
  threads?: PumpThreads;
  /** Microseconds every thread polls before sleeping (default 30). */
  spinUs?: number;
  /** How often sleeping queue threads look at their queues, for a second after their last work, in milliseconds (default 0: never): see PumpOptions.idlePollMs. */
  idlePollMs?: number;
  /**
   * Time one frame in N (default: about 10 000 samples per second per pair
   * at the offered rate, 1 in 1024 unpaced). Stamping reads a clock (20-50 ns),
   * so the other frames carry no timestamp. Frames of the first 0.2 s (a
   * fifth of a shorter run) are not timed: threads start and code warms up.
   */
  latencyEvery?: number;
  /** Called about every `tickMs` (default 500) with the figures so far. */
  onTick?: (tick: LoadTick) => void;
  tickMs?: number;
  /** Aborting stops the offered stream early; runLoad resolves with what was measured until then. */
  signal?: AbortSignal;
}

/** Live figures of a load test. */
export interface LoadTick extends PumpTick {
  /** Share of the run done, 0..1. */
  done: number;
}

/** What a load test measured. */
export interface LoadResult {
  pairs: number;
  ring: 'split' | 'packed';
  /** The size mix and its mean frame size in bytes. */
  sizes: SizeWeight[];
  meanFrameSize: number;
  /** Offered rate over all pairs (0: unpaced). */
  offeredPps: number;
  /** Frames whose turn came, frames put on a ring, frames delivered to the receiver. */
  offered: number;
  sent: number;
  received: number;
  /** Frames not sent because the tx ring was full when they were due (the generator's drops). */
  skipped: number;
  /** Frames dropped and counted on the way (device drop counters). */
  drops: number;
  /** Sent, neither received nor counted as a drop: 0 unless something is broken. */
  lost: number;
  /** Frames out of order, duplicated, or of the wrong length. */
  sequenceErrors: number;
  /** First frame sent to last frame received. */
  seconds: number;
  /** Delivered frames per second and payload Gbit/s. */
  achievedPps: number;
  gbps: number;
  /** Latency of the timed frames, microseconds. */
  latency: LatencyPercentiles;
  latencyEvery: number;
  /** The queue-thread mapping the stream ran on (the pump's 'auto' resolved). */
  threads: PumpResult['threads'];
  busyThreads: number;
  cores: number;
  node: string;
}

/**
 * Run a load test between two virtio-net NICs on a direct link: each queue
 * pair's guest thread offers frames of a size mix at a paced rate (or as
 * fast as the rings take them) for a time, receives them on the other NIC,
 * checks order and length, and times one frame in N (commit on the sender
 * to the receive callback, one thread's clock) into an HDR histogram.
 * Pacing reads the clock once per pass over the ring, never per frame; a
 * frame that is due while every tx buffer is in flight is skipped and
 * counted, as a hardware traffic generator would.
 */
export async function runLoad(options: LoadOptions = {}): Promise<LoadResult> {
  const pairs = options.pairs ?? 1;
  const mix = typeof options.sizes === 'string' ? parseSizeMix(options.sizes) : [...(options.sizes ?? [{ size: 64, weight: 1 }])];
  const seconds = options.seconds ?? 5;
  const ratePps = options.ratePps ?? 0;
  if (!(seconds > 0 && Number.isFinite(seconds))) throw new InvalidArgumentError(`seconds ${seconds} must be a positive number`);
  if (!(ratePps >= 0 && Number.isFinite(ratePps))) throw new InvalidArgumentError(`rate ${ratePps} must be a non-negative number of frames per second`);
  const perPair = ratePps / pairs;
  const latencyEvery = options.latencyEvery ?? (ratePps > 0 ? Math.max(1, Math.round(perPair / 10_000)) : 1024);
  const onTick = options.onTick;
  const r = await runPump({
    frames: 0,
    guestSeconds: seconds,
    // The main thread's cut-off only matters if a guest stalls: a generous margin.
    seconds: seconds + 10,
    sizes: sizeSchedule(mix),
    pairs,
    ring: options.ring,
    queueSize: options.queueSize,
    spinUs: options.spinUs,
    idlePollMs: options.idlePollMs,
    threads: options.threads,
    ratePps: perPair,
    latencyEvery,
    latencyAfterSeconds: Math.min(0.2, seconds / 5),
    tickMs: options.tickMs,
    signal: options.signal,
    onTick: onTick === undefined ? undefined : (t) => onTick({ ...t, done: Math.min(1, t.seconds / seconds) }),
  });
  return {
    pairs,
    ring: r.ring,
    sizes: mix,
    meanFrameSize: meanFrameSize(mix),
    offeredPps: ratePps,
    offered: r.offered,
    sent: r.sent,
    received: r.received,
    skipped: r.skipped,
    drops: r.drops,
    lost: r.lost,
    sequenceErrors: r.sequenceErrors,
    seconds: r.seconds,
    achievedPps: r.pps,
    gbps: r.gbps,
    latency: r.latency ?? { samples: 0, p50: Number.NaN, p99: Number.NaN, p999: Number.NaN, max: Number.NaN },
    latencyEvery,
    threads: r.threads,
    busyThreads: r.busyThreads,
    cores: r.cores,
    node: r.node,
  };
}
