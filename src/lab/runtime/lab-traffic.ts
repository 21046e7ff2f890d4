import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InvalidArgumentError } from '../../errors.js';
import { parseMac } from '../../net/mac.js';
import type { NetDriver } from '../../net/net-driver.js';
import type { NetPairDriver } from '../../net/net-pair-driver.js';
import type { NetRxPacket } from '../../net/net-rx-packet.js';
import type { Lab } from './lab.js';

/**
 * Numbered test frames between the NICs of a running lab, driven from the
 * calling thread's event loop (the lab's drivers live there). A frame is
 * dst MAC, src MAC, ethertype 0x88b5 (IEEE local experimental), the magic
 * "VL", the flow number (u16) and the sequence number (u32), big-endian,
 * then a byte pattern up to `size`.
 */

/** One stream of frames from one NIC to another. */
export interface TrafficFlow {
  /** Sending NIC. */
  from: string;
  /** Receiving NIC (frames go to its MAC). */
  to: string;
  /** Frames to send. */
  frames: number;
  /** Bytes of each Ethernet frame (no FCS), at least LAB_FRAME_MIN and at most the smaller MTU + 14. */
  size: number;
  /** Frames per second; default as fast as the rings take them. */
  ratePps?: number;
}

/** What one flow did. */
export interface FlowResult {
  from: string;
  to: string;
  frames: number;
  size: number;
  ratePps: number | null;
  /** Frames handed to the sender's driver. */
  sent: number;
  /** Distinct frames of the flow that reached `to`. */
  received: number;
  /** sent - received: dropped on the way (impairments count theirs: see the lab's link and switch stats). */
  lost: number;
  /** Frames that came after a higher sequence number had already arrived. */
  outOfOrder: number;
  /** Frames that arrived more than once. */
  duplicates: number;
}

/** Options of runTraffic(). */
export interface TrafficOptions {
  /** Stop sending after this many seconds (flows report what they sent by then); default no limit. */
  seconds?: number;
  /**
   * After the last frame is sent, how long to wait with nothing arriving
   * before the rest count as lost; default 1000 ms (generous: worker threads
   * on a busy machine can stall for a while) plus the lab's longest
   * impairment delay. Only a run that lost frames waits this long.
   */
  drainMs?: number;
  /** Stops sending, as `seconds` does. */
  signal?: AbortSignal;
}

/** What runTraffic() measured. */
export interface TrafficResult {
  flows: FlowResult[];
  /** From the first frame sent to the last frame received. */
  seconds: number;
  /** Test frames each NIC got that were not for it (floods of unknown unicast before a switch learned the address). */
  stray: Record<string, number>;
}

/** Smallest frame that carries the flow and sequence numbers. */
export const LAB_FRAME_MIN = 22;
export const LAB_ETHERTYPE = 0x88b5;
const MAGIC = 0x564c; // "VL"
/** Frames one flow sends per turn before the others get theirs. */
const BATCH = 64;
/** Default quiet time after which frames still missing count as lost. */
const DRAIN_MS = 1000;
/** A turn that moves at least this many frames is followed by another at once. */
const BUSY_TURN = 32;
/** Longest sleep between turns while nothing moves. */
const IDLE_MS = 5;

/** One flow's frame template and counters. */
interface FlowState {
  spec: TrafficFlow;
  pair: NetPairDriver;
  template: Uint8Array;
  view: DataView;
  sent: number;
  received: number;
  highest: number;
  outOfOrder: number;
  duplicates: number;
  seen: Uint8Array;
  toNic: number;
}

/** Flow `index`'s state: its frame template (addresses, ethertype, magic, flow number) sent on `pair`. */
function newFlowState(lab: Lab, spec: TrafficFlow, index: number, pair: NetPairDriver): FlowState {
  const template = new Uint8Array(spec.size);
  for (let i = LAB_FRAME_MIN; i < spec.size; i++) template[i] = (i * 7 + index) & 0xff;
  template.set(parseMac(lab.mac(spec.to)), 0);
  template.set(parseMac(lab.mac(spec.from)), 6);
  const view = new DataView(template.buffer);
  view.setUint16(12, LAB_ETHERTYPE);
  view.setUint16(14, MAGIC);
  view.setUint16(16, index);
  return { spec, pair, template, view, sent: 0, received: 0, highest: -1, outOfOrder: 0, duplicates: 0, seen: new Uint8Array(Math.ceil(spec.frames / 8)), toNic: lab.nicNames.indexOf(spec.to) };
}

