// Does moving a vsock stack off the main thread pay on this machine? An upper
// bound, measured next to the design that ships: a 64 KiB-write stream guest
// -> host over one connection at 256 KiB credit (mergeable receive buffers),
// - host stack on the main thread (as VsockHost runs now; 3 threads: main
//   with both stacks, the device's queue thread(s));
// - host stack and its reader on a worker (the guest stack and the writer
//   stay on the main thread): what a host stack on its own thread could
//   reach at best, since here the bytes never come back to the main thread;
// - a Unix stream socket in the same process (the baseline of bench:vsock).
// The three alternate within each run so drifting load hits all alike.
//
//   npm run build && node bench/vsock-host-thread.mjs [--runs 5 --mib 128]
// Writes bench/results/vsock-host-thread-<time>.{json,md}.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { createConnection } from 'node:net';
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost, probePlacement } from '../dist/index.js';
import { benchArgs, fmtRange, machineLine, mdTable, median, range, writeResults } from './lib.mjs';
import { stream, unixPair } from './vsock.mjs';

const PORT = 5000;

/** A device and its guest driver on this thread; fn(guest) gets them open, everything closed after. */
async function withGuest(fn) {
  const arena = new SharedArena(96 << 20);
  const device = new VirtioVsockDevice(arena.guestMemory(80 << 20), { guestCid: 3, arena });
  const guest = await VsockDriver.open(device);
  try {
    return await fn(device, guest);
  } finally {
    await guest.close();
    await device.close();
  }
}

/** Connect from the guest, wait for 'connect', write `total` bytes; `doneAt` resolves when the peer has them all. */
async function writeAll(guest, total, doneAt) {
  const sock = guest.connect(PORT);
  await new Promise((r, j) => sock.once('connect', r).once('error', j));
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const t0 = performance.timeOrigin + performance.now();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  const t1 = await doneAt;
  sock.destroy();
  return total / ((t1 - t0) / 1e3);
}

async function hostOnMain(total) {
  return withGuest(async (device, guest) => {
    const host = new VsockHost(device);
    try {
      const accepted = new Promise((r) => host.listen(PORT).once('connection', r));
      const sock = guest.connect(PORT);
      await new Promise((r, j) => sock.once('connect', r).once('error', j));
      const peer = await accepted;
      peer.on('error', () => {});
      const rate = await stream(sock, peer, total);
      sock.destroy();
      return rate;
    } finally {
      await host.close();
    }
  });
}

async function hostOnWorker(total) {
  return withGuest(async (device, guest) => {
    const worker = new Worker(new URL('./vsock-host-thread-worker.mjs', import.meta.url), {
      workerData: { hostPort: device.hostPort, deviceFeatures: device.deviceFeatures, port: PORT, total },
    });
    try {
      await new Promise((r, j) => worker.once('message', r).once('error', j));
      const doneAt = new Promise((r, j) => worker.on('message', (m) => m.doneAt !== undefined && r(m.doneAt)).once('error', j));
      return await writeAll(guest, total, doneAt);
    } finally {
      worker.postMessage('close');
      await new Promise((r) => worker.once('exit', r));
    }
  });
}

async function unix(total) {
  return unixPair(async (path, server) => {
    const accepted = new Promise((r) => server.once('connection', r));
    const sock = createConnection(path);
    await new Promise((r) => sock.once('connect', r));
    const peer = await accepted;
    const rate = await stream(sock, peer, total);
    sock.destroy();
    peer.destroy();
    return rate;
  });
}

const values = benchArgs(import.meta.url, { runs: { type: 'string', default: '5' }, mib: { type: 'string', default: '128' } });
const runs = Math.max(1, Number(values.runs));
const total = Number(values.mib) << 20;
const placement = await probePlacement();
console.log(machineLine(placement));
console.log(`vsock stack thread placement: ${runs} runs, ${values.mib} MiB guest -> host in 64 KiB writes, 256 KiB credit\n`);
const cases = [
  ['host stack on the main thread', hostOnMain],
  ['host stack + reader on a worker', hostOnWorker],
  ['unix socket stream (same process)', unix],
];
const values_ = cases.map(() => []);
for (let r = 0; r < runs; r++) for (const [i, [, run]] of cases.entries()) values_[i].push(await run(total));
const rows = cases.map(([name], i) => ({ name, unit: 'MB/s', values: values_[i], range: range(values_[i]) }));
const unixValues = values_[2];
for (const row of rows) {
  row.ratio = median(row.values.map((x, i) => x / unixValues[i]));
  console.log(`${row.name.padEnd(36)} ${fmtRange(row.range, 1e6)} MB/s  x${row.ratio.toFixed(2)} of the Unix socket`);
}
writeResults('vsock-host-thread', { node: process.version, cores: availableParallelism(), placement, runs, mib: Number(values.mib), rows }, [
  '# vsock stack thread placement',
  '',
  machineLine(placement),
  '',
  ...mdTable(
    ['case', 'MB/s median [min-max]', 'ratio to the Unix socket'],
    rows.map((r) => [r.name, fmtRange(r.range, 1e6), `x${r.ratio.toFixed(2)}`]),
  ),
]);
