import { VQ_ERROR_CODES, VirtioLabError, type VirtqueueErrorCode } from '../errors.js';

/**
 * Per-queue counters in shared memory. The queue's worker is the only writer
 * and adds once per batch, before it publishes the batch: a thread that has
 * seen a batch's effect (an Atomics load of the index) sees it counted.
 * Float64 so counters never wrap; aligned 8-byte stores do not tear on the
 * 64-bit hosts Node runs on.
 *
 * Every queue has the counters below and one per VirtqueueError code; a
 * device names the rest in its CounterSchema, and this module only lays
 * them out: [common][error codes][the schema's counters][each reason group].
 */
export const QUEUE_COUNTERS = [
  'chains',
  'bytes',
  'interrupts',
  'sleeps',
  /** Looks at the queue while its thread slept (idlePollMs), each after one idle poll interval. */
  'idleLooks',
  /** Items the device cannot carry whole (larger than anything the peer can take). */
  'dropsTooBig',
  /** Items whose structure is broken (too short, lengths that do not add up). */
  'dropsMalformed',
  'errors',
] as const;
export type QueueCounter = (typeof QUEUE_COUNTERS)[number];

/**
 * What a device counts on each of its queues beyond QUEUE_COUNTERS: named
 * counters, and groups of reasons (one counter per reason; a snapshot lists
 * a group as the reasons seen). Plain data: it travels to the queue threads.
 */
export interface CounterSchema {
  readonly counters: readonly string[];
  readonly reasons: { readonly [group: string]: readonly string[] };
}

/** A device without counters of its own. */
export const NO_DEVICE_COUNTERS: CounterSchema = { counters: [], reasons: {} };

/** The snapshot fields a schema adds: a number per counter, a partial map per reason group. */
type DeviceCounts<S extends CounterSchema> = string extends S['counters'][number]
  ? unknown // a schema not known at compile time: only the common fields are typed
  : { [C in S['counters'][number]]: number } & { [G in keyof S['reasons']]: Partial<Record<S['reasons'][G][number], number>> };

/** A snapshot of one queue's counters: the common ones, errors by code, and those of schema `S`. */
export type QueueStats<S extends CounterSchema = CounterSchema> = Record<QueueCounter, number> & {
  errorsByCode: Partial<Record<VirtqueueErrorCode, number>>;
} & DeviceCounts<S>;

const COMMON_FIELDS = QUEUE_COUNTERS.length + VQ_ERROR_CODES.length;

/** Index of a common counter in a queue's slot. */
export const counter = (name: QueueCounter): number => QUEUE_COUNTERS.indexOf(name);
const errorField = (code: VirtqueueErrorCode): number => QUEUE_COUNTERS.length + VQ_ERROR_CODES.indexOf(code);

/** Index of the schema's counter `name` in a queue's slot (computed once, at module load or setup). */
export function deviceCounter<S extends CounterSchema>(schema: S, name: S['counters'][number]): number {
  const i = schema.counters.indexOf(name);
  if (i < 0) throw new VirtioLabError('UNKNOWN_COUNTER', `the counter schema has no counter "${name}"`);
  return COMMON_FIELDS + i;
}

/** Index of the first reason of `group` in a queue's slot: add the reason's index in its group. */
export function reasonBase<S extends CounterSchema>(schema: S, group: keyof S['reasons'] & string): number {
  let at = COMMON_FIELDS + schema.counters.length;
  for (const [name, reasons] of Object.entries(schema.reasons)) {
    if (name === group) return at;
    at += reasons.length;
  }
  throw new VirtioLabError('UNKNOWN_COUNTER', `the counter schema has no reason group "${group}"`);
}

/** Counters in one queue's slot under `schema`. */
function slotFields(schema: CounterSchema): number {
  return Object.values(schema.reasons).reduce((n, r) => n + r.length, COMMON_FIELDS + schema.counters.length);
}

export const C_CHAINS = counter('chains');
export const C_BYTES = counter('bytes');
export const C_INTERRUPTS = counter('interrupts');
export const C_SLEEPS = counter('sleeps');
export const C_IDLE_LOOKS = counter('idleLooks');
export const C_DROPS_TOO_BIG = counter('dropsTooBig');
export const C_DROPS_MALFORMED = counter('dropsMalformed');
export const C_ERRORS = counter('errors');

/** Counters of every queue of one device, in one SharedArrayBuffer, laid out by the device's schema. */
export class StatsBlock {
  readonly f64: Float64Array;
  private readonly fields: number;

  static create(queues: number, schema: CounterSchema): StatsBlock {
    return new StatsBlock(new SharedArrayBuffer(8 * slotFields(schema) * queues), schema);
  }

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly schema: CounterSchema,
  ) {
    this.f64 = new Float64Array(buffer);
    this.fields = slotFields(schema);
  }

  /** Index of queue `q`'s first counter: add counter(...), deviceCounter(...) or a reason's field to it. */
  base(q: number): number {
    return q * this.fields;
  }

  countError(q: number, code: VirtqueueErrorCode): void {
    this.f64[this.base(q) + C_ERRORS]++;
    this.f64[this.base(q) + errorField(code)]++;
  }

  /** Queue `q`'s counters; a caller that knows the schema reads them as QueueStats of it. */
  snapshot(q: number): QueueStats {
    const b = this.base(q);
    const out: Record<string, unknown> = {};
    QUEUE_COUNTERS.forEach((name, i) => (out[name] = this.f64[b + i]));
    const errorsByCode: Partial<Record<VirtqueueErrorCode, number>> = {};
    for (const code of VQ_ERROR_CODES) {
      const n = this.f64[b + errorField(code)];
      if (n !== 0) errorsByCode[code] = n;
    }
    out.errorsByCode = errorsByCode;
    let at = b + COMMON_FIELDS;
    for (const name of this.schema.counters) out[name] = this.f64[at++];
    for (const [group, reasons] of Object.entries(this.schema.reasons)) {
      const seen: Record<string, number> = {};
      for (const reason of reasons) {
        const n = this.f64[at++];
        if (n !== 0) seen[reason] = n;
      }
      out[group] = seen;
    }
    return out as QueueStats;
  }

  clear(q: number): void {
    this.f64.fill(0, this.base(q), this.base(q) + this.fields);
  }
}
