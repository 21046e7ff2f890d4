/**
 * vhost-user back ends in a child process, for attacks that could block or
 * kill the process that runs them: a regression then fails the test (the
 * child died or stopped answering) instead of taking the test runner down.
 * The child serves `servers` devices of one kind, each on its own socket and
 * looped back (a net device's frames come back to its own front end), logs
 * each server's lines to stderr as `[i] line`, and prints its fd count on
 * stdout every 20 ms. Loads the library from dist/: build first.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { until } from './front-end.js';

export interface ChildBackEndOptions {
  /** How many servers (default 1): the first is attacked, the others are bystanders. */
  servers?: number;
  /** 'net' (default) or 'vsock'. */
  kind?: 'net' | 'vsock';
  /** Passed to each server. */
  allowUnsealedMemory?: boolean;
}

export interface ChildBackEnd {
  /** Socket of the first server. */
  path: string;
  /** Socket of each server. */
  paths: string[];
  /** Grows while the child's event loop runs. */
  ticks(): number;
  /** Everything the child wrote to stderr (the servers' log lines). */
  stderr(): string;
  /** Log lines of server `i` so far. */
  logs(i: number): string[];
  /** Null while the child lives, else its exit code or signal. */
  exitCode(): number | string | null;
  /** The child's open fds, as it last printed them. */
  fds(): number;
  /** What each of the child's open fds is ("N target", as /proc/self/fd says). */
  listFds(): Promise<string[]>;
  /** Wait until the child's fd count is `expected`; returns the last count. */
  settleFds(expected: number, timeoutMs?: number): Promise<number>;
  /**
   * Close every server in the child (server.close()) and let it exit; resolves
   * with the child's fd count once closed, or rejects when close() did not
   * return within `timeoutMs`.
   */
  close(timeoutMs?: number): Promise<number>;
  /** SIGKILL the child and remove its files (always safe to call). */
  kill(): Promise<void>;
}

const SCRIPT = (dist: string, vhostUser: string): string => `
import { readdirSync, readlinkSync } from 'node:fs';
import { SharedArena, connectLoopback } from ${JSON.stringify(dist)};
import { serveVhostUserNet, serveVhostUserVsock } from ${JSON.stringify(vhostUser)};
const paths = JSON.parse(process.env.VU_PATHS);
const o = JSON.parse(process.env.VU_OPTIONS);
const arena = new SharedArena(16 << 20);
const servers = paths.map((p, i) => {
  const s = o.kind === 'vsock'
    ? serveVhostUserVsock(p, { guestCid: 3 + i, allowUnsealedMemory: o.allowUnsealedMemory })
    : serveVhostUserNet(p, { allowUnsealedMemory: o.allowUnsealedMemory });
  if (o.kind !== 'vsock') connectLoopback(arena, s.device, { capacity: 1 << 18 });
  s.on('log', (l) => process.stderr.write('[' + i + '] ' + l + '\\n'));
  return s;
});
const fds = () => readdirSync('/proc/self/fd').length;
const ticker = setInterval(() => process.stdout.write('t ' + fds() + '\\n'), 20);
const what = (f) => { try { return readlinkSync('/proc/self/fd/' + f); } catch { return '?'; } };
process.stdin.on('data', async (d) => {
  if (String(d).includes('list')) process.stdout.write('fds ' + JSON.stringify(readdirSync('/proc/self/fd').map((f) => f + ' ' + what(f))) + '\\n');
  if (!String(d).includes('close')) return;
  await Promise.all(servers.map((s) => s.close()));
  clearInterval(ticker);
  process.stdout.write('closed ' + fds() + '\\n');
  process.exit(0);
});
process.stdout.write('ready\\n');
`;

/** Start the child; resolves once its servers listen. */
export async function childBackEnd(options: ChildBackEndOptions = {}): Promise<ChildBackEnd> {
  const id = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
  const paths = Array.from({ length: options.servers ?? 1 }, (_, i) => join(tmpdir(), `vu-child-${id}-${i}.sock`));
  const script = join(tmpdir(), `vu-child-${id}.mjs`);
  const built = (file: string): string => pathToFileURL(join(process.cwd(), 'dist', file)).href;
  writeFileSync(script, SCRIPT(built('index.js'), built('vhost-user.js')));
  const child: ChildProcess = spawn(process.execPath, [script], {
    env: { ...process.env, VU_PATHS: JSON.stringify(paths), VU_OPTIONS: JSON.stringify({ kind: options.kind ?? 'net', allowUnsealedMemory: options.allowUnsealedMemory ?? false }) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let fds = -1;
  let closedFds = -1;
  let listed: string[] | undefined;
  let ticks = 0;
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    // Keep only the unfinished last line; read the fd counts of the finished ones.
    const lines = out.split('\n');
    out = lines.pop() ?? '';
    for (const l of lines) {
      if (l.startsWith('t ')) {
        ticks++;
        fds = Number(l.slice(2));
      } else if (l.startsWith('closed ')) closedFds = Number(l.slice(7));
      else if (l.startsWith('fds ')) listed = JSON.parse(l.slice(4)) as string[];
      else if (l === 'ready') ticks++;
    }
  });
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin?.on('error', () => {});
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const exitCode = (): number | string | null => child.exitCode ?? child.signalCode;
  const kill = async (): Promise<void> => {
    if (exitCode() === null) child.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    for (const f of [...paths, script]) {
      try {
        unlinkSync(f);
      } catch {
        // gone already
      }
    }
  };
  try {
    await until(() => ticks > 0 || exitCode() !== null, 15_000, 'the child back end');
    if (exitCode() !== null) throw new Error(`the child back end exited: ${err.slice(0, 600)}`);
  } catch (e) {
    await kill();
    throw e;
  }
  return {
    path: paths[0],
    paths,
    ticks: () => ticks,
    stderr: () => err,
    logs: (i) => err.split('\n').flatMap((l) => (l.startsWith(`[${i}] `) ? [l.slice(`[${i}] `.length)] : [])),
    exitCode,
    fds: () => fds,
    listFds: async () => {
      listed = undefined;
      child.stdin?.write('list\n');
      await until(() => listed !== undefined || exitCode() !== null, 5000, "the child's fd list");
      return listed ?? [];
    },
    settleFds: async (expected, timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      while (fds !== expected && Date.now() < deadline && exitCode() === null) await new Promise((r) => setTimeout(r, 20));
      return fds;
    },
    close: async (timeoutMs = 15_000) => {
      child.stdin?.write('close\n');
      await until(() => closedFds >= 0 || exitCode() !== null, timeoutMs, 'server.close() in the child back end');
      if (closedFds < 0) throw new Error(`the child back end exited before close() returned (${exitCode()}): ${err.slice(-600)}`);
      return closedFds;
    },
    kill,
  };
}
