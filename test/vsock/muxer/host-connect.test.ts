import { once } from 'node:events';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type FakeVsockSocket, Harness, Recorder, okPort, randomBytes, sleep, until } from './fake-endpoint.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** Write `data` in pseudo-random pieces (many tiny, most up to 64 KiB), honouring backpressure. */
async function writeChunked(socket: Socket, data: Buffer, seed: number): Promise<number> {
  let x = seed >>> 0 || 1;
  let off = 0;
  let writes = 0;
  while (off < data.length) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const r = x >>> 0;
    const n = r % 4 === 0 ? 1 + (r % 16) : 1 + (r % 65536);
    writes++;
    if (!socket.write(data.subarray(off, off + n))) await once(socket, 'drain');
    off += n;
  }
  return writes;
}

describe('host-initiated: CONNECT <port> / OK <port>', () => {
  it('answers OK with the local vsock port and echoes 4 MiB byte-exact through random chunking', async () => {
    const { udsPath, mux, fake } = await h.start();
    const c = await h.connected(udsPath);
    expect(fake.connects).toEqual([{ port: 1234, outcome: 'connected' }]);
    expect(c.localPort).toBe(fake.guestEnds[0].remotePort); // the host end's local port
    expect(mux.stats.hostConnects).toBe(1);

    const data = randomBytes(4 << 20, 7);
    const writes = await writeChunked(c.socket, data, 99);
    expect(writes).toBeGreaterThan(100);
    c.socket.end();
    await until(() => c.rec.ended, 10_000, 'the echo to end');
    expect(c.after().equals(data)).toBe(true);
    await c.rec.closedWithin();
    await until(() => mux.stats.open === 0, 5000, 'the pair to close');
    const s = mux.stats;
    expect(s.bytesToGuest).toBe(data.length);
    expect(s.bytesToHost).toBe(data.length);
    expect(s.socketErrors).toBe(0);
    await until(() => fake.live === 0, 5000, 'both vsock ends to close');
  });

  it('does not lose bytes sent in the same write as the CONNECT line', async () => {
    const { udsPath, fake } = await h.start();
    const got: Recorder[] = [];
    fake.serve(2000, (g) => got.push(new Recorder(g)));
    const { socket, rec } = await h.client(udsPath);
    socket.write('CONNECT 2000\nhello, guest: these bytes came with the line');
    await until(() => got.length === 1 && got[0].bytes >= 40, 5000, 'the early bytes at the guest');
    expect(got[0].text()).toBe('hello, guest: these bytes came with the line');
    await until(() => okPort(rec.text()) !== null, 5000, 'OK');
    expect(rec.text()).toBe(`OK ${okPort(rec.text())}\n`);
  });

  it('any split of line and data across reads gives the same stream (property)', async () => {
    const { udsPath, mux } = await h.start();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }), async (payload, cuts) => {
        const wire = Buffer.concat([Buffer.from('CONNECT 1234\n'), payload]);
        const { socket, rec } = await h.client(udsPath);
        let off = 0;
        for (const n of cuts) {
          if (off >= wire.length) break;
          socket.write(wire.subarray(off, off + n));
          off += n;
          await sleep(1);
        }
        socket.write(wire.subarray(off));
        socket.end();
        await until(() => rec.ended, 5000, 'echo end');
        const text = rec.data;
        const port = okPort(text.toString('latin1'));
        expect(port).not.toBeNull();
        const skip = text.indexOf(0x0a) + 1;
        expect(Buffer.compare(text.subarray(skip), Buffer.from(payload))).toBe(0);
        socket.destroy();
        await rec.closedP;
      }),
      { numRuns: 25 },
    );
    expect(mux.stats.hostConnects).toBe(25);
    expect(Object.values(mux.stats.badLines).every((n) => n === 0)).toBe(true);
  });

  it('closes the client without a word when the guest refuses the port', async () => {
    const { udsPath, mux, fake, rejected } = await h.start();
    const { socket, rec } = await h.client(udsPath);
    socket.write('CONNECT 7\n');
    await rec.closedWithin();
    expect(rec.bytes).toBe(0);
    expect(fake.connects).toEqual([{ port: 7, outcome: 'ECONNREFUSED' }]);
    expect(mux.stats.hostConnectFailures).toBe(1);
    expect(mux.stats.hostConnects).toBe(0);
    expect(rejected.map((e) => [e.code, e.errno, e.port])).toEqual([['VSOCK_MUX_CONNECT_FAILED', 'ECONNREFUSED', 7]]);
    await until(() => mux.stats.open === 0);
  });

  it('closes the client when the connect times out', async () => {
    const { udsPath, mux, fake, rejected } = await h.start();
    fake.blackHole(4321);
    const { socket, rec } = await h.client(udsPath);
    const t0 = Date.now();
    socket.write('CONNECT 4321\n');
    await rec.closedWithin();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(fake.connectTimeoutMs - 20);
    expect(rec.bytes).toBe(0);
    expect(mux.stats.hostConnectFailures).toBe(1);
    expect(rejected[0].errno).toBe('ETIMEDOUT');
    await until(() => mux.stats.open === 0 && fake.live === 0);
  });

  it('passes a half-close from the Unix client to the guest and back', async () => {
    const { udsPath, mux, fake } = await h.start();
    let guest: Recorder | undefined;
    let g!: FakeVsockSocket;
    fake.serve(2001, (s) => {
      g = s;
      guest = new Recorder(s);
    });
    const c = await h.connected(udsPath, 2001, true);
    c.socket.end('request, then EOF');
    await until(() => guest?.ended === true, 5000, 'the guest to see EOF');
    expect(guest?.text()).toBe('request, then EOF');
    // The other direction is still open: the guest answers after the client's EOF.
    g.write('answer after your EOF');
    await until(() => c.after().length === 21, 5000, 'the answer');
    expect(c.rec.ended).toBe(false);
    g.end();
    await until(() => c.rec.ended, 5000, 'EOF at the client');
    expect(c.after().toString()).toBe('answer after your EOF');
    await c.rec.closedWithin();
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
    expect(mux.stats.socketErrors).toBe(0);
  });

  it('passes a half-close from the guest to the Unix client, which can still send', async () => {
    const { udsPath, mux, fake } = await h.start();
    let guest: Recorder | undefined;
    fake.serve(2002, (s) => {
      guest = new Recorder(s);
      s.end('banner, then EOF\n');
    });
    const c = await h.connected(udsPath, 2002, true);
    await until(() => c.rec.ended, 5000, 'EOF at the client');
    expect(c.after().toString()).toBe('banner, then EOF\n');
    expect(c.rec.closed).toBe(false);
    c.socket.end('sent after the guest closed its side');
    await until(() => guest?.ended === true, 5000, 'EOF at the guest');
    expect(guest?.text()).toBe('sent after the guest closed its side');
    await c.rec.closedWithin();
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
    expect(mux.stats.bytesToHost).toBe(17);
    expect(mux.stats.bytesToGuest).toBe(36);
  });

  it('a guest reset closes the Unix client; a client that goes away closes the guest end', async () => {
    const { udsPath, mux, fake } = await h.start();
    fake.serve(2003, (s) => s.once('data', () => s.destroy()));
    const a = await h.connected(udsPath, 2003);
    a.socket.write('x');
    await a.rec.closedWithin(); // A Unix socket has no reset: the client sees EOF and the close.
    expect(a.after().length).toBe(0);

    const b = await h.connected(udsPath);
    const g = fake.guestEnds[fake.guestEnds.length - 1];
    b.socket.destroy();
    // The muxer sees EOF (a Unix close is a FIN), passes it on, and the pair winds down.
    await until(() => g.destroyed, 5000, 'the guest end to close');
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
  });

  it('close() closes every client and resets every vsock connection', async () => {
    const { udsPath, mux, fake } = await h.start();
    const clients = [await h.connected(udsPath), await h.connected(udsPath), await h.client(udsPath)];
    expect(mux.stats.open).toBe(3);
    await mux.close();
    for (const c of clients) await c.rec.closedWithin();
    expect(mux.stats.open).toBe(0);
    expect(fake.live).toBe(0);
    expect(fake.guestEnds.every((g) => g.reset)).toBe(true);
    await mux.close(); // idempotent
  });
});
