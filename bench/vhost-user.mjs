// The vhost-user back end under a real front end, and the wake-up it pays:
//  (a) wake-up latency, eventfd vs Atomics: two threads ping-pong, each
//      blocked between hops (Atomics.wait/notify on shared words; or poll()
//      on an eventfd then write() to the other's, through koffi, as the
//      vhost-user I/O thread and queue workers do). Half the round trip is
//      one wake-up; p50/p99 in microseconds from HDR histograms.
//  (b) kick -> first used entry: a front end in this process (the tests'
//      TypeScript front end, bundled on the fly with esbuild) posts one
//      64-byte frame on its tx ring, kicks, and spins on the used index; the
//      ring's thread is asleep (20 ms between samples), so each sample is one
//      wake-up from a kick plus one pop (the front end naps 5 us between
//      looks at the used index, so it does not hold a core). p50/p99 in
//      microseconds.
//  (c) throughput: dpdk-testpmd's virtio-user PMD (a virtio driver in C,
//      one busy forwarding lcore) drives our vhost-user net device, whose
//      transmitted frames loop back to its receive queue; testpmd forwards
//      every frame it receives out again (io mode, 128 frames in flight
//      after "start tx_first 4"). Next to it, in the same run, testpmd's own
//      loop: its vhost PMD (device) <-> virtio-user (driver) in one process.
// Threads: (a) 2 busy-then-blocked; (b) the front end (main thread) and our
// I/O thread and ring threads; (c) testpmd's 2 lcores (one busy) + our I/O
// thread, ring threads and the main thread. The ring threads follow the
// server's mapping (VIRTIO_LAB_THREADS, else 'auto': one for both rings on
// few cores, a thread per ring with a core for each plus two), printed with
// each testpmd row.
// Writes bench/results/vhost-user-<time>.json: per ring (split, packed)
// `ours`, `baseline` (testpmd's own loop) and `ratio`, Mpps medians.
//
//   node bench/vhost-user.mjs [--runs 5] [--trips 2000] [--seconds 2] [--kicks 200]
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { SharedArena, connectLoopback, probePlacement } from '../dist/index.js';
import { serveVhostUserNet } from '../dist/vhost-user.js';
import { dpdkRates } from './dpdk-baseline.mjs';
import { fmtRange, isMain, machineLine, mdTable, median, range, writeResults } from './lib.mjs';
import { Testpmd, testpmdAvailable } from './testpmd.mjs';
import { buildSync } from 'esbuild';

const require = createRequire(import.meta.url);

// One side of the ping-pong; `first` starts it. Records RTT/2 in ns (side A only).
const PINGER = `
const { workerData, parentPort } = require('node:worker_threads');
const { mode, trips, first, words, fds, koffiPath } = workerData;
const w = new Int32Array(words);
const samples = new Float64Array(trips);
let signal, waitFor;
if (mode === 'atomics') {
  const me = first ? 0 : 16, peer = first ? 16 : 0;
  let seen = 0;
  signal = () => { Atomics.add(w, peer, 1); Atomics.notify(w, peer); };
  waitFor = () => { Atomics.wait(w, me, seen); seen = Atomics.load(w, me); };
} else {
  const koffi = require(koffiPath);
  const libc = koffi.load('libc.so.6');
  const poll = libc.func('int poll(void *fds, unsigned long n, int timeout)');
  const read = libc.func('long read(int fd, void *buf, size_t len)');
  const write = libc.func('long write(int fd, const void *buf, size_t len)');
  const me = first ? fds[0] : fds[1], peer = first ? fds[1] : fds[0];
  const pfd = Buffer.alloc(8); pfd.writeInt32LE(me, 0); pfd.writeInt16LE(1, 4);
  const one = new BigUint64Array([1n]), sink = new BigUint64Array(1);
  signal = () => write(peer, one, 8);
  waitFor = () => { pfd.writeInt16LE(0, 6); poll(pfd, 1, -1); read(me, sink, 8); };
}
Atomics.add(w, 32, 1); Atomics.notify(w, 32);
while (Atomics.load(w, 32) < 2) Atomics.wait(w, 32, 1, 10);
for (let i = 0; i < trips; i++) {
  if (first) {
    const t0 = process.hrtime.bigint();
    signal();
    waitFor();
    samples[i] = Number(process.hrtime.bigint() - t0) / 2;
    // Both sides fall asleep before the next trip, so every hop is a wake-up from sleep.
    const until = process.hrtime.bigint() + 200000n; while (process.hrtime.bigint() < until);
  } else {
    waitFor();
    signal();
  }
}
parentPort.postMessage(first ? Array.from(samples) : []);
`;

