import type { NetDriverSpec } from '../net/net-driver.js';

/** Shared counters of one pump stream (Float64, written by its guest thread). */
export const PUMP_SENT = 0;
export const PUMP_RECEIVED = 1;
export const PUMP_SEQ_ERRORS = 2;
export const PUMP_DONE = 3;
/** Set by the main thread (stream 0's block only): every guest finishes what is in flight and stops. */
export const PUMP_STOP = 4;
/** performance.timeOrigin + now() when the guest sent its first frame and received its last. */
export const PUMP_T_FIRST = 5;
export const PUMP_T_LAST = 6;
export const PUMP_COUNTERS = 7;

/** What one pump guest thread starts from: one queue pair of each NIC. */
export interface PumpGuestData {
  /** Driver side of the sending NIC and of the receiving NIC. */
  sender: NetDriverSpec;
  receiver: NetDriverSpec;
  /** The queue pair this thread drives on both NICs. */
  pair: number;
  /** Source MAC of this stream's frames: chosen so the receiver steers them to `pair`. */
  srcMac: string;
  /** Frames to send (0: until told to stop). */
  frames: number;
  frameSize: number;
  /** Float64 counters, PUMP_COUNTERS per stream, indexed by pair * PUMP_COUNTERS + PUMP_*. */
  counters: SharedArrayBuffer;
  /** Microseconds the guest polls before sleeping. */
  spinUs: number;
}
