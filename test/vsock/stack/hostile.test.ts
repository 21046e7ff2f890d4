/**
 * Hostile packets fed straight to stack.receive() while a real connection
 * moves data next to them: each is counted, answered with RST where the
 * rule says, and the parallel connection stays byte-exact.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import {
  VSOCK_OP_INVALID,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_TYPE_SEQPACKET,
} from '../../../src/spec/vsock.js';
import type { VsockSocket } from '../../../src/vsock/stack/index.js';
import { GUEST_CID, HOST_CID, type Pair, closed, createPair, errorOf, feed, pattern, readAll, settle, sha256, until } from './pair.js';

let pair: Pair | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

/** RSTs the host sent to the guest's port `port` (from the wire log). */
const rstsTo = (p: Pair, port: number): number => (p.hostPort.log ?? []).filter((h) => h.op === VSOCK_OP_RST && h.dstPort === port).length;

describe('vsock hostile packets', () => {
  it('no-connection packets: unknown op, op 0, bad type, RW, RST, wrong dst_cid, short payload, seqpacket not negotiated -> counted, RST as the rules say; a parallel connection stays byte-exact', async () => {
    const p = (pair = createPair());
    p.hostPort.log = [];
    const server = p.host.listen(60);
    const got = new Promise<Buffer>((resolve) => server.once('connection', (s: VsockSocket) => resolve(readAll(s))));
    const main = p.guest.connect(HOST_CID, 60);
    const data = pattern(4 << 20, 60);
    const writing = (async () => {
      for (let off = 0; off < data.length; off += 100_000) {
        if (!main.write(data.subarray(off, off + 100_000))) await once(main, 'drain');
      }
      main.end();
    })();
    await once(main, 'connect');
    const h = p.host.stats;
    const before = { ...h };
    const delta = (k: keyof typeof h): number => h[k] - before[k];

    feed(p.host, { op: 99, srcPort: 9001, dstPort: 60 });
    feed(p.host, { op: VSOCK_OP_INVALID, srcPort: 9002, dstPort: 60 });
    feed(p.host, { op: VSOCK_OP_RW, type: 9, srcPort: 9003, dstPort: 60, payload: pattern(10, 1) });
    feed(p.host, { op: VSOCK_OP_RW, srcPort: 9004, dstPort: 60, payload: pattern(100, 2) });
    feed(p.host, { op: VSOCK_OP_RST, srcPort: 9005, dstPort: 60 });
    feed(p.host, { op: VSOCK_OP_RW, dstCid: 77, srcPort: 9006, dstPort: 60, payload: pattern(10, 3) });
    feed(p.host, { op: VSOCK_OP_RW, srcPort: 9007, dstPort: 60, payload: pattern(10, 4), len: 100 });
    feed(p.host, { op: VSOCK_OP_REQUEST, type: VSOCK_TYPE_SEQPACKET, srcPort: 9008, dstPort: 60 });
    feed(p.host, { op: VSOCK_OP_RW, srcPort: 9009, dstPort: 4321, payload: pattern(10, 5) }); // no listener either
    // A duplicate REQUEST for the live connection's own tuple: ignored, the connection keeps going.
    feed(p.host, { op: VSOCK_OP_REQUEST, srcPort: main.localPort, dstPort: 60 });
    await settle(6);

    expect(delta('badOp')).toBe(2);
    expect(delta('badType')).toBe(2);
    expect(delta('unknownConnection')).toBe(2);
    expect(delta('ignored')).toBe(1);
    expect(delta('wrongCid')).toBe(1);
    expect(delta('badLength')).toBe(1);
    expect(delta('duplicateRequest')).toBe(1);
    expect([9001, 9002, 9003, 9004, 9008, 9009].map((port) => rstsTo(p, port))).toEqual([1, 1, 1, 1, 1, 1]);
    expect([9005, 9006, 9007].map((port) => rstsTo(p, port))).toEqual([0, 0, 0]);
    expect(rstsTo(p, main.localPort)).toBe(0);

    await writing;
    const buf = await got;
    expect(buf.length).toBe(data.length);
    expect(sha256(buf)).toBe(sha256(data));
    expect(p.checker.violations).toEqual([]);
  });

  it('on a connection: op 0, unknown op, RW beyond credit -> counted, that connection reset (EPROTO here, ECONNRESET at the peer); the others are untouched', async () => {
    const p = (pair = createPair());
    const peers: VsockSocket[] = [];
    const server = p.host.listen(61);
    server.on('connection', (s: VsockSocket) => peers.push(s));
    const socks = [0, 1, 2, 3].map(() => p.guest.connect(HOST_CID, 61));
    await Promise.all(socks.map((s) => once(s, 'connect')));
    await until(() => peers.length === 4, 'all accepted');
    const [v1, v2, v3, keep] = socks.map((s) => peers.find((x) => x.remotePort === s.localPort) as VsockSocket);
    const hostErrs = [v1, v2, v3].map((s) => errorOf(s));
    const guestErrs = socks.slice(0, 3).map((s) => errorOf(s));

    feed(p.host, { op: VSOCK_OP_INVALID, srcPort: socks[0].localPort, dstPort: 61 });
    feed(p.host, { op: 42, srcPort: socks[1].localPort, dstPort: 61 });
    // 5.10.6.3: more than buf_alloc - (rx_cnt - fwd_cnt) bytes is a credit violation.
    feed(p.host, { op: VSOCK_OP_RW, srcPort: socks[2].localPort, dstPort: 61, payload: pattern(p.host.bufferSize + 1, 9) });

    expect((await Promise.all(hostErrs)).map((e) => e.code)).toEqual(['EPROTO', 'EPROTO', 'EPROTO']);
    expect((await Promise.all(guestErrs)).map((e) => e.code)).toEqual(['ECONNRESET', 'ECONNRESET', 'ECONNRESET']);
    expect(p.host.stats.badOp).toBe(2);
    expect(p.host.stats.creditViolations).toBe(1);
    // The fourth connection still works both ways.
    const back = readAll(socks[3]);
    const there = readAll(keep);
    socks[3].end('ping');
    keep.end('pong');
    expect((await there).toString()).toBe('ping');
    expect((await back).toString()).toBe('pong');
    await Promise.all([closed(socks[3]), closed(keep)]);
    expect(p.host.connectionCount).toBe(0);
  });

  it('RW before ESTABLISHED (while our REQUEST waits) -> RST, EPROTO, counted unexpectedOp', async () => {
    const p = (pair = createPair());
    p.guestPort.drop = (h) => h.op === VSOCK_OP_REQUEST; // the REQUEST never arrives: stays CONNECTING
    p.hostPort.log = [];
    const sock = p.guest.connect(HOST_CID, 62);
    const err = errorOf(sock);
    feed(p.guest, { op: VSOCK_OP_RW, srcCid: HOST_CID, srcPort: 62, dstPort: sock.localPort, payload: pattern(8, 1) }, HOST_CID);
    expect((await err).code).toBe('EPROTO');
    expect(p.guest.stats.unexpectedOp).toBe(1);
    expect(p.guest.stats.rstSent).toBe(1);
    expect(p.guest.connectionCount).toBe(0);
    await closed(sock);
  });

  it('a packet for another CID is dropped before anything else, even an RST for a live connection', async () => {
    const p = (pair = createPair());
    p.host.listen(63).on('connection', (s: VsockSocket) => s.resume());
    const sock = p.guest.connect(HOST_CID, 63);
    await once(sock, 'connect');
    feed(p.guest, { op: VSOCK_OP_RST, srcCid: HOST_CID, dstCid: GUEST_CID + 1, srcPort: 63, dstPort: sock.localPort }, HOST_CID);
    expect(p.guest.stats.wrongCid).toBe(1);
    expect(sock.connState).toBe(3);
    sock.destroy();
  });
});
