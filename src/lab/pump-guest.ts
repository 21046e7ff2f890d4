import { parseMac } from '../net/mac.js';
import { NetDriver } from '../net/net-driver.js';
import { AdaptiveWait } from '../notify/adaptive-wait.js';
import type { NetRxPacket } from '../virtskb/index.js';
import { PUMP_COUNTERS, PUMP_DONE, PUMP_RECEIVED, PUMP_SENT, PUMP_SEQ_ERRORS, PUMP_STOP, PUMP_T_FIRST, PUMP_T_LAST, type PumpGuestData } from './pump-protocol.js';

/** Byte offset of the sequence number in a pump frame (after the Ethernet header). */
const SEQ_AT = 14;
/** Ethertype of pump frames: IEEE 802 local experimental. */
const ETHERTYPE = 0x88b5;
/** Frames per avail-index publication on the sending side. */
const TX_BATCH = 32;

/**
 * The pump's guest loop (runs in a worker): keep the sender's tx ring full of
 * numbered frames, drain the receiver's rx ring, count out-of-sequence frames.
 * Polls while there is work, sleeps on the shared interrupt word when not.
 */
export function runPumpGuest(data: PumpGuestData): void {
  const tx = new NetDriver(data.sender, [data.pair]);
  const rx = new NetDriver(data.receiver, [data.pair]);
  const all = new Float64Array(data.counters);
  const counters = all.subarray(data.pair * PUMP_COUNTERS, (data.pair + 1) * PUMP_COUNTERS);
  const size = data.frameSize;
  let limit = data.frames > 0 ? data.frames : Number.MAX_SAFE_INTEGER;
  const u8 = tx.u8;

  // The guest builds each frame from a template: one copy per frame.
  const template = new Uint8Array(size);
  for (let i = 0; i < size; i++) template[i] = i & 0xff;
  template.set(parseMac(data.receiver.mac), 0);
  template.set(parseMac(data.srcMac), 6);
  template[12] = ETHERTYPE >>> 8;
  template[13] = ETHERTYPE & 0xff;

  let sent = 0;
  let received = 0;
  let seqErrors = 0;
  const onFrame = (p: NetRxPacket): void => {
    // The sequence number lies in the first buffer: every mode's first buffer holds >= 64 bytes.
    const bytes = p.segU8[0];
    const i = p.segIdx[0] + SEQ_AT;
    const seq = (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0;
    if (seq !== received >>> 0 || p.length !== size) seqErrors++;
    received++;
  };
  const { i32, index } = rx.interruptWord;
  const wait = new AdaptiveWait(i32, index, data.spinUs);
  const step = (): number => {
    let moved = 0;
    while (sent < limit) {
      const at = tx.reserveTx();
      if (at < 0) break;
      u8.set(template, at);
      const s = sent >>> 0;
      u8[at + SEQ_AT] = s;
      u8[at + SEQ_AT + 1] = s >>> 8;
      u8[at + SEQ_AT + 2] = s >>> 16;
      u8[at + SEQ_AT + 3] = s >>> 24;
      tx.commitTx(size);
      sent++;
      moved++;
      if (moved % TX_BATCH === 0) tx.flushTx();
    }
    tx.flushTx();
    moved += tx.reclaimTx();
    moved += rx.receive(onFrame);
    counters[PUMP_SENT] = sent;
    counters[PUMP_RECEIVED] = received;
    counters[PUMP_SEQ_ERRORS] = seqErrors;
    return moved;
  };

  const now = (): number => performance.timeOrigin + performance.now();
  rx.fillRx();
  counters[PUMP_T_FIRST] = now();
  while (received < limit) {
    // Asked to stop: send no more, but drain what is in flight so nothing counts as lost.
    if (all[PUMP_STOP] !== 0 && limit > sent) limit = sent;
    if (step() !== 0 || wait.spin(step) !== 0) continue;
    const seen = wait.snapshot();
    const ready = tx.enableInterrupts() || rx.enableInterrupts();
    if (!ready) wait.sleep(seen, 100);
    tx.disableInterrupts();
    rx.disableInterrupts();
  }
  counters[PUMP_T_LAST] = now();
  counters[PUMP_DONE] = 1;
}
