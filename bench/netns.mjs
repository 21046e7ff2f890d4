// The netns case: iperf3 TCP between two Linux network namespaces through the
// lab (each namespace on a TAP port of one NetSwitch) and, in the same run,
// through a Linux bridge with veth pairs (the kernel's own path between two
// namespaces), one stream and 4 streams. Needs root (or CAP_NET_ADMIN),
// /dev/net/tun, iproute2 and iperf3.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Lab } from '../dist/index.js';
import { median } from './lib.mjs';

const run = promisify(execFile);
const ip = (...argv) => execFileSync('ip', argv, { stdio: ['ignore', 'ignore', 'pipe'] });

/** Fail at once, naming the package, when a tool is missing. */
export function netnsToolsMissing() {
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['iperf3', 'iperf3'],
  ]) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch (e) {
      if (e.code === 'ENOENT') return `${tool} not found: apt-get install ${pkg}`;
    }
  }
  return null;
}

/** iperf3 client in `ns` against `server`: received Gbit/s (the server's count). */
async function iperf(ns, server, seconds, streams) {
  for (let attempt = 0; ; attempt++) {
    const { stdout } = await run('ip', ['netns', 'exec', ns, 'iperf3', '-c', server, '-t', String(seconds), '-P', String(streams), '-J'], { maxBuffer: 64 << 20 }).catch((e) => e);
    const r = JSON.parse(stdout);
    if (r.error !== undefined) {
      if (attempt < 50 && /connect|refused|busy/i.test(r.error)) {
        await sleep(100);
        continue;
      }
      throw new Error(`iperf3 in ${ns}: ${r.error}`);
    }
    return r.end.sum_received.bits_per_second / 1e9;
  }
}

/** Two namespaces joined by a Linux bridge (in a third namespace) with veth pairs. */
function linuxBridge(tag) {
  const [a, b, br] = [`${tag}la`, `${tag}lb`, `${tag}lbr`];
  for (const ns of [a, b, br]) ip('netns', 'add', ns);
  ip('-n', br, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', br, 'link', 'set', 'br0', 'up');
  for (const [ns, addr, end] of [
    [a, '10.212.0.1/24', 'va'],
    [b, '10.212.0.2/24', 'vb'],
  ]) {
    ip('-n', br, 'link', 'add', end, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', br, 'link', 'set', end, 'master', 'br0', 'up');
    ip('-n', ns, 'addr', 'add', addr, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  return { a, b, server: '10.212.0.2', close: () => [a, b, br].forEach((ns) => ip('netns', 'del', ns)) };
}

/**
 * `runs` rounds of: lab 1 stream, bridge 1 stream, lab 4 streams, bridge 4
 * streams (alternating, so drift hits both alike), `seconds` each. Returns
 * the rows and the per-run ratios' medians.
 */
export async function netnsCase({ runs, seconds }) {
  const tag = `vb${process.pid.toString(36)}`;
  const lab = new Lab();
  lab.netns(`${tag}a`, { address: '10.213.0.1/24' }).netns(`${tag}b`, { address: '10.213.0.2/24' });
  lab.switch('sw0').connect(`${tag}a`, 'sw0').connect(`${tag}b`, 'sw0');
  await lab.start();
  const bridge = linuxBridge(tag);
  const servers = [lab.spawn(`${tag}b`, ['iperf3', '-s', '-B', '10.213.0.2'], { stdio: 'ignore' }), spawn('ip', ['netns', 'exec', bridge.b, 'iperf3', '-s', '-B', bridge.server], { stdio: 'ignore' })];
  const results = { lab1: [], bridge1: [], lab4: [], bridge4: [] };
  try {
    for (let r = 0; r < runs; r++) {
      for (const streams of [1, 4]) {
        results[`lab${streams}`].push(await iperf(`${tag}a`, '10.213.0.2', seconds, streams));
        results[`bridge${streams}`].push(await iperf(bridge.a, bridge.server, seconds, streams));
      }
    }
  } finally {
    for (const s of servers) s.kill();
    await lab.close();
    bridge.close();
  }
  const ratio = (ours, base) => median(ours.map((o, i) => o / base[i]));
  return {
    results,
    ratios: { one: ratio(results.lab1, results.bridge1), four: ratio(results.lab4, results.bridge4) },
    threads: 'lab: a switch thread and two threads per TAP port (5), plus the kernel; bridge: the kernel only',
  };
}
