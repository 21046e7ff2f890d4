import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { connectNics } from '../backends/link.js';
import { InvalidArgumentError } from '../errors.js';
import { SharedArena } from '../memory/arena.js';
import { VirtioNetDevice } from '../net/net-device.js';
import { newInterruptWord, setupNetDriver } from '../net/net-driver.js';
import { NET_HDR_SIZE, netRxQueue, netTxQueue } from '../spec/net.js';
import type { QueueStats } from '../stats/queue-stats.js';
import { workerFile } from '../transport/worker-file.js';
import { PUMP_COUNTERS, PUMP_DONE, PUMP_RECEIVED, PUMP_SENT, PUMP_SEQ_ERRORS, PUMP_STOP, PUMP_T_FIRST, PUMP_T_LAST, type PumpGuestData } from './pump-protocol.js';

/** Options of the packet pump. */
export interface PumpOptions {
  /** Frames to move (default 10 M); 0 runs until `seconds` pass. */
  frames?: number;
  /** Stop after this many seconds even if frames remain (default: no limit). */
  seconds?: number;
  /** Ethernet frame size in bytes, >= 18 (default 64). */
  frameSize?: number;
  /** Ring size of every queue (default 1024: a 64-byte stream drains 256 entries faster than a sleeping thread wakes). */
  queueSize?: number;
  /** Microseconds every thread polls before sleeping (default 30). */
  spinUs?: number;
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
}

/** What a pump run measured. */
export interface PumpResult {
  frames: number;
  frameSize: number;
  sent: number;
  received: number;
  /** Frames that arrived out of order, duplicated, or with the wrong length. */
  sequenceErrors: number;
  /** Sent but never received: must be 0 unless counted as a drop below. */
  lost: number;
  seconds: number;
  pps: number;
  gbps: number;
  /** Busy threads (guest, tx worker, rx worker) and the cores they shared. */
  busyThreads: number;
  cores: number;
  node: string;
  txQueue: QueueStats;
  rxQueue: QueueStats;
}

/**
 * Move numbered frames from NIC a to NIC b through real queue workers: a
 * guest thread runs both drivers; a's tx worker puts frames on the link; b's
 * rx worker writes them into b's posted buffers. Checks every frame arrives
 * once and in order.
 */
export async function runPump(options: PumpOptions = {}): Promise<PumpResult> {
  const frames = options.frames ?? 10_000_000;
  const frameSize = options.frameSize ?? 64;
  const queueSize = options.queueSize ?? 1024;
  const spinUs = options.spinUs ?? 30;
  if (frameSize < 18 || frameSize > 9000) throw new InvalidArgumentError(`frame size ${frameSize} must be in [18, 9000]`);
  if (frames === 0 && options.seconds === undefined) throw new InvalidArgumentError('frames 0 (unbounded) needs a time limit in seconds');
  // Receive pages (mergeable: one 4 KiB page per slot), tx slots, rings.
  const memSize = queueSize * 4096 + queueSize * (128 + Math.max(frameSize, 1518)) + (2 << 20);
  const arena = new SharedArena(2 * memSize + (4 << 20));
  const a = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize, spinUs, mac: '52:54:00:00:00:0a' });
  const b = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize, spinUs, mac: '52:54:00:00:00:0b' });
  connectNics(arena, a, b);
  const interrupt = newInterruptWord();
  const bufferSize = NET_HDR_SIZE + Math.max(frameSize, 1518);
  const counters = new SharedArrayBuffer(8 * PUMP_COUNTERS);
  const c = new Float64Array(counters);
  let guest: Worker | undefined;
  try {
    const sender = await setupNetDriver(a, { queueSize, bufferSize, interrupt });
    const receiver = await setupNetDriver(b, { queueSize, bufferSize, interrupt });
    const data: PumpGuestData = { sender, receiver, frames, frameSize, counters, spinUs };
    const t0 = performance.now();
    guest = new Worker(workerFile('pump-guest'), { workerData: data });
    const exited = new Promise<void>((resolve, reject) => {
      guest!.once('error', reject);
      guest!.once('exit', () => resolve());
    });
    let last = { t: t0, received: 0 };
    const tickMs = options.tickMs ?? 500;
    const timer = setInterval(() => {
      const t = performance.now();
      const received = c[PUMP_RECEIVED];
      const pps = ((received - last.received) * 1000) / (t - last.t);
      last = { t, received };
      options.onTick?.({ seconds: (t - t0) / 1000, sent: c[PUMP_SENT], received, pps, gbps: (pps * frameSize * 8) / 1e9 });
      if (options.seconds !== undefined && t - t0 >= options.seconds * 1000) c[PUMP_STOP] = 1;
    }, tickMs);
    try {
      await Promise.all([exited, options.during?.({ a, b })]);
    } finally {
      clearInterval(timer);
    }
    if (c[PUMP_DONE] !== 1) throw new InvalidArgumentError('pump guest thread ended before finishing');
    const received = c[PUMP_RECEIVED];
    // Timed by the guest, first send to last receive: thread start-up is not traffic.
    const seconds = (c[PUMP_T_LAST] - c[PUMP_T_FIRST]) / 1000;
    const txQueue = a.queueStats(netTxQueue(0));
    const rxQueue = b.queueStats(netRxQueue(0));
    return {
      frames,
      frameSize,
      sent: c[PUMP_SENT],
      received,
      sequenceErrors: c[PUMP_SEQ_ERRORS],
      lost: c[PUMP_SENT] - received - rxQueue.dropsTooBig - txQueue.dropsTooBig - txQueue.dropsMalformed,
      seconds,
      pps: received / seconds,
      gbps: (received * frameSize * 8) / seconds / 1e9,
      busyThreads: 3,
      cores: availableParallelism(),
      node: process.version,
      txQueue,
      rxQueue,
    };
  } finally {
    await guest?.terminate();
    await Promise.all([a.close(), b.close()]);
  }
}
