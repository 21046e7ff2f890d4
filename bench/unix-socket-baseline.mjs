// Baseline: the same frames carried over a Unix stream socket between two
// worker threads, batched (many frames per write, each framed with a 4-byte
// big-endian length, as QEMU's -netdev stream does). The sender copies each
// frame into the batch buffer, the receiver copies each frame out and checks
// its sequence number: one copy in, one copy out, like a ring.
//
// Timed after a warm-up, as the pump in the suite and testpmd's windows are.
//
//   node bench/unix-socket-baseline.mjs [--runs 5] [--batch 32] [--warmup 1] [--measure 1]
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { benchArgs, fmtRange, gbps, isMain, machineLine, range, STEADY_METER_SOURCE, steadyRate } from './lib.mjs';

const RECEIVER = `
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const { path, size } = workerData;
${STEADY_METER_SOURCE}
const out = Buffer.alloc(size);
let got = 0;
let errors = 0;
let rest = null;
const server = net.createServer((sock) => {
  sock.on('data', (chunk) => {
    let buf = chunk;
    if (rest !== null) { buf = Buffer.concat([rest, chunk]); rest = null; }
    let off = 0;
    while (off + 4 <= buf.length) {
      const len = buf.readUInt32BE(off);
      if (off + 4 + len > buf.length) break;
      buf.copy(out, 0, off + 4, off + 4 + len);
      if (len !== size || out.readUInt32LE(14) !== (got >>> 0)) errors++;
      got++;
      off += 4 + len;
    }
    if (off < buf.length) rest = buf.subarray(off);
    meter(got);
  });
  sock.on('end', () => {
    parentPort.postMessage({ got, errors, steady });
    sock.destroy();
    server.close();
  });
});
server.listen(path, () => parentPort.postMessage('listening'));
`;

const SENDER = `
const net = require('node:net');
const { workerData } = require('node:worker_threads');
const { path, size, batch, seconds } = workerData;
const template = Buffer.alloc(size);
for (let i = 0; i < size; i++) template[i] = i & 0xff;
const sock = net.createConnection(path, () => {
  const endAt = performance.now() + seconds * 1000;
  let sent = 0;
  const pump = () => {
    while (performance.now() < endAt) {
      // A fresh buffer per write: the socket may still hold the last one.
      const buf = Buffer.allocUnsafe(batch * (4 + size));
      let off = 0;
      for (let k = 0; k < batch; k++) {
        buf.writeUInt32BE(size, off);
        template.copy(buf, off + 4);
        buf.writeUInt32LE(sent >>> 0, off + 4 + 14);
        sent++;
        off += 4 + size;
      }
      if (!sock.write(buf)) { sock.once('drain', pump); return; }
    }
    sock.end();
  };
  pump();
});
sock.on('error', () => {});
`;

/**
 * Frames per second of a Unix stream socket carrying frames of `size` bytes
 * (>= 18) from one worker thread to another, `batch` frames per write, for
 * `warmupS` + `measureS` seconds; the rate is the receiver's after the
 * warm-up (the code warms up as ours does).
 */
export async function unixSocketRate(size, { warmupS = 1, measureS = 1, batch = 32 } = {}) {
  if (size < 18) throw new Error(`frame size ${size} must be >= 18 (sequence number at byte 14)`);
  const path = join(tmpdir(), `virtio-lab-bench-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const workers = [];
  try {
    const receiver = new Worker(RECEIVER, { eval: true, workerData: { path, size, warmupMs: warmupS * 1000 } });
    workers.push(receiver);
    const failed = new Promise((_, reject) => receiver.once('error', reject));
    failed.catch(() => {});
    const messages = [];
    let wake = () => {};
    receiver.on('message', (m) => { messages.push(m); wake(); });
    const next = () => (messages.length > 0 ? Promise.resolve(messages.shift()) : Promise.race([new Promise((r) => (wake = r)).then(() => messages.shift()), failed]));
    if ((await next()) !== 'listening') throw new Error('receiver did not listen');
    const sender = new Worker(SENDER, { eval: true, workerData: { path, size, batch, seconds: warmupS + measureS } });
    workers.push(sender);
    sender.once('error', (e) => { messages.push({ error: e }); wake(); });
    const result = await next();
    if (result.error) throw result.error;
    if (result.errors !== 0) throw new Error(`unix socket: ${result.errors} of ${result.got} frames bad`);
    return steadyRate(result.steady, result.got, 'unix socket');
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
    rmSync(path, { force: true });
  }
}

// Run alone: median and range over the runs for 64 and 1500 B (npm run bench
// runs it beside the pump as a baseline).
if (isMain(import.meta.url)) {
  const { probePlacement } = await import('../dist/index.js');
  const values = benchArgs(import.meta.url, { runs: { type: 'string', default: '5' }, batch: { type: 'string', default: '32' }, warmup: { type: 'string', default: '1' }, measure: { type: 'string', default: '1' } });
  const runs = Math.max(1, Number(values.runs));
  const batch = Number(values.batch);
  const warmupS = Number(values.warmup);
  const measureS = Number(values.measure);
  console.log(machineLine(await probePlacement()));
  console.log(`unix stream socket, 2 worker threads (sender, receiver) + the kernel, ${batch} frames per write, 4-byte length framing; ${runs} runs of ${warmupS} s warm-up + ${measureS} s timed\n`);
  for (const size of [64, 1500]) {
    const rates = [];
    const placements = [];
    for (let r = 0; r < runs; r++) {
      placements.push((await probePlacement(3, 1000)).placement);
      rates.push(await unixSocketRate(size, { warmupS, measureS, batch }));
    }
    const r = range(rates);
    console.log(`${String(size).padStart(5)} B  ${fmtRange(r, 1e6)} M frames/s  ${gbps(r.median, size).toFixed(2)} Gbit/s  placement ${placements.join(',')}`);
  }
}
