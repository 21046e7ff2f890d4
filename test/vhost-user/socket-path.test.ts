import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serveVhostUserNet } from '../../src/vhost-user/devices.js';
import * as libc from '../../src/os/libc.js';

// The socket path a vhost-user server listens on: as for the vsock muxer, a
// stale socket file is replaced, a live server's socket never is.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'vl-path-'));
  dirs.push(d);
  return d;
};

describe('vhost-user socket path', () => {
  it('a live server on the path is not replaced (EADDRINUSE); once it is gone its stale socket file is', async () => {
    const path = join(tmp(), 'net.sock');
    const first = serveVhostUserNet(path);
    try {
      expect(() => serveVhostUserNet(path)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    } finally {
      await first.close();
    }
    // A socket file nobody listens on: what a killed server leaves behind (closing the fd does not unlink it).
    libc.close(libc.listenUnix(path));
    expect(existsSync(path)).toBe(true);
    const second = serveVhostUserNet(path);
    await second.close();
  });

  it('a file that is not a socket is refused, not removed', () => {
    const path = join(tmp(), 'plain');
    writeFileSync(path, 'data');
    expect(() => serveVhostUserNet(path)).toThrow(/exists and is not a socket/);
  });
});
