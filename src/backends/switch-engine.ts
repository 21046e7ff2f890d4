import { performance } from 'node:perf_hooks';
import { PortChannelConsumer, type PortChannelProducer } from '../port/port-channel.js';
import { SwitchCaptures } from './switch-captures.js';
import { EGRESS_BATCH, Egress, FULL } from './switch-egress.js';
import { type MacEntry, MacTable } from './switch-mac-table.js';
import { G_MAC_AGED, G_MAC_ENTRIES, G_MAC_MOVES, G_MAC_REFUSED, P_DROPS_BAD, P_DROPS_EGRESS_FULL, P_DROPS_FILTERED, P_FLOODED, P_RX_BYTES, P_RX_FRAMES } from './switch-stats.js';
import type { BackendWorkerData, TapSpec } from './switch-worker-data.js';

/** Frames taken from one input before moving on: one release / publish each. */
const BATCH = EGRESS_BATCH;
const ETH_HLEN = 14;

/**
 * The data path of a learning switch (or of a relay, a switch of two ports
 * that forwards everything to the other side), run by one worker thread.
 *
 * Every port has one input channel per transmit queue of its NIC (fan-in:
 * the engine is the single consumer of all of them) and one output channel
 * per receive queue, chosen by flow hash over the NIC's active queues.
 * Records move as they are, virtio_net_hdr included: the receiving NIC
 * resolves GSO and partial checksums (captures resolve them for the file).
 *
 * Back-pressure: a unicast frame whose port is full (its channel, or its
 * impairment queue) stays at the head of its input channel and that input is
 * paused until the port has room; the other inputs go on. A flood never
 * waits: a full port is skipped and counted under dropsEgressFull.
 *
 * Nothing is allocated per frame: tables are typed arrays, counters live in
 * shared memory, copies are copyWithin within the arena.
 */
export class ForwardingEngine {
  private readonly learning: boolean;
  private readonly inputs: PortChannelConsumer[] = [];
  private readonly inputPort: number[] = [];
  private readonly blocked: boolean[] = [];
  private readonly blockedOn: (PortChannelProducer | null)[] = [];
  private readonly blockedPort: number[] = [];
  private readonly blockedLen: number[] = [];
  private readonly egress: Egress[];
  private readonly queued: Egress[];
  private readonly table: MacTable;
  private readonly ageingMs: number;
  private readonly sweepMs: number;
  private readonly maxFrame: number;
  private readonly captures: SwitchCaptures;
  private nextSweep = 0;
  private rr = 0;

  constructor(
    data: BackendWorkerData,
    private readonly f64: Float64Array,
  ) {
    this.learning = data.mode === 'switch';
    this.maxFrame = data.maxFrame;
    this.ageingMs = data.ageingMs;
    this.sweepMs = Math.min(1000, Math.max(10, data.ageingMs / 4));
    this.table = new MacTable(data.macTableSize);
    this.captures = new SwitchCaptures(f64, data.maxFrame);
    this.egress = data.ports.map((_, p) => new Egress(data, p, f64, this.captures));
    this.queued = this.egress.filter((e) => e.imp?.queued === true);
    data.ports.forEach((spec, p) => {
      for (const ch of spec.inputs) {
        this.inputs.push(new PortChannelConsumer(ch));
        this.inputPort.push(p);
        this.blocked.push(false);
        this.blockedOn.push(null);
        this.blockedPort.push(0);
        this.blockedLen.push(0);
      }
    });
    for (const t of data.taps) this.addTap(t);
  }

  /** Open a capture (see TapSpec). */
  addTap(spec: TapSpec): void {
    this.captures.open(spec, spec.port === null ? null : this.egress[spec.port].taps);
  }

  /**
   * One pass: release what impairment queues owe, take a batch from every
   * input that is not paused (round robin), publish every output touched.
   * Returns how many frames moved (0: idle or every input paused).
   */
  poll(): number {
    const now = performance.now();
    this.captures.clock(now);
    let moved = 0;
    const egress = this.egress;
    for (let q = 0; q < egress.length; q++) egress[q].out.refresh();
    for (let k = 0; k < this.queued.length; k++) moved += this.queued[k].release(now);
    const n = this.inputs.length;
    for (let k = 0; k < n; k++) {
      let i = this.rr + k;
      if (i >= n) i -= n;
      if (this.blocked[i]) {
        if (!egress[this.blockedPort[i]].room(this.blockedOn[i], this.blockedLen[i])) continue;
        this.blocked[i] = false;
      }
      moved += this.drain(i, now);
    }
    this.rr = this.rr + 1 >= n ? 0 : this.rr + 1;
    // Outputs before inputs: a frame is always in sight, in the backlog of
    // the channel it came by or of the one it goes by (or in a delay line).
    for (let q = 0; q < egress.length; q++) egress[q].publish();
    for (let k = 0; k < n; k++) this.inputs[k].release();
    if (this.learning) {
      if (now >= this.nextSweep) this.sweep(now);
      else if (moved !== 0) this.tableStats();
    }
    return moved;
  }

