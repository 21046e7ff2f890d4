// virtio-vsock figures, each next to its baseline measured in the same run:
// - stream throughput, guest -> host, 64 KiB writes, in mergeable and small
//   receive modes, vs a Unix stream socket carrying the same writes in the
//   same process (both ends on the main thread, as the vsock guest and host
//   stacks are);
// - connection setup rate (connect, RESPONSE, close) vs Unix socket connects.
// Threads: the main thread runs both stacks; the device's rx and tx queues run
// on one worker each (3 threads).
//
//   npm run bench:vsock [-- --runs 5 --mib 256 --conns 2000]
// Credit is Linux's default buf_alloc (256 KiB) unless a row says otherwise.
import { createServer, createConnection } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, SharedArena, VSOCK_F_SEQPACKET, VSOCK_F_STREAM, VirtioVsockDevice, VsockDriver, VsockHost, featureSet } from '../dist/index.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, mib: { type: 'string', default: '256' }, conns: { type: 'string', default: '2000' } } });
const RUNS = Math.max(1, Number(values.runs));
const BYTES = Number(values.mib) << 20;
const CONNS = Number(values.conns);
const WRITE = 64 * 1024;
const SMALL = featureSet(F_VERSION_1, F_EVENT_IDX, F_INDIRECT_DESC, VSOCK_F_STREAM, VSOCK_F_SEQPACKET);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, unit, scale = 1) => `${(median(xs) / scale).toFixed(2)} ${unit} [${(Math.min(...xs) / scale).toFixed(2)}-${(Math.max(...xs) / scale).toFixed(2)}]`;

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

/** Write `total` bytes in 64 KiB writes with backpressure; the peer counts them. Returns bytes/s. */
async function stream(sender, receiver, total) {
  const chunk = Buffer.alloc(WRITE, 0x5a);
  const done = new Promise((resolve) => {
    let got = 0;
    receiver.on('data', (b) => {
      got += b.length;
      if (got >= total) resolve(process.hrtime.bigint());
    });
  });
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += WRITE) {
    if (!sender.write(chunk)) await new Promise((r) => sender.once('drain', r));
  }
  const t1 = await done;
  return total / (Number(t1 - t0) / 1e9);
}

async function vsockStream(features, bufferSize) {
  return withLink(
    features,
    async (guest, host) => {
      const accepted = new Promise((r) => host.listen(5000).once('connection', r));
      const sock = guest.connect(5000);
      await new Promise((r, j) => sock.once('connect', r).once('error', j));
      const peer = await accepted;
      peer.on('error', () => {}); // the reset below
      const rate = await stream(sock, peer, BYTES);
      sock.destroy();
      return rate;
    },
    bufferSize,
  );
}

async function unixPair(fn) {
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

/** Connections per second: `CONNS` connect + close cycles, 32 at a time. */
async function setupRate(open) {
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < CONNS) {
      next++;
      await open();
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return CONNS / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function vsockSetup() {
  return withLink(undefined, async (guest, host) => {
    host.listen(6000).on('connection', (s) => s.on('error', () => {}).resume().on('end', () => s.end()));
    return setupRate(
      () =>
        new Promise((resolve, reject) => {
          const s = guest.connect(6000);
          s.once('error', reject);
          s.once('connect', () => s.end());
          s.resume();
          s.once('close', resolve);
        }),
    );
  });
}

async function unixSetup() {
  return unixPair(async (path, server) => {
    server.on('connection', (s) => s.resume().on('end', () => s.end()));
    return setupRate(
      () =>
        new Promise((resolve, reject) => {
          const s = createConnection(path);
          s.once('error', reject);
          s.once('connect', () => s.end());
          s.resume();
          s.once('close', resolve);
        }),
    );
  });
}

console.log(`vsock bench: ${RUNS} runs, ${BYTES >> 20} MiB per stream run, ${CONNS} connections per setup run; Node ${process.version}, ${availableParallelism()} cores; 3 threads (main: guest + host stacks; rx and tx queue workers)`);
const rows = [];
for (const [name, run] of [
  ['vsock stream, mergeable rx', () => vsockStream(undefined)],
  ['vsock stream, small rx (4 KiB)', () => vsockStream(SMALL)],
  ['vsock stream, mergeable, 4 MiB credit', () => vsockStream(undefined, 4 << 20)],
  ['unix socket stream (same process)', unixStream],
  ['vsock connection setup', vsockSetup],
  ['unix socket connection setup', unixSetup],
]) {
  const xs = [];
  for (let i = 0; i < RUNS; i++) xs.push(await run());
  rows.push([name, xs]);
  const stream = name.includes('stream');
  console.log(`${name.padEnd(36)} ${stream ? fmt(xs, 'MB/s', 1e6) : fmt(xs, 'conn/s')}`);
}
const m = Object.fromEntries(rows.map(([n, xs]) => [n, median(xs)]));
const unix = m['unix socket stream (same process)'];
console.log(
  `ratio vsock/unix stream: mergeable x${(m['vsock stream, mergeable rx'] / unix).toFixed(2)}, small x${(m['vsock stream, small rx (4 KiB)'] / unix).toFixed(2)}, 4 MiB credit x${(m['vsock stream, mergeable, 4 MiB credit'] / unix).toFixed(2)}`,
);
console.log(`ratio vsock/unix connection setup: x${(m['vsock connection setup'] / m['unix socket connection setup']).toFixed(2)}`);
