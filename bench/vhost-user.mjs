// The vhost-user back end under a real front end, and the wake-up it pays:
//  (a) wake-up latency, eventfd vs Atomics: two threads ping-pong, each
//      blocked between hops (Atomics.wait/notify on shared words; or poll()
//      on an eventfd then write() to the other's, through koffi, as the
//      vhost-user I/O thread and queue workers do). Half the round trip is
//      one wake-up; p50/p99 in microseconds from HDR histograms.
//  (b) kick -> first used entry: a front end in this process (the tests'
//      TypeScript front end, bundled on the fly with esbuild) posts one
//      64-byte frame on its tx ring, kicks, and looks at the used index; the
//      ring's thread is asleep (40 ms between samples), so each sample is one
//      wake-up from a kick plus one pop (the front end naps 50 us between
//      looks, so it does not hold a core; its timer slack is 1 us for it).
//      Before the samples, 20 000 frames warm the path. After each sample, a
//      bare hop after the same gap: an eventfd write -> a thread asleep in
//      poll() runs, looked for the same way. p50/p99 in microseconds, and
//      the kick in bare hops. Twice: the ring threads asleep until kicked
//      (the default), and looking at their rings every 1 ms while they
//      sleep (idlePollMs: 1).
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
// each testpmd row, with the busiest ring thread's share of the measured
// time and its CPU ns per frame (schedstat): near 100 % the thread never
// slept, and ns per frame is the cost of a frame; well below, it slept
// between bursts.
// Writes bench/results/vhost-user-<time>.json: per ring (split, packed)
// `ours`, `baseline` (testpmd's own loop) and `ratio`, Mpps medians, and
// `ringThread` { busy, nsPerFrame }.
//
//   node bench/vhost-user.mjs [--runs 5] [--trips 2000] [--seconds 2] [--kicks 200]
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { SharedArena, connectLoopback, probePlacement } from '../dist/index.js';
import { serveVhostUserNet } from '../dist/vhost-user.js';
import { dpdkRates } from './dpdk-baseline.mjs';
import { benchArgs, fmtRange, isMain, machineLine, mdTable, median, range, threadCpu, writeResults } from './lib.mjs';
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

// How long the front end naps between looks at a used index. Shorter looks
// (5 us, or spinning) cost the woken ring thread about 1 ms on 2 vCPUs
// before it ran (kick -> first used entry 1.0-1.4 ms p50 against 0.2 with
// 50 us naps, the bare hop 80-110 us either way): the looker keeps the CPU
// the kernel wakes the ring thread on.
const NAP_MS = 0.05;

// The floor of a kick: a thread asleep in poll() on an eventfd, as a ring
// thread sleeps, writes a stamp when it runs again after a write() to it.
const BARE_POLLER = `
const { workerData } = require('node:worker_threads');
const koffi = require(workerData.koffiPath);
const libc = koffi.load('libc.so.6');
const poll = libc.func('int poll(void *fds, unsigned long n, int timeout)');
const read = libc.func('long read(int fd, void *buf, size_t len)');
const w = new Int32Array(workerData.words);
const t = new BigInt64Array(workerData.words, 64, 1);
const pfd = Buffer.alloc(8); pfd.writeInt32LE(workerData.fd, 0); pfd.writeInt16LE(1, 4);
const sink = new BigUint64Array(1);
while (Atomics.load(w, 0) === 0) {
  pfd.writeInt16LE(0, 6);
  poll(pfd, 1, 100);
  if ((pfd.readInt16LE(6) & 1) === 0) continue;
  Atomics.store(t, 0, process.hrtime.bigint());
  read(workerData.fd, sink, 8);
}
`;

/** Nanoseconds from `t0` until `done()` holds, looking every NAP_MS (a nap, so the looker holds no core); Infinity past 5 s. */
function timeUntil(t0, done, nap) {
  const limit = t0 + 5_000_000_000n;
  for (;;) {
    const t1 = process.hrtime.bigint();
    if (done()) return Number(t1 - t0);
    if (t1 > limit) return Number.POSITIVE_INFINITY;
    Atomics.wait(nap, 0, 0, NAP_MS);
  }
}

