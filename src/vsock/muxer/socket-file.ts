import { type Stats, chmodSync, lstatSync, mkdtempSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { type Server, connect as netConnect } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { VsockMuxerError } from './muxer-types.js';

// The muxer's socket file: what may be replaced at its path, binding it
// owner-only from the moment it has its name, and removing only the file
// this muxer made.

/** dev/ino of a socket file: which file it is, whatever its name. */
export interface SocketFileIdentity {
  dev: number;
  ino: number;
}

/** The `code` of a system error, when it has one. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What is at `path` may be replaced: nothing, or a socket nobody accepts on (EEXIST / EADDRINUSE otherwise). */
export async function clearStale(path: string): Promise<void> {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new VsockMuxerError('EEXIST', `${path} exists and is not a socket: it is not replaced`);
  const probe = await new Promise<string>((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e) => resolve(errnoOf(e) ?? 'error'));
  });
  // ECONNREFUSED: a socket file with no listener behind it. ENOENT: gone since.
  if (probe !== 'ECONNREFUSED' && probe !== 'ENOENT') {
    throw new VsockMuxerError('EADDRINUSE', `${path} is in use (a connect to it gave ${probe}): not replaced`, { errno: probe });
  }
}

/**
 * Listen on `path` with mode 0600. Binds in a fresh 0700 directory next to
 * `path`, chmods, then renames into place: the socket is never reachable by
 * others under `path`, not even briefly, and a stale file there is replaced
 * in one step. The bind path (dirname + 11 bytes) is never longer than
 * `path` + 11, which the muxer's constructor checked.
 */
export async function listenPrivately(server: Server, path: string, backlog: number): Promise<SocketFileIdentity> {
  const privateDir = mkdtempSync(join(dirname(path), `.${basename(path).slice(0, 1)}`));
  const bindPath = join(privateDir, 's');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: bindPath, backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(bindPath, 0o600);
    renameSync(bindPath, path);
  } finally {
    try {
      unlinkSync(bindPath);
    } catch {
      // Renamed away (the usual case).
    }
    rmdirSync(privateDir);
  }
  const st = lstatSync(path);
  return { dev: st.dev, ino: st.ino };
}

/** Remove the socket file at `path` if it is still the one `id` names. */
export function removeIfOurs(path: string, id: SocketFileIdentity): void {
  try {
    const st = lstatSync(path);
    if (st.dev === id.dev && st.ino === id.ino) unlinkSync(path);
  } catch {
    // Gone already, or not ours any more.
  }
}
