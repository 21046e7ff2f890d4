/**
 * The muxer's Unix socket as an attack surface, at scale: thousands of
 * clients that connect and say nothing (the limit refuses the excess with a
 * clear reason, those within it time out, memory stays bounded), and clients
 * that vanish mid-stream in front of a real vsock stack (the guest side sees
 * a reset or an end, and no connection entry is left behind on either stack
 * or in the muxer).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VsockUnixMuxer, type VsockSocket } from '../../../src/index.js';
import { type VsockRig, vsockRig } from '../e2e/rig.js';
import { Harness, tmpSocketDir, unixClient, until } from './fake-endpoint.js';

const h = new Harness();
let rig: VsockRig | undefined;
afterEach(async () => {
  await h.cleanup();
  await rig?.close();
  rig = undefined;
});

/** A Unix client; EAGAIN (the listen backlog is full for a moment) is retried, as a client would. */
async function persistentClient(path: string): ReturnType<typeof unixClient> {
  for (;;) {
    try {
      return await unixClient(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

/** Clients this process can hold open with their accepted ends (two descriptors each), at most `want`. */
function clientsWithin(want: number): number {
  const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const soft = m === null ? 1024 : Number(m[1]);
  return Math.min(want, Math.floor((soft - 256) / 2));
}

describe('hostile Unix clients', () => {
  it('2000 idle clients: the excess is refused with VSOCK_MUX_LIMIT, the rest time out, nothing is left and memory stays bounded', async () => {
    const total = clientsWithin(2000);
    const limit = Math.floor(total * 0.75);
    const lineTimeoutMs = 3000;
    const { udsPath, mux, rejected } = await h.start({ maxConnections: limit, connectLineTimeoutMs: lineTimeoutMs });
    const heapBefore = process.memoryUsage().heapUsed;
    const t0 = Date.now();
    const clients: Awaited<ReturnType<typeof unixClient>>[] = [];
    for (let i = 0; i < total; i += 50) {
      clients.push(...(await Promise.all(Array.from({ length: Math.min(50, total - i) }, () => persistentClient(udsPath)))));
    }
    h.defer(() => Promise.all(clients.map((c) => (c.socket.destroy(), c.rec.closedP))));
    await until(() => mux.stats.open + mux.stats.limitRefused + mux.stats.lineTimeouts === total, 10_000, 'every client counted');
    // Whether every client was in before the first line timeout freed a slot (on a slow machine it may not be).
    const allInFirst = mux.stats.lineTimeouts === 0;
    const heapHeld = process.memoryUsage().heapUsed;
    console.log(
      `${total} idle clients (limit ${limit}) in ${Date.now() - t0} ms: ${mux.stats.open} held, ${mux.stats.limitRefused} refused; ` +
        `heap ${(heapBefore / 2 ** 20).toFixed(1)} -> ${(heapHeld / 2 ** 20).toFixed(1)} MiB (${Math.round((heapHeld - heapBefore) / total)} B per client, both ends in this process)`,
    );
    if (allInFirst) {
      expect(mux.stats.open).toBe(limit);
      expect(mux.stats.limitRefused).toBe(total - limit);
    }
    expect(mux.stats.open).toBeLessThanOrEqual(limit);
    const refusals = rejected.filter((e) => e.code === 'VSOCK_MUX_LIMIT');
    expect(refusals.length).toBe(mux.stats.limitRefused);
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals[0].message).toContain(`${limit} connections are open`);
    // Bounded: a held client costs the muxer a few KiB at most, whatever it (does not) send.
    expect(heapHeld - heapBefore).toBeLessThan(total * 16 * 1024);
    await until(() => clients.every((c) => c.rec.closed), 20_000, 'every client closed');
    expect(clients.every((c) => c.rec.bytes === 0)).toBe(true);
    // Every client was either refused or timed out in its line phase; nobody is left.
    expect(mux.stats.lineTimeouts + mux.stats.limitRefused).toBe(total);
    expect(rejected.filter((e) => e.code === 'VSOCK_MUX_LINE_TIMEOUT').length).toBe(mux.stats.lineTimeouts);
    expect(mux.stats.open).toBe(0);
  }, 60_000);

  it('clients that vanish mid-stream: the guest sees a reset or an end, and no connection entry is left on either stack or in the muxer', async () => {
    rig = await vsockRig();
    const r = rig;
    const { dir, remove } = tmpSocketDir();
    h.defer(remove);
    const mux = new VsockUnixMuxer(r.host.stack, { udsPath: join(dir, 'v.sock'), guestCid: 3 });
    h.defer(() => mux.close());
    await mux.listen();
    const outcomes: string[] = [];
    // A guest service that talks and listens: it streams to every client until the connection goes.
    r.guest.listen(1234).on('connection', (s: VsockSocket) => {
      let outcome = 'open';
      s.on('error', (e: NodeJS.ErrnoException) => (outcome = e.code ?? 'error'));
      s.on('end', () => (outcome = outcome === 'open' ? 'end' : outcome));
      s.on('close', () => outcomes.push(outcome));
      s.resume();
      const chunk = Buffer.alloc(16 * 1024, 0x5a);
      const pour = (): void => {
        while (!s.destroyed && s.writable && s.write(chunk));
      };
      s.on('drain', pour);
      pour();
    });
    const n = 60;
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const c = await unixClient(mux.udsPath);
        c.socket.write(`CONNECT 1234\n${i % 2 === 0 ? 'half a req' : ''}`);
        await until(() => c.rec.bytes > 1000 + 997 * i, 10_000, `client ${i} mid-stream`);
        c.socket.destroy(); // gone without a word, with bytes unread
        await c.rec.closedP;
      }),
    );
    await until(() => outcomes.length === n, 15_000, 'every guest connection to end');
    expect(outcomes.every((o) => o === 'ECONNRESET' || o === 'end' || o === 'EPIPE'), outcomes.join(',')).toBe(true);
    await until(() => mux.stats.open === 0 && r.host.stack.connectionCount === 0 && r.guest.stack.connectionCount === 0, 15_000, 'no connection entries left');
    expect(mux.stats.hostConnects).toBe(n);
  }, 60_000);
});
