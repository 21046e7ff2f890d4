/** Credit flow control (virtio 1.2 section 5.10.6.3): the arithmetic, and the stack's use of it on the wire. */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RW,
} from '../../../src/spec/vsock.js';
import { VsockHeader } from '../../../src/vsock/vsock-header.js';
import { Credit, type VsockSocket } from '../../../src/vsock/stack/index.js';
import { GUEST_CID, HOST_CID, CreditChecker, RawRig, createPair, pattern, settle, until } from './pair.js';

describe('Credit arithmetic', () => {
  it('peer_free = peer_buf_alloc - (tx_cnt - peer_fwd_cnt)', () => {
    const c = new Credit(4096);
    expect(c.peerFree()).toBe(0); // nothing known of the peer yet
    c.onPeerHeader(1000, 0);
    expect(c.peerFree()).toBe(1000);
    c.onSent(600);
    expect(c.peerFree()).toBe(400);
    c.onPeerHeader(1000, 600);
    expect(c.peerFree()).toBe(1000);
  });

  it('counters are u32 and wrap: the difference is taken modulo 2^32', () => {
    const c = new Credit(4096);
    c.txCnt = 0xffffff00;
    c.onPeerHeader(1024, 0xfffffe00); // 256 in flight
    expect(c.peerFree()).toBe(768);
    c.onSent(0x200);
    expect(c.txCnt).toBe(0x100); // wrapped
    expect(c.peerFree()).toBe(256); // 0x300 in flight
    c.onPeerHeader(1024, 0x100);
    expect(c.peerFree()).toBe(1024);
    // Receive side too.
    c.rxCnt = 0xfffffff0;
    c.fwdCnt = 0xfffffff0;
    expect(c.mayReceive(4096)).toBe(true);
    c.onReceived(0x20);
    expect(c.rxCnt).toBe(0x10);
    expect(c.rxQueued()).toBe(0x20);
    expect(c.mayReceive(4096 - 0x20)).toBe(true);
    expect(c.mayReceive(4096 - 0x20 + 1)).toBe(false);
    c.onConsumed(0x20);
    expect(c.fwdCnt).toBe(0x10);
    expect(c.rxQueued()).toBe(0);
  });

  it('a peer that shrinks buf_alloc below what is in flight leaves 0, never a negative or huge credit', () => {
    const c = new Credit(4096);
    c.onPeerHeader(65536, 0);
    c.onSent(60000);
    c.onPeerHeader(4096, 0);
    expect(c.peerFree()).toBe(0);
  });

  it('CREDIT_UPDATE is due when the reader freed space and the peer believes we have less than one packet free', () => {
    const c = new Credit(256 * 1024);
    c.onReceived(10 * 1024);
    c.onConsumed(10 * 1024);
    expect(c.needsUpdate()).toBe(false); // the peer still sees 246 KiB free
    c.onReceived(240 * 1024);
    expect(c.peerViewOfFree()).toBe(6 * 1024);
    expect(c.needsUpdate()).toBe(true); // 10 KiB freed that the peer has not heard of, and it sees 6 KiB
    c.onSent(0); // a header carried fwd_cnt: the peer knows
    expect(c.needsUpdate()).toBe(false);
    expect(c.peerViewOfFree()).toBe(16 * 1024);
    c.onConsumed(1);
    expect(c.needsUpdate()).toBe(true);
    c.onSent(0);
    expect(c.needsUpdate()).toBe(false);
  });
});