/** The flows of one runTraffic(): a turn of sending, a turn of receiving, the counts. */
class TrafficRun {
  readonly states: FlowState[];
  private readonly drivers: NetDriver[];
  private readonly stray: number[];
  /** The NIC whose packets onPacket() sees now. */
  private rxNic = 0;
  /** When the next paced frame is due (after sendTurn()), Infinity when none is. */
  nextDue = Infinity;
  /** When a frame last arrived. */
  lastReceive: number;

  constructor(
    private readonly lab: Lab,
    flows: readonly TrafficFlow[],
    private readonly t0: number,
  ) {
    this.drivers = lab.nicNames.map((n) => lab.driver(n));
    this.stray = new Array<number>(this.drivers.length).fill(0);
    this.lastReceive = t0;
    const perNic = new Map<string, number>();
    this.states = flows.map((spec, index) => {
      const k = perNic.get(spec.from) ?? 0;
      perNic.set(spec.from, k + 1);
      const driver = lab.driver(spec.from);
      return newFlowState(lab, spec, index, driver.pairs[k % driver.pairs.length]);
    });
  }

  /** Send what each flow may by `now` (at most BATCH each), flush; frames moved. */
  sendTurn(now: number): number {
    let moved = 0;
    this.nextDue = Infinity;
    for (const f of this.states) {
      const rate = f.spec.ratePps;
      const target = rate === undefined ? f.spec.frames : Math.min(f.spec.frames, Math.floor(((now - this.t0) * rate) / 1000) + 1);
      let budget = BATCH;
      while (f.sent < target && budget-- > 0) {
        f.view.setUint32(18, f.sent);
        if (!f.pair.send(f.template)) break;
        f.sent++;
        moved++;
      }
      if (rate !== undefined && f.sent < f.spec.frames) this.nextDue = Math.min(this.nextDue, this.t0 + (f.sent * 1000) / rate);
    }
    for (const f of this.states) f.pair.flushTx();
    return moved;
  }

  /** Reclaim sent buffers and take what arrived, on every NIC; buffers and frames moved. */
  receiveTurn(): number {
    let moved = 0;
    for (let i = 0; i < this.drivers.length; i++) {
      moved += this.drivers[i].reclaimTx();
      this.rxNic = i;
      const got = this.drivers[i].receive(this.onPacket);
      if (got !== 0) this.lastReceive = performance.now();
      moved += got;
    }
    return moved;
  }

  /** Count one received frame against its flow (a bound function: made once, not per frame). */
  private readonly onPacket = (p: NetRxPacket): void => {
    if (p.length < LAB_FRAME_MIN) return;
    // The test header is nearly always in the first segment (read in place); copy the frame out when it is not.
    let u8 = p.segU8[0];
    let at = p.segIdx[0];
    if (p.segLen[0] < LAB_FRAME_MIN) {
      u8 = new Uint8Array(p.length);
      p.copyTo(u8);
      at = 0;
    }
    if (((u8[at + 12] << 8) | u8[at + 13]) !== LAB_ETHERTYPE || ((u8[at + 14] << 8) | u8[at + 15]) !== MAGIC) return;
    const f = this.states[(u8[at + 16] << 8) | u8[at + 17]];
    if (f === undefined) return;
    if (f.toNic !== this.rxNic) {
      this.stray[this.rxNic]++;
      return;
    }
    const seq = ((u8[at + 18] << 24) | (u8[at + 19] << 16) | (u8[at + 20] << 8) | u8[at + 21]) >>> 0;
    if (seq >= f.spec.frames) return;
    const bit = 1 << (seq & 7);
    if ((f.seen[seq >>> 3] & bit) !== 0) {
      f.duplicates++;
      return;
    }
    f.seen[seq >>> 3] |= bit;
    f.received++;
    if (seq < f.highest) f.outOfOrder++;
    else f.highest = seq;
  };

