import { getHeapStatistics } from 'node:v8';
import { NetDriver } from '../../net/net-driver.js';
import { NetHdr } from '../../net/offload/net-hdr.js';
import { AdaptiveWait } from '../../notify/adaptive-wait.js';
import { CopySite } from '../../memory/copy.js';
import { getU32le, putU32le } from '../../memory/le-bytes.js';
import { NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_TCPV4 } from '../../spec/net.js';
import type { NetRxPacket } from '../../net/net-rx-packet.js';
import type { ThreadTask } from '../../worker/queue-thread.js';
import { encodeHistogram, newLatencyHistogram, recordLatencyNs } from './latency-histogram.js';
import { GSO_MSS, GSO_SEQ_AT, PLAIN_SEQ_AT, frameTemplate, templateLayout } from './frames.js';
import {
  PUMP_COUNTERS,
  PUMP_DONE,
  PUMP_RECEIVED,
  PUMP_SENT,
  PUMP_SEQ_ERRORS,
  PUMP_SKIPPED,
  PUMP_STOP,
  PUMP_T_FIRST,
  PUMP_T_LAST,
  type PumpGuestData,
  type PumpGuestReport,
} from './pump-protocol.js';

/** Frames per avail-index publication on the sending side. */
const TX_BATCH = 32;
/** Once every frame is sent, give up on the rest after this many quiet 100 ms sleeps (a frame dropped on the way). */
const QUIET_SLEEPS = 10;
/** Milliseconds a learning frame gets to reach the switch before the stream starts. */
const LEARN_MS = 20;
const TWO_32 = 4294967296;

/**
 * One pump stream's guest side, driven pass by pass: keep the sender's tx
 * ring full of numbered frames (or, paced, send each frame when it is due),
 * drain the receiver's rx ring, count out-of-sequence frames, and time every
 * `latencyEvery`th frame. Nothing in the per-frame path allocates or reads a
 * clock; a paced stream reads the clock once per pass.
 *
 * Two drivers of it: runPumpGuest (a thread of its own that polls while
 * there is work and sleeps on the shared interrupt word when not), and
 * pumpGuestTask (a task of the queue thread that serves the stream's device
 * queues, polled in that thread's rounds).
 */
export interface PumpGuest {
  /** One pass; returns what moved (frames sent, received and reclaimed). */
  step(): number;
  /** Apply the stop word and the time limit; true once every frame offered has arrived (the stream is done). */
  settle(): boolean;
  /** Whether every frame is offered (what is left is draining). */
  readonly draining: boolean;
  /** How long the guest may sleep now: until the next paced frame is due, at most 100 ms. */
  sleepMs(): number;
  /** Ask for interrupts before a sleep; true when work already waits (do not sleep). */
  enableInterrupts(): boolean;
  disableInterrupts(): void;
  /** The word the drivers' interrupts ring. */
  readonly interruptWord: { i32: Int32Array; index: number };
  /** Mark the stream done (shared counters) and return the report. */
  finish(): PumpGuestReport;
}

