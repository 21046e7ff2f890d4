import type { NetDriverSpec } from '../net/net-driver.js';

/** Shared counters of a running pump (Float64, written by the guest thread). */
export const PUMP_SENT = 0;
export const PUMP_RECEIVED = 1;
export const PUMP_SEQ_ERRORS = 2;
export const PUMP_DONE = 3;
export const PUMP_STOP = 4;
/** performance.timeOrigin + now() when the guest sent its first frame and received its last. */
export const PUMP_T_FIRST = 5;
export const PUMP_T_LAST = 6;
export const PUMP_COUNTERS = 7;

/** What the pump's guest thread starts from. */
export interface PumpGuestData {
  /** Driver side of the sending NIC and of the receiving NIC. */
  sender: NetDriverSpec;
  receiver: NetDriverSpec;
  /** Frames to send (0: until told to stop). */
  frames: number;
  frameSize: number;
  /** Float64 counters, indexed by PUMP_*; PUMP_STOP set by main asks the guest to finish. */
  counters: SharedArrayBuffer;
  /** Microseconds the guest polls before sleeping. */
  spinUs: number;
}