describe('credit on the wire', () => {
  it('every packet we send carries our buf_alloc and current fwd_cnt', async () => {
    const rig = new RawRig({ bufferSize: 100_000 });
    const server = rig.stack.listen(1234);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    const resp = rig.port.ofOp(VSOCK_OP_RESPONSE)[0];
    expect([resp.bufAlloc, resp.fwdCnt]).toEqual([100_000, 0]);
    const got = once(sock, 'data');
    rig.feed({ op: VSOCK_OP_RW, payload: pattern(1000, 1) });
    await got;
    sock.write('x');
    const rw = rig.port.ofOp(VSOCK_OP_RW)[0];
    expect([rw.bufAlloc, rw.fwdCnt, rw.len]).toEqual([100_000, 1000, 1]);
    sock.destroy();
  });

  it('CREDIT_REQUEST is answered with a CREDIT_UPDATE carrying the current numbers', async () => {
    const rig = new RawRig();
    const server = rig.stack.listen(1234);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    sock.pause();
    rig.feed({ op: VSOCK_OP_RW, payload: pattern(5000, 1) });
    rig.port.clear();
    rig.feed({ op: VSOCK_OP_CREDIT_REQUEST });
    const up = rig.port.sent;
    expect(up.map((h) => h.op)).toEqual([VSOCK_OP_CREDIT_UPDATE]);
    expect(up[0].bufAlloc).toBe(rig.stack.bufferSize);
    expect(up[0].fwdCnt).toBe(5000); // pushed to the Readable (below its highWaterMark): consumed
    sock.destroy();
  });

  it('5.10.6.3: the sender never exceeds peer_free; a stall asks for credit (one CREDIT_REQUEST) only once it outlasts creditRequestDelayMs; credit on any packet resumes it', async () => {
    const rig = new RawRig({ localCid: HOST_CID, creditRequestDelayMs: 20 }, GUEST_CID, 1000);
    const sock = rig.stack.connect(GUEST_CID, 5000, { localPort: 1234 });
    expect(rig.port.ofOp(VSOCK_OP_REQUEST)).toHaveLength(1);
    sock.write(pattern(10_000, 3));
    expect(rig.port.ofOp(VSOCK_OP_RW)).toHaveLength(0); // nothing before RESPONSE
    rig.feed({ op: VSOCK_OP_RESPONSE, bufAlloc: 2500, fwdCnt: 0 });
    const sentBytes = (): number => rig.port.ofOp(VSOCK_OP_RW).reduce((a, h) => a + h.len, 0);
    const requests = (): number => rig.port.ofOp(VSOCK_OP_CREDIT_REQUEST).length;
    expect(rig.port.ofOp(VSOCK_OP_RW).map((h) => h.len)).toEqual([1000, 1000, 500]); // maxPayload 1000, credit 2500
    // Stalled, but the peer has not yet seen the packets that used the credit up: no request yet.
    expect(requests()).toBe(0);
    await until(() => requests() === 1, 'the CREDIT_REQUEST of a stall that lasts');
    // A CREDIT_UPDATE that frees nothing: still stalled, no second request for this stall.
    rig.feed({ op: VSOCK_OP_CREDIT_UPDATE, bufAlloc: 2500, fwdCnt: 0 });
    expect(sentBytes()).toBe(2500);
    await new Promise((r) => setTimeout(r, 60));
    expect(requests()).toBe(1);
    // The peer's fwd_cnt on a plain CREDIT_UPDATE frees 1200: a new stall, which asks again once it lasts.
    rig.feed({ op: VSOCK_OP_CREDIT_UPDATE, bufAlloc: 2500, fwdCnt: 1200 });
    expect(sentBytes()).toBe(3700);
    expect(requests()).toBe(1);
    await until(() => requests() === 2, 'the CREDIT_REQUEST of the second stall');
    // Credit riding on an RW from the peer works as well.
    rig.feed({ op: VSOCK_OP_RW, bufAlloc: 2500, fwdCnt: 3700, payload: pattern(10, 1) });
    expect(sentBytes()).toBe(6200);
    sock.destroy();
  });

  it('5.10.6.3: a stall that the peer\'s own CREDIT_UPDATE ends sends no CREDIT_REQUEST', async () => {
    const rig = new RawRig({ localCid: HOST_CID, creditRequestDelayMs: 50 }, GUEST_CID, 1000);
    const sock = rig.stack.connect(GUEST_CID, 5000, { localPort: 1234 });
    sock.write(pattern(6000, 4));
    rig.feed({ op: VSOCK_OP_RESPONSE, bufAlloc: 2000, fwdCnt: 0 });
    for (let fwd = 2000; fwd <= 6000; fwd += 2000) rig.feed({ op: VSOCK_OP_CREDIT_UPDATE, bufAlloc: 2000, fwdCnt: fwd }); // three stalls, each ended at once
    expect(rig.port.ofOp(VSOCK_OP_RW).reduce((a, h) => a + h.len, 0)).toBe(6000);
    await new Promise((r) => setTimeout(r, 150)); // past the delay of every stall
    expect(rig.port.ofOp(VSOCK_OP_CREDIT_REQUEST)).toHaveLength(0);
    sock.destroy();
  });

  it('creditRequestDelayMs must be > 0 (InvalidArgumentError naming the value)', () => {
    expect(() => new RawRig({ creditRequestDelayMs: 0 })).toThrow(/creditRequestDelayMs 0 must be > 0/);
  });

  it('CREDIT_UPDATE goes out when the reader frees space and the peer\'s view of our free space is below one packet, not before', async () => {
    const rig = new RawRig();
    const server = rig.stack.listen(1234);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    sock.pause();
    rig.port.clear();
    // 4 x 64 KiB: the first goes to the Readable (fwd_cnt 64 KiB), the rest wait: the peer's view reaches 0.
    for (let i = 0; i < 4; i++) rig.feed({ op: VSOCK_OP_RW, payload: pattern(64 * 1024, i) });
    expect(rig.port.ofOp(VSOCK_OP_CREDIT_UPDATE)).toHaveLength(0);
    expect(sock.credit.rxQueued()).toBe(192 * 1024);
    // The reader takes data: fwd_cnt moves and the peer believed 0 bytes free -> one CREDIT_UPDATE.
    sock.read();
    await settle(2);
    const ups = rig.port.ofOp(VSOCK_OP_CREDIT_UPDATE);
    expect(ups.length).toBeGreaterThanOrEqual(1);
    expect(ups[0].fwdCnt).toBeGreaterThan(64 * 1024);
    expect(ups[ups.length - 1].fwdCnt).toBeLessThanOrEqual(sock.credit.fwdCnt);
    // After it the peer sees at least one packet free again: no update per read.
    expect(sock.credit.peerViewOfFree()).toBeGreaterThanOrEqual(64 * 1024);
    sock.destroy();
  });

  it('an RW beyond the credit we gave is a violation (RST, counted), not data', async () => {
    const rig = new RawRig({ bufferSize: 4096 });
    const server = rig.stack.listen(1234);
    const accepted = once(server, 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    sock.pause();
    sock.on('error', () => {});
    // The Readable takes 64 KiB (VSOCK_READABLE_HIGH_WATER_MARK), 4 KiB at a time within the credit; then 4 KiB wait here.
    for (let i = 0; i < 17; i++) rig.feed({ op: VSOCK_OP_RW, payload: pattern(4096, i), fwdCnt: 0 });
    expect(sock.credit.rxQueued()).toBe(4096);
    expect(rig.stack.stats.creditViolations).toBe(0);
    rig.feed({ op: VSOCK_OP_RW, payload: pattern(1, 3) }); // one byte too many
    expect(rig.stack.stats.creditViolations).toBe(1);
    expect(rig.port.sent.at(-1)?.op).toBe(3);
    expect(rig.stack.connectionCount).toBe(0);
  });

  it('the test checker itself catches a sender that exceeds the receiver\'s credit', () => {
    const checker = new CreditChecker(() => 65536);
    const h = new VsockHeader();
    Object.assign(h, { srcCid: 2, dstCid: 3, srcPort: 1, dstPort: 2, type: 1, op: VSOCK_OP_REQUEST, bufAlloc: 1000, fwdCnt: 0, len: 0 });
    checker.onSend(h);
    checker.onDeliver(h);
    // The guest answers with its buffer: 1000 bytes.
    Object.assign(h, { srcCid: 3, dstCid: 2, srcPort: 2, dstPort: 1, op: VSOCK_OP_RESPONSE, bufAlloc: 1000 });
    checker.onSend(h);
    checker.onDeliver(h);
    Object.assign(h, { srcCid: 2, dstCid: 3, srcPort: 1, dstPort: 2, op: VSOCK_OP_RW, len: 600 });
    checker.onSend(h);
    expect(checker.violations).toEqual([]);
    checker.onSend(h); // 1200 in flight > 1000
    expect(checker.violations).toHaveLength(1);
  });

  it('a pair under load: the checker has seen credit packets both ways and no violation', async () => {
    const p = createPair({ guest: { bufferSize: 8192 }, host: { bufferSize: 8192 } });
    const server = p.host.listen(9);
    server.on('connection', (s: VsockSocket) => s.pipe(s));
    const sock = p.guest.connect(HOST_CID, 9);
    const data = pattern(300_000, 9);
    const parts: Buffer[] = [];
    sock.on('data', (b: Buffer) => parts.push(b));
    const ended = once(sock, 'end');
    sock.end(data);
    await ended;
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(p.checker.violations).toEqual([]);
    expect(p.guest.stats.creditUpdatesSent + p.host.stats.creditUpdatesSent).toBeGreaterThan(0);
    await p.close();
  });
});