  result(): TrafficResult {
    return {
      flows: this.states.map((f) => ({
        from: f.spec.from,
        to: f.spec.to,
        frames: f.spec.frames,
        size: f.spec.size,
        ratePps: f.spec.ratePps ?? null,
        sent: f.sent,
        received: f.received,
        lost: f.sent - f.received,
        outOfOrder: f.outOfOrder,
        duplicates: f.duplicates,
      })),
      seconds: (this.lastReceive - this.t0) / 1000,
      stray: Object.fromEntries(this.lab.nicNames.map((n, i) => [n, this.stray[i]])),
    };
  }
}

/** Check flows against a lab's NICs: names, sizes within both MTUs, counts and rates. */
export function checkFlows(lab: Lab, flows: readonly TrafficFlow[]): void {
  const nics = new Set(lab.nicNames);
  if (flows.length > 0xffff) throw new InvalidArgumentError(`${flows.length} flows: at most 65535`);
  flows.forEach((f, i) => {
    const at = `flow ${i} (${f.from} -> ${f.to})`;
    for (const end of [f.from, f.to]) if (!nics.has(end)) throw new InvalidArgumentError(`${at}: no NIC named "${end}" in the lab (NICs: ${lab.nicNames.join(', ')})`);
    if (f.from === f.to) throw new InvalidArgumentError(`${at}: a flow needs two different NICs`);
    if (!(Number.isSafeInteger(f.frames) && f.frames >= 1 && f.frames <= 1e9)) throw new InvalidArgumentError(`${at}: frames ${f.frames} must be an integer in [1, 1e9]`);
    const max = Math.min(lab.mtu(f.from), lab.mtu(f.to)) + 14;
    if (!(Number.isInteger(f.size) && f.size >= LAB_FRAME_MIN && f.size <= max)) throw new InvalidArgumentError(`${at}: size ${f.size} must be an integer in [${LAB_FRAME_MIN}, ${max}] (MTU + 14)`);
    if (f.ratePps !== undefined && !(typeof f.ratePps === 'number' && f.ratePps > 0 && Number.isFinite(f.ratePps))) {
      throw new InvalidArgumentError(`${at}: ratePps ${f.ratePps} must be a positive number`);
    }
  });
}

/**
 * Send every flow's frames and count what arrives where, until each flow
 * is complete, or sending stopped (seconds, signal) and nothing arrived for
 * `drainMs`. A flow from a NIC with several queue pairs sends on pair
 * (its number among that NIC's flows) mod pairs, so flows spread over
 * queues while each stays in order. Nothing is allocated per frame.
 */
export async function runTraffic(lab: Lab, flows: readonly TrafficFlow[], options: TrafficOptions = {}): Promise<TrafficResult> {
  checkFlows(lab, flows);
  if (options.seconds !== undefined && !(options.seconds > 0)) throw new InvalidArgumentError(`seconds ${options.seconds} must be positive`);
  if (options.drainMs !== undefined && !(options.drainMs >= 0)) throw new InvalidArgumentError(`drainMs ${options.drainMs} must be >= 0`);
  const drainMs = options.drainMs ?? DRAIN_MS + lab.maxImpairmentDelayMs;
  const t0 = performance.now();
  const run = new TrafficRun(lab, flows, t0);
  const { states } = run;
  let lastProgress = t0;
  let sending = true;
  for (;;) {
    if (lab.status !== 'running') throw new InvalidArgumentError('runTraffic(): the lab was closed while its traffic ran');
    const now = performance.now();
    if (sending && ((options.seconds !== undefined && now - t0 >= options.seconds * 1000) || options.signal?.aborted === true)) sending = false;
    let moved = 0;
    run.nextDue = Infinity;
    if (sending) moved += run.sendTurn(now);
    moved += run.receiveTurn();
    if (states.every((f) => f.sent === f.spec.frames)) sending = false;
    if (!sending && states.every((f) => f.received === f.sent)) break;
    const t = performance.now();
    if (moved !== 0) lastProgress = t;
    if (!sending && t - lastProgress >= drainMs) break;
    // As NAPI does: keep polling while a turn finds plenty to do; after a
    // light turn, re-enable interrupts and sleep until one comes (or the
    // next paced frame is due). A busy-polling main thread would take a core
    // from the queue workers it waits for.
    if (moved < BUSY_TURN) {
      const wait = Math.max(0, Math.min(moved === 0 ? IDLE_MS : 1, run.nextDue - t));
      if (wait > 0) await lab.waitForInterrupt(wait);
    }
    await yieldToLoop();
  }
  return run.result();
}