/** The guest side of a pump stream, set up and started (receive buffers posted, the clock started). */
export function createPumpGuest(data: PumpGuestData): PumpGuest {
  const tx = new NetDriver(data.sender, [data.pair]);
  const rx = new NetDriver(data.receiver, [data.pair]);
  const txp = tx.pair;
  const all = new Float64Array(data.counters);
  const counters = all.subarray(data.pair * PUMP_COUNTERS, (data.pair + 1) * PUMP_COUNTERS);
  let limit = data.frames > 0 ? data.frames : Number.MAX_SAFE_INTEGER;
  const u8 = txp.u8;
  const seqAt = data.gso ? GSO_SEQ_AT : PLAIN_SEQ_AT;

  // One template per distinct size, in the sender's guest memory as a guest's frames are: a frame is
  // one copy inside guest memory (memory.copy where the arena is wasm memory), not one from this heap.
  const tmplGpa = data.templates.gpa + data.pair * data.templates.bytes;
  const tmpl = tx.memory.region(tmplGpa, data.templates.bytes, 'frame templates');
  const { offsets } = templateLayout(data.sizes);
  for (const [size, off] of offsets) tmpl.u8.set(frameTemplate(size, data.receiver.mac, data.srcMac, data.gso), tmpl.bias + tmplGpa + off);
  const templates = Float64Array.from(data.sizes, (size) => tmpl.bias + tmplGpa + offsets.get(size)!);
  const frameCopy = new CopySite();
  const lengths = Uint32Array.from(data.sizes);
  const cycle = lengths.length;
  const hdr = data.gso ? tsoHeader() : undefined;

  const every = data.latencyEvery;
  const histogram = every > 0 ? newLatencyHistogram() : undefined;
  const latencyAfterNs = data.latencyAfterMs * 1e6;
  const paced = data.ratePps > 0;
  const timed = data.durationMs > 0;
  const framesPerMs = data.ratePps / 1000;
  let tBase = 0; // performance.now() when the stream began: pacing and stamps count from it

  let sent = 0;
  let offered = 0; // sent + skipped: frames whose turn has come
  let skipped = 0;
  let received = 0;
  let seqErrors = 0;
  let txSlot = 0;
  let rxSlot = 0;
  const onFrame = (p: NetRxPacket): void => {
    // The sequence number and stamp lie in the first buffer: every mode's first buffer holds >= 1518 bytes.
    const bytes = p.segU8[0];
    const i = p.segIdx[0] + seqAt;
    const seq = getU32le(bytes, i);
    if (seq !== received >>> 0 || p.length !== lengths[rxSlot]) seqErrors++;
    if (histogram !== undefined && seq % every === 0) {
      const sentNs = getU32le(bytes, i + 8) * TWO_32 + getU32le(bytes, i + 4);
      if (sentNs >= latencyAfterNs) recordLatencyNs(histogram, (performance.now() - tBase) * 1e6 - sentNs);
    }
    received++;
    if (++rxSlot === cycle) rxSlot = 0;
  };
  const stamp = (at: number): void => {
    const t = Math.round((performance.now() - tBase) * 1e6);
    putU32le(u8, at + 4, t >>> 0);
    putU32le(u8, at + 8, Math.floor(t / TWO_32));
  };

  const step = (): number => {
    let moved = 0;
    let end = limit;
    if (paced) {
      // Free what the device is done with first: a paced frame that finds no buffer is skipped, not delayed.
      moved += txp.reclaimTx();
      const elapsed = performance.now() - tBase;
      end = Math.min(limit, Math.floor((timed && elapsed > data.durationMs ? data.durationMs : elapsed) * framesPerMs));
    }
    let batch = 0;
    while (offered < end) {
      const at = txp.reserveTx();
      if (at < 0) {
        if (paced) {
          skipped += end - offered;
          offered = end;
        }
        break;
      }
      frameCopy.copy(tmpl.u8, templates[txSlot], u8, at, lengths[txSlot]);
      const s = sent >>> 0;
      const q = at + seqAt;
      putU32le(u8, q, s);
      if (histogram !== undefined && s % every === 0) stamp(q);
      txp.commitTx(lengths[txSlot], hdr);
      if (++txSlot === cycle) txSlot = 0;
      sent++;
      offered++;
      moved++;
      if (++batch === TX_BATCH) {
        txp.flushTx();
        batch = 0;
      }
    }
    txp.flushTx();
    if (!paced) moved += txp.reclaimTx();
    moved += rx.receive(onFrame);
    counters[PUMP_SENT] = sent;
    counters[PUMP_RECEIVED] = received;
    counters[PUMP_SEQ_ERRORS] = seqErrors;
    counters[PUMP_SKIPPED] = skipped;
    return moved;
  };

  /** How long to sleep when idle: until the next paced frame is due, at most 100 ms. */
  const sleepMs = (): number => {
    if (!paced || offered >= limit) return 100;
    const dueIn = (offered + 1) / framesPerMs - (performance.now() - tBase);
    return dueIn < 0 ? 0 : dueIn > 100 ? 100 : dueIn;
  };

  const heapBefore = heapUsed();
  rx.fillRx();
  // The guest polls from its first frame, so it starts with interrupts off
  // (a packed ring's drivers start with them on, 2.8.10): its own thread
  // asks for them before it sleeps, and a queue thread's task never does.
  tx.disableInterrupts();
  rx.disableInterrupts();
  if (data.learn) sendLearningFrame(rx, data.receiver.mac, data.sender.mac);
  tBase = performance.now();
  counters[PUMP_T_FIRST] = performance.timeOrigin + tBase;
  return {
    step,
    settle(): boolean {
      // Asked to stop: offer no more, but drain what is in flight so nothing counts as lost.
      if (all[PUMP_STOP] !== 0 && limit > offered) limit = offered;
      // Time is up: a paced stream still offers what fell due before the end (rate x duration in all), then stops.
      if (timed && limit > offered && performance.now() - tBase >= data.durationMs) limit = paced ? Math.max(offered, Math.floor(data.durationMs * framesPerMs)) : offered;
      return offered >= limit && received >= sent;
    },
    get draining(): boolean {
      return offered >= limit;
    },
    sleepMs,
    enableInterrupts: () => tx.enableInterrupts() || rx.enableInterrupts(),
    disableInterrupts(): void {
      tx.disableInterrupts();
      rx.disableInterrupts();
    },
    interruptWord: rx.interruptWord,
    finish(): PumpGuestReport {
      counters[PUMP_T_LAST] = performance.timeOrigin + performance.now();
      counters[PUMP_DONE] = 1;
      return { latency: histogram === undefined ? undefined : encodeHistogram(histogram), heapBefore, heapAfter: heapUsed() };
    },
  };
}