async function pingPong(mode, trips) {
  const words = new SharedArrayBuffer(64 * 4);
  let fds = [];
  let closeFds = () => {};
  if (mode === 'eventfd') {
    const koffi = require('koffi');
    const libc = koffi.load('libc.so.6');
    const eventfd = libc.func('int eventfd(unsigned int initval, int flags)');
    const close = libc.func('int close(int fd)');
    fds = [eventfd(0, 0o2000000), eventfd(0, 0o2000000)];
    closeFds = () => fds.forEach((f) => close(f));
  }
  const koffiPath = require.resolve('koffi');
  const run = (first) =>
    new Promise((resolve, reject) => {
      const w = new Worker(PINGER, { eval: true, workerData: { mode, trips, first, words, fds, koffiPath } });
      w.once('message', resolve).once('error', reject);
    });
  try {
    const [a] = await Promise.all([run(true), run(false)]);
    const sorted = a.slice(trips / 10).sort((x, y) => x - y); // the first tenth warms up
    const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] / 1000;
    return { p50: at(0.5), p99: at(0.99) };
  } finally {
    closeFds();
  }
}

/** The tests' vhost-user front end (TypeScript), bundled into bench/.build/ and imported. */
async function testFrontEnd() {
  const outdir = new URL('./.build/', import.meta.url);
  mkdirSync(outdir, { recursive: true });
  const outfile = new URL('front-end.mjs', outdir).pathname;
  buildSync({ entryPoints: [new URL('../test/support/vhost-user/front-end.ts', import.meta.url).pathname], bundle: true, platform: 'node', format: 'esm', outfile, packages: 'external', logLevel: 'error' });
  return import(outfile);
}

/**
 * Kick -> first used entry, with the tx ring's thread asleep before every
 * kick: microseconds per sample (`samples` of them, `gapMs` apart).
 */
