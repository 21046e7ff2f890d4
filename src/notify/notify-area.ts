import { InvalidArgumentError } from '../errors.js';
import { wakeEventfd } from '../os/libc.js';

/** Int32 words per cache line: each notification word gets a line of its own. */
const LINE = 16;

/** Plain-data description of a notify area, to rebuild it in a worker. */
export interface NotifyAreaSpec {
  buffer: SharedArrayBuffer;
  queues: number;
  vectors: number;
}

/**
 * The shared words through which a device's threads signal each other (the
 * "notify area" of vDPA / vhost-user accelerators, as Int32 words):
 * - the device status word (workers set DEVICE_NEEDS_RESET in it),
 * - one doorbell per queue (driver kicks; anything that must wake the queue's
 *   worker rings it: a kick, a peer channel, a control request),
 * - one control word per queue (a pending control-plane request),
 * - one interrupt word per vector (device -> driver), shared by the queues
 *   and the config change that the driver routed to that vector.
 * This must be a SharedArrayBuffer: sleepers Atomics.wait on these words.
 */
export class NotifyArea {
  readonly i32: Int32Array;
  readonly queues: number;
  readonly vectors: number;

  static create(queues: number, vectors: number): NotifyArea {
    if (!(queues > 0 && vectors > 0)) throw new InvalidArgumentError(`notify area needs queues > 0 and vectors > 0 (got ${queues}, ${vectors})`);
    const buffer = new SharedArrayBuffer(4 * LINE * (1 + 2 * queues + vectors));
    return new NotifyArea({ buffer, queues, vectors });
  }

  constructor(readonly spec: NotifyAreaSpec) {
    this.i32 = new Int32Array(spec.buffer);
    this.queues = spec.queues;
    this.vectors = spec.vectors;
  }

  /** Index of the device status word. */
  readonly statusWord = 0;

  doorbellWord(queue: number): number {
    return LINE * (1 + queue);
  }

  controlWord(queue: number): number {
    return LINE * (1 + this.queues + queue);
  }

  vectorWord(vector: number): number {
    return LINE * (1 + 2 * this.queues + vector);
  }
}

/** A reference to one shared word: enough to wake whoever sleeps on it. */
export interface WordRef {
  buffer: SharedArrayBuffer;
  index: number;
}

/**
 * Bit 0 of a wake word: its sleeper waits in poll() rather than on the word
 * (a vhost-user ring thread, which waits on its kick eventfd too), so a ring
 * must also signal the eventfd whose number the sleeper keeps in the next
 * word. ring() adds 2, so the count never carries into this bit.
 */
export const POLL_SLEEPER = 1;
export const RING_STEP = 2;

/** Index of the word holding a poll sleeper's wake eventfd, next to its wake word (same cache line). */
export const pollWakeFdWord = (wake: number): number => wake + 1;

/**
 * Ring a word: bump it and wake one sleeper. The bump is what a sleeper that
 * has not yet gone to sleep sees (Atomics.wait returns "not-equal"), so no
 * wake-up is lost between a sleeper's last check and its wait. A sleeper in
 * poll() (POLL_SLEEPER set before its last look, seen here in the value the
 * bump returns) gets its eventfd signalled as well: one hop either way.
 */
export function ring(i32: Int32Array, index: number): void {
  const old = Atomics.add(i32, index, RING_STEP);
  Atomics.notify(i32, index);
  if ((old & POLL_SLEEPER) !== 0) {
    const fd = Atomics.load(i32, pollWakeFdWord(index));
    if (fd > 0) wakeEventfd(fd);
  }
}

/**
 * Wait without blocking the thread (Atomics.waitAsync, ~250 ns a call: for
 * the main thread and control paths, not per packet) until the word moves
 * from `seen`; resolves true when it did, false on timeout.
 */
export async function waitAsync(i32: Int32Array, index: number, seen: number, timeoutMs: number): Promise<boolean> {
  const r = Atomics.waitAsync(i32, index, seen, timeoutMs);
  const outcome = r.async ? await r.value : r.value;
  return outcome !== 'timed-out';
}
