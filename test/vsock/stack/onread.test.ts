/**
 * The onread option (a reader-supplied receive buffer, as net.Socket's):
 * bytes through the callback equal the bytes sent, returning false pauses
 * as Node does, and credit stays exact (virtio 1.2 section 5.10.6.3:
 * fwd_cnt advances as the reader consumes, CREDIT_UPDATE tells the peer).
 */
import { type Hash, createHash } from 'node:crypto';
import { once } from 'node:events';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { VSOCK_OP_CREDIT_UPDATE } from '../../../src/spec/vsock.js';
import type { VsockOnread, VsockSocket, VsockStackOptions } from '../../../src/vsock/stack/index.js';
import { HOST_CID, type Pair, closed, createPair, errorOf, pattern, settle, sha256, until } from './pair.js';

let pair: Pair | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

/** What an onread reader saw: the running sha256 of the bytes (the buffer is reused), the buffers it was given, the `this` of each call. */
interface Seen {
  hash: Hash;
  maxRead: number;
  calls: number;
  bytes: number;
  bufs: Set<Uint8Array>;
  thisArgs: Set<unknown>;
}

function reader(buffer: VsockOnread['buffer'], decide: (seen: Seen) => boolean | void = () => undefined): { onread: VsockOnread; seen: Seen } {
  const seen: Seen = { hash: createHash('sha256'), maxRead: 0, calls: 0, bytes: 0, bufs: new Set(), thisArgs: new Set() };
  const onread: VsockOnread = {
    buffer,
    callback(this: unknown, nread: number, buf: Uint8Array) {
      seen.calls++;
      seen.bytes += nread;
      seen.bufs.add(buf);
      seen.thisArgs.add(this);
      if (nread <= 0 || nread > buf.length) throw new Error(`nread ${nread} with a ${buf.length}-byte buffer`);
      seen.hash.update(buf.subarray(0, nread));
      seen.maxRead = Math.max(seen.maxRead, nread);
      return decide(seen);
    },
  };
  return { onread, seen };
}

/** A guest socket connected to a host listener on `port` whose accepted sockets read with `onread`. */
async function connected(p: Pair, port: number, onread: VsockOnread): Promise<[VsockSocket, VsockSocket]> {
  const accepted = once(p.host.listen(port, { onread }), 'connection') as Promise<[VsockSocket]>;
  const sock = p.guest.connect(HOST_CID, port);
  await once(sock, 'connect');
  const [peer] = await accepted;
  return [sock, peer];
}

async function writeAll(sock: VsockSocket, chunks: Buffer[]): Promise<void> {
  for (const c of chunks) if (!sock.write(c)) await once(sock, 'drain');
}

const smallCredit = (bufferSize: number): { guest: Partial<VsockStackOptions>; host: Partial<VsockStackOptions> } => ({ guest: { bufferSize }, host: { bufferSize } });

