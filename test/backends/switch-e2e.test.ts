import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Link, NET_DEFAULT_FEATURES, NetDriver, featureSet, NetSwitch, SharedArena, VirtioNetDevice, connectNics, newInterruptWord, setupNetDriver } from '../../src/index.js';
import { NetHdr } from '../../src/net/offload/net-hdr.js';
import { NET_F_GUEST_TSO4, NET_F_HOST_TSO4 } from '../../src/spec/features.js';
import { BROADCAST, ethFrame, seqOf, tcpFrame, until } from '../support/backend-nic.js';
import { requireTools, tshark } from '../support/tools.js';

requireTools('tshark');

const MACS = ['52:54:00:00:01:0a', '52:54:00:00:01:0b', '52:54:00:00:01:0c'];

interface Host {
  dev: VirtioNetDevice;
  drv: NetDriver;
  received: Uint8Array[];
  queue: Uint8Array[];
}

let devices: VirtioNetDevice[] = [];
let sw: NetSwitch | undefined;
let link: Link | undefined;
let dir: string | undefined;
afterEach(async () => {
  await sw?.close();
  await link?.close();
  link = undefined;
  await Promise.all(devices.map((d) => d.close()));
  devices = [];
  sw = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Keep every driver's rings moving: send what is queued, reap, receive. Returns work done. */
function step(hosts: Host[]): number {
  let moved = 0;
  for (const h of hosts) {
    while (h.queue.length !== 0 && h.drv.send(h.queue[0])) {
      h.queue.shift();
      moved++;
    }
    h.drv.flushTx();
    moved += h.drv.reclaimTx();
    moved += h.drv.receive((p) => {
      const f = new Uint8Array(p.length);
      p.copyTo(f);
      h.received.push(f);
    });
  }
  return moved;
}

async function run(hosts: Host[], done: () => boolean, ms = 20_000, what = 'traffic'): Promise<void> {
  await until(() => (step(hosts), done()), ms, what);
}

describe('three virtio-net NICs with their drivers through a learning switch', () => {
  it('floods, learns, forwards unicast only to its port, carries thousands of frames in order, and captures them', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-sw-e2e-'));
    const pcap = join(dir, 'sw.pcap');
    const arena = new SharedArena(64 << 20);
    sw = new NetSwitch(arena, { spinUs: 20 });
    devices = MACS.map((mac, i) => new VirtioNetDevice(arena.guestMemory(4 << 20), { mac, queueSize: 128, spinUs: 20, queuePairs: i === 2 ? 2 : 1 }));
    for (const d of devices) sw.connect(d);
    await sw.tap(pcap);
    sw.start();
    const interrupt = newInterruptWord();
    const hosts: Host[] = [];
    for (const dev of devices) {
      const drv = new NetDriver(await setupNetDriver(dev, { interrupt, queueSize: 128 }));
      drv.fillRx();
      hosts.push({ dev, drv, received: [], queue: [] });
    }
    const [a, b, c] = hosts;

    a.queue.push(ethFrame(BROADCAST, MACS[0], 1));
    await run(hosts, () => b.received.length === 1 && c.received.length === 1, 10_000, 'the broadcast');
    b.queue.push(ethFrame(MACS[0], MACS[1], 2));
    c.queue.push(ethFrame(MACS[0], MACS[2], 3));
    await run(hosts, () => a.received.length === 2, 10_000, 'the replies');
    expect(a.received.map(seqOf).sort()).toEqual([2, 3]);

    // a -> b and c -> b at once, mixed sizes; c (two queue pairs) also gets b's traffic steered over its queues.
    const n = 3000;
    const ab = Array.from({ length: n }, (_, i) => ethFrame(MACS[1], MACS[0], i, 60 + ((i * 37) % 1455)));
    const cb = Array.from({ length: n }, (_, i) => ethFrame(MACS[1], MACS[2], n + i, 60 + ((i * 53) % 1455)));
    const bc = Array.from({ length: n }, (_, i) => ethFrame(MACS[2], MACS[1], 2 * n + i, 100));
    a.queue.push(...ab);
    c.queue.push(...cb);
    b.queue.push(...bc);
    await run(hosts, () => b.received.length === 1 + 2 * n && c.received.length === 1 + n, 20_000, 'the bulk transfer');
    const bulk = b.received.slice(1); // after the broadcast
    const fromA = bulk.filter((f) => seqOf(f) < n);
    const fromC = bulk.filter((f) => seqOf(f) >= n);
    expect(fromA.map(seqOf)).toEqual(ab.map(seqOf));
    expect(fromC.map(seqOf)).toEqual(cb.map(seqOf));
    expect(Buffer.concat(fromA).equals(Buffer.concat(ab))).toBe(true);
    expect(Buffer.concat(fromC).equals(Buffer.concat(cb))).toBe(true);
    expect(c.received.slice(1).map(seqOf)).toEqual(bc.map(seqOf));
    // a saw nothing of the unicast traffic between b and c.
    await new Promise((r) => setTimeout(r, 50));
    step(hosts);
    expect(a.received.length).toBe(2);

    const s = sw.stats();
    expect(s.ports[0].rxFrames).toBe(1 + n);
    expect(s.ports[1].txFrames).toBe(1 + 2 * n);
    expect(s.ports.reduce((x, p) => x + p.dropsEgressFull + p.dropsBad + p.dropsLoss + p.dropsFiltered, 0)).toBe(0);
    expect(s.macEntries).toBe(3);
    await sw.close();
    const count = tshark(['-r', pcap, '-T', 'fields', '-e', 'frame.number']).trim().split('\n').length;
    expect(count).toBe(3 + 3 * n);
  });
});

describe('two virtio-net NICs over an impaired, captured link (relay worker)', () => {
  it('loses about lossPercent of the frames (each counted), keeps order, and captures a TSO frame as checksummed wire segments', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-relay-e2e-'));
    const pcap = join(dir, 'link.pcap');
    const arena = new SharedArena(64 << 20);
    devices = MACS.slice(0, 2).map((mac) => new VirtioNetDevice(arena.guestMemory(24 << 20), { mac, queueSize: 64, spinUs: 20 }));
    link = connectNics(arena, devices[0], devices[1], { impairment: { aToB: { lossPercent: 10, seed: 11 } }, capture: pcap });
    const interrupt = newInterruptWord();
    const hosts: Host[] = [];
    for (const dev of devices) {
      const features = NET_DEFAULT_FEATURES | featureSet(NET_F_HOST_TSO4, NET_F_GUEST_TSO4);
      const drv = new NetDriver(await setupNetDriver(dev, { interrupt, queueSize: 64, bufferSize: 65562, features }));
      drv.fillRx();
      hosts.push({ dev, drv, received: [], queue: [] });
    }
    const [a, b] = hosts;
    const n = 2000;
    a.queue.push(...Array.from({ length: n }, (_, i) => ethFrame(MACS[1], MACS[0], i, 200)));
    await run(hosts, () => a.queue.length === 0 && b.received.length + (link!.stats()?.ports[1].dropsLoss ?? 0) === n, 20_000, 'every frame delivered or counted lost');
    const lost = link.stats()!.ports[1].dropsLoss;
    expect(lost).toBeGreaterThan(100); // Binomial(2000, 0.1): mean 200, sd 13
    expect(lost).toBeLessThan(300);
    const seqs = b.received.map(seqOf);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    // b -> a is not impaired.
    b.queue.push(ethFrame(MACS[0], MACS[1], 7));
    await run(hosts, () => a.received.length === 1);
    // A TSO frame: the relay forwards it as it is, the capture holds its wire segments.
    const tso = tcpFrame(MACS[0], MACS[1], 4000, 1448);
    const hdr = new NetHdr().read(tso.hdr, 0);
    await until(() => (step(hosts), b.drv.pair.send(tso.frame, hdr)));
    await run(hosts, () => a.received.length === 2);
    expect(a.received[1].length).toBe(tso.frame.length); // a negotiated GUEST_TSO4: its NIC takes the GSO frame whole
    await link.close();
    const lines = tshark(['-r', pcap, '-o', 'tcp.check_checksum:TRUE', '-Y', 'tcp', '-T', 'fields', '-e', 'frame.len', '-e', 'tcp.checksum.status']).trim().split('\n');
    expect(lines).toEqual(['1502\t1', '1502\t1', '1158\t1']);
    // The capture sees each frame as its sender put it on the link, before the impairment.
    expect(tshark(['-r', pcap, '-T', 'fields', '-e', 'frame.number']).trim().split('\n').length).toBe(n + 1 + 3);
  });
});
