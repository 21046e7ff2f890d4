// Interop with a real host-side program: socat speaks to the muxer's Unix
// sockets exactly as a user would (`socat - UNIX-CONNECT:v.sock`, then type
// `CONNECT 1234`). socat is a test dependency (.ci/run installs it); without
// it these tests fail, naming what to install.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { lstatSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, Recorder, okPort, randomBytes, until } from './fake-endpoint.js';
import { requireTools } from '../../support/tools.js';

requireTools('socat');

const h = new Harness();
afterEach(() => h.cleanup());

interface Socat {
  child: ChildProcessWithoutNullStreams;
  out: () => Buffer;
  err: () => string;
  exit: Promise<number | null>;
}

function socat(...args: string[]): Socat {
  const child = spawn('socat', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.on('error', () => undefined); // EPIPE once socat is gone
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  h.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exit;
  });
  return { child, out: () => Buffer.concat(out), err: () => err, exit };
}

describe('interop with socat as the host program', () => {
  it('host-initiated: `socat - UNIX-CONNECT:` gets OK <port> and a byte-exact echo', async () => {
    const { udsPath, mux } = await h.start();
    const s = socat('-', `UNIX-CONNECT:${udsPath}`);
    const data = randomBytes(512 << 10, 11);
    s.child.stdin.write(Buffer.concat([Buffer.from('CONNECT 1234\n'), data.subarray(0, 1000)])); // data in the line's packet too
    s.child.stdin.write(data.subarray(1000));
    const echoed = (): number => {
      const o = s.out();
      const nl = o.indexOf(0x0a);
      return nl < 0 ? 0 : o.length - nl - 1;
    };
    await until(() => echoed() >= data.length, 10_000, 'the echo');
    const out = s.out();
    const port = okPort(out.toString('latin1'));
    expect(port).not.toBeNull();
    expect(out.subarray(out.indexOf(0x0a) + 1).equals(data)).toBe(true);
    s.child.stdin.end(); // socat shuts down its write side; the echo ends; socat exits
    expect(await s.exit).toBe(0);
    expect(mux.stats.hostConnects).toBe(1);
    await until(() => mux.stats.open === 0, 5000, 'the pair to close');
  });

  it('host-initiated: socat is hung up on for a refused port and for a bad line', async () => {
    const { udsPath, mux } = await h.start();
    const refused = socat('-', `UNIX-CONNECT:${udsPath}`);
    refused.child.stdin.end('CONNECT 9\n');
    expect(await refused.exit).toBe(0);
    expect(refused.out().length).toBe(0);
    const bad = socat('-', `UNIX-CONNECT:${udsPath}`);
    bad.child.stdin.end('CONNECT 1234 please\n');
    expect(await bad.exit).toBe(0);
    expect(bad.out().length).toBe(0);
    expect(mux.stats.hostConnectFailures).toBe(1);
    expect(mux.stats.badLines['trailing-garbage']).toBe(1);
  });

  it('guest-initiated: a guest connection to port P reaches `socat UNIX-LISTEN:${udsPath}_P`', async () => {
    const { udsPath, mux, fake } = await h.start();
    const path = `${udsPath}_6000`;
    const s = socat(`UNIX-LISTEN:${path}`, 'EXEC:cat');
    await until(
      () => {
        try {
          return lstatSync(path).isSocket();
        } catch {
          return false;
        }
      },
      5000,
      'socat to listen',
    );
    // socat binds the socket file before it listens: until then a connect is refused. Retry as a client would.
    let g: Awaited<ReturnType<typeof fake.guestConnect>> | undefined;
    for (let tries = 0; g === undefined; tries++) {
      try {
        g = await fake.guestConnect(6000);
      } catch (e) {
        if (tries === 50) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const rec = new Recorder(g);
    const data = randomBytes(256 << 10, 5);
    for (let off = 0; off < data.length; off += 8000) g.write(data.subarray(off, off + 8000));
    g.end();
    await until(() => rec.ended, 10_000, `the echo through socat (${s.err()})`);
    expect(rec.data.equals(data)).toBe(true);
    expect(await s.exit).toBe(0);
    expect(mux.stats.guestConnects).toBe(1);
    await until(() => mux.stats.open === 0 && fake.live === 0, 5000, 'everything closed');
  });
});