describe('vsock onread: the reader lends its receive buffer', () => {
  it('5.10.6.3 bytes through onread equal bytes sent, for write sizes and buffer sizes across packet and buffer boundaries, with pauses; fwd_cnt ends at the bytes received (fast-check, fixed seed)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          sizes: fc.array(fc.oneof(fc.integer({ min: 1, max: 160 * 1024 }), fc.constantFrom(1, 4095, 4096, 4097, 65535, 65536, 65537)), { minLength: 1, maxLength: 8 }),
          bufLen: fc.oneof(fc.integer({ min: 1, max: 96 * 1024 }), fc.constantFrom(1, 4096, 65535, 65536, 65537)),
          fresh: fc.boolean(),
          maxPayload: fc.constantFrom(4096, 65536),
          bufferSize: fc.constantFrom(64 * 1024, 256 * 1024),
          pauseEvery: fc.integer({ min: 0, max: 7 }),
        }),
        async (sc) => {
          const p = createPair({ port: { maxPayload: sc.maxPayload }, ...smallCredit(sc.bufferSize) });
          try {
            const fixed = Buffer.alloc(sc.bufLen);
            const buffer = sc.fresh ? () => Buffer.alloc(sc.bufLen) : fixed;
            let peerSock: VsockSocket | null = null;
            const { onread, seen } = reader(buffer, (s) => {
              if (sc.pauseEvery === 0 || s.calls % sc.pauseEvery !== 0) return undefined;
              setImmediate(() => peerSock?.resume());
              return false;
            });
            const [sock, peer] = await connected(p, 80, onread);
            peerSock = peer;
            peer.on('data', () => {
              throw new Error("'data' with onread");
            });
            const ended = once(peer, 'end');
            const msgs = sc.sizes.map((n, i) => pattern(n, i + 3));
            await writeAll(sock, msgs);
            sock.end();
            await ended;
            const total = msgs.reduce((a, m) => a + m.length, 0);
            expect(seen.bytes).toBe(total);
            expect(seen.hash.digest('hex')).toBe(sha256(Buffer.concat(msgs)));
            if (!sc.fresh) expect([...seen.bufs]).toEqual([fixed]);
            expect([...seen.thisArgs]).toEqual([peer]);
            expect(peer.credit.fwdCnt).toBe(total);
            expect(peer.bytesRead).toBe(total);
            expect(p.checker.violations).toEqual([]);
            peer.end();
            await Promise.all([closed(sock.resume()), closed(peer)]);
          } finally {
            await p.close();
          }
        },
      ),
      { seed: 0x0e5d, numRuns: 20 },
    );
  }, 180_000);

  it('the guest side connect({ onread }) reads into the lent buffer too; no Buffer per chunk: every call gets the same one', async () => {
    const p = (pair = createPair());
    p.host.listen(81).on('connection', (s: VsockSocket) => s.end(pattern(300_000, 9)));
    const buf = new Uint8Array(10_000);
    const { onread, seen } = reader(buf);
    const sock = p.guest.connect(HOST_CID, 81, { onread });
    await once(sock, 'end');
    expect(seen.hash.digest('hex')).toBe(sha256(pattern(300_000, 9)));
    expect([...seen.bufs]).toEqual([buf]);
    expect(seen.maxRead).toBe(10_000);
    sock.end();
    await closed(sock);
  });

  it('returning false pauses: no callback until resume(); the writer stops on credit meanwhile (the queue never exceeds buf_alloc), and resumes when the reader consumes (CREDIT_UPDATE sent)', async () => {
    const p = (pair = createPair(smallCredit(32 * 1024)));
    p.hostPort.log = [];
    let pauseNow = true;
    const { onread, seen } = reader(Buffer.alloc(4096), () => (pauseNow ? false : undefined));
    const [sock, peer] = await connected(p, 82, onread);
    const data = pattern(512 * 1024, 5);
    let written = false;
    sock.write(data, () => {
      written = true;
    });
    await until(() => seen.calls === 1, 'the first callback');
    await settle(20);
    expect(seen.calls).toBe(1); // paused
    // The peer sent what its credit allowed and stopped there.
    expect(peer.credit.rxQueued()).toBeLessThanOrEqual(32 * 1024);
    expect(sock.bytesWritten).toBeLessThanOrEqual(32 * 1024 + 4096);
    expect(written).toBe(false);
    const updatesBefore = (p.hostPort.log ?? []).filter((h) => h.op === VSOCK_OP_CREDIT_UPDATE).length;
    pauseNow = false;
    peer.resume();
    expect(seen.calls).toBe(1); // the callbacks start on the next tick, as net.Socket reads again
    await until(() => written && seen.bytes === data.length, 'the write done and read');
    expect(seen.hash.digest('hex')).toBe(sha256(data));
    expect((p.hostPort.log ?? []).filter((h) => h.op === VSOCK_OP_CREDIT_UPDATE).length).toBeGreaterThan(updatesBefore);
    expect(peer.credit.fwdCnt).toBe(data.length);
    expect(p.checker.violations).toEqual([]);
    sock.destroy();
    await Promise.all([closed(sock), closed(peer.on('error', () => undefined))]);
  });

  it('pause() and read() as on net.Socket with onread: pause() stops the callbacks, read() starts them again', async () => {
    const p = (pair = createPair(smallCredit(64 * 1024)));
    const { onread, seen } = reader(Buffer.alloc(1000));
    const [sock, peer] = await connected(p, 83, onread);
    peer.pause();
    const data = pattern(200_000, 6);
    sock.end(data);
    await settle(20);
    expect(seen.calls).toBe(0);
    expect(peer.credit.rxQueued()).toBe(64 * 1024); // the whole credit waits in the socket
    const ended = once(peer, 'end');
    peer.read(0);
    await ended;
    expect(seen.hash.digest('hex')).toBe(sha256(data));
    peer.end();
    await Promise.all([closed(sock.resume()), closed(peer)]);
  });

  it("the peer's end() while paused: 'end' only after resume() handed over every byte", async () => {
    const p = (pair = createPair());
    const { onread, seen } = reader(Buffer.alloc(5000), (s) => (s.calls === 2 ? false : undefined));
    const [sock, peer] = await connected(p, 84, onread);
    let ended = false;
    peer.on('end', () => {
      ended = true;
    });
    const data = pattern(100_000, 8);
    sock.end(data);
    await until(() => sock.writableFinished, 'the SHUTDOWN sent');
    await settle(20);
    expect(seen.calls).toBe(2);
    expect(ended).toBe(false);
    peer.resume();
    await once(peer, 'end');
    expect(seen.hash.digest('hex')).toBe(sha256(data));
    peer.end();
    await Promise.all([closed(sock.resume()), closed(peer)]);
  });

  it('the peer resets while the reader is paused with bytes waiting: ECONNRESET, no more callbacks', async () => {
    const p = (pair = createPair());
    const { onread, seen } = reader(Buffer.alloc(4096), () => false);
    const [sock, peer] = await connected(p, 85, onread);
    sock.write(pattern(100_000, 2));
    await until(() => peer.credit.rxQueued() > 0, 'bytes waiting');
    const err = errorOf(peer);
    sock.destroy();
    expect((await err).code).toBe('ECONNRESET');
    peer.resume();
    await settle(10);
    expect(seen.calls).toBe(1);
    await closed(peer);
  });

  it('the reader destroys its socket while paused (or inside the callback): the writer sees ECONNRESET, no callback follows', async () => {
    const p = (pair = createPair(smallCredit(16 * 1024)));
    let peerSock: VsockSocket | null = null;
    const { onread, seen } = reader(Buffer.alloc(4096), (s) => {
      if (s.calls === 3) peerSock?.destroy();
      return undefined;
    });
    const [sock, peer] = await connected(p, 86, onread);
    peerSock = peer;
    const err = errorOf(sock);
    sock.write(pattern(100_000, 4));
    expect((await err).code).toBe('ECONNRESET');
    await settle(10);
    expect(seen.calls).toBe(3);
    await Promise.all([closed(sock), closed(peer)]);

    const r2 = reader(Buffer.alloc(4096), () => false);
    const [sock2, peer2] = await connected(p, 87, r2.onread);
    sock2.write(pattern(50_000, 4));
    await until(() => peer2.credit.rxQueued() > 0, 'bytes waiting');
    const err2 = errorOf(sock2);
    peer2.destroy();
    expect((await err2).code).toBe('ECONNRESET');
    expect(r2.seen.calls).toBe(1);
    await Promise.all([closed(sock2), closed(peer2)]);
  });

  it('misuse gets InvalidArgumentError naming the value: a 0-length buffer, a buffer that is no Uint8Array or function, no callback, onread on seqpacket, a buffer function returning nothing usable', async () => {
    const p = (pair = createPair({ guest: { seqpacket: true }, host: { seqpacket: true } }));
    const cb = (): undefined => undefined;
    const bad: Array<[unknown, RegExp]> = [
      [{ buffer: Buffer.alloc(0), callback: cb }, /onread\.buffer has length 0/],
      [{ buffer: 'abc', callback: cb }, /onread\.buffer must be a Uint8Array or a function returning one, got string abc/],
      [{ buffer: [1, 2], callback: cb }, /got a Array/],
      [{ buffer: Buffer.alloc(8) }, /onread\.callback must be a function, got undefined/],
      [42, /onread must be \{ buffer, callback \}, got number 42/],
      [null, /got null/],
    ];
    for (const [onread, msg] of bad) {
      expect(() => p.guest.connect(HOST_CID, 90, { onread: onread as VsockOnread })).toThrow(InvalidArgumentError);
      expect(() => p.guest.connect(HOST_CID, 90, { onread: onread as VsockOnread })).toThrow(msg);
      expect(() => p.host.listen(90, { onread: onread as VsockOnread })).toThrow(msg);
    }
    expect(p.guest.connectionCount).toBe(0);
    const ok = { buffer: Buffer.alloc(8), callback: cb };
    expect(() => p.host.listen(91, { type: 'seqpacket', onread: ok })).toThrow(/onread is for stream sockets, not seqpacket/);
    expect(() => p.guest.connect(HOST_CID, 91, { type: 'seqpacket', onread: ok } as never)).toThrow(InvalidArgumentError);

    // A buffer function's result is checked at each chunk: the socket is destroyed, the process lives.
    const [sock, peer] = await connected(p, 92, { buffer: () => new Uint8Array(0), callback: cb });
    const err = errorOf(peer);
    sock.on('error', () => undefined).write(pattern(10, 1));
    const e = await err;
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(/the onread\.buffer function's result has length 0/);
    await Promise.all([closed(sock), closed(peer)]);
  });
});
