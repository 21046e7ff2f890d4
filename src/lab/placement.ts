import { Worker } from 'node:worker_threads';

/** Round trip (ns) below which two threads share a cache closely ("near"). */
const NEAR_NS = 250;

/** How two busy threads were placed when a figure was taken: on this kind of VM the host moves vCPUs, and cross-thread figures swing 3-7x with it. */
export interface Placement {
  /** Median round trip of one cache line between two busy threads, in ns. */
  roundTripNs: number;
  placement: 'near' | 'far';
}

// Inline worker: bounces the line back `rounds * trips` times.
const PONG = `
const { workerData } = require('node:worker_threads');
const w = new Int32Array(workerData);
const n = Atomics.load(w, 1);
for (let i = 0; i < n; i++) {
  while (Atomics.load(w, 0) !== 2 * i + 1) {}
  Atomics.store(w, 0, 2 * i + 2);
}`;

/**
 * Ping-pong one cache line between two busy threads (a few ms) and classify
 * the placement from the median of `rounds` timed rounds. Run it before every
 * figure and print it next to the figure.
 */
export async function probePlacement(rounds = 5, trips = 2000): Promise<Placement> {
  const sab = new SharedArrayBuffer(128);
  const w = new Int32Array(sab);
  Atomics.store(w, 1, rounds * trips);
  const worker = new Worker(PONG, { eval: true, workerData: sab });
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  await new Promise((resolve) => worker.once('online', resolve));
  const samples: number[] = [];
  let i = 0;
  // On a loaded machine each trip can wait for a time slice: give up after
  // 100 ms with what was measured (it reads as "far", which it is).
  const deadline = process.hrtime.bigint() + 100_000_000n;
  for (let r = 0; r < rounds && (r === 0 || process.hrtime.bigint() < deadline); r++) {
    const t0 = process.hrtime.bigint();
    for (const end = i + trips; i < end; i++) {
      Atomics.store(w, 0, 2 * i + 1);
      while (Atomics.load(w, 0) !== 2 * i + 2) {}
    }
    samples.push(Number(process.hrtime.bigint() - t0) / trips);
  }
  await worker.terminate();
  await exited;
  samples.sort((a, b) => a - b);
  const roundTripNs = Math.round(samples[samples.length >> 1]);
  return { roundTripNs, placement: roundTripNs < NEAR_NS ? 'near' : 'far' };
}
