import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { spawnInNetns } from '../../backends/netns.js';
import type { TapOffload } from '../../backends/tap-port.js';
import type { TapPortStats } from '../../backends/tap-runtime.js';

/** Options of a network namespace in a lab (Lab.netns()). */
export interface LabNetnsOptions {
  /** Address of its interface with prefix length, e.g. "10.0.0.1/24" (IPv4 or IPv6); more than one: an array. */
  address?: string | string[];
  /** MTU of its interface; default 1500. */
  mtu?: number;
  /** Name of its interface inside the namespace; default "eth0". */
  ifname?: string;
  /** Offloads the namespace's kernel may hand the lab (see TapPortOptions.offloads); default all. */
  offloads?: TapOffload[];
  /**
   * Use a namespace that exists already (it is then left in place at
   * close(); only the interface goes). Default false: the lab creates it and
   * deletes it at close(), and a namespace of that name existing already is
   * an error.
   */
  existing?: boolean;
}

/** Counters of a lab namespace's TAP port, and where it is. */
export interface LabNetnsStats extends TapPortStats {
  ifname: string;
  addresses: string[];
}

/** What a command run with Lab.exec() did. */
export interface LabExecResult {
  /** Exit status, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of Lab.exec(). */
export interface LabExecOptions {
  /** Kill the command (SIGKILL) after this many milliseconds; default no limit. */
  timeoutMs?: number;
  /** Bytes written to its stdin (then closed); default none (stdin is /dev/null). */
  input?: string | Uint8Array;
}

/** Run `argv` in a namespace to completion, collecting its output. Never rejects for a non-zero exit: the result says. */
export function execInNetns(netns: string, argv: readonly string[], options: LabExecOptions = {}): Promise<LabExecResult> {
  const child = spawnInNetns(netns, argv, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  if (options.input !== undefined) child.stdin!.end(options.input);
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** The children a lab started with spawn(): killed at close() if still running. */
export class LabChildren {
  private readonly running = new Set<ChildProcess>();

  spawn(netns: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawnInNetns(netns, argv, options);
    this.running.add(child);
    child.once('exit', () => this.running.delete(child));
    child.once('error', () => this.running.delete(child));
    return child;
  }

  /** SIGTERM to every child still running; resolves once they have exited (SIGKILL after `graceMs`). */
  async killAll(graceMs = 2000): Promise<void> {
    const waits = [...this.running].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
          c.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    );
    await Promise.all(waits);
  }
}
