// NIC b's guest side for the latency case (bench/latency.mjs), in one of two
// places: a worker of its own that sleeps on its interrupt word
// (runLatencyGuest), or, with --threads guest, a task on the queue thread
// that serves both NICs (this module's default export, loaded through
// QueueThreadPoolOptions.taskModule): a frame then goes from a's kick to b's
// receive callback with one thread waking, not two.
//
// Modes, set by the main thread in the control words: idle (stamp each
// frame as it arrives, then count it), echo (send every frame back to a),
// stop.
import { NetDriver } from '../dist/index.js';

// Control words shared by the main thread and b's guest (Int32).
export const C_MODE = 0; // MODE_*
export const C_RECEIVED = 1; // frames received in idle mode
export const C_READY = 2; // b's guest has posted its receive buffers
export const C_ECHOED = 3; // frames echoed back (ping-pong)
export const C_WORDS = 16;
export const MODE_IDLE = 0;
export const MODE_ECHO = 1;
export const MODE_STOP = 2;

export const MAC_A = '52:54:00:00:00:0a';
export const MAC_B = '52:54:00:00:00:0b';
export const FRAME = 64;

export const mac = (s) => Uint8Array.from(s.split(':').map((h) => parseInt(h, 16)));
export const hrNs = () => Number(process.hrtime.bigint());

/** b's guest: its driver (receive buffers posted) and one pass in the mode the control words say; pass() returns frames moved. */
function latencyGuest({ spec, ctl, stamps }) {
  const c = new Int32Array(ctl);
  const t = new Float64Array(stamps);
  const drv = new NetDriver(spec);
  const u8 = drv.u8;
  const macA = mac(MAC_A);
  const macB = mac(MAC_B);
  let received = 0;
  let echoed = 0;
  // Idle test: stamp first, then count.
  const onIdle = (p) => {
    const now = hrNs();
    t[received % t.length] = now;
    received++;
    if (p.length !== FRAME) throw new Error(`idle frame of ${p.length} bytes`);
  };
  // Ping-pong: copy the frame into a tx slot, swap the MACs, send it back.
  const onEcho = (p) => {
    const at = drv.reserveTx();
    if (at < 0) throw new Error('echo: no tx buffer free');
    p.copyTo(u8, at);
    u8.set(macA, at);
    u8.set(macB, at + 6);
    drv.commitTx(p.length);
    drv.flushTx();
    echoed++;
  };
  drv.fillRx();
  Atomics.store(c, C_READY, 1);
  Atomics.notify(c, C_READY);
  return {
    drv,
    mode: () => Atomics.load(c, C_MODE),
    pass() {
      if (Atomics.load(c, C_MODE) === MODE_ECHO) {
        const n = drv.receive(onEcho);
        if (n !== 0) Atomics.store(c, C_ECHOED, echoed);
        return n + drv.reclaimTx();
      }
      const n = drv.receive(onIdle);
      if (n !== 0) {
        Atomics.store(c, C_RECEIVED, received);
        Atomics.notify(c, C_RECEIVED);
      }
      return n + drv.reclaimTx();
    },
    report: () => ({ received, echoed }),
  };
}

/** b's guest in a worker of its own: busy in echo mode; in idle mode it sleeps on its interrupt word between frames. */
export function runLatencyGuest(data) {
  const g = latencyGuest(data);
  const { i32, index } = g.drv.interruptWord;
  for (;;) {
    const mode = g.mode();
    if (mode === MODE_STOP) break;
    if (g.pass() !== 0 || mode === MODE_ECHO) continue;
    // The re-check rule (src/lab/pump/pump-guest.ts): snapshot the word, re-enable interrupts, look again, sleep on the snapshot.
    const seen = Atomics.load(i32, index);
    const ready = g.drv.enableInterrupts();
    if (!ready && g.mode() === MODE_IDLE) Atomics.wait(i32, index, seen);
    g.drv.disableInterrupts();
  }
}

/**
 * b's guest as a task of the queue thread (a TaskFactory for
 * QueueThreadPoolOptions.taskModule): polled in the thread's rounds, with
 * interrupts off; the thread sleeps on its own wake word, which a's kick rings.
 */
export default function latencyGuestTask(data) {
  const g = latencyGuest(data);
  g.drv.disableInterrupts();
  return {
    poll: () => g.pass(),
    get finished() {
      return g.mode() === MODE_STOP;
    },
    // Nothing of its own to wake for: the thread sleeps until a kick or the main thread rings it.
    sleepMs: () => 1000,
    report: () => g.report(),
  };
}
