// Baseline: DPDK's own virtio pair on this machine, a real virtio-net driver
// and device in C. One dpdk-testpmd process: the vhost PMD (the device side,
// a vhost-user socket server) and a hot-attached virtio-user PMD (the driver
// side) connected through that socket, io forwarding between them on one
// busy lcore, 32-frame bursts, frames bouncing in a loop after "start
// tx_first". Each port's Rx-pps is one ring crossing per frame per
// direction, as the pump's tx-then-rx path is. Needs `dpdk-testpmd` (Debian
// package dpdk-dev) and runs without hugepages or PCI devices.
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Testpmd, testpmdAvailable } from './testpmd.mjs';

/** True when dpdk-testpmd is on PATH. */
export const dpdkAvailable = testpmdAvailable;

/**
 * Frames per second through the vhost <-> virtio-user loop, frames of `size`
 * bytes, `ring` 'split' or 'packed': `samples` windows of `windowS` seconds
 * in one testpmd process, after a 1 s warm-up. Returns one rate per window.
 */
export async function dpdkRates(size, ring = 'split', { samples = 5, windowS = 0.5 } = {}) {
  const id = `vl-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const sock = join(tmpdir(), `${id}.sock`);
  const t = await Testpmd.start({ prefix: id, vdevs: [`net_vhost0,iface=${sock},queues=1`], args: ['--burst=32', '--nb-cores=1', '--rxd=1024', '--txd=1024', '--total-num-mbufs=16384'] });
  try {
    t.say('port stop all');
    t.say(`port attach net_virtio_user0,path=${sock},queues=1${ring === 'packed' ? ',packed_vq=1' : ''}`);
    t.say('port start all');
    await t.waitFor('Port 1 is attached', 10_000);
    // The vhost link comes up asynchronously; frames sent before it are lost and the loop stalls.
    await sleep(1000);
    t.say('set fwd io');
    t.say(`set txpkts ${size}`);
    t.say('start tx_first 4');
    await sleep(1000);
    // "Rx-pps" is the rate since the previous "show port stats": the first show starts the clock.
    await t.portStats(2);
    const rates = [];
    for (let i = 0; i < samples; i++) {
      await sleep(windowS * 1000);
      const ports = await t.portStats(2);
      rates.push(Math.min(ports[0].rxPps, ports[1].rxPps));
    }
    t.say('stop');
    await t.quit();
    return rates;
  } finally {
    await t.kill(5_000);
    rmSync(sock, { force: true });
  }
}
