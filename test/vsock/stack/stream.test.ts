/**
 * Stream sockets between two stacks through bounded in-memory ports, the
 * credit checker watching every packet (pair.ts).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_OP_RST, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_F_RECEIVE, VSOCK_SHUTDOWN_F_SEND } from '../../../src/spec/vsock.js';
import type { VsockHeader } from '../../../src/vsock/vsock-header.js';
import { VSOCK_EPHEMERAL_PORT_FIRST, type VsockSocket } from '../../../src/vsock/stack/index.js';
import { HOST_CID, GUEST_CID, type Pair, closed, createPair, pattern, readAll, settle, sha256, until } from './pair.js';

let pair: Pair | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

/** A listener on the host that hands out its sockets. */
function acceptOne(p: Pair, port: number): Promise<VsockSocket> {
  const server = p.host.listen(port);
  return new Promise((resolve) => server.once('connection', (s: VsockSocket) => resolve(s)));
}

async function writeAll(sock: VsockSocket, chunks: Iterable<Buffer>): Promise<void> {
  for (const c of chunks) {
    if (!sock.write(c)) await once(sock, 'drain');
  }
}

function expectClean(p: Pair): void {
  expect(p.checker.violations).toEqual([]);
  expect(p.guest.stats.creditViolations).toBe(0);
  expect(p.host.stats.creditViolations).toBe(0);
  expect(p.guestPort.emptyFlushes).toBe(0);
  expect(p.hostPort.emptyFlushes).toBe(0);
}