/** The pump's guest on a thread of its own (a worker): polls while there is work, sleeps on the shared interrupt word when not. */
export function runPumpGuest(data: PumpGuestData): PumpGuestReport {
  const guest = createPumpGuest(data);
  const { i32, index } = guest.interruptWord;
  const wait = new AdaptiveWait(i32, index, data.spinUs);
  let quiet = 0;
  while (!guest.settle()) {
    if (guest.step() !== 0 || wait.spin(guest.step) !== 0) {
      quiet = 0;
      continue;
    }
    const ms = guest.sleepMs();
    if (ms < 0.02) continue; // the next frame is due: a sleep would oversleep it
    const seen = wait.snapshot();
    if (!guest.enableInterrupts() && wait.sleep(seen, ms) && guest.draining && ++quiet >= QUIET_SLEEPS) break;
    guest.disableInterrupts();
  }
  return guest.finish();
}

/**
 * The pump's guest as a task of the queue thread that serves its stream's
 * device queues (the pump's 'guest' mapping): a frame goes from the
 * sender's tx ring through both devices into the receiver's buffers without
 * leaving the thread. The thread polls it with its queues; a drained stream
 * that moves nothing for QUIET_SLEEPS x 100 ms (a frame dropped on the way)
 * ends as the thread-of-its-own guest does.
 */
export function pumpGuestTask(data: PumpGuestData): ThreadTask {
  const guest = createPumpGuest(data);
  let done = false;
  let quietSince = -1;
  return {
    poll(): number {
      if (done || guest.settle()) {
        done = true;
        return 0;
      }
      const moved = guest.step();
      if (moved !== 0 || !guest.draining) quietSince = -1;
      else if (quietSince < 0) quietSince = performance.now();
      else if (performance.now() - quietSince >= QUIET_SLEEPS * 100) done = true;
      return moved;
    },
    get finished(): boolean {
      return done;
    },
    sleepMs: () => guest.sleepMs(),
    report: () => guest.finish(),
  };
}

/** The virtio_net_hdr of a TSO frame (5.1.6.2): TCPV4 segmentation with a partial checksum from the TCP header on. */
function tsoHeader(): NetHdr {
  const h = new NetHdr();
  h.flags = NET_HDR_F_NEEDS_CSUM;
  h.gsoType = NET_HDR_GSO_TCPV4;
  h.hdrLen = GSO_SEQ_AT;
  h.gsoSize = GSO_MSS;
  h.csumStart = 34;
  h.csumOffset = 16;
  return h;
}

/** One frame from the receiver, so that a learning switch between the NICs knows its port before the stream starts. */
function sendLearningFrame(rx: NetDriver, from: string, to: string): void {
  rx.pair.send(frameTemplate(64, to, from, false));
  rx.pair.flushTx();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, LEARN_MS);
}

/** Bytes used by this thread's V8 heap, after a full GC when `--expose-gc` made gc() available. */
function heapUsed(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return getHeapStatistics().used_heap_size;
}