/**
 * Kick -> first used entry, with the tx ring's thread asleep before every
 * kick (`gapMs` x 2 of quiet): microseconds per sample (`samples` of them).
 * After each, under the same conditions, one bare hop: write() to the
 * eventfd a thread sleeps on in poll() -> that thread runs (its stamp). Both
 * are looked for the same way, every 50 us, with this thread's timer slack
 * at 1 us (the default 50 us would double every look). `inHops` is the
 * median of kick / bare hop over the samples. Before the samples,
 * `warmFrames` frames in bursts of 64 warm the path. `idlePollMs`: the
 * server's ring threads look at their rings that often while they sleep
 * (VhostUserThreadOptions.idlePollMs; 0, the default, never).
 */
export async function kickToUsed(samples, gapMs, { idlePollMs = 0, warmFrames = 20_000 } = {}) {
  const { upNet, takeRx, frame, FE_MAC, TX } = await testFrontEnd();
  const koffi = require('koffi');
  const libc = koffi.load('libc.so.6');
  const prctl = libc.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)');
  const eventfd = libc.func('int eventfd(unsigned int initval, int flags)');
  const write = libc.func('long write(int fd, const void *buf, size_t len)');
  const close = libc.func('int close(int fd)');
  const PR_SET_TIMERSLACK = 29;
  prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
  const dir = mkdtempSync(join(tmpdir(), 'vl-vu-kick-'));
  const sock = join(dir, 'net.sock');
  const server = serveVhostUserNet(sock, { idlePollMs });
  connectLoopback(new SharedArena(8 << 20), server.device);
  const words = new SharedArrayBuffer(128);
  const bareFd = eventfd(0, 0o2000000);
  const poller = new Worker(BARE_POLLER, { eval: true, workerData: { words, fd: bareFd, koffiPath: require.resolve('koffi') } });
  const bareAt = new BigInt64Array(words, 64, 1);
  const one = new BigUint64Array([1n]);
  let fe;
  try {
    fe = await upNet(sock, { ringSize: 256 });
    const tx = fe.ring(TX);
    const looped = [];
    const kicks = [];
    const hops = [];
    const bytes = frame(FE_MAC, FE_MAC, 1);
    const nap = new Int32Array(new SharedArrayBuffer(4));
    // Warm the path first, as a ring that has carried traffic is (the latency
    // case does the same): V8 compiles the ring thread's code only after it
    // has run a while; a thread that has moved a few dozen frames runs it
    // interpreted, hundreds of microseconds a frame.
    for (let moved = 0; moved < warmFrames; moved += 64) {
      for (let k = 0; k < 64; k++) tx.postTx(bytes);
      fe.kick(TX);
      let used = 0;
      timeUntil(process.hrtime.bigint(), () => (used += tx.takeUsed().length) >= 64, nap);
      takeRx(fe, looped);
      looped.length = 0;
      fe.kick(0);
    }
    for (let i = 0; i < samples + 10; i++) {
      await sleep(gapMs);
      takeRx(fe, looped); // repost the rx buffers the loopback used
      fe.kick(0);
      await sleep(gapMs);
      tx.takeUsed();
      tx.postTx(bytes);
      const t0 = process.hrtime.bigint();
      fe.kick(TX);
      const kick = timeUntil(t0, () => tx.takeUsed().length !== 0, nap);
      await sleep(2 * gapMs);
      Atomics.store(bareAt, 0, 0n);
      const h0 = process.hrtime.bigint();
      write(bareFd, one, 8);
      const hop = timeUntil(h0, () => Atomics.load(bareAt, 0) !== 0n, nap);
      if (i >= 10) {
        // The first ten warm up.
        kicks.push(kick / 1000);
        hops.push(hop / 1000);
      }
    }
    const ratios = kicks.map((k, i) => k / hops[i]);
    const p = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];
    return { p50: p(kicks, 0.5), p99: p(kicks, 0.99), hopP50: p(hops, 0.5), hopP99: p(hops, 0.99), inHops: p(ratios, 0.5) };
  } finally {
    fe?.close();
    Atomics.store(new Int32Array(words), 0, 1);
    await poller.terminate();
    close(bareFd);
    prctl(PR_SET_TIMERSLACK, 50_000, 0, 0, 0);
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The busiest thread of this process over a window of `wallNs` (the ring
 * thread: testpmd runs in its own process), from two threadCpu() readings:
 * the share of the window it ran, and its CPU ns per frame at `pps`. Which
 * of the loop's two modes a run was in shows here: a ring thread that runs
 * the whole window and never sleeps, or one that sleeps between bursts.
 */
function ringThreadCpu(before, after, wallNs, pps) {
  let most = 0;
  for (const [tid, ns] of after) most = Math.max(most, ns - (before.get(tid) ?? ns));
  return { busy: most / wallNs, nsPerFrame: most / ((pps * wallNs) / 1e9) };
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
    const cpu0 = threadCpu();
    const t0 = performance.now();
    for (let i = 0; i < samples; i++) {
      await sleep((seconds * 1000) / samples);
      rates.push((await t.portStats(1))[0].rxPps);
    }
    const ringThread = ringThreadCpu(cpu0, threadCpu(), (performance.now() - t0) * 1e6, median(rates));
    t.say('stop');
    const errors = server.device.netStats().errors;
    // Older builds have one thread per ring and no ringThreads().
    const threads = server.ringThreads?.().mapping ?? 'a thread per ring';
    await t.quit();
    return { rates, errors, threads, ringThread, summary: server.summary() };
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
  const kickLine = (k, idlePollMs) =>
    `kick -> first used entry${idlePollMs > 0 ? `, ring threads looking every ${idlePollMs} ms,` : ''} p50 ${k.p50.toFixed(1)} us  p99 ${k.p99.toFixed(1)} us  (tx ring thread asleep, ${kicks} kicks 40 ms apart); ` +
    `a bare hop after the same gap (eventfd write -> a thread in poll() runs) p50 ${k.hopP50.toFixed(1)} us  p99 ${k.hopP99.toFixed(1)} us; kick in bare hops: x${k.inHops.toFixed(2)} (median)`;
  const kick = await kickToUsed(kicks, 20);
  console.log(kickLine(kick, 0));
  // The same with idle polling (opt-in): the ring thread wakes every 1 ms for a look while it sleeps.
  const kickIdlePoll = await kickToUsed(kicks, 20, { idlePollMs: 1 });
  console.log(kickLine(kickIdlePoll, 1));
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
        ringThread: ours.ringThread,
        features: ours.summary?.features,
        protocolFeatures: ours.summary?.protocolFeatures,
      };
      const r = rings[ring];
      console.log(`testpmd io loop, 64 B ${ring.padEnd(6)}: through our back end ${fmtRange(r.oursRange, 1, 3)} Mpps (${ours.errors} ring errors, ring threads ${ours.threads}; the busiest ran ${(100 * ours.ringThread.busy).toFixed(0)} % of the time, ${ours.ringThread.nsPerFrame.toFixed(0)} ns of CPU a frame); testpmd vhost PMD loop ${fmtRange(r.baselineRange, 1, 2)} Mpps; x${r.ratio.toFixed(3)}`);
    }
  } else {
    console.log('testpmd throughput: skipped (dpdk-testpmd not on PATH: apt-get install dpdk-dev)');
  }
  return { wake, kick, kickIdlePoll, rings };
}

