import { CopySite } from '../memory/copy.js';
import { NET_HDR_SIZE } from '../spec/net.js';
import { recordNetHdr } from '../net/net-port.js';
import type { PortChannelProducer } from '../port/port-channel.js';
import { SteeredOutput } from '../port/steered-output.js';
import type { WireCapture } from './capture.js';
import { Impairment } from './impairment.js';
import type { SwitchCaptures } from './switch-captures.js';
import { P_DROPS_LOSS, P_QUEUED, P_TX_BYTES, P_TX_FRAMES, portField } from './switch-stats.js';
import type { BackendWorkerData } from './switch-worker-data.js';

/** Frames released from one impairment queue per pass: one publish each. */
export const EGRESS_BATCH = 32;
/** Outcomes of offering a frame to a port's egress. */
export const SENT = 0;
export const LOST = 1;
export const FULL = 2;

/**
 * The way out of the switch by one port: its steered receive channels, its
 * impairment (loss, and the delay / rate queue), its captures and its
 * transmit counters. Nothing is allocated per frame.
 */
export class Egress {
  readonly out: SteeredOutput;
  readonly imp: Impairment | null;
  /** f64 index of the port's counters. */
  readonly stat: number;
  /** Committed frames not yet published. */
  dirty = false;
  /** The channel the head of the impairment queue waits on for space, and the frame's length. */
  waitOn: PortChannelProducer | null = null;
  waitLen = 0;
  /** Set by offer() when it returns FULL on a channel (null: the impairment queue is full). */
  fullOn: PortChannelProducer | null = null;
  /** Captures of what this port sends and receives. */
  readonly taps: WireCapture[] = [];
  /** The record copy into this port's channels: most ports take most frames from one source, a pair it keeps. */
  private readonly recordCopy = new CopySite();

  constructor(
    data: BackendWorkerData,
    readonly port: number,
    private readonly f64: Float64Array,
    private readonly captures: SwitchCaptures,
  ) {
    const spec = data.ports[port];
    this.out = new SteeredOutput(spec.output);
    this.imp = spec.impairment === null ? null : new Impairment(spec.impairment);
    this.stat = portField(port, 'rxFrames');
  }

  /** Whether an input paused on this port (on channel p, or on the impairment queue when null) may go on with a frame of len bytes. */
  room(p: PortChannelProducer | null, len: number): boolean {
    return p !== null ? p.room(len) : this.imp!.room(len);
  }

  /**
   * Hand the record at u8[at] to this port: into its channel, or into its
   * impairment queue. SENT, LOST (impairment loss, counted) or FULL
   * (nothing done; `fullOn` names the channel that is full, or null for the
   * impairment queue).
   */
  offer(u8: Uint8Array, at: number, len: number, now: number): number {
    const imp = this.imp;
    if (imp !== null && imp.queued) {
      if (!imp.room(len)) {
        this.fullOn = null;
        return FULL;
      }
      if (imp.lose()) {
        this.f64[this.stat + P_DROPS_LOSS]++;
        return LOST;
      }
      imp.enqueue(u8, at, len, now);
      this.f64[this.stat + P_QUEUED] = imp.queuedFrames;
      return SENT;
    }
    const p = this.out.pick(u8, at, len);
    if (!p.room(len)) {
      this.fullOn = p;
      return FULL;
    }
    if (imp !== null && imp.lose()) {
      this.f64[this.stat + P_DROPS_LOSS]++;
      return LOST;
    }
    this.deliver(p, u8, at, len);
    return SENT;
  }

  /** Move the frames the impairment queue owes the port now. */
  release(now: number): number {
    const imp = this.imp!;
    this.waitOn = null;
    let n = 0;
    while (n < EGRESS_BATCH) {
      const at = imp.head(now);
      if (at < 0) break;
      const len = imp.len;
      const p = this.out.pick(imp.buffer, at, len);
      if (!p.room(len)) {
        this.waitOn = p;
        this.waitLen = len;
        break;
      }
      this.deliver(p, imp.buffer, at, len);
      imp.dequeue();
      n++;
    }
    return n;
  }

  /**
   * Publish what was committed since the last call; then the impairment
   * queue's count, so a released frame is counted there until it is in
   * sight in its channel.
   */
  publish(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this.out.publish();
    if (this.imp !== null) this.f64[this.stat + P_QUEUED] = this.imp.queuedFrames;
  }

  /** Copy the record (header and frame, contiguous) into channel p, which has room. */
  private deliver(p: PortChannelProducer, src: Uint8Array, at: number, len: number): void {
    const dst = p.reserve(len);
    this.recordCopy.copy(src, recordNetHdr(at), p.u8, recordNetHdr(dst), NET_HDR_SIZE + len);
    p.commit();
    this.dirty = true;
    this.f64[this.stat + P_TX_FRAMES]++;
    this.f64[this.stat + P_TX_BYTES] += len;
    if (this.taps.length !== 0) this.captures.write(this.taps, p.u8, dst, len);
  }
}
