/**
 * A payload in parts (a packet spread over mergeable receive buffers) goes
 * to the reader as it lies: the socket copies it once, and the stack checks
 * it as it checks a contiguous payload (5.10.6.3 credit, hdr.len).
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { VSOCK_OP_REQUEST, VSOCK_OP_RW, VSOCK_SEQ_EOM, VSOCK_TYPE_SEQPACKET, VSOCK_TYPE_STREAM } from '../../../src/spec/vsock.js';
import type { VsockPayloadParts, VsockSeqpacketSocket, VsockSocket } from '../../../src/vsock/stack/index.js';
import { VsockHeader } from '../../../src/vsock/vsock-header.js';
import { GUEST_CID, HOST_CID, RawRig, pattern, sha256 } from './pair.js';

/** `bytes` cut into pieces of `piece` bytes, each in its own buffer at `skew` bytes in. */
class Parts implements VsockPayloadParts {
  readonly length: number;
  private readonly pieces: Array<{ u8: Uint8Array; at: number; len: number }> = [];

  constructor(bytes: Uint8Array, piece: number, skew: number) {
    this.length = bytes.length;
    for (let off = 0; off < bytes.length; off += piece) {
      const len = Math.min(piece, bytes.length - off);
      const u8 = new Uint8Array(new SharedArrayBuffer(skew + len + 8));
      u8.set(bytes.subarray(off, off + len), skew);
      this.pieces.push({ u8, at: skew, len });
    }
  }

  alignment(): number {
    return this.pieces[0].at & 7;
  }

  copyTo(dst: Uint8Array, dstIdx: number): number {
    let at = dstIdx;
    for (const p of this.pieces) {
      dst.set(p.u8.subarray(p.at, p.at + p.len), at);
      at += p.len;
    }
    return this.length;
  }

  copyRange(from: number, len: number, dst: Uint8Array, dstIdx: number): void {
    const all = new Uint8Array(this.length);
    this.copyTo(all, 0);
    dst.set(all.subarray(from, from + len), dstIdx);
  }
}

function header(op: number, len: number, type = VSOCK_TYPE_STREAM, flags = 0): VsockHeader {
  const h = new VsockHeader();
  h.srcCid = GUEST_CID;
  h.dstCid = HOST_CID;
  h.srcPort = 5000;
  h.dstPort = 1234;
  h.type = type;
  h.op = op;
  h.flags = flags;
  h.bufAlloc = 256 * 1024;
  h.fwdCnt = 0;
  h.len = len;
  return h;
}

describe('5.10.6 RW payload in parts (mergeable receive buffers)', () => {
  it('stream: every piece arrives in order, byte-exact, counted as one packet of hdr.len bytes', async () => {
    const rig = new RawRig();
    const accepted = once(rig.stack.listen(1234), 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    const data = pattern(65536, 7);
    const got: Buffer[] = [];
    sock.on('data', (b: Buffer) => got.push(b));
    for (const skew of [0, 2, 4]) rig.stack.receive(header(VSOCK_OP_RW, data.length), new Parts(data, 4078, skew), 0);
    await new Promise((r) => setImmediate(r));
    const all = Buffer.concat(got);
    expect(all.length).toBe(3 * data.length);
    for (let i = 0; i < 3; i++) expect(sha256(all.subarray(i * data.length, (i + 1) * data.length))).toBe(sha256(data));
    expect(rig.stack.stats.bytesIn).toBe(3 * data.length);
    expect(sock.bytesRead).toBe(3 * data.length);
    sock.destroy();
  });

  it('hdr.len beyond the parts is counted badLength and delivers nothing', async () => {
    const rig = new RawRig();
    const accepted = once(rig.stack.listen(1234), 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    sock.on('data', () => expect.unreachable('no data'));
    rig.stack.receive(header(VSOCK_OP_RW, 9000), new Parts(pattern(8192, 1), 4096, 0), 0);
    expect(rig.stack.stats.badLength).toBe(1);
    expect(sock.bytesRead).toBe(0);
    sock.destroy();
  });

  it('parts beyond the credit we gave are a violation (5.10.6.3): RST, not data', async () => {
    const rig = new RawRig({ bufferSize: 4096 });
    const accepted = once(rig.stack.listen(1234), 'connection') as Promise<[VsockSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST });
    const [sock] = await accepted;
    sock.on('error', () => {});
    rig.stack.receive(header(VSOCK_OP_RW, 8192), new Parts(pattern(8192, 2), 4096, 0), 0);
    expect(rig.stack.stats.creditViolations).toBe(1);
    expect(rig.port.sent.at(-1)?.op).toBe(3);
  });

  it('seqpacket: a message in parts is one message, boundaries kept', async () => {
    const rig = new RawRig({ seqpacket: true });
    const accepted = once(rig.stack.listen(1234, { type: 'seqpacket' }), 'connection') as Promise<[VsockSeqpacketSocket]>;
    rig.feed({ op: VSOCK_OP_REQUEST, type: VSOCK_TYPE_SEQPACKET });
    const [sock] = await accepted;
    const msg = pattern(10000, 3);
    const got = once(sock, 'data') as Promise<[Buffer]>;
    rig.stack.receive(header(VSOCK_OP_RW, msg.length, VSOCK_TYPE_SEQPACKET, VSOCK_SEQ_EOM), new Parts(msg, 4078, 2), 0);
    const [m] = await got;
    expect(sha256(m)).toBe(sha256(msg));
    sock.destroy();
  });
});
