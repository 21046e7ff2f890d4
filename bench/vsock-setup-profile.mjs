// What a vsock connection costs: `--conns` cycles of connect, end() at
// 'connect', the server's end() at 'end', and close, `--parallel` at a time
// (the bench's connection-setup case), and per connection the packets each
// stack sent by op, the device queues' chains, interrupts and sleeps, how
// busy the main thread's event loop was (eventLoopUtilization, which
// watches without adding turns), and the process's CPU time; each round is followed by a
// Unix socket doing the same cycles in the same process, and the ratio of
// the two rates is printed. Run it under `node --cpu-prof` for a profile.
// With `--block N` each vsock round is also timed in blocks of N
// connections, each with its rate and the CPU per connection of each kind
// of thread (from /proc/self/task: the main thread; the threads started
// after this script began, i.e. the queue threads; the threads there from
// the start: V8's compiler and GC helpers), and the minor page faults and
// GCs per block: where a fresh link's first connections spend their CPU
// (the blocks come first; the round's own figures follow on that link).
//
//   npm run build && node bench/vsock-setup-profile.mjs [--conns 3000 --parallel 32 --rounds 1 --block 500]
import { createConnection } from 'node:net';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost } from '../dist/index.js';
import { benchArgs, median, threadCpu } from './lib.mjs';
import { connectEndClose, cycles, endOnEnd, unixPair } from './vsock.mjs';

const values = benchArgs(import.meta.url, { conns: { type: 'string', default: '3000' }, parallel: { type: 'string', default: '32' }, rounds: { type: 'string', default: '1' }, block: { type: 'string', default: '0' } });
const CONNS = Number(values.conns);
const PARALLEL = Math.max(1, Number(values.parallel));
const ROUNDS = Math.max(1, Number(values.rounds));
const BLOCK = Math.max(0, Number(values.block));

let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });

/** The threads there before any link: V8's helpers (compiler, GC) and Node's own. */
const HELPERS = threadCpu();

/** Run `cycle` CONNS times in blocks of BLOCK, printing per block its rate and CPU per connection per kind of thread. */
async function blocks(cycle, log) {
  const main = String(process.pid);
  for (let done = 0, b = 0; done < CONNS; b++) {
    const n = Math.min(BLOCK, CONNS - done);
    const cpu0 = threadCpu();
    const faults0 = process.resourceUsage().minorPageFault;
    const gcs0 = gcs;
    const t0 = process.hrtime.bigint();
    await cycles(cycle, n, PARALLEL);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const us = { main: 0, queue: 0, other: 0 };
    for (const [tid, ns] of threadCpu()) {
      const kind = tid === main ? 'main' : HELPERS.has(tid) ? 'other' : 'queue';
      us[kind] += (ns - (cpu0.get(tid) ?? 0)) / 1e3 / n;
    }
    log(
      `  block ${b} (${done}-${done + n}): ${((n / ms) * 1e3).toFixed(0)} conn/s; CPU per connection: main ${us.main.toFixed(0)} us, queue threads ${us.queue.toFixed(0)} us, V8 helpers ${us.other.toFixed(0)} us; minor faults ${((process.resourceUsage().minorPageFault - faults0) / n).toFixed(1)}, GCs ${gcs - gcs0}`,
    );
    done += n;
  }
}

/** Run `cycle` CONNS times, PARALLEL at a time; returns { ms, cpuUs, loopBusy } over them (loopBusy: 0..1). */
async function timedCycles(cycle) {
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await cycles(cycle, CONNS, PARALLEL);
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
  if (BLOCK > 0) {
    console.log(`blocks of ${BLOCK} on a fresh link:`);
    await blocks(() => connectEndClose(() => guest.connect(6000)), console.log);
  }
  const before = { guest: { ...guest.stack.stats }, host: { ...host.stack.stats }, dev: device.vsockStats() };
  const { ms, cpuUs, loopBusy } = await timedCycles(() => connectEndClose(() => guest.connect(6000)));
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
    const { ms } = await timedCycles(() => connectEndClose(() => createConnection(path)));
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
