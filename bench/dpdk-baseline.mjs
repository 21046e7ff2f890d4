// Baseline: DPDK's own virtio pair on this machine, a real virtio-net driver
// and device in C. One dpdk-testpmd process: the vhost PMD (the device side,
// a vhost-user socket server) and a hot-attached virtio-user PMD (the driver
// side) connected through that socket, io forwarding between them on one
// busy lcore, 32-frame bursts, frames bouncing in a loop after "start
// tx_first". Each port's Rx-pps is one ring crossing per frame per
// direction, as the pump's tx-then-rx path is. Needs `dpdk-testpmd` (Debian
// package dpdk-dev) and runs without hugepages or PCI devices.
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const TESTPMD = 'dpdk-testpmd';

/** True when dpdk-testpmd is on PATH. */
export function dpdkAvailable() {
  return spawnSync('sh', ['-c', `command -v ${TESTPMD}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Frames per second through the vhost <-> virtio-user loop, frames of `size`
 * bytes, `ring` 'split' or 'packed': `samples` windows of `windowS` seconds
 * in one testpmd process, after a 1 s warm-up. Returns one rate per window.
 */
export async function dpdkRates(size, ring = 'split', { samples = 5, windowS = 0.5 } = {}) {
  const id = `vl-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const sock = join(tmpdir(), `${id}.sock`);
  const args = ['-l', '0-1', '--no-huge', '--no-pci', '-m', '256', '--file-prefix', id, '--vdev', `net_vhost0,iface=${sock},queues=1`, '--', '-i', '--burst=32', '--nb-cores=1', '--rxd=1024', '--txd=1024', '--total-num-mbufs=16384'];
  // testpmd printf()s its stats: unbuffer its stdout, or a pipe holds them until it exits.
  const child = spawn('stdbuf', ['-o0', TESTPMD, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  const exited = new Promise((resolve) => child.once('close', resolve));
  child.stdin.on('error', () => {});
  const say = (line) => child.stdin.write(`${line}\n`);
  const waitFor = async (text, ms) => {
    for (const until = Date.now() + ms; !out.includes(text); await sleep(20)) if (Date.now() > until || child.exitCode !== null) throw new Error(`dpdk-testpmd: no "${text}" in ${ms} ms:\n${out.slice(-2000)}`);
  };
  try {
    await waitFor('testpmd>', 20_000);
    say('port stop all');
    say(`port attach net_virtio_user0,path=${sock},queues=1${ring === 'packed' ? ',packed_vq=1' : ''}`);
    say('port start all');
    await waitFor('Port 1 is attached', 10_000);
    // The vhost link comes up asynchronously; frames sent before it are lost and the loop stalls.
    await sleep(1000);
    say('set fwd io');
    say(`set txpkts ${size}`);
    say('start tx_first 4');
    await sleep(1000);
    // "Rx-pps" is the rate since the previous "show port stats": the first show starts the clock.
    say('show port stats all');
    const rates = [];
    for (let i = 0; i < samples; i++) {
      await sleep(windowS * 1000);
      const mark = out.length;
      say('show port stats all');
      for (const until = Date.now() + 5_000; !/Tx-pps[^]*Tx-pps/.test(out.slice(mark)) && Date.now() < until; ) await sleep(10);
      const ports = [...out.slice(mark).matchAll(/Rx-pps:\s+(\d+)/g)].map((m) => Number(m[1]));
      if (ports.length < 2) throw new Error(`dpdk-testpmd: no port stats:\n${out.slice(-2000)}`);
      rates.push(Math.min(ports[0], ports[1]));
    }
    say('stop');
    say('quit');
    return rates;
  } finally {
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
    rmSync(sock, { force: true });
  }
}
