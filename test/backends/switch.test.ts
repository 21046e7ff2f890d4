import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetSwitch, type NetSwitchOptions, SharedArena } from '../../src/index.js';
import { BROADCAST, FakeNic, ethFrame, seqOf, tcpFrame, until } from '../support/backend-nic.js';
import { requireTools, tshark } from '../support/tools.js';

requireTools('tshark');

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';
const C = '52:54:00:00:00:0c';
const D = '52:54:00:00:00:0d';
const X = '52:54:00:00:00:99';

let sw: NetSwitch | undefined;
let dir: string | undefined;
afterEach(async () => {
  await sw?.close();
  sw = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A started switch with one fake NIC per MAC. */
function lab(macs: string[], options: NetSwitchOptions = {}): { nics: FakeNic[]; sw: NetSwitch } {
  const arena = new SharedArena(16 << 20);
  sw = new NetSwitch(arena, { capacity: 1 << 16, maxFrame: 1518, spinUs: 10, ...options });
  const nics = macs.map((m) => new FakeNic(m));
  for (const n of nics) sw.connect(n);
  sw.start();
  return { nics, sw };
}

describe('learning switch', () => {
  it('floods a broadcast to every other port, learns the sender, then forwards known unicast to one port', async () => {
    const { nics, sw } = lab([A, B, C]);
    const [a, b, c] = nics;
    expect(a.send(ethFrame(BROADCAST, A, 1))).toBe(true);
    await b.receiveUntil(1);
    await c.receiveUntil(1);
    expect(await a.settle(50)).toBe(0); // never back to the sender
    expect(await sw.macTable()).toEqual([{ mac: A, port: 0, ageMs: expect.any(Number) }]);

    b.send(ethFrame(A, B, 2)); // known: only to port 0
    await a.receiveUntil(1);
    expect(seqOf(a.received[0].frame)).toBe(2);
    a.send(ethFrame(B, A, 3)); // b learned from its reply
    await b.receiveUntil(2);
    expect(seqOf(b.received[1].frame)).toBe(3);
    expect(await c.settle(50)).toBe(0);
    expect(c.received.length).toBe(1);

    const s = sw.stats();
    expect(s.ports[0].flooded).toBe(1);
    expect(s.ports[0].rxFrames).toBe(2);
    expect(s.ports[1].txFrames).toBe(2);
    expect(s.ports[2].txFrames).toBe(1);
    expect(s.ports[0].rxBytes).toBe(128);
    expect(s.macEntries).toBe(2);
    expect((await sw.macTable()).map((e) => [e.mac, e.port])).toEqual([
      [A, 0],
      [B, 1],
    ]);
  });

  it('floods unknown unicast and multicast to every port but the ingress one, and keeps frames and headers intact', async () => {
    const { nics } = lab([A, B, C]);
    const [a, b, c] = nics;
    const f1 = ethFrame(D, A, 10, 300);
    const f2 = ethFrame('01:00:5e:00:00:01', A, 11, 90);
    const hdr = Uint8Array.of(1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0);
    a.send(f1, 0, hdr);
    a.send(f2);
    for (const n of [b, c]) {
      await n.receiveUntil(2);
      expect(n.received.map((r) => r.frame)).toEqual([f1, f2]);
      expect(n.received[0].hdr).toEqual(hdr);
    }
    expect(await a.settle(50)).toBe(0);
  });

  it('never sends a frame back out of the port its destination was learned on (counted as filtered)', async () => {
    const { nics, sw } = lab([A, B]);
    const [a, b] = nics;
    a.send(ethFrame(BROADCAST, X, 1)); // X lives behind port 0
    await b.receiveUntil(1);
    a.send(ethFrame(X, A, 2));
    await until(() => sw.stats().ports[0].dropsFiltered === 1);
    expect(await a.settle(30)).toBe(0);
    expect(await b.settle(30)).toBe(0);
  });

  it('moves a MAC that shows up on another port', async () => {
    const { nics, sw } = lab([A, B, C]);
    const [a, b, c] = nics;
    a.send(ethFrame(BROADCAST, X, 1));
    await until(() => (b.receive(), c.receive(), b.received.length === 1 && c.received.length === 1));
    b.send(ethFrame(BROADCAST, X, 2)); // the station moved to port 1
    await until(() => (a.receive(), c.receive(), a.received.length === 1 && c.received.length === 2));
    c.send(ethFrame(X, C, 3));
    await b.receiveUntil(2);
    expect(seqOf(b.received[1].frame)).toBe(3);
    expect(await a.settle(50)).toBe(0);
    expect((await sw.macTable()).find((e) => e.mac === X)?.port).toBe(1);
    expect(sw.stats().macMoves).toBe(1);
  });

  it('forgets addresses after ageingMs: unicast to an aged address floods again', async () => {
    const { nics, sw } = lab([A, B, C], { ageingMs: 150 });
    const [a, b, c] = nics;
    a.send(ethFrame(BROADCAST, A, 1));
    await until(() => (b.receive(), c.receive(), b.received.length === 1 && c.received.length === 1));
    b.send(ethFrame(A, B, 2));
    await a.receiveUntil(1);
    expect(await c.settle(30)).toBe(0);
    // B was learned too; after the ageing time both are gone.
    await new Promise((r) => setTimeout(r, 400));
    expect(await sw.macTable()).toEqual([]);
    expect(sw.stats().macAged).toBeGreaterThanOrEqual(2);
    c.send(ethFrame(A, C, 3)); // A is unknown again: flooded to a and b
    await a.receiveUntil(2);
    await b.receiveUntil(2);
  });

  it('back-pressure: unicast to a full port waits (that source pauses, others go on, nothing lost, the wait shows as backlog); a flood skips the full port and counts it', async () => {
    // Small channels: a receive channel holds about 50 64-byte frames.
    const { nics, sw } = lab([A, B, C, D], { capacity: 4096 });
    const [a, b, c, d] = nics;
    for (const n of nics) n.send(ethFrame(BROADCAST, n.mac, 0));
    await until(() => nics.every((n) => (n.receive(), n.received.length === 3)), 5000, 'learning');
    for (const n of nics) n.received.length = 0;
    b.accepting = false; // b stops taking frames
    let sent = 0;
    const total = 200;
    // a -> b: more than b's receive channel and a's transmit channel hold together.
    await until(() => {
      while (sent < total && a.send(ethFrame(B, A, sent))) sent++;
      return sent >= 90;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(sent).toBeLessThan(total);
    expect(sw.stats().ports[1].txFrames).toBeLessThan(60); // b's channel is full, a is paused
    // The waiting frames are the ports' backlog: in the channel to b, and in a's channel to the switch.
    const waiting = (port: number): { toNic: number; fromNic: number } => sw.backlog(port);
    expect(waiting(1).toNic).toBeGreaterThan(4096 - 2 * 128);
    expect(waiting(0).fromNic).toBeGreaterThan(0);
    expect(waiting(2)).toEqual({ toNic: 0, fromNic: 0 });
    expect(() => sw.backlog(4)).toThrow(/port 4 is not a port of this switch/);
    // c -> d still flows.
    for (let i = 0; i < 100; i++) await until(() => (d.receive(), c.send(ethFrame(D, C, 1000 + i))));
    await d.receiveUntil(100);
    // A broadcast from c cannot enter b's full channel: skipped and counted, a and d get it.
    c.send(ethFrame(BROADCAST, C, 5000));
    await a.receiveUntil(1);
    await d.receiveUntil(101);
    await until(() => sw.stats().ports[1].dropsEgressFull === 1);
    expect(sw.stats().ports[1].dropsEgressFull).toBe(1);
    // b drains: every unicast frame of a arrives, in order, none dropped.
    b.accepting = true;
    await until(() => {
      while (sent < total && a.send(ethFrame(B, A, sent))) sent++;
      b.receive();
      return b.received.length === total;
    });
    expect(b.received.map((r) => seqOf(r.frame))).toEqual(Array.from({ length: total }, (_, i) => i));
    for (const port of [0, 1]) expect(waiting(port)).toEqual({ toNic: 0, fromNic: 0 });
    const s = sw.stats();
    expect(s.ports[0].rxFrames).toBe(total + 1);
    expect(s.ports.reduce((x, p) => x + p.dropsLoss + p.dropsBad, 0)).toBe(0);
  });

  it('sleeps when idle and wakes on the next frame', async () => {
    const { nics, sw } = lab([A, B]);
    const [a, b] = nics;
    await until(() => sw.stats().sleeps > 0, 5000, 'the switch to sleep');
    const sleeps = sw.stats().sleeps;
    a.send(ethFrame(BROADCAST, A, 1));
    await b.receiveUntil(1);
    await until(() => sw.stats().sleeps > sleeps, 5000, 'the switch to sleep again');
  });

  it('fan-in from every transmit queue; output steered by flow hash over the receiver\'s active queues', async () => {
    const arena = new SharedArena(16 << 20);
    sw = new NetSwitch(arena, { capacity: 1 << 16, maxFrame: 1518, spinUs: 10 });
    const a = new FakeNic(A, 2);
    const b = new FakeNic(B, 4);
    sw.connect(a);
    sw.connect(b);
    sw.start();
    b.send(ethFrame(BROADCAST, B, 0), 3);
    await a.receiveUntil(1);
    // Frames of many flows (IPv4 UDP, varying ports), half on each of a's transmit queues.
    const flows = 64;
    const udp = (i: number): Uint8Array => {
      const f = ethFrame(B, A, i, 60);
      f.set([0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17], 12);
      f[34] = i;
      f[35] = 0x80;
      return f;
    };
    const flowOf = (r: { frame: Uint8Array }): number => r.frame[34];
    const send = async (txPair: (i: number) => number): Promise<Map<number, number>> => {
      b.received.length = 0;
      for (let i = 0; i < flows; i++) await until(() => (b.receive(), a.send(udp(i), txPair(i))));
      await b.receiveUntil(flows);
      return new Map(b.received.map((r) => [flowOf(r), r.pair]));
    };
    const one = await send((i) => i & 1);
    expect(new Set(one.values())).toEqual(new Set([0])); // one active queue
    b.setActivePairs(4);
    const spread = await send((i) => i & 1);
    expect(new Set(spread.values()).size).toBeGreaterThan(1);
    // The same flow always lands on the same queue, whichever queue sent it.
    expect(await send((i) => 1 - (i & 1))).toEqual(spread);
    expect(sw.stats().ports[0].rxFrames).toBe(3 * flows);
  });

  it('counts frames a switch does not forward: runts and multicast source addresses', async () => {
    const { nics, sw } = lab([A, B]);
    const [a, b] = nics;
    a.send(new Uint8Array(10));
    a.send(ethFrame(BROADCAST, '01:00:00:00:00:01', 1));
    a.send(ethFrame(BROADCAST, A, 2));
    await b.receiveUntil(1);
    expect(seqOf(b.received[0].frame)).toBe(2);
    expect(sw.stats().ports[0].dropsBad).toBe(2);
  });

  it('captures every forwarded frame as wire frames (GSO cut to the MTU, checksums completed), and one port\'s traffic both ways; tshark reads them', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-switch-'));
    const all = join(dir, 'all.pcap');
    const portB = join(dir, 'b.pcap');
    const arena = new SharedArena(16 << 20);
    sw = new NetSwitch(arena, { capacity: 1 << 18, spinUs: 10 });
    const [a, b, c] = [new FakeNic(A), new FakeNic(B), new FakeNic(C)];
    for (const n of [a, b, c]) sw.connect(n);
    await sw.tap(all);
    await sw.tap(portB, { port: 1 });
    sw.start();
    b.send(ethFrame(BROADCAST, B, 1)); // learn B (in b.pcap: received from b)
    await a.receiveUntil(1);
    const gso = tcpFrame(B, A, 4000, 1448); // a 4000-byte TSO frame: 3 segments on the wire
    a.send(gso.frame, 0, gso.hdr);
    const csum = tcpFrame(B, A, 100); // a partial checksum
    a.send(csum.frame, 0, csum.hdr);
    await b.receiveUntil(2);
    // The switch forwards records as they are: the receiving NIC resolves them.
    expect(b.received[0].frame.length).toBe(gso.frame.length);
    expect(b.received[0].hdr).toEqual(gso.hdr);
    await sw.close();
    expect(sw.stats().captured).toBe(5 + 5);
    const fields = ['-o', 'tcp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-e', 'frame.len', '-e', 'tcp.len', '-e', 'tcp.checksum.status', '-e', 'ip.checksum.status'];
    const lines = tshark(['-r', all, ...fields]).trim().split('\n');
    expect(lines).toEqual(['64\t\t\t', '1502\t1448\t1\t1', '1502\t1448\t1\t1', '1158\t1104\t1\t1', '154\t100\t1\t1']);
    expect(tshark(['-r', portB, ...fields]).trim().split('\n')).toEqual(lines);
    expect(tshark(['-r', portB, '-T', 'fields', '-e', 'eth.src']).trim().split('\n')).toEqual([B, A, A, A, A]);
  });

  it('stamps every captured frame: distinct, increasing timestamps within the run, GSO segments included', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-switch-'));
    const file = join(dir, 'stamps.pcap');
    const arena = new SharedArena(16 << 20);
    sw = new NetSwitch(arena, { capacity: 1 << 18, spinUs: 10 });
    const [a, b] = [new FakeNic(A), new FakeNic(B)];
    for (const n of [a, b]) sw.connect(n);
    await sw.tap(file);
    sw.start();
    const startUs = Date.now() * 1000;
    b.send(ethFrame(BROADCAST, B, 0)); // learn B
    await a.receiveUntil(1);
    // Bursts of 200 frames: the switch takes each in a few batches of many frames.
    let sent = 0;
    for (let burst = 0; burst < 10; burst++) {
      for (let i = 0; i < 200; i++) expect(a.send(ethFrame(B, A, ++sent))).toBe(true);
      await b.receiveUntil(sent);
    }
    const gso = tcpFrame(B, A, 4000, 1448); // 3 segments in the file
    a.send(gso.frame, 0, gso.hdr);
    await b.receiveUntil(sent + 1);
    await sw.close();
    const endUs = Date.now() * 1000;
    const stamps = tshark(['-r', file, '-T', 'fields', '-e', 'frame.time_epoch'])
      .trim()
      .split('\n')
      .map((s) => Math.round(Number(s) * 1e6));
    expect(stamps).toHaveLength(1 + 2000 + 3);
    for (let i = 1; i < stamps.length; i++) expect(stamps[i], `frame ${i + 1}`).toBeGreaterThan(stamps[i - 1]);
    // Stamps stay with the clock: inside the run, give or take the µs a frame adds to a burst.
    expect(stamps[0]).toBeGreaterThanOrEqual(startUs - 2000);
    expect(stamps[stamps.length - 1]).toBeLessThanOrEqual(endUs + stamps.length);
  });

  it('a tap opened on a running switch captures from then on; a tap on a port it does not have is refused', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-switch-'));
    const file = join(dir, 'late.pcap');
    const { nics, sw } = lab([A, B]);
    const [a, b] = nics;
    a.send(ethFrame(BROADCAST, A, 1));
    await b.receiveUntil(1);
    await expect(sw.tap(file, { port: 2 })).rejects.toThrow(/port 2/);
    await sw.tap(file, { port: 0 });
    b.send(ethFrame(A, B, 2, 80));
    await a.receiveUntil(1);
    await sw.close();
    expect(tshark(['-r', file, '-T', 'fields', '-e', 'frame.len']).trim()).toBe('80');
  });

  it('close() is idempotent and connect() after start() is refused', async () => {
    const { sw } = lab([A, B]);
    expect(() => sw.connect(new FakeNic(C))).toThrow(/before start/);
    const first = sw.close();
    expect(sw.close()).toBe(first);
    await first;
    await sw.close();
  });
});