  /**
   * About to sleep: ask every input that is not paused to wake the worker on
   * its next frame, and every full channel something waits on to wake it on
   * space; then look again. True when work is already there.
   */
  arm(): boolean {
    for (let i = 0; i < this.inputs.length; i++) {
      if (!this.blocked[i]) {
        if (this.inputs[i].armData()) return true;
        continue;
      }
      const p = this.blockedOn[i];
      if (p !== null) {
        if (p.armSpace(this.blockedLen[i])) return true;
      } else if (this.egress[this.blockedPort[i]].imp!.room(this.blockedLen[i])) {
        return true;
      }
    }
    for (const e of this.queued) if (e.waitOn !== null && e.waitOn.armSpace(e.waitLen)) return true;
    return false;
  }

  /** When the next timed event is due (a delayed frame, tokens, an ageing sweep); Infinity when none. */
  nextEventMs(now: number): number {
    let t = Infinity;
    for (const e of this.queued) if (e.waitOn === null) t = Math.min(t, e.imp!.nextEventMs(now));
    if (this.learning && this.table.size !== 0) t = Math.min(t, this.nextSweep);
    return t;
  }

  macTable(now: number): MacEntry[] {
    this.sweep(now);
    return this.table.entries(now);
  }

  /** Publish what is committed, flush and close every capture. */
  close(): void {
    for (const e of this.egress) e.out.publish();
    for (const c of this.inputs) c.release();
    this.captures.close();
  }

  private sweep(now: number): void {
    const f64 = this.f64;
    f64[G_MAC_AGED] += this.table.expire(now, this.ageingMs);
    this.nextSweep = now + this.sweepMs;
    this.tableStats();
  }

  private tableStats(): void {
    const f64 = this.f64;
    f64[G_MAC_ENTRIES] = this.table.size;
    f64[G_MAC_MOVES] = this.table.moves;
    f64[G_MAC_REFUSED] = this.table.refused;
  }

  /** Forward up to a batch of frames from input i (released by poll(), after the outputs are published). */
  private drain(i: number, now: number): number {
    const c = this.inputs[i];
    const port = this.inputPort[i];
    const u8 = c.u8;
    const f64 = this.f64;
    const st = this.egress[port].stat;
    const ports = this.egress.length;
    let n = 0;
    // Frames first seen after a load of the producer's index may have been sent
    // after `now` and the receivers' active queue counts were read: read both
    // again after such a load (once per load, not per frame), so a delay line
    // never stamps a frame before it was sent, and a frame sent after a NIC
    // changed its queue count is steered by the new count.
    let loads = c.tailLoads;
    while (n < BATCH) {
      const at = c.peek();
      if (at < 0) break;
      if (c.tailLoads !== loads) {
        loads = c.tailLoads;
        now = performance.now();
        this.captures.clock(now);
        for (let q = 0; q < ports; q++) this.egress[q].out.refresh();
      }
      const len = c.len;
      if (len < ETH_HLEN || len > this.maxFrame || (u8[at + 6] & 1) !== 0) {
        f64[st + P_DROPS_BAD]++;
        c.consume();
        n++;
        continue;
      }
      let flood = true;
      if (!this.learning) {
        // A relay: everything goes to the other end, as unicast (it waits).
        const q = port === 0 ? 1 : 0;
        if (this.egress[q].offer(u8, at, len, now) === FULL) {
          this.pause(i, q, len);
          break;
        }
        flood = false;
      } else {
        this.table.learn(u8, at + 6, port, now);
        if ((u8[at] & 1) === 0) {
          const q = this.table.lookup(u8, at, now, this.ageingMs);
          if (q === port) {
            f64[st + P_DROPS_FILTERED]++;
            c.consume();
            n++;
            continue;
          }
          if (q >= 0) {
            if (this.egress[q].offer(u8, at, len, now) === FULL) {
              this.pause(i, q, len);
              break;
            }
            flood = false;
          }
        }
      }
      if (flood) {
        f64[st + P_FLOODED]++;
        for (let q = 0; q < ports; q++) {
          if (q !== port && this.egress[q].offer(u8, at, len, now) === FULL) f64[this.egress[q].stat + P_DROPS_EGRESS_FULL]++;
        }
      }
      f64[st + P_RX_FRAMES]++;
      f64[st + P_RX_BYTES] += len;
      const captures = this.captures;
      if (captures.all.length !== 0) captures.write(captures.all, u8, at, len);
      if (this.egress[port].taps.length !== 0) captures.write(this.egress[port].taps, u8, at, len);
      c.consume();
      n++;
    }
    return n;
  }

  private pause(i: number, q: number, len: number): void {
    this.blocked[i] = true;
    this.blockedOn[i] = this.egress[q].fullOn;
    this.blockedPort[i] = q;
    this.blockedLen[i] = len;
  }
}
