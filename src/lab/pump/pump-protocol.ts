import type { NetDriverSpec } from '../../net/net-driver.js';

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
/** Frames a paced stream could not send when they were due (its tx ring was full): the generator's own drops. */
export const PUMP_SKIPPED = 7;
export const PUMP_COUNTERS = 8;

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
  /** Frame sizes cycled by sequence number (frame n has sizes[n % length]); one entry for a fixed size. */
  sizes: number[];
  /** Frames per second this stream offers (0: as fast as the rings take them). */
  ratePps: number;
  /** Milliseconds after the first frame when this stream stops offering frames (0: no limit; the main thread's stop word still works). */
  durationMs: number;
  /** Timed frames sent in the first this many milliseconds are not recorded (warm-up: JIT, caches, thread start-up). */
  latencyAfterMs: number;
  /** Stamp every Nth frame with the send time and record its latency on arrival (0: none). */
  latencyEvery: number;
  /** TSO frames (IPv4 / TCP with a virtio_net_hdr asking for TCPV4 segmentation) instead of plain ones. */
  gso: boolean;
  /** Send one frame from the receiver first so a learning switch between the NICs knows its port. */
  learn: boolean;
  /**
   * Where in the sender's guest memory the frame templates go: `bytes` per
   * stream from `gpa` (stream p's at gpa + p * bytes), each distinct size's
   * template on 64 bytes.
   */
  templates: { gpa: number; bytes: number };
  /** Float64 counters, PUMP_COUNTERS per stream, indexed by pair * PUMP_COUNTERS + PUMP_*. */
  counters: SharedArrayBuffer;
  /** Microseconds the guest polls before sleeping. */
  spinUs: number;
}

/** What a pump guest posts to its parent before it ends. */
export interface PumpGuestReport {
  /** Latency samples (ns) as an HDR histogram in compressed base64, when latencyEvery > 0. */
  latency: string | undefined;
  /** The guest thread's V8 heap (bytes used) before its first frame and after its last (after a GC when gc() is exposed). */
  heapBefore: number;
  heapAfter: number;
}
