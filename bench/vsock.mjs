// virtio-vsock figures, each next to its baseline measured in the same run:
// - stream throughput, 64 KiB writes, guest -> host in mergeable and small
//   receive modes and host -> guest (the guest receives: mergeable buffers),
//   vs a Unix stream socket carrying the same writes in the same process
//   (both ends on the main thread, as the vsock guest and host stacks are);
// - the guest -> host stream with the host reading into its own buffer
//   (onread) vs a Unix socket read with net's onread, and vs 'data' Buffers;
// - connection setup rate (connect, RESPONSE, close) vs Unix socket connects,
//   on a fresh link (server) and after WARM_CONNS connections on it.
// Threads: the main thread runs both stacks; the device's rx and tx queues run
// on queue threads (VSOCK_THREADS says how many).
//
//   npm run bench:vsock [-- --runs 5 --mib 256 --conns 2000]
// or as the "vsock" case of npm run bench (vsockCases()). Run as a script it
// writes bench/results/vsock-<time>.{json,md}: per case `ours`, `baseline`
// (the Unix socket, same run; both { median, min, max } in the case's
// `unit`) and `ratio` (median of the per-run ratios).
// Credit is Linux's default buf_alloc (256 KiB) unless a row says otherwise.
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost, featureSet, probePlacement } from '../dist/index.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, VSOCK_F_SEQPACKET, VSOCK_F_STREAM } from '../dist/spec.js';
import { availableParallelism } from 'node:os';
import { benchArgs, fmtRange, isMain, machineLine, mdTable, median, range, writeResults } from './lib.mjs';

const WRITE = 64 * 1024;
const SMALL = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, VSOCK_F_STREAM, VSOCK_F_SEQPACKET);
// Set by vsockCases() for the run.
let BYTES = 256 << 20;
let CONNS = 2000;

async function withLink(features, fn, bufferSize = undefined) {
  const arena = new SharedArena(96 << 20);
  const device = new VirtioVsockDevice(arena.guestMemory(80 << 20), { guestCid: 3, arena });
  const host = new VsockHost(device, { bufferSize });
  const guest = await VsockDriver.open(device, { features, bufferSize });
  try {
    return await fn(guest, host);
  } finally {
    await guest.close();
    await host.close();
    await device.close();
  }
}

/** Counts received bytes (`add`); `done` resolves with the time the last of `total` arrived. */
function byteCounter(total) {
  let got = 0;
  let resolve;
  const done = new Promise((r) => (resolve = r));
  return {
    done,
    add(n) {
      got += n;
      if (got >= total) resolve(process.hrtime.bigint());
    },
  };
}

/** An onread option (the reader's own 64 KiB buffer) counting into `counter`. */
const onreadInto = (counter) => ({ buffer: Buffer.alloc(WRITE), callback: (n) => counter.add(n) });

/** Write `total` bytes in 64 KiB writes with backpressure; the peer counts them ('data'). Returns bytes/s. */
export async function stream(sender, receiver, total) {
  const counter = byteCounter(total);
  receiver.on('data', (b) => counter.add(b.length));
  return writeTimed(sender, total, counter.done);
}

/** The writing half of stream(): `done` resolves when the reader has everything. */
async function writeTimed(sender, total, done) {
  const chunk = Buffer.alloc(WRITE, 0x5a);
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += WRITE) {
    if (!sender.write(chunk)) await new Promise((r) => sender.once('drain', r));
  }
  const t1 = await done;
  return total / (Number(t1 - t0) / 1e9);
}

/** Stream rate over one vsock connection; `toGuest`: the host side writes and the guest reads. */
async function vsockStream(features, bufferSize, toGuest = false) {
  return withLink(
    features,
    async (guest, host) => {
      const accepted = new Promise((r) => host.listen(5000).once('connection', r));
      const sock = guest.connect(5000);
      await new Promise((r, j) => sock.once('connect', r).once('error', j));
      const peer = await accepted;
      peer.on('error', () => {}); // the reset below
      const rate = toGuest ? await stream(peer, sock, BYTES) : await stream(sock, peer, BYTES);
      sock.destroy();
      return rate;
    },
    bufferSize,
  );
}

/** Guest -> host at 256 KiB credit, the host's accepted socket reading into its own buffer (onread). */
async function vsockStreamOnread() {
  return withLink(undefined, async (guest, host) => {
    const counter = byteCounter(BYTES);
    const accepted = new Promise((r) => host.listen(5000, { onread: onreadInto(counter) }).once('connection', r));
    const sock = guest.connect(5000);
    await new Promise((r, j) => sock.once('connect', r).once('error', j));
    const peer = await accepted;
    peer.on('error', () => {}); // the reset below
    const rate = await writeTimed(sock, BYTES, counter.done);
    sock.destroy();
    return rate;
  });
}

