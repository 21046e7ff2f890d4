import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpioWriter } from './cpio.js';
import { type GuestImage, SCRIPT_EXIT_MARKER } from './guest-image.js';

/** Options of {@link runGuest}. */
export interface GuestRunOptions {
  image: GuestImage;
  /** Shell script the guest runs as /test.sh once its modules are loaded. */
  script: string;
  /** More QEMU arguments, e.g. vhost-user -chardev/-netdev/-device triples. */
  extraArgs?: string[];
  /** Guest memory, shared memfd (vhost-user needs it shared); default 256. */
  memMiB?: number;
  /** QEMU is killed after this long; default 60 s. */
  timeoutMs?: number;
  /** Called with each console line as it arrives. */
  onLine?: (line: string) => void;
}

/** How a guest run ended. */
export interface GuestRun {
  /** QEMU's exit status: 0 after the guest powered off; null when it was killed on timeout. */
  exitCode: number | null;
  /** The serial console, as received. */
  console: string;
  /** The console split into lines, carriage returns and terminal escape sequences removed. */
  lines: string[];
  /** QEMU's own stderr (its errors, e.g. a vhost-user socket it could not connect to). */
  stderr: string;
  timedOut: boolean;
  /** The exit status of /test.sh, or null when the guest never reported one. */
  scriptExit: number | null;
}

/** Kills of the QEMU process groups still running. */
const live = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Boots the image in QEMU (TCG, q35, one CPU) with `script` as /test.sh and
 * the serial console captured, and resolves when QEMU exits: on its own when
 * the guest powers off, or killed after `timeoutMs`. The script travels in a
 * second cpio archive appended to the image's initrd (the kernel unpacks
 * concatenated archives). Temp files are removed; QEMU is never left running,
 * not even when this process exits first.
 */
export async function runGuest(opts: GuestRunOptions): Promise<GuestRun> {
  const memMiB = opts.memMiB ?? 256;
  const dir = await mkdtemp(join(tmpdir(), 'virtio-lab-guest-'));
  try {
    const initrd = join(dir, 'initrd.cpio.gz');
    const script = new CpioWriter().file('/test.sh', Buffer.from(opts.script), 0o755).finishGzip();
    await writeFile(initrd, Buffer.concat([await readFile(opts.image.initrd), script]));
    // -nodefaults: no default NIC or VGA; the guest's only devices are the caller's.
    const args = [
      '-nodefaults',
      '-nographic',
      '-no-reboot',
      '-serial',
      'stdio',
      '-object',
      `memory-backend-memfd,id=mem0,size=${memMiB}M,share=on`,
      '-machine',
      'q35,accel=tcg,memory-backend=mem0',
      '-m',
      `${memMiB}M`,
      '-cpu',
      'max',
      '-smp',
      '1',
      '-kernel',
      opts.image.kernel,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 panic=-1 quiet',
      ...(opts.extraArgs ?? []),
    ];
    return await spawnQemu(args, opts.timeoutMs ?? 60_000, opts.onLine);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Extra seconds the `timeout` wrapper waits past timeoutMs before it kills QEMU itself. */
const BACKSTOP_S = 10;

/**
 * QEMU runs under coreutils `timeout`, in a process group of its own: the
 * group is killed on timeout and when this process exits, and `timeout`
 * still kills QEMU if this process dies without running exit handlers
 * (e.g. a test worker terminated by a signal).
 */
function spawnQemu(args: string[], timeoutMs: number, onLine?: (line: string) => void): Promise<GuestRun> {
  installExitHook();
  return new Promise((resolve, reject) => {
    const limit = `${Math.ceil(timeoutMs / 1000) + BACKSTOP_S}`;
    const qemu = spawn('timeout', ['-s', 'KILL', limit, 'qemu-system-x86_64', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const killGroup = (): void => {
      if (qemu.pid !== undefined) {
        try {
          process.kill(-qemu.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    };
    live.add(killGroup);
    let out = '';
    let stderr = '';
    let partial = '';
    const lines: string[] = [];
    const push = (line: string): void => {
      lines.push(line);
      onLine?.(line);
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      live.delete(killGroup);
    };
    qemu.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const parts = withoutInterleavedKernelRecords(partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) push(clean(p));
    });
    qemu.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    qemu.on('error', (err) => {
      done();
      reject(new Error(`timeout (Debian package coreutils): ${err.message}`));
    });
    qemu.on('close', (code) => {
      done();
      // `timeout` exits 127 when it cannot find the command.
      if (code === 127) {
        reject(new Error(`qemu-system-x86_64 not found (install Debian package qemu-system-x86): ${stderr.trim()}`));
        return;
      }
      if (partial !== '') push(clean(partial));
      const marker = lines.find((l) => l.startsWith(SCRIPT_EXIT_MARKER));
      const scriptExit = marker === undefined ? null : Number(marker.slice(SCRIPT_EXIT_MARKER.length));
      resolve({ exitCode: code, console: out, lines, stderr, timedOut, scriptExit });
    });
  });
}

/**
 * The kernel prints some records (e.g. "reboot: Power down" at poweroff)
 * straight to the serial port while a program's output still drains from
 * the tty: such a record can land inside a line. Remove records that start
 * mid-line, with their line end, so the line they split is whole again.
 */
function withoutInterleavedKernelRecords(text: string): string {
  return text.replace(/(?<=[^\n])\[\s*\d+\.\d+\] [^\n]*\n/g, '');
}

/** Firmware and kernel reset the terminal (ESC c, ESC [2J...) on the serial line. */
function clean(line: string): string {
  return line.replace(/\x1b(\[[0-?]*[ -/]*[@-~]|[@-~])|\r/g, '');
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const kill of live) kill();
  });
}

/** The console lines starting with `prefix`. */
export function resultLines(run: GuestRun, prefix: string): string[] {
  return run.lines.filter((l) => l.startsWith(prefix));
}
