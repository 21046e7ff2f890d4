import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Testpmd } from '../../bench/testpmd.mjs';
import { SharedArena, type VirtioNetDevice, connectLoopback } from '../../src/index.js';
import { serveVhostUserNet } from '../../src/vhost-user/devices.js';
import type { VhostUserDisconnect, VhostUserServer } from '../../src/vhost-user/server.js';
import { requireTools } from '../support/tools.js';

requireTools('testpmd');

// DPDK's virtio-user PMD is a virtio-net driver that speaks vhost-user (the
// front end), written independently of us. It drives our device's rings in
// its own memory; our device sends every frame back to it (a loopback link),
// and testpmd's io forwarding sends them out again, so frames circle
// through both until `stop`.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function serve(queuePairs = 1): { server: VhostUserServer<VirtioNetDevice>; sock: string; log: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'vl-testpmd-'));
  const sock = join(dir, 'net.sock');
  // DPDK 22.11's --no-huge memory is a memfd made without sealing ("nohuge"): trusted here.
  const server = serveVhostUserNet(sock, { mac: '52:54:00:00:00:01', queuePairs, allowUnsealedMemory: true });
  const log: string[] = [];
  server.on('log', (l: string) => log.push(l));
  const arena = new SharedArena(8 << 20);
  connectLoopback(arena, server.device);
  cleanups.push(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, sock, log };
}

async function forward(sock: string, vdevOptions: string, seconds: number): Promise<{ rx: number; tx: number; rxErrors: number; rxMissed: number; txErrors: number }> {
  const t = await Testpmd.start({ vdevs: [`net_virtio_user0,path=${sock},queues=1${vdevOptions}`], args: ['--burst=32', '--nb-cores=1', '--total-num-mbufs=8192'] });
  cleanups.push(() => t.kill());
  t.say('set fwd io');
  t.say('start tx_first 4');
  await sleep(seconds * 1000);
  t.say('stop');
  await t.waitFor('Done.', 10_000);
  const [p] = await t.portStats(1);
  await t.quit();
  expect(existsSync(t.runtimeDir), `testpmd's runtime folder ${t.runtimeDir} after quit`).toBe(false);
  return { rx: p.rxPackets, tx: p.txPackets, rxErrors: p.rxErrors, rxMissed: p.rxMissed, txErrors: p.txErrors };
}

const disconnected = (server: VhostUserServer): Promise<VhostUserDisconnect> => new Promise((resolve) => server.once('disconnected', resolve));

describe('DPDK virtio-user as the front end', () => {
  it('a testpmd run leaves no EAL runtime folder behind, killed or quit', async () => {
    for (const end of ['kill', 'quit'] as const) {
      // A null PMD (no peer needed): testpmd exits when it finds no port at all.
      const t = await Testpmd.start({ vdevs: ['net_null0'], args: ['--total-num-mbufs=2048'] });
      cleanups.push(() => t.kill());
      expect(existsSync(t.runtimeDir), `EAL runtime folder ${t.runtimeDir} while testpmd runs`).toBe(true);
      await (end === 'kill' ? t.kill() : t.quit());
      expect(existsSync(t.runtimeDir), `${t.runtimeDir} after ${end}`).toBe(false);
    }
  }, 60_000);

  for (const [ring, opts] of [
    ['split', ''],
    ['packed', ',packed_vq=1'],
  ] as const) {
    it(`forwards frames through our device with zero errors (${ring} ring)`, async () => {
      const { server, sock, log } = serve();
      const gone = disconnected(server);
      const r = await forward(sock, opts, 2);
      const { summary } = await gone;
      expect(r.rx).toBeGreaterThan(1000);
      expect(r.tx).toBeGreaterThanOrEqual(r.rx);
      expect([r.rxErrors, r.rxMissed, r.txErrors]).toEqual([0, 0, 0]);
      const st = server.device.netStats();
      expect(st.errors).toBe(0);
      expect(st.drops).toBe(0);
      // Every frame testpmd sent came back to it, but those in flight at `stop`.
      expect(st.txPackets).toBeGreaterThanOrEqual(r.rx);
      expect(st.txPackets - r.rx).toBeLessThanOrEqual(4 * 32 + 2 * 256);
      expect(summary.refused).toEqual([]);
      expect(summary.regions).toBe(1);
      expect(summary.messages.SET_MEM_TABLE).toBe(1);
      expect(summary.messages.GET_VRING_BASE).toBe(2);
      const features = BigInt(`0x${summary.features}`);
      expect((features >> 32n) & 1n).toBe(1n); // VERSION_1
      expect((features >> 34n) & 1n).toBe(ring === 'packed' ? 1n : 0n);
      expect(log.filter((l) => l.startsWith('dropping'))).toEqual([]);
    }, 60_000);
  }

  it('two queue pairs: MQ is negotiated, the pairs in use follow SET_VRING_ENABLE, and many flows spread over both receive queues', async () => {
    const { server, sock } = serve(2);
    const gone = disconnected(server);
    const t = await Testpmd.start({ vdevs: [`net_virtio_user0,path=${sock},queues=2`], args: ['--rxq=2', '--txq=2', '--nb-cores=1', '--total-num-mbufs=16384'] });
    cleanups.push(() => t.kill());
    // flowgen sends many flows from both tx queues and counts what comes back on both rx queues.
    t.say('set fwd flowgen');
    t.say('start');
    await sleep(2000);
    const active = server.device.activePairs;
    expect(new Int32Array(active.buffer)[active.index]).toBe(2);
    t.say('stop');
    await t.waitFor('Done.', 10_000);
    const [p] = await t.portStats(1);
    await t.quit();
    const { summary } = await gone;
    expect((BigInt(`0x${summary.features}`) >> 22n) & 1n).toBe(1n); // VIRTIO_NET_F_MQ
    expect(summary.messages.SET_VRING_KICK).toBe(4);
    expect([p.rxErrors, p.rxMissed, p.txErrors]).toEqual([0, 0, 0]);
    const st = server.device.netStats();
    expect(st.errors).toBe(0);
    expect(st.drops).toBe(0);
    for (const pair of st.pairs) {
      expect(pair.tx.chains).toBeGreaterThan(100);
      expect(pair.rx.chains).toBeGreaterThan(100);
    }
  }, 60_000);

  it('serves a second front end after the first one quits', async () => {
    const { server, sock } = serve();
    let gone = disconnected(server);
    const first = await forward(sock, '', 1);
    await gone;
    gone = disconnected(server);
    const second = await forward(sock, '', 1);
    await gone;
    expect(first.rx).toBeGreaterThan(100);
    expect(second.rx).toBeGreaterThan(100);
    expect([second.rxErrors, second.rxMissed, second.txErrors]).toEqual([0, 0, 0]);
    expect(server.device.netStats().errors).toBe(0);
  }, 60_000);
});
