/**
 * Accounting of one numbered frame flow for the soak: frames keep their order
 * on every path here (channels, switch, impairments never reorder), so a
 * receiver needs only the next sequence number it expects. A jump is a gap
 * (frames missing); a step back is a duplicate or a reordering. A gap is
 * explained when a fault window covers it: the sequence numbers that were in
 * flight while a NIC of the flow was killed or reset. Memory is O(faults),
 * not O(frames).
 */

/** A run of sequence numbers [lo, hi] in flight during a fault. */
interface Window {
  lo: number;
  hi: number;
}

/** Figures of one flow. */
export interface FlowFigures {
  name: string;
  sent: number;
  received: number;
  /** Sent and never received. */
  missing: number;
  /** Missing frames inside a fault window (in flight at a worker kill or device reset). */
  lostInFault: number;
  /** Missing frames no fault window covers: the switch's drop counters must account for them. */
  missingOutsideFaults: number;
  /** Frames that arrived twice or out of order (never expected). */
  duplicatesOrReordered: number;
  /** Fault windows recorded. */
  faults: number;
}

/** One sender -> receiver flow of numbered frames. */
export class FlowAccount {
  sent = 0;
  received = 0;
  private next = 0;
  private missing = 0;
  private lostInFault = 0;
  private backwards = 0;
  private readonly windows: Window[] = [];
  /** Open fault: its lower bound, until closeFault(). */
  private openLo = -1;

  constructor(readonly name: string) {}

  /** A frame with sequence number `seq` arrived. */
  onReceive(seq: number): void {
    this.received++;
    if (seq < this.next) {
      this.backwards++;
      return;
    }
    if (seq > this.next) this.gap(this.next, seq - 1);
    this.next = seq + 1;
  }

  /** A fault that may lose this flow's frames in flight starts now. */
  openFault(): void {
    if (this.openLo < 0) this.openLo = this.next;
  }

  /** The fault is over (the NIC runs again): every frame sent so far was in its window. */
  closeFault(): void {
    if (this.openLo < 0) return;
    this.windows.push({ lo: this.openLo, hi: this.sent - 1 });
    this.openLo = -1;
  }

  /** Figures now; with `final`, frames not yet received count as missing (call it after draining). */
  figures(final = false): FlowFigures {
    let missing = this.missing;
    let lost = this.lostInFault;
    if (final && this.next < this.sent) {
      const n = this.sent - this.next;
      missing += n;
      lost += this.covered(this.next, this.sent - 1);
    }
    return {
      name: this.name,
      sent: this.sent,
      received: this.received,
      missing,
      lostInFault: lost,
      missingOutsideFaults: missing - lost,
      duplicatesOrReordered: this.backwards,
      faults: this.windows.length,
    };
  }

  private gap(lo: number, hi: number): void {
    this.missing += hi - lo + 1;
    this.lostInFault += this.covered(lo, hi);
  }

  /** How many of [lo, hi] lie in some fault window (windows may overlap). */
  private covered(lo: number, hi: number): number {
    let n = 0;
    let at = lo;
    // A fault still open covers everything from its start.
    const windows = this.openLo < 0 ? this.windows : [...this.windows, { lo: this.openLo, hi: Number.POSITIVE_INFINITY }];
    while (at <= hi) {
      let reach = -1;
      let nextLo = Number.POSITIVE_INFINITY;
      for (const w of windows) {
        if (w.lo <= at && w.hi >= at) reach = Math.max(reach, w.hi);
        else if (w.lo > at) nextLo = Math.min(nextLo, w.lo);
      }
      if (reach >= at) {
        const end = Math.min(reach, hi);
        n += end - at + 1;
        at = end + 1;
      } else at = nextLo;
    }
    return n;
  }
}