/** Run fn(path, server) with a Unix stream server listening in this process; closed after. */
export async function unixPair(fn) {
  const path = join(tmpdir(), `vl-bench-vsock-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const server = createServer();
  await new Promise((r) => server.listen(path, r));
  try {
    return await fn(path, server);
  } finally {
    await new Promise((r) => server.close(r));
    rmSync(path, { force: true });
  }
}

async function unixStream() {
  return unixPair(async (path, server) => {
    const accepted = new Promise((r) => server.once('connection', r));
    const sock = createConnection(path);
    await new Promise((r) => sock.once('connect', r));
    const peer = await accepted;
    const rate = await stream(sock, peer, BYTES);
    sock.destroy();
    peer.destroy();
    return rate;
  });
}

/** The Unix socket with its own onread: the accepted socket writes, the connecting one reads into its buffer (net.Server has no onread). */
async function unixStreamOnread() {
  return unixPair(async (path, server) => {
    const counter = byteCounter(BYTES);
    const accepted = new Promise((r) => server.once('connection', r));
    const sock = createConnection({ path, onread: onreadInto(counter) });
    await new Promise((r) => sock.once('connect', r));
    const peer = await accepted;
    const rate = await writeTimed(peer, BYTES, counter.done);
    sock.destroy();
    peer.destroy();
    return rate;
  });
}

/** `n` connect + close cycles, `parallel` (default 32) at a time. */
export async function cycles(open, n, parallel = 32) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      await open();
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/**
 * Connections per second over `CONNS` cycles, after `warm` untimed ones on
 * the same link or server. The first few thousand connections of a process
 * are slow: CPU per connection falls about 20x over them, with the same
 * packets and queue-thread sleeps each, most of it V8 compiling the main
 * thread's code (its compiler threads) while that code runs unoptimized.
 * A later link takes the queue thread of the last one closed (compiled
 * already), so the fresh-link row, after the stream rows, measures what is
 * left of that warm-up on the main thread (see docs/vsock.md).
 */
async function setupRate(open, warm) {
  await cycles(open, warm);
  const t0 = process.hrtime.bigint();
  await cycles(open, CONNS);
  return CONNS / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Untimed connections before the warm setup rows are timed. */
const WARM_CONNS = 4000;

/** A server that ends each connection once its peer has ended (vsock listener or net.Server). */
export const endOnEnd = (s) => s.on('error', () => {}).resume().on('end', () => s.end());

/** One setup cycle: connect with `open()`, end() at 'connect', resolve at 'close'. */
export const connectEndClose = (open) =>
  new Promise((resolve, reject) => {
    const s = open();
    s.once('error', reject);
    s.once('connect', () => s.end());
    s.resume();
    s.once('close', resolve);
  });

async function vsockSetup(warm) {
  return withLink(undefined, async (guest, host) => {
    host.listen(6000).on('connection', endOnEnd);
    return setupRate(() => connectEndClose(() => guest.connect(6000)), warm);
  });
}

async function unixSetup(warm) {
  return unixPair(async (path, server) => {
    server.on('connection', endOnEnd);
    return setupRate(() => connectEndClose(() => createConnection(path)), warm);
  });
}

// The device's rx and tx queues get a thread each only where the default
// mapping gives every queue its own (VIRTIO_LAB_THREADS, else 'auto': a core
// for each of the 3 queues plus two); otherwise one thread serves both.
const mapping = process.env.VIRTIO_LAB_THREADS || 'auto';
const queueThreadEach = mapping === 'per-queue' || (mapping === 'auto' && availableParallelism() >= 5);
/** Threads the vsock cases keep busy. */
export const VSOCK_THREADS = queueThreadEach
  ? 'main: guest + host stacks; rx and tx queue threads (3 threads)'
  : 'main: guest + host stacks; one queue thread serving rx and tx (2 threads)';

/**
 * Every vsock row, `runs` times each (rows alternate within a run so drifting
 * placement hits all alike): stream MB/s (three vsock configurations and a
 * Unix socket in the same process) and connections per second (vsock, Unix).
 * Returns { name, unit, values: number[] per run, range } per row (values
 * in the row's unit: MB/s is 1e6 bytes/s), the ratios to the Unix socket,
 * and per vsock case { ours, baseline, ratio }.
 */
export async function vsockCases({ runs = 5, mib = 256, conns = 2000, log = console.log } = {}) {
  BYTES = mib << 20;
  CONNS = conns;
  const cases = [
    ['vsock stream, mergeable rx', 'MB/s', () => vsockStream(undefined)],
    ['vsock stream, small rx (4 KiB)', 'MB/s', () => vsockStream(SMALL)],
    ['vsock stream, mergeable, 4 MiB credit', 'MB/s', () => vsockStream(undefined, 4 << 20)],
    ['vsock stream host -> guest, mergeable', 'MB/s', () => vsockStream(undefined, undefined, true)],
    ['unix socket stream (same process)', 'MB/s', unixStream],
    ['vsock stream, mergeable, onread', 'MB/s', vsockStreamOnread],
    ['unix socket stream, onread (same process)', 'MB/s', unixStreamOnread],
    ['vsock connection setup', 'conn/s', () => vsockSetup(0)],
    ['unix socket connection setup', 'conn/s', () => unixSetup(0)],
    [`vsock connection setup, after ${WARM_CONNS} on the link`, 'conn/s', () => vsockSetup(WARM_CONNS)],
    [`unix socket connection setup, after ${WARM_CONNS} on the server`, 'conn/s', () => unixSetup(WARM_CONNS)],
  ];
  const values = cases.map(() => []);
  // Every value in its row's unit (stream() gives bytes/s).
  for (let r = 0; r < runs; r++) for (const [i, [, unit, run]] of cases.entries()) values[i].push((await run()) / (unit === 'MB/s' ? 1e6 : 1));
  const rows = cases.map(([name, unit], i) => ({ name, unit, values: values[i], range: range(values[i]) }));
  for (const row of rows) log(`${row.name.padEnd(52)} ${row.unit === 'MB/s' ? fmtRange(row.range) : fmtRange(row.range, 1, 0)} ${row.unit}`);
  const per = (name) => rows.find((r) => r.name === name).values;
  const ratioTo = (name, base) => median(per(name).map((x, i) => x / per(base)[i]));
  const ratios = {
    mergeable: ratioTo('vsock stream, mergeable rx', 'unix socket stream (same process)'),
    small: ratioTo('vsock stream, small rx (4 KiB)', 'unix socket stream (same process)'),
    credit4MiB: ratioTo('vsock stream, mergeable, 4 MiB credit', 'unix socket stream (same process)'),
    toGuest: ratioTo('vsock stream host -> guest, mergeable', 'unix socket stream (same process)'),
    setup: ratioTo('vsock connection setup', 'unix socket connection setup'),
    setupWarm: ratioTo(`vsock connection setup, after ${WARM_CONNS} on the link`, `unix socket connection setup, after ${WARM_CONNS} on the server`),
    onread: ratioTo('vsock stream, mergeable, onread', 'unix socket stream, onread (same process)'),
    onreadVsDefault: ratioTo('vsock stream, mergeable, onread', 'vsock stream, mergeable rx'),
  };
  log(
    `ratio vsock/unix stream: mergeable x${ratios.mergeable.toFixed(2)}, small x${ratios.small.toFixed(2)}, 4 MiB credit x${ratios.credit4MiB.toFixed(2)}, host -> guest x${ratios.toGuest.toFixed(2)}; connection setup x${ratios.setup.toFixed(2)}, after ${WARM_CONNS} x${ratios.setupWarm.toFixed(2)}`,
  );
  log(`onread: vsock/unix (both with onread) x${ratios.onread.toFixed(2)}; vsock onread/vsock 'data' Buffers x${ratios.onreadVsDefault.toFixed(2)}`);
  // Per vsock case: ours, its Unix socket baseline of the same runs (with onread for the onread row), and the ratio.
  const baseOf = (r) =>
    r.unit !== 'MB/s'
      ? r.name.includes('after')
        ? `unix socket connection setup, after ${WARM_CONNS} on the server`
        : 'unix socket connection setup'
      : r.name.endsWith('onread')
        ? 'unix socket stream, onread (same process)'
        : 'unix socket stream (same process)';
  const compared = rows
    .filter((r) => r.name.startsWith('vsock'))
    .map((r) => ({ name: r.name, unit: r.unit, ours: r.range, baseline: rows.find((b) => b.name === baseOf(r)).range, baselineName: baseOf(r), ratio: ratioTo(r.name, baseOf(r)) }));
  return { rows, ratios, cases: compared };
}

if (isMain(import.meta.url)) {
  const values = benchArgs(import.meta.url, { runs: { type: 'string', default: '5' }, mib: { type: 'string', default: '256' }, conns: { type: 'string', default: '2000' } });
  const runs = Math.max(1, Number(values.runs));
  const placement = await probePlacement();
  console.log(machineLine(placement));
  console.log(`vsock bench: ${runs} runs, ${values.mib} MiB per stream run in 64 KiB writes, ${values.conns} connections per setup run; ${VSOCK_THREADS}\n`);
  const r = await vsockCases({ runs, mib: Number(values.mib), conns: Number(values.conns) });
  const fmt = (x, unit) => (unit === 'MB/s' ? fmtRange(x) : fmtRange(x, 1, 0));
  writeResults('vsock', { node: process.version, cores: availableParallelism(), placement, threads: VSOCK_THREADS, runs, mib: Number(values.mib), conns: Number(values.conns), cases: r.cases, ratios: r.ratios, rows: r.rows }, [
    '# vsock bench',
    '',
    machineLine(placement),
    '',
    `${runs} runs; ${VSOCK_THREADS}`,
    '',
    ...mdTable(
      ['case', 'ours', 'baseline (Unix socket)', 'unit', 'ratio'],
      r.cases.map((c) => [c.name, fmt(c.ours, c.unit), `${fmt(c.baseline, c.unit)} (${c.baselineName})`, c.unit, `x${c.ratio.toFixed(2)}`]),
    ),
    '',
    `vsock onread vs the vsock stream's 'data' Buffers (same runs): x${r.ratios.onreadVsDefault.toFixed(2)}`,
  ]);
}
