import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Testpmd } from '../../bench/testpmd.mjs';
import { requireTools } from '../support/tools.js';

requireTools('testpmd');

// `virtio-lab vhost-user` as a user runs it: a process serving the devices,
// a front end (testpmd) connecting to it, figures and the negotiation printed.

const cli = new URL('../../dist/cli.js', import.meta.url).pathname;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function start(args: string[]): { out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, 'vhost-user', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  return { out: () => out, exited };
}

async function waitFor(out: () => string, text: string, ms: number): Promise<void> {
  for (const until = Date.now() + ms; !out().includes(text); await sleep(20)) if (Date.now() > until) throw new Error(`no "${text}" in ${ms} ms:\n${out()}`);
}

describe('virtio-lab vhost-user', () => {
  it('--net serves a front end on a lab switch, prints live figures and what it negotiated, and exits 0 after --seconds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-cli-'));
    dirs.push(dir);
    const sock = join(dir, 'net.sock');
    // testpmd's --no-huge memory is a memfd without seals: the back end must trust it.
    const p = start(['--net', sock, '--seconds', '6', '--allow-unsealed-memory']);
    await waitFor(p.out, `vhost-user on ${sock}`, 10_000);
    const t = await Testpmd.start({ vdevs: [`net_virtio_user0,path=${sock},queues=1`], args: ['--total-num-mbufs=8192'] });
    try {
      t.say('start tx_first');
      await waitFor(p.out, 'guest->lab 32 frames', 10_000);
      t.say('stop');
    } finally {
      await t.quit();
    }
    await waitFor(p.out, 'negotiated {', 10_000);
    expect(await p.exited).toBe(0);
    expect(p.out()).toContain('front end connected');
    expect(p.out()).toMatch(/negotiated \{"messages":\{.*"SET_MEM_TABLE":1/);
    expect(existsSync(sock), 'the socket file is removed at exit').toBe(false);
  }, 40_000);

  it('--vsock listens on the vhost-user socket and the muxer path, and exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-cli-'));
    dirs.push(dir);
    const p = start(['--vsock', join(dir, 'vsock.sock'), '--uds-path', join(dir, 'v.sock'), '--seconds', '2']);
    await waitFor(p.out, 'guest CID 3', 10_000);
    expect(existsSync(join(dir, 'v.sock'))).toBe(true);
    expect(await p.exited).toBe(0);
    // The live line counts connections, refusals, resets and credit stalls, not packets alone.
    expect(p.out()).toMatch(/^vsock: waiting {2}guest->host 0 packets {2}host->guest 0 packets {2}connections 0 \(open 0\) {2}refused 0 {2}resets sent 0 received 0 {2}credit stalls 0$/m);
  }, 20_000);

  it('a bad command line exits 2 with the reason', async () => {
    const p = start(['--vsock', '/tmp/x.sock']);
    expect(await p.exited).toBe(2);
    expect(p.out()).toContain('--vsock needs --uds-path');
    const q = start(['--net', '/tmp/x.sock', '--spin-us', 'fast']);
    expect(await q.exited).toBe(2);
    expect(q.out()).toContain('--spin-us fast: must be a number >= 0');
  });
});