export async function kickToUsed(samples, gapMs) {
  const { upNet, takeRx, frame, FE_MAC, TX } = await testFrontEnd();
  const dir = mkdtempSync(join(tmpdir(), 'vl-vu-kick-'));
  const sock = join(dir, 'net.sock');
  const server = serveVhostUserNet(sock);
  connectLoopback(new SharedArena(8 << 20), server.device);
  let fe;
  try {
    fe = await upNet(sock, { ringSize: 256 });
    const tx = fe.ring(TX);
    const looped = [];
    const us = [];
    const bytes = frame(FE_MAC, FE_MAC, 1);
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < samples + 10; i++) {
      await sleep(gapMs);
      takeRx(fe, looped); // repost the rx buffers the loopback used
      fe.kick(0);
      await sleep(gapMs);
      tx.takeUsed();
      tx.postTx(bytes);
      const t0 = process.hrtime.bigint();
      fe.kick(TX);
      // A kick not served within 5 s counts as an infinite sample (it shows in p99) and the run goes on.
      // Between looks the front end sleeps a few microseconds instead of spinning: on two
      // shared cores a spinning front end holds the core the ring's thread must wake on.
      const limit = t0 + 5_000_000_000n;
      let t1 = t0;
      while (tx.takeUsed().length === 0 && (t1 = process.hrtime.bigint()) <= limit) Atomics.wait(nap, 0, 0, 0.005);
      const sample = t1 > limit ? Number.POSITIVE_INFINITY : Number(process.hrtime.bigint() - t0) / 1000;
      if (i >= 10) us.push(sample); // the first ten warm up
    }
    us.sort((a, b) => a - b);
    return { p50: us[us.length >> 1], p99: us[Math.min(us.length - 1, Math.floor(us.length * 0.99))] };
  } finally {
    fe?.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rx-pps windows of testpmd's virtio-user looping frames through our vhost-user back end. */
async function throughOurs(ring, seconds, samples, spinUs) {
  const dir = mkdtempSync(join(tmpdir(), 'vl-vu-bench-'));
  const sock = join(dir, 'net.sock');
  const server = serveVhostUserNet(sock, { spinUs, allowUnsealedMemory: true });
  connectLoopback(new SharedArena(8 << 20), server.device);
  let t;
  try {
    t = await Testpmd.start({ vdevs: [`net_virtio_user0,path=${sock},queues=1${ring === 'packed' ? ',packed_vq=1' : ''}`], args: ['--burst=32', '--nb-cores=1', '--total-num-mbufs=16384'] });
    t.say('set fwd io');
    t.say('start tx_first 4');
    await sleep(1000);
    await t.portStats(1);
    const rates = [];
    for (let i = 0; i < samples; i++) {
      await sleep((seconds * 1000) / samples);
      rates.push((await t.portStats(1))[0].rxPps);
    }
    t.say('stop');
    const errors = server.device.netStats().errors;
    // Older builds have one thread per ring and no ringThreads().
    const threads = server.ringThreads?.().mapping ?? 'a thread per ring';
    await t.quit();
    return { rates, errors, threads, summary: server.summary() };
  } finally {
    await t?.kill(5000);
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function vhostUserCases({ runs = 5, trips = 2000, seconds = 2, kicks = 200 } = {}) {
  const wake = {};
  for (const mode of ['atomics', 'eventfd']) {
    const rs = [];
    for (let r = 0; r < runs; r++) rs.push(await pingPong(mode, trips));
    wake[mode] = { p50: range(rs.map((x) => x.p50)), p99: range(rs.map((x) => x.p99)) };
    console.log(`wake-up ${mode.padEnd(8)} p50 ${fmtRange(wake[mode].p50, 1, 1)} us  p99 ${fmtRange(wake[mode].p99, 1, 1)} us  (RTT/2, ${trips} trips x ${runs} runs, 2 threads)`);
  }
  const kick = await kickToUsed(kicks, 20);
  console.log(`kick -> first used entry p50 ${kick.p50.toFixed(1)} us  p99 ${kick.p99.toFixed(1)} us  (tx ring thread asleep, ${kicks} kicks 40 ms apart)`);
  const rings = {};
  if (testpmdAvailable()) {
    for (const ring of ['split', 'packed']) {
      const baseline = await dpdkRates(64, ring, { samples: runs });
      const ours = await throughOurs(ring, seconds, runs, 30);
      // Mpps medians; the ranges are over the sample windows of one run each.
      rings[ring] = {
        ours: median(ours.rates) / 1e6,
        baseline: median(baseline) / 1e6,
        ratio: median(ours.rates) / median(baseline),
        oursRange: range(ours.rates.map((r) => r / 1e6)),
        baselineRange: range(baseline.map((r) => r / 1e6)),
        errors: ours.errors,
        threads: ours.threads,
        features: ours.summary?.features,
        protocolFeatures: ours.summary?.protocolFeatures,
      };
      const r = rings[ring];
      console.log(`testpmd io loop, 64 B ${ring.padEnd(6)}: through our back end ${fmtRange(r.oursRange, 1, 3)} Mpps (${ours.errors} ring errors, ring threads ${ours.threads}); testpmd vhost PMD loop ${fmtRange(r.baselineRange, 1, 2)} Mpps; x${r.ratio.toFixed(3)}`);
    }
  } else {
    console.log('testpmd throughput: skipped (dpdk-testpmd not on PATH: apt-get install dpdk-dev)');
  }
  return { wake, kick, rings };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, trips: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '2' }, kicks: { type: 'string', default: '200' } } });
  const placement = await probePlacement();
  console.log(machineLine(placement));
  const r = await vhostUserCases({ runs: Number(values.runs), trips: Number(values.trips), seconds: Number(values.seconds), kicks: Number(values.kicks) });
  writeResults('vhost-user', { node: process.version, cores: availableParallelism(), placement, ...r }, [
    '# vhost-user bench',
    '',
    machineLine(placement),
    '',
    mdTable(
      ['wake-up (RTT/2)', 'p50 us', 'p99 us'],
      Object.entries(r.wake).map(([k, v]) => [k, fmtRange(v.p50, 1, 1), fmtRange(v.p99, 1, 1)]),
    ),
    '',
    `kick -> first used entry (ring thread asleep): p50 ${r.kick.p50.toFixed(1)} us, p99 ${r.kick.p99.toFixed(1)} us`,
    '',
    mdTable(
      ['testpmd io loop, 64 B', 'ours (through our back end), Mpps', 'baseline (testpmd vhost PMD loop), Mpps', 'ratio'],
      Object.entries(r.rings).map(([k, v]) => [k, fmtRange(v.oursRange, 1, 3), fmtRange(v.baselineRange, 1, 2), `x${v.ratio.toFixed(3)}`]),
    ),
  ]);
}
