import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, type Link, NetSwitch, SharedArena, connectNics } from '../../src/index.js';
import { Impairment, type ImpairmentOptions, planImpairment } from '../../src/backends/impairment.js';
import { recordNetHdr } from '../../src/net/net-port.js';
import { BROADCAST, FakeNic, ethFrame, seqOf, until } from '../support/backend-nic.js';

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';
const C = '52:54:00:00:00:0c';

function impairment(options: ImpairmentOptions, arena = new SharedArena(8 << 20)): Impairment {
  const spec = planImpairment(arena, options, 1518);
  if (spec === null) throw new Error('no impairment planned');
  return new Impairment(spec);
}

/** A channel-like record in the arena: 12-byte header, then the frame at `at`. */
function record(arena: SharedArena, frame: Uint8Array, hdrByte = 0): number {
  const at = arena.alloc(frame.length + 16, 8) + 16;
  arena.u8.set(frame, at);
  arena.u8.fill(hdrByte, recordNetHdr(at), at);
  return at;
}

describe('Impairment (simulated time)', () => {
  it('loses frames at the configured rate, the same ones for the same seed', () => {
    const draws = (seed: number): boolean[] => {
      const imp = impairment({ lossPercent: 10, seed });
      return Array.from({ length: 20000 }, () => imp.lose());
    };
    const a = draws(42);
    const lost = a.filter(Boolean).length;
    // Binomial(20000, 0.1): mean 2000, sd 42; bounds at about 7 sd.
    expect(lost).toBeGreaterThan(1700);
    expect(lost).toBeLessThan(2300);
    expect(draws(42)).toEqual(a);
    expect(draws(43)).not.toEqual(a);
    expect(impairment({ lossPercent: 100 }).lose()).toBe(true);
    const none = impairment({ delayMs: 1 });
    expect(Array.from({ length: 1000 }, () => none.lose()).some(Boolean)).toBe(false);
  });

  it('holds a frame for delayMs and hands back its bytes and virtio_net_hdr intact', () => {
    const arena = new SharedArena(8 << 20);
    const imp = impairment({ delayMs: 50 }, arena);
    const frame = ethFrame(B, A, 7, 300);
    const at = record(arena, frame, 0x5a);
    expect(imp.room(300)).toBe(true);
    imp.enqueue(arena.u8, at, 300, 1000);
    expect(imp.queuedFrames).toBe(1);
    expect(imp.head(1049.9)).toBe(-1);
    expect(imp.nextEventMs(1000)).toBe(1050);
    const got = imp.head(1050);
    expect(got).toBeGreaterThanOrEqual(0);
    expect(imp.len).toBe(300);
    expect(imp.buffer.slice(got, got + 300)).toEqual(frame);
    expect(imp.buffer.slice(recordNetHdr(got), got)).toEqual(new Uint8Array(12).fill(0x5a));
    imp.dequeue();
    expect(imp.queuedFrames).toBe(0);
    expect(imp.nextEventMs(2000)).toBe(Infinity);
  });

  it('jitter adds [0, jitterMs) to the delay and never reorders frames', () => {
    const arena = new SharedArena(8 << 20);
    const imp = impairment({ delayMs: 10, jitterMs: 20, seed: 5 }, arena);
    const sentAt: number[] = [];
    // Sent 2 ms apart: jitter (up to 20 ms) would reorder them if it could.
    for (let i = 0; i < 500; i++) {
      const at = record(arena, ethFrame(B, A, i, 64));
      sentAt.push(i * 2);
      imp.enqueue(arena.u8, at, 64, i * 2);
    }
    const delays: number[] = [];
    const order: number[] = [];
    for (let now = 0; order.length < 500 && now < 2000; now += 0.01) {
      for (let got = imp.head(now); got >= 0; got = imp.head(now)) {
        const seq = seqOf(imp.buffer.slice(got, got + 64));
        order.push(seq);
        delays.push(now - sentAt[seq]);
        imp.dequeue();
      }
    }
    expect(order).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...delays)).toBeLessThanOrEqual(30 + 0.02);
    expect(Math.max(...delays) - Math.min(...delays)).toBeGreaterThan(10); // it does jitter
  });

  it('a token bucket releases at the configured rate after a burst, and a frame larger than the bucket still passes', () => {
    const arena = new SharedArena(8 << 20);
    // 8 Mbit/s = 1000 bytes per ms; bucket 2000 bytes.
    const imp = impairment({ rateBitsPerSec: 8_000_000, burstBytes: 2000 }, arena);
    for (let i = 0; i < 200; i++) imp.enqueue(arena.u8, record(arena, ethFrame(B, A, i, 1000)), 1000, 0);
    const releasedAt: number[] = [];
    for (let now = 0; releasedAt.length < 200 && now < 1000; now += 0.05) {
      for (let got = imp.head(now); got >= 0; got = imp.head(now)) {
        releasedAt.push(now);
        imp.dequeue();
      }
    }
    expect(releasedAt.length).toBe(200);
    expect(releasedAt.slice(0, 2)).toEqual([0, 0]); // the burst
    // 198 more frames at 1 ms each.
    expect(releasedAt[199]).toBeGreaterThan(197);
    expect(releasedAt[199]).toBeLessThan(200);
    const big = impairment({ rateBitsPerSec: 8_000_000, burstBytes: 100 }, arena);
    big.enqueue(arena.u8, record(arena, ethFrame(B, A, 0, 1500)), 1500, 0);
    big.enqueue(arena.u8, record(arena, ethFrame(B, A, 1, 1500)), 1500, 0);
    expect(big.head(0)).toBeGreaterThanOrEqual(0);
    big.dequeue();
    // The bucket went 1400 bytes into debt: the next frame waits until it is full again.
    expect(big.head(1.4)).toBe(-1);
    expect(big.nextEventMs(1.4)).toBeCloseTo(1.5, 6);
    expect(big.head(1.5)).toBeGreaterThanOrEqual(0);
  });

  it('has a bounded queue: room() says no once it is full', () => {
    const arena = new SharedArena(8 << 20);
    const imp = impairment({ delayMs: 100, queueBytes: 4096 }, arena);
    let n = 0;
    while (imp.room(1000)) imp.enqueue(arena.u8, record(arena, ethFrame(B, A, n++, 1000)), 1000, 0);
    // The queue is at least two of the largest (1518-byte) records, so 8 KiB here.
    expect(n).toBeGreaterThanOrEqual(3);
    expect(n).toBeLessThanOrEqual(8);
    expect(imp.queuedBytes).toBe(1000 * n);
  });

  it('rejects options out of range and plans nothing for no options', () => {
    const arena = new SharedArena(1 << 20);
    expect(planImpairment(arena, {}, 1518)).toBeNull();
    expect(() => planImpairment(arena, { lossPercent: 101 }, 1518)).toThrow(InvalidArgumentError);
    expect(() => planImpairment(arena, { delayMs: -1 }, 1518)).toThrow(/delayMs/);
    expect(() => planImpairment(arena, { rateBitsPerSec: 0 }, 1518)).toThrow(/rateBitsPerSec/);
    expect(() => planImpairment(arena, { seed: 1.5, lossPercent: 1 }, 1518)).toThrow(/seed/);
    expect(planImpairment(arena, { lossPercent: 5 }, 1518)?.line).toBeNull(); // loss needs no queue
  });
});

