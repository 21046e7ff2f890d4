import { once } from 'node:events';
import { existsSync, lstatSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VsockMuxerError } from '../../../src/vsock/muxer/muxer-types.js';
import { VsockUnixMuxer } from '../../../src/vsock/muxer/unix-muxer.js';
import { FakeVsockEndpoint, Harness, tmpSocketDir } from './fake-endpoint.js';

const h = new Harness();
afterEach(() => h.cleanup());

function fresh(): { dir: string; udsPath: string; fake: FakeVsockEndpoint } {
  const { dir, remove } = tmpSocketDir();
  h.defer(remove);
  const fake = new FakeVsockEndpoint();
  h.defer(() => fake.close());
  return { dir, udsPath: join(dir, 'v.sock'), fake };
}

function muxer(fake: FakeVsockEndpoint, udsPath: string): VsockUnixMuxer {
  const mux = new VsockUnixMuxer(fake, { udsPath, guestCid: 3 });
  h.defer(() => mux.close());
  return mux;
}

/** A socket file at `path` with nothing listening behind it (what a killed process leaves). */
async function staleSocket(path: string): Promise<void> {
  const srv = createServer();
  srv.listen(`${path}.tmp`);
  await once(srv, 'listening');
  renameSync(`${path}.tmp`, path);
  await new Promise<void>((r) => srv.close(() => r()));
}

describe('the listening socket file', () => {
  it('is a socket with mode 0600, with nothing left beside it, and is removed on close', async () => {
    const { udsPath, dir, mux } = await h.start();
    const st = lstatSync(udsPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['v.sock']); // the private bind folder is gone
    const c = await h.connected(udsPath);
    expect(c.localPort).toBeGreaterThan(0);
    await mux.close();
    expect(existsSync(udsPath)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('replaces a stale socket file nobody listens on', async () => {
    const { udsPath, fake } = fresh();
    await staleSocket(udsPath);
    const before = lstatSync(udsPath);
    expect(before.isSocket()).toBe(true);
    const mux = muxer(fake, udsPath);
    await mux.listen();
    const st = lstatSync(udsPath);
    expect(st.ino).not.toBe(before.ino);
    expect(st.mode & 0o777).toBe(0o600);
    const c = await h.connected(udsPath);
    c.socket.write('alive');
    await new Promise((r) => setTimeout(r, 20));
    expect(c.after().toString()).toBe('alive');
  });

  it('refuses with EADDRINUSE when something listens there, and leaves it alone', async () => {
    const { udsPath, fake } = fresh();
    const live = createServer((s) => {
      s.on('error', () => undefined); // the muxer's probe hangs up at once
      s.end('still mine');
    });
    live.listen(udsPath);
    await once(live, 'listening');
    h.defer(() => new Promise<void>((r) => live.close(() => r())));
    const ino = lstatSync(udsPath).ino;
    const mux = muxer(fake, udsPath);
    const err = await mux.listen().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VsockMuxerError);
    expect((err as VsockMuxerError).code).toBe('EADDRINUSE');
    expect(lstatSync(udsPath).ino).toBe(ino);
    // A failed listen closes the muxer: it does not listen later either.
    expect(((await mux.listen().catch((e: unknown) => e)) as VsockMuxerError).code).toBe('VSOCK_MUX_CLOSED');
    await mux.close();
    expect(lstatSync(udsPath).ino).toBe(ino);
    expect(fake.listeners.size).toBe(0);
  });

  it('refuses with EEXIST when a file that is not a socket is there, and leaves it alone', async () => {
    const { udsPath, fake, dir } = fresh();
    writeFileSync(udsPath, 'precious');
    const mux = muxer(fake, udsPath);
    await expect(mux.listen()).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(udsPath, 'utf8')).toBe('precious');
    expect(readdirSync(dir)).toEqual(['v.sock']);
  });

  it('on close removes only its own socket file', async () => {
    const { udsPath, mux } = await h.start();
    unlinkSync(udsPath);
    writeFileSync(udsPath, 'someone else put this here');
    await mux.close();
    expect(readFileSync(udsPath, 'utf8')).toBe('someone else put this here');
  });

  it('listen() twice is the same listen; close() before listen() is fine', async () => {
    const { udsPath, fake } = fresh();
    const mux = muxer(fake, udsPath);
    const a = mux.listen();
    expect(mux.listen()).toBe(a);
    await a;
    expect(fake.listeners.size).toBe(1);
    await mux.close();
    const other = muxer(fake, join(udsPath, '..', 'w.sock'));
    await other.close();
    await expect(other.listen()).rejects.toMatchObject({ code: 'VSOCK_MUX_CLOSED' });
  });
});
