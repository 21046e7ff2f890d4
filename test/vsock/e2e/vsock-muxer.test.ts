/**
 * The Unix-socket muxer on a real device (Firecracker's hybrid vsock): socat
 * as the host program, the guest driver's sockets on the other side, the
 * device's queues on workers in between.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { VsockUnixMuxer, type VsockSocket } from '../../../src/index.js';
import { type VsockRig, chunkOf, once, readAll, vsockRig, writeAll } from './rig.js';
import { requireTools } from '../../support/tools.js';

requireTools('socat');

let rig: VsockRig | undefined;
let mux: VsockUnixMuxer | undefined;
const children: ChildProcessWithoutNullStreams[] = [];
const dir = mkdtempSync(join(tmpdir(), 'vl-mux-'));

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await once(c, 'exit').catch(() => undefined);
    }
  }
  await mux?.close();
  mux = undefined;
  await rig?.close();
  rig = undefined;
});

function socat(...args: string[]): { child: ChildProcessWithoutNullStreams; out: () => Buffer; exit: Promise<number | null> } {
  const child = spawn('socat', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  const out: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stdin.on('error', () => undefined);
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out: () => Buffer.concat(out), exit };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('virtio-vsock Unix muxer through a real device, driven by socat', () => {
  it('host -> guest: socat writes CONNECT 1234, gets OK <port>, and 2 MiB come back from a guest echo server byte-exact', async () => {
    rig = await vsockRig();
    rig.guest.listen(1234).on('connection', (s: VsockSocket) => s.on('error', () => undefined).pipe(s));
    const udsPath = join(dir, 'h.sock');
    mux = new VsockUnixMuxer(rig.host.stack, { udsPath, guestCid: rig.guest.guestCid });
    await mux.listen();
    const data = chunkOf(9, 0, 2 << 20);
    const s = socat('-t', '5', '-', `UNIX-CONNECT:${udsPath}`);
    s.child.stdin.write('CONNECT 1234\n');
    await until(() => s.out().includes(0x0a), 10_000, 'the OK line');
    const line = s.out().subarray(0, s.out().indexOf(0x0a)).toString();
    expect(line).toMatch(/^OK \d+$/);
    s.child.stdin.end(data);
    await until(() => s.out().length >= line.length + 1 + data.length, 30_000, 'the echo');
    expect(s.out().subarray(line.length + 1).equals(data)).toBe(true);
    expect(mux.stats.hostConnects).toBe(1);
  }, 60_000);

  it('guest -> host: a guest connection to port 5555 reaches the socat listening on <uds_path>_5555, byte-exact both ways', async () => {
    rig = await vsockRig();
    const udsPath = join(dir, 'g.sock');
    mux = new VsockUnixMuxer(rig.host.stack, { udsPath, guestCid: rig.guest.guestCid });
    await mux.listen();
    // socat as a host service: echo whatever the guest sends. -b 4096 (PIPE_BUF):
    // socat both writes and reads its PIPE, and a larger blocking write into a
    // nearly full pipe would wait for socat itself.
    socat('-b', '4096', `UNIX-LISTEN:${udsPath}_5555`, 'PIPE');
    await until(() => {
      try {
        return statSync(`${udsPath}_5555`).isSocket();
      } catch {
        return false;
      }
    }, 10_000, 'socat to listen');
    // socat binds the socket file before it listens: until then the muxer's connect is refused (RST). Retry as a client would.
    let sock = rig.guest.connect(5555);
    for (let tries = 0; ; tries++) {
      const err = await once(sock, 'connect').then(
        () => undefined,
        (e: Error) => e,
      );
      if (err === undefined) break;
      if (tries === 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
      sock = rig.guest.connect(5555);
    }
    const back = readAll(sock, 1 << 20);
    expect(await writeAll(sock, 1 << 20, [7000, 65536], 5)).toBe(await back);
    expect(mux.stats.guestConnects).toBe(1);
    sock.end();
  }, 60_000);

  it('guest -> host with nothing listening on <uds_path>_P: the guest gets ECONNREFUSED (RST)', async () => {
    rig = await vsockRig();
    mux = new VsockUnixMuxer(rig.host.stack, { udsPath: join(dir, 'n.sock'), guestCid: rig.guest.guestCid });
    await mux.listen();
    const sock = rig.guest.connect(6001);
    const err = await once<Error & { code: string }>(sock, 'error').catch((e: Error & { code: string }) => e);
    expect(err.code).toBe('ECONNREFUSED');
    expect(mux.stats.guestConnectFailures).toBe(1);
  }, 30_000);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));
