import type { HostileDeviceKind, RingFormat } from './hostile-target.js';
import type { HostileSession } from './session.js';

/** The named error a lie must produce. */
export interface ExpectedError {
  /** An error code: a VirtqueueError code, INVALID_QUEUE_STATE, or a control-plane code (INVALID_DEVICE_STATUS, FEATURES_REFUSED, INVALID_ARGUMENT). */
  code: string;
  /** The offending value the error must carry (VirtqueueError.value). */
  value?: number;
  /** The queue that must report it through 'queue-error'; absent: a control-plane error (HostileSession.controlErrors). */
  queue?: number;
}

/** A counter a lie must move: `delta()` is its change since the case began. */
export interface ExpectedCounter {
  name: string;
  delta(): number;
  /** Smallest acceptable change (default 1). */
  min?: number;
  /** Largest acceptable change (default unbounded; 0 for "must not move"). */
  max?: number;
}

/** What a case says the device must do about its lie. */
export interface HostileExpectation {
  error?: ExpectedError;
  /** DEVICE_NEEDS_RESET must be set afterwards (2.1.2: only for errors the device cannot recover from). */
  needsReset: boolean;
  counters?: ExpectedCounter[];
  /** Queues the lie put out of service: the traffic probe leaves them out (default: the error's queue). */
  broken?: number[];
}

/** A HostileExpectation as plain data: each counter by name and bounds (its `delta()` stays behind). */
export interface ExpectationRecord {
  error?: ExpectedError;
  needsReset: boolean;
  /** `max` absent: unbounded. */
  counters?: { name: string; min: number; max?: number }[];
  broken?: number[];
}

/**
 * What `e` asked of the device, as plain data that crosses threads (structured
 * clone) and JSON unchanged: a fuzz pool thread's report carries this.
 */
export function recordExpectation(e: HostileExpectation): ExpectationRecord {
  const r: ExpectationRecord = { needsReset: e.needsReset };
  if (e.error !== undefined) {
    const { code, value, queue } = e.error;
    r.error = { code, ...(value === undefined ? {} : { value }), ...(queue === undefined ? {} : { queue }) };
  }
  if (e.counters !== undefined) r.counters = e.counters.map((c) => ({ name: c.name, min: c.min ?? 1, ...(c.max === undefined ? {} : { max: c.max }) }));
  if (e.broken !== undefined) r.broken = [...e.broken];
  return r;
}

/** Families of lies, one module each under src/hostile/cases. */
export type HostileFamily = 'ring' | 'net' | 'vsock' | 'control';

/**
 * One named way a driver lies. `run` performs the lie on a session (bringing
 * the device up itself, so control-plane lies can break bring-up) and
 * returns what the device must do; `variant` (any u32) picks the concrete
 * values, so a property test can search and shrink over it.
 */
export interface HostileCase {
  readonly name: string;
  readonly family: HostileFamily;
  /** The spec section whose rule the lie breaks. */
  readonly spec: string;
  applies(kind: HostileDeviceKind, ring: RingFormat): boolean;
  run(session: HostileSession, variant: number): Promise<HostileExpectation>;
}

/** A case that applies to every device kind and ring format. */
export const always = (): boolean => true;
/** A case for one ring format only. */
export const onRing =
  (format: RingFormat) =>
  (_kind: HostileDeviceKind, ring: RingFormat): boolean =>
    ring === format;
/** A case for one device kind only. */
export const onKind =
  (k: HostileDeviceKind) =>
  (kind: HostileDeviceKind): boolean =>
    kind === k;
