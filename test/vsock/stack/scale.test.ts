/** Many connections at once, and fairness between them on one port. */
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_OP_RW } from '../../../src/spec/vsock.js';
import type { VsockSocket } from '../../../src/vsock/stack/index.js';
import { HOST_CID, type Pair, closed, createPair, pattern, readAll, until } from './pair.js';

let pair: Pair | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

describe('vsock at scale', () => {
  it('1000 concurrent connections, each echoing a few KiB: all byte-exact, all closed, credit never exceeded', async () => {
    const p = (pair = createPair({ port: { capacityPackets: 64 } }));
    p.host.listen(100).on('connection', (s: VsockSocket) => s.pipe(s));
    const N = 1000;
    const socks = Array.from({ length: N }, () => p.guest.connect(HOST_CID, 100));
    expect(new Set(socks.map((s) => s.localPort)).size).toBe(N);
    const results = socks.map(async (s, i) => {
      const data = pattern(2048 + ((i * 37) % 4096), i + 1);
      const back = readAll(s);
      s.end(data);
      const got = await back;
      return got.equals(data);
    });
    const ok = await Promise.all(results);
    expect(ok.every(Boolean)).toBe(true);
    await Promise.all(socks.map((s) => closed(s)));
    await until(() => p.guest.connectionCount === 0 && p.host.connectionCount === 0, 'every connection closed');
    expect(p.checker.violations).toEqual([]);
    expect(p.guestPort.refusals + p.hostPort.refusals).toBeGreaterThan(0);
    expect(p.host.stats.connectionsOpened).toBe(N);
    expect(p.host.stats.closeTimeouts + p.guest.stats.closeTimeouts).toBe(0);
  }, 30_000);

  it('fairness: connections with data pending share the port round-robin, one packet each per turn', async () => {
    const p = (pair = createPair({ port: { capacityPackets: 4, maxPayload: 4096 }, guest: { bufferSize: 1 << 20 }, host: { bufferSize: 1 << 20 } }));
    p.guestPort.log = [];
    p.host.listen(101).on('connection', (s: VsockSocket) => s.resume());
    const socks = [0, 1, 2].map(() => p.guest.connect(HOST_CID, 101));
    await until(() => socks.every((s) => !s.connecting), 'connected');
    for (const s of socks) s.write(pattern(512 * 1024, s.localPort));
    await until(() => socks.every((s) => s.bytesWritten === 512 * 1024), 'all sent');
    const order = (p.guestPort.log ?? []).filter((h) => h.op === VSOCK_OP_RW).map((h) => h.srcPort);
    // The first writer had the port to itself for one burst; from then on, turns alternate.
    const window = order.slice(8, 98);
    for (const s of socks) {
      const n = window.filter((port) => port === s.localPort).length;
      expect(n).toBeGreaterThanOrEqual(29);
      expect(n).toBeLessThanOrEqual(31);
    }
    // Never the same connection three packets in a row there.
    for (let i = 2; i < window.length; i++) expect(window[i] === window[i - 1] && window[i] === window[i - 2]).toBe(false);
    for (const s of socks) s.destroy();
  });
});
