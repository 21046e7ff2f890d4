// Latency through two virtio-net NICs on a direct link (real queue workers):
//  (a) idle -> first frame: every thread asleep (> 50 ms between samples); the
//      main thread sends one 64-byte frame from NIC a's driver; NIC b's driver
//      runs as a task on the queue thread that serves both NICs (--threads
//      guest, the default: one sleeping hop) or in a worker of its own
//      blocked in Atomics.wait on its interrupt word (--threads link: two
//      hops) and stamps the frame when its receive callback sees it. Both
//      stamps come from process.hrtime (CLOCK_MONOTONIC, the same clock in
//      every thread).
//      Before the samples, --warmup frames one at a time (not counted): the
//      path runs compiled code and every receive buffer's page was written
//      once, as in a lab that has carried traffic. After each sample, one bare
//      Atomics.notify -> wait hop after the same gap: the floor of one
//      sleeping hop, under the same load as the sample before it.
//  (b) busy ping-pong: a -> b -> a echo of one 64-byte frame, both guest
//      sides polling (no sleeping); half the round trip is reported as the
//      one-way latency.
// --idle-poll-ms T: the queue threads look at their queues every T ms while
// they sleep (QueueThreadPoolOptions.idlePollMs; default 0, the library's
// default: never; they look for a second after their last work). After the
// idle samples, the process's CPU with every thread asleep, right after the
// last sample and two seconds later, says what the looks cost.
// Prints placement, threads and cores, p50 / p99 / p99.9 in microseconds
// from HDR histograms (median and range over the runs, and pooled over every
// sample); writes JSON + Markdown to bench/results/. Also the "latency" case
// of npm run bench (latencyCases()).
//
//   node bench/latency.mjs [--runs 5] [--idle-samples 50] [--gap-ms 55] [--warmup 2000] [--trips 20000] [--spin-us 30] [--idle-poll-ms 0]
//                          [--threads guest|link|per-device|per-queue]  (guest, the default: one queue thread serves
//                          both NICs and runs b's guest, bench/latency-guest.mjs; link: b's guest in a worker of its own)
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { NetDriver, QueueThreadPool, SharedArena, VirtioNetDevice, connectNics, latencyPercentiles, newLatencyHistogram, probePlacement, recordLatencyNs, setupNetDriver } from '../dist/index.js';
import { ring } from '../dist/ring.js';
import { coldPath } from './cold-path.mjs';
import { C_ECHOED, C_MODE, C_READY, C_RECEIVED, C_WORDS, FRAME, MAC_A, MAC_B, MODE_ECHO, MODE_IDLE, MODE_STOP, hrNs, mac, runLatencyGuest } from './latency-guest.mjs';
import { benchArgs, fmtUs as us, isMain, range, writeResults } from './lib.mjs';

const QUEUE_SIZE = 256;
const ETHERTYPE = 0x88b5;
const SEQ_AT = 14;

// The reference waiter: sleeps on word 0, stamps hrtime when woken, counts wakes in word 1.
const BARE_WAITER = `
const { workerData } = require('node:worker_threads');
const w = new Int32Array(workerData.w);
const t = new Float64Array(workerData.t);
for (let n = 1; Atomics.load(w, 2) === 0; n++) {
  Atomics.wait(w, 0, n - 1);
  t[0] = Number(process.hrtime.bigint());
  Atomics.store(w, 1, n);
  Atomics.notify(w, 1);
}`;

