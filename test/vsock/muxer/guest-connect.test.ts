import { once } from 'node:events';
import { renameSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type FakeListener, FakeVsockSocket, Harness, Recorder, randomBytes, until } from './fake-endpoint.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** A host program listening at `path`: every accepted socket is handed to `onSocket` (echo by default). */
async function hostService(path: string, onSocket: (s: Socket) => void = (s) => s.pipe(s)): Promise<{ server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    onSocket(s);
  });
  server.listen(path);
  await once(server, 'listening');
  h.defer(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { server, sockets };
}

function errCode(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );
}

describe('guest-initiated: host port P goes to ${udsPath}_P', () => {
  it('forwards a guest connection to the Unix socket and echoes 1 MiB byte-exact', async () => {
    const { udsPath, mux, fake } = await h.start();
    const svc = await hostService(`${udsPath}_5000`);
    const g = await fake.guestConnect(5000);
    const rec = new Recorder(g);
    expect(mux.stats.guestConnects).toBe(1);
    const data = randomBytes(1 << 20, 3);
    for (let off = 0; off < data.length; off += 10_000) g.write(data.subarray(off, off + 10_000));
    g.end();
    await until(() => rec.ended, 10_000, 'the echo to end');
    expect(rec.data.equals(data)).toBe(true);
    expect(svc.sockets.length).toBe(1);
    await rec.closedWithin();
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
    expect(mux.stats.bytesToHost).toBe(data.length);
    expect(mux.stats.bytesToGuest).toBe(data.length);
    expect(mux.stats.socketErrors).toBe(0);
  });

  it('answers RST when nothing listens at ${udsPath}_P (absent or stale)', async () => {
    const { udsPath, mux, fake, rejected } = await h.start();
    expect(await errCode(fake.guestConnect(5001))).toBe('ECONNRESET');
    // A stale socket file: nobody accepts behind it.
    const stale = await hostService(`${udsPath}_tmp`);
    renameSync(`${udsPath}_tmp`, `${udsPath}_5002`);
    await new Promise<void>((r) => stale.server.close(() => r()));
    expect(await errCode(fake.guestConnect(5002))).toBe('ECONNRESET');
    expect(fake.resets).toBe(2);
    expect(mux.stats.guestConnectFailures).toBe(2);
    expect(mux.stats.guestConnects).toBe(0);
    expect(rejected.map((e) => [e.code, e.errno, e.port])).toEqual([
      ['VSOCK_MUX_UNIX_CONNECT_FAILED', 'ENOENT', 5001],
      ['VSOCK_MUX_UNIX_CONNECT_FAILED', 'ECONNREFUSED', 5002],
    ]);
    await until(() => mux.stats.open === 0);
  });

  it('passes half-closes both ways: guest EOF first, then the host program answers', async () => {
    const { udsPath, mux, fake } = await h.start();
    let got: Recorder | undefined;
    await hostService(`${udsPath}_5003`, (s) => {
      got = new Recorder(s);
      s.on('end', () => s.end('reply after your EOF'));
    });
    const g = await fake.guestConnect(5003);
    const rec = new Recorder(g);
    g.end('request');
    await until(() => rec.ended, 5000, 'the reply');
    expect(got?.text()).toBe('request');
    expect(rec.text()).toBe('reply after your EOF');
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
  });

  it('passes half-closes both ways: host program EOF first, the guest goes on sending', async () => {
    const { udsPath, mux, fake } = await h.start();
    let got: Recorder | undefined;
    await hostService(`${udsPath}_5004`, (s) => {
      got = new Recorder(s);
      s.end('banner, then EOF');
    });
    const g = await fake.guestConnect(5004);
    const rec = new Recorder(g);
    await until(() => rec.ended, 5000, 'EOF at the guest');
    expect(rec.text()).toBe('banner, then EOF');
    g.end('the guest still talks');
    await until(() => got?.ended === true, 5000, 'EOF at the host program');
    expect(got?.text()).toBe('the guest still talks');
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
  });

  it('a guest reset closes the Unix socket', async () => {
    const { udsPath, mux, fake } = await h.start();
    const svc = await hostService(`${udsPath}_5005`, () => undefined);
    const g = await fake.guestConnect(5005);
    await until(() => svc.sockets.length === 1);
    const hostSide = new Recorder(svc.sockets[0]);
    g.destroy(); // the guest resets
    await until(() => hostSide.ended, 5000, 'EOF at the host program'); // a Unix socket has no reset
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
  });

  it('refuses a request from another CID, and one beyond maxConnections', async () => {
    const { udsPath, mux, fake, rejected } = await h.start({ maxConnections: 1 });
    await hostService(`${udsPath}_5006`);
    expect(await errCode(fake.guestConnect(5006, 42))).toBe('ECONNRESET');
    expect(rejected[0].code).toBe('VSOCK_MUX_FOREIGN_CID');
    const hold = await h.client(udsPath); // one connection open (line phase)
    await until(() => mux.stats.open === 1);
    expect(await errCode(fake.guestConnect(5006))).toBe('ECONNRESET');
    expect(mux.stats.limitRefused).toBe(1);
    expect(rejected[1].code).toBe('VSOCK_MUX_LIMIT');
    hold.socket.destroy();
    await until(() => mux.stats.open === 0);
    const g = await fake.guestConnect(5006);
    const rec = new Recorder(g);
    g.write('ok now');
    await until(() => rec.text() === 'ok now');
    expect(mux.stats.guestConnectFailures).toBe(1);
  });

  it('drops an accepted connection the stack never delivers, and resets one it did not accept', async () => {
    const { udsPath, mux, fake, rejected } = await h.start({ acceptTimeoutMs: 80 });
    const svc = await hostService(`${udsPath}_5007`, () => undefined);
    const l = fake.listeners.get(0xffffffff) as FakeListener;
    expect(await l.options?.accept?.({ remoteCid: 3, remotePort: 777, localPort: 5007 })).toBe(true);
    await until(() => svc.sockets.length === 1);
    const lost = new Recorder(svc.sockets[0]);
    await until(() => lost.ended, 3000, 'EOF at the host program');
    expect(rejected.map((e) => e.code)).toEqual(['VSOCK_MUX_ACCEPT_MISMATCH']);

    const stray = new FakeVsockSocket(5007, 778, 3);
    stray.on('error', () => undefined);
    l.emit('connection', stray);
    expect(stray.destroyed).toBe(true);
    expect(mux.stats.guestConnectFailures).toBe(2);
    expect(mux.stats.open).toBe(0);
  });

  it('close() closes forwarded connections and stops listening on vsock', async () => {
    const { udsPath, mux, fake } = await h.start();
    const svc = await hostService(`${udsPath}_5008`, () => undefined);
    const g = await fake.guestConnect(5008);
    await until(() => svc.sockets.length === 1);
    const hostSide = new Recorder(svc.sockets[0]);
    await mux.close();
    await until(() => hostSide.ended, 5000, 'EOF at the host program');
    expect(g.destroyed).toBe(true);
    expect(g.reset).toBe(true);
    expect(fake.listeners.get(0xffffffff)?.closed).toBe(true);
    expect(await errCode(fake.guestConnect(5008))).toBe('ECONNRESET');
  });
});
