import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, VirtioLabError } from '../../../src/errors.js';
import { CONNECT_LINE_ERRORS, type ConnectLineError, parseConnectLine } from '../../../src/vsock/muxer/connect-line.js';
import { VsockUnixMuxer } from '../../../src/vsock/muxer/unix-muxer.js';
import { FakeVsockEndpoint, Harness, sleep, until } from './fake-endpoint.js';

const h = new Harness();
afterEach(() => h.cleanup());

const BAD: [string, ConnectLineError][] = [
  ['HELLO 1234\n', 'not-connect'],
  ['connect 1234\n', 'not-connect'],
  ['CONNECTX 1234\n', 'not-connect'],
  [' CONNECT 1234\n', 'not-connect'],
  ['\n', 'not-connect'],
  ['\x00\xff\x1b[2J\n', 'not-connect'],
  ['CONNECT\n', 'bad-port'],
  ['CONNECT \n', 'bad-port'],
  ['CONNECT  1234\n', 'bad-port'],
  ['CONNECT abc\n', 'bad-port'],
  ['CONNECT -1\n', 'bad-port'],
  ['CONNECT +5\n', 'bad-port'],
  ['CONNECT 0x10\n', 'bad-port'],
  ['CONNECT 12a4\n', 'bad-port'],
  ['CONNECT 4294967296\n', 'bad-port'],
  ['CONNECT 4294967295\n', 'bad-port'],
  ['CONNECT 12345678901\n', 'bad-port'],
  ['CONNECT 1234 \n', 'trailing-garbage'],
  ['CONNECT 1234\r\n', 'trailing-garbage'],
  ['CONNECT 1234 please\n', 'trailing-garbage'],
  ['CONNECT 1234\t\n', 'trailing-garbage'],
];

function counts(only?: ConnectLineError, n = 1): Record<ConnectLineError, number> {
  return Object.fromEntries(CONNECT_LINE_ERRORS.map((r) => [r, r === only ? n : 0])) as Record<ConnectLineError, number>;
}

describe('CONNECT line parsing', () => {
  it('accepts exactly CONNECT <decimal u32 below VMADDR_PORT_ANY>', () => {
    const p = (s: string) => parseConnectLine(Buffer.from(s, 'latin1'));
    expect(p('CONNECT 0')).toEqual({ ok: true, port: 0 });
    expect(p('CONNECT 1234')).toEqual({ ok: true, port: 1234 });
    expect(p('CONNECT 0000001234')).toEqual({ ok: true, port: 1234 });
    expect(p('CONNECT 4294967294')).toEqual({ ok: true, port: 4294967294 });
    for (const [line, reason] of BAD) {
      if (!line.endsWith('\n')) continue;
      const r = p(line.slice(0, -1));
      expect(r.ok ? 'ok' : r.reason, JSON.stringify(line)).toBe(reason);
    }
    const r = p('CONNECT 1234\r');
    expect(!r.ok && r.message).toMatch(/\\r before the \\n/);
    const q = p('connect 1');
    expect(!q.ok && q.message).toMatch(/case-sensitive/);
    // Binary junk is shown escaped, never raw.
    const j = p('\x00\x1b[2J');
    expect(!j.ok && j.message).toContain('"\\x00\\x1b[2J" (5 bytes)');
  });

  it('agrees with a reference grammar on arbitrary bytes and round-trips every port (property)', () => {
    const printable = fc.constantFrom(...'CONNECT 0123456789 \r\tx'.split('')).map((c) => c.charCodeAt(0));
    const line = fc.oneof(fc.uint8Array({ maxLength: 30 }), fc.array(printable, { maxLength: 24 }).map((a) => Uint8Array.from(a)), fc.array(printable, { maxLength: 16 }).map((a) => Uint8Array.from([...Buffer.from('CONNECT '), ...a])));
    fc.assert(
      fc.property(line, (bytes) => {
        const r = parseConnectLine(bytes);
        const m = /^CONNECT ([0-9]{1,10})$/.exec(Buffer.from(bytes).toString('latin1'));
        const want = m !== null && Number(m[1]) < 0xffffffff ? Number(m[1]) : null;
        expect(r.ok ? r.port : null).toBe(want);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xfffffffe }), (port) => {
        expect(parseConnectLine(Buffer.from(`CONNECT ${port}`))).toEqual({ ok: true, port });
      }),
    );
  });
});

