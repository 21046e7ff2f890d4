import { VQ_ERROR_CODES, type VirtqueueErrorCode } from '../errors.js';

/**
 * Per-queue counters in shared memory. The queue's worker is the only writer
 * and adds once per batch, before it publishes the batch: a thread that has
 * seen a batch's effect (an Atomics load of the index) sees it counted.
 * Float64 so counters never wrap; aligned 8-byte stores do not tear on the
 * 64-bit hosts Node runs on.
 */
export const QUEUE_COUNTERS = [
  'chains',
  'bytes',
  'interrupts',
  'sleeps',
  'dropsTooBig',
  'dropsMalformed',
  'errors',
] as const;
export type QueueCounter = (typeof QUEUE_COUNTERS)[number];

const FIELDS = QUEUE_COUNTERS.length + VQ_ERROR_CODES.length;

/** Index of a counter in a queue's slot. */
export const counter = (name: QueueCounter): number => QUEUE_COUNTERS.indexOf(name);
const errorField = (code: VirtqueueErrorCode): number => QUEUE_COUNTERS.length + VQ_ERROR_CODES.indexOf(code);

export const C_CHAINS = counter('chains');
export const C_BYTES = counter('bytes');
export const C_INTERRUPTS = counter('interrupts');
export const C_SLEEPS = counter('sleeps');
export const C_DROPS_TOO_BIG = counter('dropsTooBig');
export const C_DROPS_MALFORMED = counter('dropsMalformed');
export const C_ERRORS = counter('errors');

/** A snapshot of one queue's counters. */
export type QueueStats = Record<QueueCounter, number> & { errorsByCode: Partial<Record<VirtqueueErrorCode, number>> };

/** Counters of every queue of one device, in one SharedArrayBuffer. */
export class StatsBlock {
  readonly f64: Float64Array;

  static create(queues: number): StatsBlock {
    return new StatsBlock(new SharedArrayBuffer(8 * FIELDS * queues));
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.f64 = new Float64Array(buffer);
  }

  /** Index of queue `q`'s first counter: add counter(...) to it. */
  base(q: number): number {
    return q * FIELDS;
  }

  countError(q: number, code: VirtqueueErrorCode): void {
    this.f64[this.base(q) + C_ERRORS]++;
    this.f64[this.base(q) + errorField(code)]++;
  }

  snapshot(q: number): QueueStats {
    const b = this.base(q);
    const out = { errorsByCode: {} } as QueueStats;
    QUEUE_COUNTERS.forEach((name, i) => (out[name] = this.f64[b + i]));
    for (const code of VQ_ERROR_CODES) {
      const n = this.f64[b + errorField(code)];
      if (n !== 0) out.errorsByCode[code] = n;
    }
    return out;
  }

  clear(q: number): void {
    this.f64.fill(0, this.base(q), this.base(q) + FIELDS);
  }
}
