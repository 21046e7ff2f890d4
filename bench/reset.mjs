// Device reset under load, with queue threads kept across resets: NIC a
// (on a direct link to NIC b) is reset while frames are in flight on both
// of its queues, then brought up again by a fresh driver (reset, features,
// queues, DRIVER_OK) and a frame is moved a -> b. Printed per queue-thread
// mapping: reset() (until status reads 0) and bring-up to the first frame
// received, p50 / p99 in microseconds; next to the baseline measured in the
// same run: a new NIC pair in its place (close both, new devices, bring-up,
// first frame), the cost of starting queue threads, which every reset paid
// when a reset ended a device's queue threads and DRIVER_OK started new ones.
//
//   npm run bench:reset [-- --resets 200 --mappings per-queue,per-device]
import { availableParallelism } from 'node:os';
import { NetDriver, SharedArena, VirtioNetDevice, connectNics, newInterruptWord, probePlacement, setupNetDriver } from '../dist/index.js';
import { benchArgs, fmtUs, machineLine, mdTable, writeResults } from './lib.mjs';

const values = benchArgs(import.meta.url, { resets: { type: 'string', default: '200' }, mappings: { type: 'string', default: 'per-queue,per-device' } });
const resets = Number(values.resets);
const mappings = values.mappings.split(',');

const frame = new Uint8Array(64);
frame.set([0x52, 0x54, 0, 0, 0, 0x0b, 0x52, 0x54, 0, 0, 0, 0x0a, 0x88, 0xb5]);

const pct = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const nowUs = () => Number(process.hrtime.bigint()) / 1000;

async function up(device, interrupt) {
  const d = new NetDriver(await setupNetDriver(device, { queueSize: 256, interrupt }));
  d.fillRx();
  return d;
}

/** Send one frame a -> b and wait until b has it. */
async function oneFrame(da, db) {
  while (!da.send(frame)) da.reclaimTx();
  da.flushTx();
  for (let got = 0; got === 0; ) {
    got = db.receive(() => {});
    if (got === 0) await db.waitForInterrupt(5);
  }
  da.reclaimTx();
}

/** Frames in flight on both of a's queues when the reset comes. */
function load(da, db) {
  for (let i = 0; i < 64 && da.send(frame); i++);
  da.flushTx();
  for (let i = 0; i < 64 && db.send(frame); i++);
  db.flushTx();
}

async function measure(mapping, replace) {
  const interrupt = newInterruptWord();
  // A new arena per pair: an arena only grows.
  const pair = () => {
    const arena = new SharedArena(24 << 20);
    const nic = (mac) => new VirtioNetDevice(arena.guestMemory(8 << 20), { queueSize: 256, mac, threads: mapping });
    const a = nic('52:54:00:00:00:0a');
    const b = nic('52:54:00:00:00:0b');
    connectNics(arena, a, b);
    return { a, b };
  };
  let { a, b } = pair();
  let da = await up(a, interrupt);
  let db = await up(b, interrupt);
  await oneFrame(da, db);
  const reset = [];
  const bringUp = [];
  for (let k = 0; k < resets; k++) {
    load(da, db);
    const t0 = nowUs();
    if (replace) {
      // The baseline: both NICs go and new ones (new queue threads) take their place.
      await Promise.all([a.close(), b.close()]);
      ({ a, b } = pair());
    } else await a.reset();
    const t1 = nowUs();
    da = await up(a, interrupt);
    if (replace) db = await up(b, interrupt);
    await oneFrame(da, db);
    reset.push(t1 - t0);
    bringUp.push(nowUs() - t1);
    db.receive(() => {});
  }
  await Promise.all([a.close(), b.close()]);
  return { mapping, what: replace ? 'new NIC pair (baseline)' : 'reset, threads kept', resetP50: pct(reset, 0.5), resetP99: pct(reset, 0.99), upP50: pct(bringUp, 0.5), upP99: pct(bringUp, 0.99) };
}

const placement = await probePlacement();
console.log(machineLine(placement));
console.log(`reset: ${resets} resets of NIC a per row, frames in flight on both of its queues; times in us`);
const rows = [];
for (const mapping of mappings) {
  for (const replace of [false, true]) {
    const r = await measure(mapping, replace);
    rows.push(r);
    console.log(`${mapping.padEnd(11)} ${r.what.padEnd(22)} reset p50 ${fmtUs(r.resetP50)} p99 ${fmtUs(r.resetP99)}   bring-up to first frame p50 ${fmtUs(r.upP50)} p99 ${fmtUs(r.upP99)}`);
  }
}
const md = mdTable(['mapping', 'what', 'reset p50 us', 'reset p99 us', 'bring-up p50 us', 'bring-up p99 us'], rows.map((r) => [r.mapping, r.what, fmtUs(r.resetP50), fmtUs(r.resetP99), fmtUs(r.upP50), fmtUs(r.upP99)]));
console.log(['', ...md].join('\n'));
writeResults('reset', { node: process.version, cores: availableParallelism(), placement, resets, rows }, md);
