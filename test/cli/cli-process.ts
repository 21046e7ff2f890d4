import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** The CLI as a user runs it (dist/: `npm run build` first). */
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** A running `virtio-lab` process, its output collected as it comes. */
export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Exit status (or the signal's name when it died of one). */
  exited: Promise<number | string>;
  /** Resolves once `text` shows up on stdout or stderr; rejects after `ms` with what was printed. */
  waitFor(text: string | RegExp, ms: number): Promise<void>;
}

export function startCli(args: string[], cwd?: string): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const waitFor = async (text: string | RegExp, ms: number): Promise<void> => {
    const seen = (): boolean => (typeof text === 'string' ? (out + err).includes(text) : text.test(out + err));
    for (const until = Date.now() + ms; !seen(); await sleep(25)) {
      if (Date.now() > until || child.exitCode !== null) {
        if (seen()) return;
        throw new Error(`no ${String(text)} within ${ms} ms; stdout:\n${out}\nstderr:\n${err}`);
      }
    }
  };
  return { child, stdout: () => out, stderr: () => err, exited, waitFor };
}

/** Run to the end: exit status, stdout, stderr. Kills the process after `timeoutMs` (the test then fails on its status). */
export async function runCli(args: string[], timeoutMs = 60_000, cwd?: string): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = startCli(args, cwd);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  try {
    const code = await p.exited;
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  } finally {
    clearTimeout(timer);
  }
}