describe('vsock stream: data', () => {
  it('echo: 64 MiB each way arrive byte-exact (sha256) and the credit rule holds on every RW packet', async () => {
    const p = (pair = createPair({ port: { capacityPackets: 3 } }));
    p.host.listen(7000).on('connection', (s: VsockSocket) => s.pipe(s));
    const sock = p.guest.connect(HOST_CID, 7000);
    const total = 64 << 20;
    const block = pattern(1 << 20, 0xc0ffee);
    const txHash = createHash('sha256');
    const rxHash = createHash('sha256');
    let received = 0;
    sock.on('data', (b: Buffer) => {
      rxHash.update(b);
      received += b.length;
    });
    const ended = once(sock, 'end');
    const sizes = [65536, 200_000, 1, 4096, 131_072, 7, 300_000];
    let sent = 0;
    for (let i = 0; sent < total; i++) {
      const n = Math.min(sizes[i % sizes.length], total - sent);
      const at = (i * 4099) % (block.length - n);
      const chunk = block.subarray(at, at + n);
      txHash.update(chunk);
      sent += n;
      if (!sock.write(chunk)) await once(sock, 'drain');
    }
    sock.end();
    await ended;
    await closed(sock);
    expect(received).toBe(total);
    expect(rxHash.digest('hex')).toBe(txHash.digest('hex'));
    expect(p.checker.rwBytes).toBe(2 * total);
    expect(p.guestPort.refusals + p.hostPort.refusals).toBeGreaterThan(0); // the ports did push back
    expectClean(p);
    await until(() => p.host.connectionCount === 0 && p.guest.connectionCount === 0, 'both tables empty');
    // One flush per burst, not one per packet.
    expect(p.guestPort.flushes).toBeLessThan(p.guest.stats.packetsOut);
  }, 60_000);

  it('property: random write sizes (1 B .. 200 KiB), buffer sizes, packet sizes and read pauses -> byte-exact, credit never exceeded', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          writes: fc.array(fc.integer({ min: 1, max: 200 * 1024 }), { minLength: 1, maxLength: 10 }),
          bufferSize: fc.constantFrom(4096, 65536, 256 * 1024),
          maxPayload: fc.constantFrom(1024, 4096, 65536),
          capacityPackets: fc.integer({ min: 1, max: 64 }),
          pauses: fc.array(fc.record({ after: fc.integer({ min: 0, max: 40 }), ms: fc.integer({ min: 0, max: 3 }) }), { maxLength: 5 }),
          seed: fc.integer({ min: 1, max: 0x7fffffff }),
        }),
        async (sc) => {
          const p = createPair({
            guest: { bufferSize: sc.bufferSize },
            host: { bufferSize: sc.bufferSize },
            port: { maxPayload: sc.maxPayload, capacityPackets: sc.capacityPackets },
          });
          try {
            const accepted = acceptOne(p, 80);
            const sock = p.guest.connect(HOST_CID, 80);
            const chunks = sc.writes.map((n, i) => pattern(n, sc.seed + i));
            const want = Buffer.concat(chunks);
            const peer = await accepted;
            const parts: Buffer[] = [];
            let seen = 0;
            const pauseAt = new Map(sc.pauses.map((x) => [x.after, x.ms]));
            peer.on('data', (b: Buffer) => {
              parts.push(b);
              const ms = pauseAt.get(seen++);
              if (ms !== undefined) {
                peer.pause();
                setTimeout(() => peer.resume(), ms);
              }
            });
            const ended = once(peer, 'end');
            sock.resume();
            await writeAll(sock, chunks);
            sock.end();
            await ended;
            peer.end();
            await Promise.all([closed(sock), closed(peer)]);
            const got = Buffer.concat(parts);
            expect(got.length).toBe(want.length);
            expect(sha256(got)).toBe(sha256(want));
            expectClean(p);
          } finally {
            await p.close();
          }
        },
      ),
      { seed: 0x5eed, numRuns: 20 },
    );
  }, 60_000);

  it('writes before the RESPONSE wait and go out after connect, in order', async () => {
    const p = (pair = createPair());
    const accepted = acceptOne(p, 81);
    const sock = p.guest.connect(HOST_CID, 81);
    expect(sock.connecting).toBe(true);
    expect(sock.pending).toBe(true);
    sock.write('hello ');
    sock.end('world');
    const peer = await accepted;
    expect((await readAll(peer)).toString()).toBe('hello world');
    expect(sock.connecting).toBe(false);
    sock.resume();
    peer.end();
    await Promise.all([closed(sock), closed(peer)]);
    expectClean(p);
  });

  it('addresses: localCid/localPort/remoteCid/remotePort on both ends; ephemeral ports start at 1024 and skip ports in use', async () => {
    const p = (pair = createPair());
    const server = p.host.listen(82);
    const peers: VsockSocket[] = [];
    server.on('connection', (s: VsockSocket) => peers.push(s));
    const fixed = p.guest.connect(HOST_CID, 82, { localPort: VSOCK_EPHEMERAL_PORT_FIRST + 1 });
    const a = p.guest.connect(HOST_CID, 82);
    const b = p.guest.connect(HOST_CID, 82);
    expect([fixed.localPort, a.localPort, b.localPort]).toEqual([1025, 1024, 1026]);
    expect(a.localCid).toBe(GUEST_CID);
    expect(a.remoteCid).toBe(HOST_CID);
    expect(a.remotePort).toBe(82);
    expect(() => p.guest.connect(HOST_CID, 82, { localPort: 1024 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    await Promise.all([once(a, 'connect'), once(b, 'connect'), once(fixed, 'connect')]);
    expect(a.pending).toBe(false);
    for (const s of peers) s.on('error', () => {});
    const pa = peers.find((s) => s.remotePort === 1024) as VsockSocket;
    expect(pa.localCid).toBe(HOST_CID);
    expect(pa.localPort).toBe(82);
    expect(pa.remoteCid).toBe(GUEST_CID);
    expect(pa.server).toBe(server);
    expect(p.guest.connectionCount).toBe(3);
    expect(p.host.connectionCount).toBe(3);
    for (const s of [a, b, fixed]) s.destroy();
    await until(() => p.host.connectionCount === 0, 'host connections reset');
  });

  it('backpressure: a reader that never reads stops the writer (write() false, memory bounded by buf_alloc + highWaterMarks); reading again completes byte-exact', async () => {
    const p = (pair = createPair());
    const accepted = acceptOne(p, 83);
    const sock = p.guest.connect(HOST_CID, 83);
    const peer = await accepted;
    peer.pause();
    sock.resume();
    const chunk = 16 * 1024;
    const data = pattern(8 << 20, 83);
    let off = 0;
    // Write until write() says stop and no 'drain' comes while everything that can move moves.
    let drained = true;
    while (drained && off < data.length) {
      while (off < data.length && sock.write(data.subarray(off, off + chunk))) off += chunk;
      off += chunk;
      drained = false;
      sock.once('drain', () => (drained = true));
      await settle(30);
    }
    expect(off).toBeLessThan(data.length);
    expect(drained).toBe(false);
    const bufAlloc = p.host.bufferSize;
    // Receiver: bytes queued for the reader never exceed buf_alloc; the Readable holds its highWaterMark plus one packet.
    expect(peer.credit.rxQueued()).toBeLessThanOrEqual(bufAlloc);
    expect(peer.readableLength).toBeLessThanOrEqual(peer.readableHighWaterMark + 64 * 1024);
    expect(sock.bytesWritten).toBeLessThanOrEqual(bufAlloc + peer.readableHighWaterMark + 64 * 1024);
    expect(sock.writableLength).toBeLessThanOrEqual(sock.writableHighWaterMark + chunk);
    // Now read: the rest flows.
    const got = readAll(peer);
    peer.resume();
    await until(() => drained, "'drain'");
    for (; off < data.length; off += chunk) {
      if (!sock.write(data.subarray(off, off + chunk))) await once(sock, 'drain');
    }
    sock.end();
    const buf = await got;
    expect(buf.length).toBe(data.length);
    expect(sha256(buf)).toBe(sha256(data));
    peer.end();
    await Promise.all([closed(sock), closed(peer)]);
    expectClean(p);
  });

  it('one port.flush() per event-loop turn, never one per packet', async () => {
    const p = (pair = createPair());
    const server = p.host.listen(84);
    server.on('connection', (s: VsockSocket) => s.resume());
    const socks = Array.from({ length: 10 }, () => p.guest.connect(HOST_CID, 84));
    await Promise.all(socks.map((s) => once(s, 'connect')));
    await settle(10);
    const flushes = p.guestPort.flushes;
    const packets = p.guest.stats.packetsOut;
    for (const s of socks) s.write(pattern(3000, 1));
    await Promise.resolve();
    expect(p.guestPort.flushes - flushes).toBe(0); // not yet: the flush waits for the end of the turn
    await new Promise((r) => setImmediate(r));
    expect(p.guest.stats.packetsOut - packets).toBe(10);
    expect(p.guestPort.flushes - flushes).toBe(1);
    for (const s of socks) s.destroy();
  });
});

describe('vsock stream: shutdown and close', () => {
  it('half-close: end() -> peer "end" after all data; the peer can still write back; full close ends with SHUTDOWN(RCV|SEND), RST and "close" on both', async () => {
    const p = (pair = createPair());
    p.guestPort.log = [];
    p.hostPort.log = [];
    const accepted = acceptOne(p, 90);
    const sock = p.guest.connect(HOST_CID, 90);
    const payload = pattern(700_000, 90);
    sock.end(payload);
    const peer = await accepted;
    const got = await readAll(peer); // 'end' came after every byte
    expect(sha256(got)).toBe(sha256(payload));
    expect(peer.writable).toBe(true);
    // Half-closed: the peer still writes; the guest still reads.
    const back = readAll(sock);
    peer.end('reply after end');
    expect((await back).toString()).toBe('reply after end');
    const errors: Error[] = [];
    sock.on('error', (e) => errors.push(e));
    peer.on('error', (e) => errors.push(e));
    await Promise.all([closed(sock), closed(peer)]);
    expect(errors).toEqual([]);
    await until(() => p.guest.connectionCount === 0 && p.host.connectionCount === 0, 'both tables empty');
    const wire: VsockHeader[] = [...p.guestPort.log, ...p.hostPort.log];
    const shut = wire.filter((h) => h.op === VSOCK_OP_SHUTDOWN);
    // The guest's end() says SEND; the host's end(), after it read the guest's end, says both in one packet (5.10.6.4).
    expect(shut.map((h) => [h.srcCid, h.flags])).toEqual([
      [GUEST_CID, VSOCK_SHUTDOWN_F_SEND],
      [HOST_CID, VSOCK_SHUTDOWN_F_SEND | VSOCK_SHUTDOWN_F_RECEIVE],
    ]);
    expect(wire.some((h) => h.op === VSOCK_OP_RST)).toBe(true);
    expect(p.guest.stats.closeTimeouts + p.host.stats.closeTimeouts).toBe(0);
    expectClean(p);
  });

  it('a peer that shut both directions and whose data was all delivered answers RST (no close timeout)', async () => {
    const p = (pair = createPair({ guest: { closeTimeoutMs: 60_000 }, host: { closeTimeoutMs: 60_000 } }));
    const accepted = acceptOne(p, 91);
    const sock = p.guest.connect(HOST_CID, 91);
    const peer = await accepted;
    sock.end('x');
    const got = readAll(peer);
    await got;
    peer.end();
    // The guest gets 'end' and closes (SHUTDOWN both); the host answers RST; no 60 s wait.
    sock.resume();
    await Promise.all([closed(sock), closed(peer)]);
    await until(() => p.guest.connectionCount === 0 && p.host.connectionCount === 0, 'both tables empty');
    expect(p.guest.stats.rstSent + p.host.stats.rstSent).toBeGreaterThan(0);
  });

  it('write after the peer shut its receive side fails with EPIPE', async () => {
    const p = (pair = createPair());
    const accepted = acceptOne(p, 92);
    const sock = p.guest.connect(HOST_CID, 92);
    const peer = await accepted;
    peer.on('error', () => {});
    p.host.sendControl(peer, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_F_RECEIVE);
    await until(() => sock.peerShutdown !== 0, 'SHUTDOWN(RCV) arrived');
    const err = new Promise<Error & { code?: string }>((resolve) => sock.once('error', resolve));
    sock.write('nobody reads this');
    expect((await err).code).toBe('EPIPE');
    await Promise.all([closed(sock), closed(peer)]);
  });

  it('destroy() while a write waits for credit: its callback gets EPIPE naming the connection; destroy() with nothing waiting closes without an error', async () => {
    const p = (pair = createPair({ host: { bufferSize: 8192 } }));
    const accepted = acceptOne(p, 93);
    const sock = p.guest.connect(HOST_CID, 93);
    const peer = await accepted; // never read: the 8 KiB credit runs out
    peer.on('error', () => {});
    const errors: Error[] = [];
    sock.on('error', (e) => errors.push(e));
    const written = new Promise<(Error & { code?: string }) | null | undefined>((resolve) => sock.write(Buffer.alloc(64 * 1024, 1), resolve));
    await until(() => sock.credit.peerFree() === 0 && sock.bytesWritten === 8192, 'the write stalled on credit');
    sock.destroy();
    const err = await written;
    expect(err?.code).toBe('EPIPE');
    expect(err?.message).toContain(`3:${sock.localPort} -> 2:93 was destroyed`);
    await Promise.all([closed(sock), closed(peer)]);

    const accepted2 = acceptOne(p, 94);
    const quiet = p.guest.connect(HOST_CID, 94);
    const peer2 = await accepted2;
    peer2.on('error', () => {});
    const quietErrors: Error[] = [];
    quiet.on('error', (e) => quietErrors.push(e));
    quiet.destroy();
    await Promise.all([closed(quiet), closed(peer2)]);
    expect(quietErrors).toEqual([]);
  });

  it('setTimeout(ms): "timeout" after ms of idleness, the socket stays usable; activity restarts it; 0 disables', async () => {
    const p = (pair = createPair());
    const accepted = acceptOne(p, 93);
    const sock = p.guest.connect(HOST_CID, 93);
    const peer = await accepted;
    peer.resume();
    let fired = 0;
    const t0 = Date.now();
    sock.setTimeout(40, () => fired++);
    expect(sock.timeout).toBe(40);
    await once(sock, 'timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(35);
    expect(fired).toBe(1);
    expect(sock.destroyed).toBe(false);
    // Activity pushes it back: writing every 10 ms for 300 ms brings no 150 ms timeout.
    let timeouts = 0;
    sock.on('timeout', () => timeouts++);
    sock.setTimeout(150);
    const t1 = Date.now();
    while (Date.now() - t1 < 300) {
      sock.write('tick');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(timeouts).toBe(0);
    await once(sock, 'timeout');
    sock.setTimeout(0);
    expect(sock.timeout).toBeUndefined();
    await new Promise((r) => setTimeout(r, 60));
    expect(timeouts).toBe(1);
    sock.destroy();
    peer.on('error', () => {});
  });
});
