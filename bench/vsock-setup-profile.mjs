// What a vsock connection costs: `--conns` cycles of connect, end() at
// 'connect', the server's end() at 'end', and close, `--parallel` at a time
// (the bench's connection-setup case), and per connection the packets each
// stack sent by op, the device queues' chains, interrupts and sleeps, how
// busy the main thread's event loop was (eventLoopUtilization, which
// watches without adding turns), and the process's CPU time; each round is followed by a
// Unix socket doing the same cycles in the same process, and the ratio of
// the two rates is printed. Run it under `node --cpu-prof` for a profile.
//
//   npm run build && node bench/vsock-setup-profile.mjs [--conns 3000 --parallel 32 --rounds 1]
import { createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost } from '../dist/index.js';
import { median } from './lib.mjs';
import { connectEndClose, endOnEnd, unixPair } from './vsock.mjs';

const { values } = parseArgs({ options: { conns: { type: 'string', default: '3000' }, parallel: { type: 'string', default: '32' }, rounds: { type: 'string', default: '1' } } });
const CONNS = Number(values.conns);
const PARALLEL = Math.max(1, Number(values.parallel));
const ROUNDS = Math.max(1, Number(values.rounds));

/** Run `cycle` CONNS times, PARALLEL at a time; returns { ms, cpuUs, loopBusy } over them (loopBusy: 0..1). */
async function cycles(cycle) {
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < CONNS) {
      next++;
      await cycle();
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  return { ms, cpuUs: cpu.user + cpu.system, loopBusy: performance.eventLoopUtilization(elu0).utilization };
}

/** One round of vsock cycles; returns conn/s, printing per-connection counters when `log` says so. */
async function vsockRound(log) {
  const arena = new SharedArena(96 << 20);
  const device = new VirtioVsockDevice(arena.guestMemory(80 << 20), { guestCid: 3, arena });
  const host = new VsockHost(device);
  const guest = await VsockDriver.open(device, {});
  host.listen(6000).on('connection', endOnEnd);
  const before = { guest: { ...guest.stack.stats }, host: { ...host.stack.stats }, dev: device.vsockStats() };
  const { ms, cpuUs, loopBusy } = await cycles(() => connectEndClose(() => guest.connect(6000)));
  const after = { guest: guest.stack.stats, host: host.stack.stats, dev: device.vsockStats() };
  const per = (a, b) => ((a - b) / CONNS).toFixed(2);
  log(`${CONNS} connections, ${PARALLEL} at a time: ${((CONNS / ms) * 1e3).toFixed(0)} conn/s; per connection: ${((ms * 1e3) / CONNS).toFixed(0)} us wall, ${(cpuUs / CONNS).toFixed(0)} us CPU (all threads); main event loop busy ${(loopBusy * 100).toFixed(0)} %`);
  log('packets sent per connection:');
  for (const side of ['guest', 'host']) {
    const keys = ['packetsOut', 'requestsSent', 'responsesSent', 'shutdownsSent', 'rstSent', 'creditUpdatesSent', 'creditRequestsSent', 'flushes'];
    log(`  ${side.padEnd(6)} ${keys.map((k) => `${k} ${per(after[side][k], before[side][k])}`).join(', ')}`);
  }
  for (const q of ['tx', 'rx']) log(`  device ${q}: ${['chains', 'interrupts', 'sleeps'].map((k) => `${k} ${per(after.dev[q][k], before.dev[q][k])}`).join(', ')}`);
  await guest.close();
  await host.close();
  await device.close();
  return (CONNS / ms) * 1e3;
}

/** The same cycles over a Unix socket in this process; returns conn/s. */
async function unixRound() {
  return unixPair(async (path, server) => {
    server.on('connection', endOnEnd);
    const { ms } = await cycles(() => connectEndClose(() => createConnection(path)));
    return (CONNS / ms) * 1e3;
  });
}

const ratios = [];
for (let r = 0; r < ROUNDS; r++) {
  const v = await vsockRound(r === ROUNDS - 1 ? console.log : () => {});
  const u = await unixRound();
  ratios.push(v / u);
  console.log(`round ${r + 1}: vsock ${v.toFixed(0)} conn/s, unix ${u.toFixed(0)} conn/s, x${(v / u).toFixed(2)}`);
}
console.log(`median ratio x${median(ratios).toFixed(2)} [${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}]`);