/** One kick measurement as a Markdown line. */
const kickMd = (what, k) =>
  `${what}: p50 ${k.p50.toFixed(1)} us, p99 ${k.p99.toFixed(1)} us; a bare hop after the same gap p50 ${k.hopP50.toFixed(1)} us; kick in bare hops x${k.inHops.toFixed(2)}`;

if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, { runs: { type: 'string', default: '5' }, trips: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '2' }, kicks: { type: 'string', default: '200' } });
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
    kickMd('kick -> first used entry (ring thread asleep)', r.kick),
    '',
    kickMd('the same with the ring threads looking every 1 ms while they sleep (idlePollMs: 1)', r.kickIdlePoll),
    '',
    mdTable(
      ['testpmd io loop, 64 B', 'ours (through our back end), Mpps', 'baseline (testpmd vhost PMD loop), Mpps', 'ratio', 'busiest ring thread: time running, CPU ns a frame'],
      Object.entries(r.rings).map(([k, v]) => [k, fmtRange(v.oursRange, 1, 3), fmtRange(v.baselineRange, 1, 2), `x${v.ratio.toFixed(3)}`, `${(100 * v.ringThread.busy).toFixed(0)} %, ${v.ringThread.nsPerFrame.toFixed(0)}`]),
    ),
  ]);
}
