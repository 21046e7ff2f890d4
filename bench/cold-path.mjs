// cold-path: what a frame costs on a thread that has just woken up. The
// latency case's idle -> first frame is one sleeping hop plus the frame's
// own path; this measures that path without any hop: one thread, the cpu
// case's loopback (one guest whose transmitq feeds its own receiveq, every
// stage with the library's own classes, the direct path), one 64-byte frame
// through all five stages, timed with process.hrtime:
//   after an idle gap   the thread sleeps (Atomics.wait with a timeout) for
//                       --gaps ms, then sends one frame;
//   right after it      the next frame, with no sleep between;
//   cpu alone           the same gap, then 1000 steps of integer arithmetic
//                       (no memory, no library code): how slow the core
//                       itself runs just after a sleep.
// Medians over --samples samples per gap, after 20 000 warm-up frames.
//
//   npm run build && node bench/cold-path.mjs [--gaps 0.1,5,55] [--samples 40] [--ring split|packed]
import { fileURLToPath } from 'node:url';
import { loadLib, loopback } from './cpu.mjs';
import { benchArgs, isMain, median } from './lib.mjs';

const HERE = fileURLToPath(new URL('..', import.meta.url));
const WARM_FRAMES = 20_000;
const usSince = (t) => Number(process.hrtime.bigint() - t) / 1000;

/** Per gap: the median wall time (us) of a frame just after the gap, of the frame after it, and of the arithmetic loop after the same gap. */
export async function coldPath({ gaps = [0.1, 5, 55], samples = 40, ring = 'split' } = {}) {
  const rig = await loopback(await loadLib(HERE), ring, 64, true);
  for (let i = 0; i < WARM_FRAMES; i++) rig.oneFrame();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const sleep = (ms) => Atomics.wait(nap, 0, 0, ms);
  const timeFrame = () => {
    const t = process.hrtime.bigint();
    rig.oneFrame();
    return usSince(t);
  };
  let sink = 0;
  const timeArithmetic = () => {
    const t = process.hrtime.bigint();
    let x = sink;
    for (let k = 0; k < 1000; k++) x = (x + k * k) | 0;
    sink = x;
    return usSince(t);
  };
  const rows = [];
  for (const gapMs of gaps) {
    const cold = [];
    const next = [];
    const cpu = [];
    for (let i = 0; i < samples; i++) {
      sleep(gapMs);
      cold.push(timeFrame());
      next.push(timeFrame());
      sleep(gapMs);
      cpu.push(timeArithmetic());
    }
    rows.push({ gapMs, samples, coldUs: median(cold), nextUs: median(next), arithmeticUs: median(cpu) });
  }
  return { ring, rows };
}

if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, { gaps: { type: 'string', default: '0.1,5,55' }, samples: { type: 'string', default: '40' }, ring: { type: 'string', default: 'split' } });
  const r = await coldPath({ gaps: values.gaps.split(',').map(Number), samples: Math.max(1, Number(values.samples)), ring: values.ring });
  console.log(`node ${process.version}; cold-path: one 64-byte frame through all five stages in one thread (${r.ring} rings, direct path), wall us, medians`);
  for (const x of r.rows) {
    console.log(`  after ${String(x.gapMs).padStart(5)} ms asleep: frame ${x.coldUs.toFixed(1)} us, the next frame ${x.nextUs.toFixed(1)} us; 1000 arithmetic steps after the same sleep ${x.arithmeticUs.toFixed(1)} us  (${x.samples} samples)`);
  }
}
