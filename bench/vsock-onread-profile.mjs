// Where the vsock onread stream's time goes: a guest -> host stream at
// 256 KiB credit in 64 KiB writes, the host reading with onread, and per MiB
// the stacks' packets and credit packets, the device queues' interrupts and
// sleeps, the process's minor page faults, and CPU time per thread (from
// /proc/self/task); `--reader data` reads 'data' Buffers instead; each round is
// followed by a Unix socket read the same way in the same process, and
// the ratio of the two is printed. Run it under `node --cpu-prof` for a
// profile, or `strace -f -c -e trace=futex` for the futex calls.
//
//   npm run build && node bench/vsock-onread-profile.mjs [--mib 128 --rounds 1 --reader onread|data]
import { createConnection } from 'node:net';
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost } from '../dist/index.js';
import { benchArgs, median, threadCpu } from './lib.mjs';
import { unixPair } from './vsock.mjs';

const WRITE = 64 * 1024;
const values = benchArgs(import.meta.url, { mib: { type: 'string', default: '128' }, rounds: { type: 'string', default: '1' }, reader: { type: 'string', default: 'onread' } });
if (values.reader !== 'onread' && values.reader !== 'data') throw new Error(`--reader ${values.reader}: onread or data`);
const DATA = values.reader === 'data';
const MIB = Number(values.mib);
const ROUNDS = Math.max(1, Number(values.rounds));
const BYTES = MIB << 20;

/** One vsock stream read as --reader says; returns bytes/s, printing its counters per MiB when `log` says so. */
async function vsockRound(log) {
  const arena = new SharedArena(96 << 20);
  const device = new VirtioVsockDevice(arena.guestMemory(80 << 20), { guestCid: 3, arena });
  const host = new VsockHost(device);
  const guest = await VsockDriver.open(device, {});
  let got = 0;
  let resolve;
  const done = new Promise((r) => (resolve = r));
  const onread = { buffer: Buffer.alloc(WRITE), callback: (n) => { got += n; if (got >= BYTES) resolve(); } };
  const accepted = new Promise((r) => host.listen(5000, DATA ? undefined : { onread }).once('connection', r));
  const sock = guest.connect(5000);
  await new Promise((r, j) => sock.once('connect', r).once('error', j));
  const peer = await accepted;
  peer.on('error', () => {});
  if (DATA) peer.on('data', (b) => onread.callback(b.length));
  const faults = () => process.resourceUsage().minorPageFault;
  const before = { host: { ...host.stack.stats }, guest: { ...guest.stack.stats }, dev: device.vsockStats(), t: threadCpu(true), faults: faults(), wall: process.hrtime.bigint() };
  const chunk = Buffer.alloc(WRITE, 0x5a);
  for (let sent = 0; sent < BYTES; sent += WRITE) if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  await done;
  const wallMs = Number(process.hrtime.bigint() - before.wall) / 1e6;
  const after = { host: host.stack.stats, guest: guest.stack.stats, dev: device.vsockStats(), t: threadCpu(true) };
  const per = (a, b) => ((a - b) / MIB).toFixed(2);
  log(`${MIB} MiB guest -> host, ${values.reader}, 256 KiB credit: ${(BYTES / 1e6 / (wallMs / 1e3)).toFixed(0)} MB/s, ${wallMs.toFixed(0)} ms`);
  log('per MiB:');
  log(`  minor page faults         ${per(faults(), before.faults)}`);
  for (const k of ['packetsIn', 'packetsOut', 'rwIn', 'creditUpdatesSent', 'creditRequestsIn']) log(`  host ${k.padEnd(20)} ${per(after.host[k], before.host[k])}`);
  for (const k of ['packetsOut', 'rwSent', 'creditUpdatesIn', 'creditRequestsSent']) log(`  guest ${k.padEnd(19)} ${per(after.guest[k], before.guest[k])}`);
  for (const q of ['tx', 'rx']) for (const k of ['chains', 'interrupts', 'sleeps']) log(`  device ${q}.${k.padEnd(15)} ${per(after.dev[q][k], before.dev[q][k])}`);
  log('thread CPU ms per MiB:');
  for (const [k, v] of after.t) if (v - (before.t.get(k) ?? 0) > 0) log(`  ${k.padEnd(24)} ${((v - (before.t.get(k) ?? 0)) / 1e6 / MIB).toFixed(3)}`);
  sock.destroy();
  await guest.close();
  await host.close();
  await device.close();
  return BYTES / (wallMs / 1e3);
}

/** The Unix socket read the same way (net's own onread, or 'data'), same writes; returns bytes/s. */
async function unixRound() {
  return unixPair(async (path, server) => {
    let got = 0;
    let resolve;
    const done = new Promise((r) => (resolve = r));
    const accepted = new Promise((r) => server.once('connection', r));
    const count = (n) => { got += n; if (got >= BYTES) resolve(); };
    const sock = DATA ? createConnection({ path }).on('data', (b) => count(b.length)) : createConnection({ path, onread: { buffer: Buffer.alloc(WRITE), callback: count } });
    await new Promise((r) => sock.once('connect', r));
    const peer = await accepted;
    const chunk = Buffer.alloc(WRITE, 0x5a);
    const t0 = process.hrtime.bigint();
    for (let sent = 0; sent < BYTES; sent += WRITE) if (!peer.write(chunk)) await new Promise((r) => peer.once('drain', r));
    await done;
    const rate = BYTES / (Number(process.hrtime.bigint() - t0) / 1e9);
    sock.destroy();
    peer.destroy();
    return rate;
  });
}

const ratios = [];
for (let r = 0; r < ROUNDS; r++) {
  const v = await vsockRound(r === ROUNDS - 1 ? console.log : () => {});
  const u = await unixRound();
  ratios.push(v / u);
  console.log(`round ${r + 1}: vsock ${values.reader} ${(v / 1e6).toFixed(0)} MB/s, unix ${values.reader} ${(u / 1e6).toFixed(0)} MB/s, x${(v / u).toFixed(2)}`);
}
console.log(`median ratio x${median(ratios).toFixed(2)} [${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}]`);
