// Memory: does moving frames allocate? 10 M frames through the pump (split,
// then packed rings), each in a child process started with --expose-gc and
// --trace-gc, after a warm-up run in the same process:
// - heap (after a forced GC) of the main thread and of the pump's guest
//   thread before and after the frames, and the main thread's RSS;
// - GCs on the main thread during the run (PerformanceObserver on 'gc');
// - GCs in every thread of the process (the queue workers too: --trace-gc
//   lines), next to a child that moves 10 k frames, so start-up GCs cancel.
// Exits 1 when a heap grew by more than 1 MiB.
//
//   npm run bench:memory [-- --frames 10000000 --rings split,packed]
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { benchArgs, isMain, machineLine } from './lib.mjs';

export const HEAP_LIMIT = 1 << 20;
const TRACE_GC_LINE = /^\[\d+:0x[0-9a-f]+\]\s+\d+ ms: /gm;
const MiB = (b) => `${(b / (1 << 20)).toFixed(2)} MiB`;

/** In the child: one warm-up run, then `frames` frames on `ring`; prints one JSON line. */
async function child(frames, ring) {
  const { runPump } = await import('../dist/index.js');
  await runPump({ frames: 100_000, ring });
  let gcs = 0;
  const observer = new PerformanceObserver((list) => (gcs += list.getEntries().length));
  gc();
  const before = { heap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss };
  observer.observe({ entryTypes: ['gc'] });
  const r = await runPump({ frames, ring });
  // Let the observer's last entries arrive before it stops.
  await new Promise((resolve) => setImmediate(resolve));
  observer.disconnect();
  gc();
  const after = { heap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss };
  console.log(`RESULT ${JSON.stringify({ ring, frames, received: r.received, lost: r.lost, pps: r.pps, before, after, mainGcs: gcs, guestHeap: r.guestHeap[0] })}`);
}

/** Run a child; its result and the GC lines every thread printed. */
async function runChild(frames, ring) {
  const script = fileURLToPath(import.meta.url);
  const { stdout } = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['--expose-gc', '--trace-gc', script, '--child', '--frames', String(frames), '--rings', ring], { maxBuffer: 64 << 20, timeout: 300_000 }, (e, stdout, stderr) =>
      e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve({ stdout }),
    ),
  );
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (line === undefined) throw new Error(`memory child printed no result:\n${stdout.slice(-2000)}`);
  return { ...JSON.parse(line.slice(7)), allThreadGcs: (stdout.match(TRACE_GC_LINE) ?? []).length };
}

/**
 * The memory case: per ring, a 10 k-frame child and a `frames` child; prints
 * and returns { rows, ok } (ok: no heap grew by more than HEAP_LIMIT).
 */
export async function memoryCase({ frames = 10_000_000, rings = ['split', 'packed'], log = console.log } = {}) {
  const rows = [];
  for (const ring of rings) {
    const base = await runChild(10_000, ring);
    const r = await runChild(frames, ring);
    const row = {
      ring,
      frames,
      received: r.received,
      lost: r.lost,
      mpps: r.pps / 1e6,
      mainHeapGrowth: r.after.heap - r.before.heap,
      guestHeapGrowth: r.guestHeap.after - r.guestHeap.before,
      rssGrowth: r.after.rss - r.before.rss,
      mainGcs: r.mainGcs,
      allThreadGcs: r.allThreadGcs,
      allThreadGcsAt10k: base.allThreadGcs,
      heap: { main: [r.before.heap, r.after.heap], guest: [r.guestHeap.before, r.guestHeap.after], rss: [r.before.rss, r.after.rss] },
    };
    row.ok = row.mainHeapGrowth <= HEAP_LIMIT && row.guestHeapGrowth <= HEAP_LIMIT && r.lost === 0 && r.received === frames;
    rows.push(row);
    log(
      `${ring.padEnd(6)} ${frames} frames (${row.mpps.toFixed(2)} Mpps, lost ${r.lost}): ` +
        `main heap ${MiB(r.before.heap)} -> ${MiB(r.after.heap)} (${row.mainHeapGrowth >= 0 ? '+' : ''}${(row.mainHeapGrowth / 1024).toFixed(0)} KiB), ` +
        `guest heap ${MiB(r.guestHeap.before)} -> ${MiB(r.guestHeap.after)} (${row.guestHeapGrowth >= 0 ? '+' : ''}${(row.guestHeapGrowth / 1024).toFixed(0)} KiB), ` +
        `RSS ${MiB(r.before.rss)} -> ${MiB(r.after.rss)}; GCs: main thread ${r.mainGcs} during the run, every thread ${r.allThreadGcs} (a 10 k-frame process: ${base.allThreadGcs})  ${row.ok ? 'ok' : 'FAIL'}`,
    );
  }
  return { rows, ok: rows.every((r) => r.ok) };
}

if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, { child: { type: 'boolean', default: false }, frames: { type: 'string', default: '10000000' }, rings: { type: 'string', default: 'split,packed' } });
  if (values.child) await child(Number(values.frames), values.rings);
  else {
    const { probePlacement } = await import('../dist/index.js');
    console.log(machineLine(await probePlacement()));
    console.log(`memory: pump (guest, tx worker, rx worker: 3 busy threads), heap limit +${MiB(HEAP_LIMIT)} per thread\n`);
    const { ok } = await memoryCase({ frames: Number(values.frames), rings: values.rings.split(',') });
    process.exitCode = ok ? 0 : 1;
  }
}