describe('host-initiated: refused lines', () => {
  it('closes on every malformed line, counted by its reason, and connects nothing', async () => {
    const { udsPath, mux, fake, rejected } = await h.start();
    for (const [line, reason] of BAD) {
      const before = mux.stats.badLines[reason];
      const { socket, rec } = await h.client(udsPath);
      socket.write(Buffer.from(line, 'latin1'));
      await rec.closedWithin();
      expect(rec.bytes, JSON.stringify(line)).toBe(0);
      expect(mux.stats.badLines[reason], JSON.stringify(line)).toBe(before + 1);
      const e = rejected[rejected.length - 1];
      expect(e).toBeInstanceOf(VirtioLabError);
      expect([e.code, e.reason]).toEqual(['VSOCK_MUX_BAD_LINE', reason]);
    }
    expect(rejected.length).toBe(BAD.length);
    expect(fake.connects).toEqual([]);
    expect(mux.stats.hostConnects).toBe(0);
    await until(() => mux.stats.open === 0);
  });

  it('counts a client that shuts down before a full line as truncated', async () => {
    const { udsPath, mux } = await h.start();
    const { socket, rec } = await h.client(udsPath, true);
    socket.end('CONNECT 12');
    await rec.closedWithin();
    expect(mux.stats.badLines).toEqual(counts('truncated'));
  });

  it('refuses a line longer than maxLineBytes, and takes one of exactly that length', async () => {
    const { udsPath, mux, rejected } = await h.start({ maxLineBytes: 19 });
    const ok = await h.connected(udsPath, 1234);
    expect(ok.localPort).toBeGreaterThan(0);
    const exact = await h.client(udsPath);
    exact.socket.write('CONNECT 0000001234\n'); // 19 bytes, \n included
    await until(() => exact.rec.text().startsWith('OK '), 5000, 'OK');

    const long = await h.client(udsPath);
    long.socket.write('CONNECT 00000001234\n'); // 20 bytes
    await long.rec.closedWithin();
    expect(long.rec.bytes).toBe(0);
    expect(mux.stats.badLines).toEqual(counts('line-too-long'));
    expect(rejected[0].message).toContain('19 bytes');

    // A flood without a newline is cut off after maxLineBytes, not buffered.
    const flood = await h.client(udsPath);
    flood.socket.on('error', () => undefined);
    flood.socket.write(Buffer.alloc(1 << 20, 0x41));
    await flood.rec.closedWithin();
    expect(mux.stats.badLines['line-too-long']).toBe(2);
  });

  it('closes a client that says nothing (or half a line) within connectLineTimeoutMs', async () => {
    const { udsPath, mux, rejected } = await h.start({ connectLineTimeoutMs: 120 });
    const t0 = Date.now();
    const silent = await h.client(udsPath);
    const slow = await h.client(udsPath);
    slow.socket.write('CONN');
    await silent.rec.closedWithin(3000);
    await slow.rec.closedWithin(3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(mux.stats.lineTimeouts).toBe(2);
    expect(rejected.map((e) => e.code)).toEqual(['VSOCK_MUX_LINE_TIMEOUT', 'VSOCK_MUX_LINE_TIMEOUT']);
    // A client that did send its line in time is not timed out later.
    const fine = await h.connected(udsPath);
    await sleep(200);
    expect(fine.rec.closed).toBe(false);
    fine.socket.write('still here');
    await until(() => fine.after().toString() === 'still here');
    expect(mux.stats.lineTimeouts).toBe(2);
  });

  it('refuses connections beyond maxConnections, in every phase, and takes them again once one closes', async () => {
    const { udsPath, mux, rejected } = await h.start({ maxConnections: 2 });
    const a = await h.connected(udsPath);
    const b = await h.client(udsPath); // still in its line phase: counts as well
    await until(() => mux.stats.open === 2);
    const c = await h.client(udsPath);
    await c.rec.closedWithin();
    expect(c.rec.bytes).toBe(0);
    expect(mux.stats.limitRefused).toBe(1);
    expect(rejected.map((e) => e.code)).toEqual(['VSOCK_MUX_LIMIT']);
    a.socket.end();
    await a.rec.closedWithin();
    await until(() => mux.stats.open === 1, 5000, 'a slot');
    const d = await h.connected(udsPath);
    d.socket.write('works');
    await until(() => d.after().toString() === 'works');
    b.socket.write('CONNECT 1234\n');
    await until(() => b.rec.text().startsWith('OK '));
    expect(mux.stats.limitRefused).toBe(1);
  });

  it('rejects options that cannot work', () => {
    const fake = new FakeVsockEndpoint();
    const make = (o: object) => () => new VsockUnixMuxer(fake, { udsPath: '/tmp/x.sock', guestCid: 3, ...o });
    expect(make({ maxLineBytes: 18 })).toThrow(InvalidArgumentError);
    expect(make({ maxConnections: 0 })).toThrow(InvalidArgumentError);
    expect(make({ connectLineTimeoutMs: 0 })).toThrow(InvalidArgumentError);
    expect(make({ guestCid: 2 })).toThrow(InvalidArgumentError);
    expect(make({ guestCid: 0xffffffff })).toThrow(InvalidArgumentError);
    expect(make({ guestCid: undefined })).toThrow(InvalidArgumentError);
    expect(make({ udsPath: '' })).toThrow(InvalidArgumentError);
    expect(make({ udsPath: join('/tmp', 'x'.repeat(92)) })).toThrow(/_<port> needs up to 11 more/);
    expect(make({})).not.toThrow();
  });
});