/** p50 / p99 / p99.9 / max (us) and the count of samples (ns), through an HDR histogram (hdr-histogram-js). */
function summary(samplesNs) {
  const h = newLatencyHistogram();
  for (const ns of samplesNs) recordLatencyNs(h, ns);
  const p = latencyPercentiles(h);
  h.destroy();
  return { n: p.samples, p50: p.p50, p99: p.p99, p999: p.p999, max: p.max };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (r) => `${us(r.median)} [${us(r.min)}-${us(r.max)}]`;

/**
 * Both latency measurements, `runs` runs each; prints as it goes, writes
 * bench/results/latency-*.{json,md}, returns the rows.
 */
export async function latencyCases({ runs = 5, idleSamples = 50, gapMs: gap = 55, warmup = 2000, trips = 20000, spinUs = 30, idlePollMs = 0, maxRunS = 1.5, threads = 'guest' } = {}) {
  const gapMs = Math.max(51, gap);
  const maxRunMs = maxRunS * 1000;
  const cores = availableParallelism();
  const idlePolling = idlePollMs > 0 ? `idle queue threads look every ${idlePollMs} ms` : 'idle polling off';

  const memSize = QUEUE_SIZE * 4096 + QUEUE_SIZE * (128 + 1518) + (2 << 20);
  const arena = new SharedArena(2 * memSize + (4 << 20));
  // 'link': one queue thread serves both NICs (a kick wakes it, it moves the frame to b's buffers, b's guest wakes: two sleeping hops).
  // 'guest': that thread also runs b's guest as a task (a kick wakes it, it moves the frame and b's guest takes it: one).
  const queueThreads = { link: 1, guest: 1, 'per-device': 2, 'per-queue': 4 }[threads];
  if (queueThreads === undefined) throw new Error(`--threads ${threads}: link, guest, per-device or per-queue`);
  const asTask = threads === 'guest';
  const pool = threads === 'link' || asTask ? new QueueThreadPool({ threads: 1, spinUs, idlePollMs, taskModule: asTask ? new URL('./latency-guest.mjs', import.meta.url) : undefined }) : undefined;
  const mapping = pool === undefined ? threads : { pool };
  // Main's guest, b's guest in a worker of its own (not with 'guest'), the queue threads.
  const threadCount = (asTask ? 1 : 2) + queueThreads;
  const a = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize: QUEUE_SIZE, spinUs, idlePollMs, mac: MAC_A, threads: mapping });
  const b = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize: QUEUE_SIZE, spinUs, idlePollMs, mac: MAC_B, threads: mapping });
  const link = connectNics(arena, a, b);
  let worker;
  let task;
  let bareWaiter;
  const bare = new Int32Array(new SharedArrayBuffer(64));
  const bareStamp = new Float64Array(new SharedArrayBuffer(8));
  const stopBareWaiter = async () => {
    if (bareWaiter === undefined) return;
    Atomics.store(bare, 2, 1);
    Atomics.add(bare, 0, 1);
    Atomics.notify(bare, 0);
    await bareWaiter.terminate();
    bareWaiter = undefined;
  };
  /** Tell b's guest its mode changed: ring what it sleeps on (its interrupt word, or the queue thread's wake word). */
  let poke = () => {};
  const ctl = new SharedArrayBuffer(4 * C_WORDS);
  const c = new Int32Array(ctl);
  try {
    const specA = await setupNetDriver(a, { queueSize: QUEUE_SIZE });
    const specB = await setupNetDriver(b, { queueSize: QUEUE_SIZE });
    const stamps = new SharedArrayBuffer(8 * 4096);
    const t = new Float64Array(stamps);
    const guestData = { spec: specB, ctl, stamps };
    let failed;
    if (asTask) {
      task = pool.runTask(0, guestData);
      failed = task.then(() => Promise.reject(new Error("b's guest task ended early")));
    } else {
      worker = new Worker(new URL(import.meta.url), { workerData: guestData });
      failed = new Promise((_, reject) => worker.once('error', reject));
    }
    const sleptOn = asTask ? pool.wakeWord(0) : specB.interrupt;
    const sleptOnI32 = new Int32Array(sleptOn.buffer);
    poke = () => ring(sleptOnI32, sleptOn.index);
    failed.catch(() => {});
    const race = (p) => Promise.race([p, failed]);
    await race(Atomics.waitAsync(c, C_READY, 0).value);

    // NIC a's guest side runs on the main thread.
    const drv = new NetDriver(specA);
    drv.fillRx();
    const u8 = drv.u8;
    const frame = new Uint8Array(FRAME);
    for (let i = 0; i < FRAME; i++) frame[i] = i & 0xff;
    frame.set(mac(MAC_B), 0);
    frame.set(mac(MAC_A), 6);
    frame[12] = ETHERTYPE >>> 8;
    frame[13] = ETHERTYPE & 0xff;

    const placementBefore = await probePlacement();
    console.log(`node ${process.version}, ${cores} cores; placement before: ${placementBefore.placement} (${placementBefore.roundTripNs} ns round trip)`);
    console.log(
      `threads: main (NIC a guest), ${asTask ? '' : 'worker (NIC b guest), '}${queueThreads} queue thread(s) serving a tx + a rx + b tx + b rx${asTask ? " and running NIC b's guest" : ''} (queue threads ${threads}; ${threadCount} threads) on ${cores} cores; ` +
        `${FRAME}-byte frames, rings ${QUEUE_SIZE}, device spin ${spinUs} us, ${idlePolling}\n`,
    );

    // ---- (a) idle -> first frame ------------------------------------------
    // One frame a -> b; resolves to the ns from just before commitTx to b's guest stamping it.
    let received = 0;
    const sendOne = async () => {
      drv.reclaimTx();
      const at = drv.reserveTx();
      if (at < 0) throw new Error('no tx buffer free');
      u8.set(frame, at);
      const t0 = hrNs();
      drv.commitTx(FRAME);
      drv.flushTx();
      received++;
      // Wait (asleep) for the worker's stamp.
      while (Atomics.load(c, C_RECEIVED) < received) {
        const res = await race(Atomics.waitAsync(c, C_RECEIVED, Atomics.load(c, C_RECEIVED), 2000).value);
        if (res === 'timed-out' && Atomics.load(c, C_RECEIVED) < received) throw new Error(`idle frame ${received} not received in 2 s`);
      }
      return t[(received - 1) % t.length] - t0;
    };
    // The floor, in the same runs: one bare Atomics.notify -> Atomics.wait hop after the
    // same idle gap, a sample after each frame's (the link path has two such hops:
    // the queue thread, b's guest; guest one; per-queue three).
    bareWaiter = new Worker(BARE_WAITER, { eval: true, workerData: { w: bare.buffer, t: bareStamp.buffer } });
    await new Promise((resolve, reject) => {
      bareWaiter.once('online', resolve);
      bareWaiter.once('error', reject);
    });
    let bareHops = 0;
    const bareHop = async () => {
      const t0 = hrNs();
      Atomics.add(bare, 0, 1);
      Atomics.notify(bare, 0);
      bareHops++;
      while (Atomics.load(bare, 1) < bareHops) {
        const res = await Atomics.waitAsync(bare, 1, Atomics.load(bare, 1), 2000).value;
        if (res === 'timed-out' && Atomics.load(bare, 1) < bareHops) throw new Error(`bare hop ${bareHops} not answered in 2 s`);
      }
      return bareStamp[0] - t0;
    };
    // Warm-up, not counted: a long-running lab's path is compiled (JIT) and every
    // receive buffer has been written once (a SharedArrayBuffer page's first
    // write is a page fault: about 50 us on a VM).
    for (let i = 0; i < warmup; i++) await sendOne();
    console.log(
      `(a) idle -> first frame: ${runs} runs x ${idleSamples} samples, ${gapMs} ms asleep before each (every thread asleep; b's guest ${asTask ? 'a task of the sleeping queue thread' : 'in Atomics.wait'}), ` +
        `after ${warmup} frames of warm-up; each followed by a bare hop after the same gap`,
    );
    const idleRuns = [];
    const idleAll = [];
    const bareRuns = [];
    const bareAll = [];
    for (let r = 0; r < runs; r++) {
      const p = await probePlacement(3, 1000);
      const samples = [];
      const hops = [];
      for (let i = 0; i < idleSamples; i++) {
        await sleep(gapMs);
        samples.push(await sendOne());
        await sleep(gapMs);
        hops.push(await bareHop());
      }
      idleAll.push(...samples);
      bareAll.push(...hops);
      const s = summary(samples);
      const h = summary(hops);
      idleRuns.push({ ...s, placement: p.placement, roundTripNs: p.roundTripNs });
      bareRuns.push({ ...h, placement: p.placement, roundTripNs: p.roundTripNs });
      console.log(
        `  run ${r + 1}: p50 ${us(s.p50)} us  p99 ${us(s.p99)} us  max ${us(s.max)} us; bare hop p50 ${us(h.p50)} us (frame = ${(s.p50 / h.p50).toFixed(2)} bare hops)  placement ${p.placement} (${p.roundTripNs} ns)`,
      );
    }
    // What idling costs (the looks of --idle-poll-ms last a second after the last work): the
    // process's CPU with every thread asleep, over the half second after the last sample and
    // over a half second two seconds after it.
    const idleCpuPct = async (ms) => {
      const cpu0 = process.cpuUsage();
      const wall0 = performance.now();
      await sleep(ms);
      const cpu = process.cpuUsage(cpu0);
      return (cpu.user + cpu.system) / (performance.now() - wall0) / 10;
    };
    const idleCpuSoon = await idleCpuPct(500);
    await sleep(1500);
    const idleCpuLater = await idleCpuPct(500);
    const idleCpuLine = `the process idle (${idlePolling}): ${idleCpuSoon.toFixed(2)} % of a core in the half second after the last sample, ${idleCpuLater.toFixed(2)} % two seconds after it`;
    console.log(`  ${idleCpuLine}`);
    const idlePooled = summary(idleAll);
    const barePooled = summary(bareAll);
    await stopBareWaiter();
    console.log(`  bare Atomics.notify -> wait hop after ${gapMs} ms idle (${bareAll.length} samples): p50 ${us(barePooled.p50)} us  p99 ${us(barePooled.p99)} us  max ${us(barePooled.max)} us`);
    // The frame's own path after the same gap, with no hop: the rest of what a sample costs (bench/cold-path.mjs).
    const [cold] = (await coldPath({ gaps: [gapMs], samples: idleSamples })).rows;
    const coldLine = `one frame through all five stages in one thread after ${gapMs} ms asleep (no hop, split rings): ${us(cold.coldUs)} us median, the frame after it ${us(cold.nextUs)} us`;
    console.log(`  ${coldLine}`);

    // ---- (b) busy ping-pong ---------------------------------------------
    console.log(`\n(b) busy ping-pong a -> b -> a: ${runs} runs x up to ${trips} round trips (at most ${maxRunMs / 1000} s each), one-way = RTT / 2; both guests polling`);
    Atomics.store(c, C_MODE, MODE_ECHO);
    poke();
    let got = 0;
    let seq = 0;
    const onPong = (p) => {
      const bytes = p.segU8[0];
      const i = p.segIdx[0] + SEQ_AT;
      const s = (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0;
      if (s !== seq >>> 0 || p.length !== FRAME) throw new Error(`pong ${s} (expected ${seq}), ${p.length} bytes`);
      got++;
    };
    const roundTrip = () => {
      drv.reclaimTx();
      const at = drv.reserveTx();
      if (at < 0) throw new Error('no tx buffer free');
      u8.set(frame, at);
      u8[at + SEQ_AT] = seq;
      u8[at + SEQ_AT + 1] = seq >>> 8;
      u8[at + SEQ_AT + 2] = seq >>> 16;
      u8[at + SEQ_AT + 3] = seq >>> 24;
      const want = got + 1;
      const t0 = performance.now();
      drv.commitTx(FRAME);
      drv.flushTx();
      const deadline = t0 + 2000;
      let spins = 0;
      while (got < want) {
        drv.receive(onPong);
        if ((++spins & 0xfff) === 0 && performance.now() > deadline) throw new Error(`pong ${seq} not back in 2 s`);
      }
      const rtt = performance.now() - t0;
      seq++;
      return rtt * 1e6; // ns
    };
    // Warm up (JIT, caches), not counted.
    for (let i = 0; i < 2000; i++) roundTrip();
    const pingRuns = [];
    const pingAll = [];
    for (let r = 0; r < runs; r++) {
      // Probe with the echo worker asleep (its busy loop would take one of the probe's cores).
      Atomics.store(c, C_MODE, MODE_IDLE);
      const p = await probePlacement(3, 1000);
      Atomics.store(c, C_MODE, MODE_ECHO);
      poke();
      const samples = [];
      const t0 = performance.now();
      for (let i = 0; i < trips; i++) {
        samples.push(roundTrip() / 2);
        if ((i & 255) === 0 && performance.now() - t0 > maxRunMs) break;
      }
      pingAll.push(...samples);
      const s = summary(samples);
      pingRuns.push({ ...s, placement: p.placement, roundTripNs: p.roundTripNs });
      console.log(`  run ${r + 1}: ${s.n} trips  one-way p50 ${us(s.p50)} us  p99 ${us(s.p99)} us  p99.9 ${us(s.p999)} us  max ${us(s.max)} us  placement ${p.placement} (${p.roundTripNs} ns)`);
    }
    const pingPooled = summary(pingAll);
    const echoed = Atomics.load(c, C_ECHOED);
    if (echoed !== seq) throw new Error(`b's guest echoed ${echoed} frames, main sent ${seq}`);

    // ---- report ------------------------------------------------------------
    const row = (name, perRun, pooled) => ({
      name,
      p50: range(perRun.map((x) => x.p50)),
      p99: range(perRun.map((x) => x.p99)),
      p999: range(perRun.map((x) => x.p999)),
      pooled,
      placements: perRun.map((x) => x.placement),
    });
    const rows = [
      row(`idle -> first frame (one way; ${idlePolling})`, idleRuns, idlePooled),
      row('reference: one bare notify -> Atomics.wait hop, same idle gap, same runs', bareRuns, barePooled),
      row('busy ping-pong (RTT / 2)', pingRuns, pingPooled),
    ];
    const meta = {
      node: process.version,
      cores,
      threads: threadCount,
      queueThreads: threads,
      runs,
      idleSamples,
      gapMs,
      warmup,
      trips,
      spinUs,
      idlePollMs,
      idleCpuPct: { soon: idleCpuSoon, later: idleCpuLater },
      frameSize: FRAME,
      queueSize: QUEUE_SIZE,
      placementBefore,
      coldPath: cold,
    };
    const md = [
      `node ${meta.node}, ${cores} cores, ${meta.threads} threads (2 guests: main + ${asTask ? 'a task of the queue thread' : 'worker'}; ${queueThreads} queue thread(s), mapping ${threads}), ${FRAME}-byte frames, device spin ${spinUs} us, ${idlePolling}, ${runs} runs`,
      '',
      '| measurement | p50 us (median [min-max] over runs) | p99 us | p99.9 us | pooled p50 / p99 / p99.9 / max us (samples) | placement per run |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows.map(
        (r) =>
          `| ${r.name} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.p999)} | ${us(r.pooled.p50)} / ${us(r.pooled.p99)} / ${us(r.pooled.p999)} / ${us(r.pooled.max)} (${r.pooled.n}) | ${r.placements.join(', ')} |`,
      ),
      '',
      `Idle: ${idleSamples} samples per run, so a run's p99.9 is its maximum; the pooled column has ${idlePooled.n} samples. Reference, ${coldLine}. Cost, ${idleCpuLine}.`,
    ].join('\n');
    writeResults('latency', { ...meta, rows, bareWake: barePooled, idleRuns, bareRuns, pingRuns }, [md]);
    console.log(`\n${md}`);
    return { ...meta, rows, bareWake: barePooled };
  } finally {
    await stopBareWaiter();
    Atomics.store(c, C_MODE, MODE_STOP);
    // Wake b's guest if it sleeps, let it leave its loop (a task: finish), then end the worker.
    poke();
    if (worker !== undefined) await worker.terminate();
    if (task !== undefined) await task.catch(() => undefined);
    await link.close();
    await Promise.all([a.close(), b.close()]);
    await pool?.close();
  }
}

if (!isMainThread) runLatencyGuest(workerData);
else if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, {
    runs: { type: 'string', default: '5' },
    'idle-samples': { type: 'string', default: '50' },
    'gap-ms': { type: 'string', default: '55' },
    warmup: { type: 'string', default: '2000' },
    trips: { type: 'string', default: '20000' },
    'spin-us': { type: 'string', default: '30' },
    'idle-poll-ms': { type: 'string', default: '0' },
    'max-run-s': { type: 'string', default: '1.5' },
    threads: { type: 'string', default: 'guest' },
  });
  await latencyCases({
    runs: Math.max(1, Number(values.runs)),
    idleSamples: Number(values['idle-samples']),
    gapMs: Number(values['gap-ms']),
    warmup: Number(values.warmup),
    trips: Number(values.trips),
    spinUs: Number(values['spin-us']),
    idlePollMs: Number(values['idle-poll-ms']),
    maxRunS: Number(values['max-run-s']),
    threads: values.threads,
  });
}
