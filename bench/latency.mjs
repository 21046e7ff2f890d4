// Latency through two virtio-net NICs on a direct link (real queue workers):
//  (a) idle -> first frame: every thread asleep (> 50 ms between samples); the
//      main thread sends one 64-byte frame from NIC a's driver; NIC b's driver
//      runs in a worker blocked in Atomics.wait on its interrupt word and
//      stamps the frame when its receive callback sees it. Both stamps come
//      from process.hrtime (CLOCK_MONOTONIC, the same clock in every thread).
//      Before the samples, --warmup frames one at a time (not counted): the
//      path runs compiled code and every receive buffer's page was written
//      once, as in a lab that has carried traffic. After each sample, one bare
//      Atomics.notify -> wait hop after the same gap: the floor of one
//      sleeping hop, under the same load as the sample before it.
//  (b) busy ping-pong: a -> b -> a echo of one 64-byte frame, both guest
//      sides polling (no sleeping); half the round trip is reported as the
//      one-way latency.
// Prints placement, threads and cores, p50 / p99 / p99.9 in microseconds
// from HDR histograms (median and range over the runs, and pooled over every
// sample); writes JSON + Markdown to bench/results/. Also the "latency" case
// of npm run bench (latencyCases()).
//
//   node bench/latency.mjs [--runs 5] [--idle-samples 50] [--gap-ms 55] [--warmup 2000] [--trips 20000] [--spin-us 30]
//                          [--threads link|per-device|per-queue]  (link, the default: one queue thread for both NICs)
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { NetDriver, QueueThreadPool, SharedArena, VirtioNetDevice, connectNics, latencyPercentiles, newLatencyHistogram, probePlacement, recordLatencyNs, setupNetDriver } from '../dist/index.js';
import { fmtUs as us, isMain, range, writeResults } from './lib.mjs';

const MAC_A = '52:54:00:00:00:0a';
const MAC_B = '52:54:00:00:00:0b';
const FRAME = 64;
const QUEUE_SIZE = 256;
const ETHERTYPE = 0x88b5;
const SEQ_AT = 14;

// Control words shared by the main thread and the guest worker (Int32).
const C_MODE = 0; // 0: sleep between frames (idle test), 1: echo busy (ping-pong), 2: stop
const C_RECEIVED = 1; // frames the worker received (idle test)
const C_READY = 2; // worker has posted its receive buffers
const C_ECHOED = 3; // frames echoed back (ping-pong)
const C_WORDS = 16;
const MODE_IDLE = 0;
const MODE_ECHO = 1;
const MODE_STOP = 2;

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

const mac = (s) => Uint8Array.from(s.split(':').map((h) => parseInt(h, 16)));
const hrNs = () => Number(process.hrtime.bigint());

