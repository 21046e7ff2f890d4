// A driver for dpdk-testpmd in interactive mode: start it with some vdevs,
// type commands, read port statistics. Used by the DPDK baseline of the
// bench suite and by the vhost-user tests (testpmd's virtio-user PMD is a
// real virtio driver speaking vhost-user). Needs `dpdk-testpmd` (Debian
// package dpdk-dev); runs without hugepages or PCI devices.
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const TESTPMD = 'dpdk-testpmd';

/**
 * The folder DPDK's EAL keeps a process's runtime files in (its config,
 * memory and socket files) and leaves behind when the process exits:
 * <runtime dir>/dpdk/<file prefix>, the runtime dir being /var/run for root,
 * else $XDG_RUNTIME_DIR or /tmp (eal_create_runtime_dir).
 */
function ealRuntimeDir(prefix) {
  const base = process.getuid?.() === 0 ? '/var/run' : (process.env.XDG_RUNTIME_DIR ?? '/tmp');
  return join(base, 'dpdk', prefix);
}

/** True when dpdk-testpmd is on PATH. */
export function testpmdAvailable() {
  return spawnSync('sh', ['-c', `command -v ${TESTPMD}`], { stdio: 'ignore' }).status === 0;
}

/** One testpmd process. */
export class Testpmd {
  /**
   * Start testpmd with `vdevs` (e.g. `net_virtio_user0,path=SOCK`) and
   * `args` after `--` (-i is added); resolves at its first prompt.
   */
  static async start({ vdevs = [], args = [], memMiB = 256, lcores = '0-1', prefix = `vl-${process.pid}-${Math.random().toString(36).slice(2, 8)}` } = {}) {
    const eal = ['-l', lcores, '--no-huge', '--no-pci', '-m', String(memMiB), '--file-prefix', prefix, ...vdevs.flatMap((v) => ['--vdev', v])];
    // testpmd printf()s its stats: unbuffer its stdout, or a pipe holds them until it exits.
    const t = new Testpmd(spawn('stdbuf', ['-o0', TESTPMD, ...eal, '--', '-i', ...args], { stdio: ['pipe', 'pipe', 'pipe'] }), ealRuntimeDir(prefix));
    try {
      await t.waitFor('testpmd>', 20_000);
    } catch (e) {
      await t.kill();
      throw e;
    }
    return t;
  }

  /** `runtimeDir`: its EAL runtime folder, removed once it has exited, however it ended. */
  constructor(child, runtimeDir) {
    this.child = child;
    this.runtimeDir = runtimeDir;
    this.out = '';
    // Its stdout alone as well: a message on stderr can land in the middle of
    // a line of stdout in `out` (seen: "te" + an EAL error + "stpmd> ").
    this.stdout = '';
    child.stdout.on('data', (b) => {
      this.out += b;
      this.stdout += b;
    });
    child.stderr.on('data', (b) => (this.out += b));
    child.stdin.on('error', () => {});
    this.exited = new Promise((resolve) =>
      child.once('close', (code) => {
        rmSync(runtimeDir, { recursive: true, force: true });
        resolve(code);
      }),
    );
  }

  /** Type one command. */
  say(line) {
    this.child.stdin.write(`${line}\n`);
  }

  /** Resolve once `text` appears on its stdout after `from` (an offset into stdout); throws after `ms`. */
  async waitFor(text, ms, from = 0) {
    for (const until = Date.now() + ms; !this.stdout.includes(text, from); await sleep(20)) {
      if (Date.now() > until || this.child.exitCode !== null) throw new Error(`dpdk-testpmd: no "${text}" in ${ms} ms:\n${this.out.slice(-3000)}`);
    }
  }

  /**
   * `show port stats all`, parsed: per port RX/TX packets, errors, missed and
   * the rates since the previous show (the first show starts that clock).
   */
  async portStats(ports) {
    const mark = this.out.length;
    this.say('show port stats all');
    for (const until = Date.now() + 5_000; [...this.out.slice(mark).matchAll(/Tx-pps/g)].length < ports; await sleep(10)) {
      if (Date.now() > until) throw new Error(`dpdk-testpmd: no port stats:\n${this.out.slice(-3000)}`);
    }
    const text = this.out.slice(mark);
    const all = (re) => [...text.matchAll(re)].map((m) => Number(m[1]));
    const rxPackets = all(/RX-packets:\s+(\d+)/g);
    const rxMissed = all(/RX-missed:\s+(\d+)/g);
    const rxErrors = all(/RX-errors:\s+(\d+)/g);
    const txPackets = all(/TX-packets:\s+(\d+)/g);
    const txErrors = all(/TX-errors:\s+(\d+)/g);
    const rxPps = all(/Rx-pps:\s+(\d+)/g);
    const txPps = all(/Tx-pps:\s+(\d+)/g);
    return Array.from({ length: ports }, (_, p) => ({ rxPackets: rxPackets[p], rxMissed: rxMissed[p], rxErrors: rxErrors[p], txPackets: txPackets[p], txErrors: txErrors[p], rxPps: rxPps[p], txPps: txPps[p] }));
  }

  /** `quit`, then wait for the process (killed after 5 s). */
  async quit() {
    this.say('quit');
    await this.kill(5_000);
  }

  /** Kill it after `graceMs` unless it exits first. */
  async kill(graceMs = 0) {
    const killer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(killer);
  }
}