describe('impairments on real links (worker threads; generous bounds, no tight timings)', () => {
  let link: Link | undefined;
  let sw: NetSwitch | undefined;
  afterEach(async () => {
    await link?.close();
    await sw?.close();
    link = undefined;
    sw = undefined;
  });

  function relayed(impairment: ImpairmentOptions | { aToB?: ImpairmentOptions; bToA?: ImpairmentOptions }): [FakeNic, FakeNic] {
    const arena = new SharedArena(16 << 20);
    const a = new FakeNic(A);
    const b = new FakeNic(B);
    link = connectNics(arena, a, b, { impairment, capacity: 1 << 16, maxFrame: 1518, spinUs: 10 });
    return [a, b];
  }

  it('delay: no frame arrives earlier than delayMs after it was sent', async () => {
    const [a, b] = relayed({ delayMs: 60 });
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      a.send(ethFrame(B, A, i));
      await b.receiveUntil(i + 1);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(60);
    }
    // The other direction has the same delay.
    const t0 = performance.now();
    b.send(ethFrame(A, B, 9));
    await a.receiveUntil(1);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(60);
  });

  it('loss: with a fixed seed the share lost is near lossPercent and every frame is either delivered or counted', async () => {
    const [a, b] = relayed({ aToB: { lossPercent: 20, seed: 7 } });
    const total = 2000;
    let sent = 0;
    await until(() => {
      while (sent < total && a.send(ethFrame(B, A, sent))) sent++;
      b.receive();
      const s = link!.stats()!;
      return sent === total && b.received.length + s.ports[1].dropsLoss === total;
    }, 10_000);
    const lost = link!.stats()!.ports[1].dropsLoss;
    // Binomial(2000, 0.2): mean 400, sd 18.
    expect(lost).toBeGreaterThan(300);
    expect(lost).toBeLessThan(500);
    // In order, with gaps only.
    const seqs = b.received.map((r) => seqOf(r.frame));
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    // b -> a is not impaired.
    b.send(ethFrame(A, B, 1));
    await a.receiveUntil(1);
  });

  it('rate: the token bucket holds a transfer to about the configured rate (never faster)', async () => {
    const rate = 4_000_000; // 500 kB/s
    const [a, b] = relayed({ rateBitsPerSec: rate, burstBytes: 1518 });
    const frames = 100;
    const len = 1000;
    let sent = 0;
    const t0 = performance.now();
    await until(() => {
      while (sent < frames && a.send(ethFrame(B, A, sent, len))) sent++;
      b.receive();
      return b.received.length === frames;
    }, 10_000);
    const seconds = (performance.now() - t0) / 1000;
    const bits = (frames * len - 1518) * 8; // what had to wait for tokens
    expect(bits / seconds).toBeLessThan(rate * 1.1);
    expect(bits / seconds).toBeGreaterThan(rate / 20); // it ran, even on a slow machine
    expect(b.received.map((r) => seqOf(r.frame))).toEqual(Array.from({ length: frames }, (_, i) => i));
    expect(link!.stats()!.ports[1].dropsLoss + link!.stats()!.ports[1].dropsEgressFull).toBe(0);
  });

  it('jitter through a relay keeps frames in order', async () => {
    const [a, b] = relayed({ delayMs: 1, jitterMs: 8, seed: 3 });
    let sent = 0;
    await until(() => {
      while (sent < 500 && a.send(ethFrame(B, A, sent))) sent++;
      b.receive();
      return b.received.length === 500;
    }, 10_000);
    expect(b.received.map((r) => seqOf(r.frame))).toEqual(Array.from({ length: 500 }, (_, i) => i));
  });

  it('a switch port impairs only the frames leaving by that port', async () => {
    const arena = new SharedArena(16 << 20);
    sw = new NetSwitch(arena, { capacity: 1 << 16, maxFrame: 1518, spinUs: 10 });
    const [a, b, c] = [new FakeNic(A), new FakeNic(B), new FakeNic(C)];
    sw.connect(a);
    sw.connect(b, { impairment: { lossPercent: 100 } });
    sw.connect(c, { impairment: { delayMs: 30 } });
    sw.start();
    const t0 = performance.now();
    a.send(ethFrame(BROADCAST, A, 1));
    await c.receiveUntil(1);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(30);
    await until(() => sw!.stats().ports[1].dropsLoss === 1);
    expect(await b.settle(30)).toBe(0);
    b.send(ethFrame(A, B, 2)); // b's own frames are not impaired on the way in
    await a.receiveUntil(1);
  });
});