/** NIC b's guest side, in a worker: sleeps on its interrupt word (mode 0) or echoes busy (mode 1). */
function guest({ spec, ctl, stamps }) {
  const c = new Int32Array(ctl);
  const t = new Float64Array(stamps);
  const drv = new NetDriver(spec);
  const { i32, index } = drv.interruptWord;
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
  for (;;) {
    const mode = Atomics.load(c, C_MODE);
    if (mode === MODE_STOP) break;
    if (mode === MODE_ECHO) {
      if (drv.receive(onEcho) !== 0) Atomics.store(c, C_ECHOED, echoed);
      drv.reclaimTx();
      continue;
    }
    // Idle mode: take what is there, then the re-check rule (src/lab/pump/pump-guest.ts):
    // snapshot the word, re-enable interrupts, look again, sleep on the snapshot.
    if (drv.receive(onIdle) !== 0) {
      Atomics.store(c, C_RECEIVED, received);
      Atomics.notify(c, C_RECEIVED);
      continue;
    }
    drv.reclaimTx();
    const seen = Atomics.load(i32, index);
    const ready = drv.enableInterrupts();
    if (!ready && Atomics.load(c, C_MODE) === MODE_IDLE) Atomics.wait(i32, index, seen);
    drv.disableInterrupts();
  }
}

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
export async function latencyCases({ runs = 5, idleSamples = 50, gapMs: gap = 55, warmup = 2000, trips = 20000, spinUs = 30, maxRunS = 1.5, threads = 'link' } = {}) {
  const gapMs = Math.max(51, gap);
  const maxRunMs = maxRunS * 1000;
  const cores = availableParallelism();

  const memSize = QUEUE_SIZE * 4096 + QUEUE_SIZE * (128 + 1518) + (2 << 20);
  const arena = new SharedArena(2 * memSize + (4 << 20));
  // 'link': one queue thread serves both NICs (a kick wakes it, it moves the frame to b's buffers, b's guest wakes: two sleeping hops).
  const pool = threads === 'link' ? new QueueThreadPool({ threads: 1, spinUs }) : undefined;
  const mapping = pool === undefined ? threads : { pool };
  const queueThreads = { link: 1, 'per-device': 2, 'per-queue': 4 }[threads];
  if (queueThreads === undefined) throw new Error(`--threads ${threads}: link, per-device or per-queue`);
  const a = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize: QUEUE_SIZE, spinUs, mac: MAC_A, threads: mapping });
  const b = new VirtioNetDevice(arena.guestMemory(memSize), { queueSize: QUEUE_SIZE, spinUs, mac: MAC_B, threads: mapping });
  const link = connectNics(arena, a, b);
  let worker;
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
  let irqB;
  const ctl = new SharedArrayBuffer(4 * C_WORDS);
  const c = new Int32Array(ctl);
  try {
    const specA = await setupNetDriver(a, { queueSize: QUEUE_SIZE });
    const specB = await setupNetDriver(b, { queueSize: QUEUE_SIZE });
    const stamps = new SharedArrayBuffer(8 * 4096);
    const t = new Float64Array(stamps);
    worker = new Worker(new URL(import.meta.url), { workerData: { spec: specB, ctl, stamps } });
    const failed = new Promise((_, reject) => worker.once('error', reject));
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
    irqB = { i32: new Int32Array(specB.interrupt.buffer), index: specB.interrupt.index };

    const placementBefore = await probePlacement();
    console.log(`node ${process.version}, ${cores} cores; placement before: ${placementBefore.placement} (${placementBefore.roundTripNs} ns round trip)`);
    console.log(
      `threads: main (NIC a guest), worker (NIC b guest), ${queueThreads} queue thread(s) serving a tx + a rx + b tx + b rx (queue threads ${threads}; ${2 + queueThreads} threads) on ${cores} cores; ` +
        `${FRAME}-byte frames, rings ${QUEUE_SIZE}, device spin ${spinUs} us\n`,
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
    // the queue thread, b's guest; per-queue three).
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
      `(a) idle -> first frame: ${runs} runs x ${idleSamples} samples, ${gapMs} ms asleep before each (every thread asleep; b's guest in Atomics.wait), ` +
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
    const idlePooled = summary(idleAll);
    const barePooled = summary(bareAll);
    await stopBareWaiter();
    console.log(`  bare Atomics.notify -> wait hop after ${gapMs} ms idle (${bareAll.length} samples): p50 ${us(barePooled.p50)} us  p99 ${us(barePooled.p99)} us  max ${us(barePooled.max)} us`);

    // ---- (b) busy ping-pong ---------------------------------------------
    console.log(`\n(b) busy ping-pong a -> b -> a: ${runs} runs x up to ${trips} round trips (at most ${maxRunMs / 1000} s each), one-way = RTT / 2; both guests polling`);
    Atomics.store(c, C_MODE, MODE_ECHO);
    Atomics.add(irqB.i32, irqB.index, 1);
    Atomics.notify(irqB.i32, irqB.index);
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
      Atomics.add(irqB.i32, irqB.index, 1);
      Atomics.notify(irqB.i32, irqB.index);
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
    if (echoed !== seq) throw new Error(`worker echoed ${echoed} frames, main sent ${seq}`);

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
      row('idle -> first frame (one way)', idleRuns, idlePooled),
      row('reference: one bare notify -> Atomics.wait hop, same idle gap, same runs', bareRuns, barePooled),
      row('busy ping-pong (RTT / 2)', pingRuns, pingPooled),
    ];
    const meta = {
      node: process.version,
      cores,
      threads: 2 + queueThreads,
      queueThreads: threads,
      runs,
      idleSamples,
      gapMs,
      warmup,
      trips,
      spinUs,
      frameSize: FRAME,
      queueSize: QUEUE_SIZE,
      placementBefore,
    };
    const md = [
      `node ${meta.node}, ${cores} cores, ${meta.threads} threads (2 guests: main + worker; ${queueThreads} queue thread(s), mapping ${threads}), ${FRAME}-byte frames, device spin ${spinUs} us, ${runs} runs`,
      '',
      '| measurement | p50 us (median [min-max] over runs) | p99 us | p99.9 us | pooled p50 / p99 / p99.9 / max us (samples) | placement per run |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows.map(
        (r) =>
          `| ${r.name} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.p999)} | ${us(r.pooled.p50)} / ${us(r.pooled.p99)} / ${us(r.pooled.p999)} / ${us(r.pooled.max)} (${r.pooled.n}) | ${r.placements.join(', ')} |`,
      ),
      '',
      `Idle: ${idleSamples} samples per run, so a run's p99.9 is its maximum; the pooled column has ${idlePooled.n} samples.`,
    ].join('\n');
    writeResults('latency', { ...meta, rows, bareWake: barePooled, idleRuns, bareRuns, pingRuns }, [md]);
    console.log(`\n${md}`);
    return { ...meta, rows, bareWake: barePooled };
  } finally {
    await stopBareWaiter();
    Atomics.store(c, C_MODE, MODE_STOP);
    if (worker !== undefined) {
      // Wake it if it sleeps on its interrupt word, let it leave its loop, then end it.
      if (irqB !== undefined) {
        Atomics.add(irqB.i32, irqB.index, 1);
        Atomics.notify(irqB.i32, irqB.index);
      }
      await worker.terminate();
    }
    await link.close();
    await Promise.all([a.close(), b.close()]);
    await pool?.close();
  }
}

if (!isMainThread) guest(workerData);
else if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      'idle-samples': { type: 'string', default: '50' },
      'gap-ms': { type: 'string', default: '55' },
      warmup: { type: 'string', default: '2000' },
      trips: { type: 'string', default: '20000' },
      'spin-us': { type: 'string', default: '30' },
      'max-run-s': { type: 'string', default: '1.5' },
      threads: { type: 'string', default: 'link' },
    },
  });
  await latencyCases({
    runs: Math.max(1, Number(values.runs)),
    idleSamples: Number(values['idle-samples']),
    gapMs: Number(values['gap-ms']),
    warmup: Number(values.warmup),
    trips: Number(values.trips),
    spinUs: Number(values['spin-us']),
    maxRunS: Number(values['max-run-s']),
    threads: values.threads,
  });
}
