/**
 * Seqpacket sockets (VIRTIO_VSOCK_F_SEQPACKET): message boundaries, EOM /
 * EOR on the wire, credit, EMSGSIZE.
 */
import { once } from 'node:events';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_OP_RW, VSOCK_SEQ_EOM, VSOCK_SEQ_EOR } from '../../../src/spec/vsock.js';
import type { VsockSeqpacketSocket } from '../../../src/vsock/stack/index.js';
import { HOST_CID, type Pair, type PairOptions, closed, createPair, errorOf, pattern, settle, sha256, until } from './pair.js';

let pair: Pair | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

function seqPair(bufferSize: number, maxPayload = 64 * 1024, extra: PairOptions = {}): Pair {
  return createPair({
    guest: { seqpacket: true, bufferSize },
    host: { seqpacket: true, bufferSize },
    port: { maxPayload, ...extra.port },
  });
}

async function connectSeq(p: Pair, port: number): Promise<[VsockSeqpacketSocket, VsockSeqpacketSocket]> {
  const server = p.host.listen(port, { type: 'seqpacket' });
  const accepted = once(server, 'connection') as Promise<[VsockSeqpacketSocket]>;
  const sock = p.guest.connect(HOST_CID, port, { type: 'seqpacket' });
  await once(sock, 'connect');
  const [peer] = await accepted;
  return [sock, peer];
}

interface Received {
  msgs: Buffer[];
  eor: boolean[];
  viaEvent: boolean[];
}

/** Collect messages until 'end', with the EOR flag both ways (lastMessageEor, 'message'). */
function collect(sock: VsockSeqpacketSocket, pauses: Map<number, number> = new Map()): Promise<Received> {
  const r: Received = { msgs: [], eor: [], viaEvent: [] };
  sock.on('data', (m: Buffer) => {
    r.msgs.push(m);
    r.eor.push(sock.lastMessageEor);
    const ms = pauses.get(r.msgs.length);
    if (ms !== undefined) {
      sock.pause();
      setTimeout(() => sock.resume(), ms);
    }
  });
  sock.on('message', (m: Buffer, info: { eor: boolean }) => {
    if (m !== r.msgs[r.msgs.length - 1]) throw new Error("'message' without its 'data'");
    r.viaEvent.push(info.eor);
  });
  return once(sock, 'end').then(() => r);
}

async function sendAll(sock: VsockSeqpacketSocket, msgs: Buffer[], eor: boolean[]): Promise<void> {
  for (let i = 0; i < msgs.length; i++) {
    if (!sock.sendMessage(msgs[i], { eor: eor[i] })) await once(sock, 'drain');
  }
}

describe('vsock seqpacket', () => {
  it('random message sizes (0 .. 300 KiB): boundaries kept, never merged, EOR delivered where asked, EOM only on each message\'s last packet', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          sizes: fc.array(fc.oneof(fc.integer({ min: 0, max: 300 * 1024 }), fc.constantFrom(0, 1, 65535, 65536, 65537)), { minLength: 1, maxLength: 14 }),
          eorSeed: fc.integer({ min: 0, max: 0xffff }),
          maxPayload: fc.constantFrom(4096, 65536),
          capacityPackets: fc.integer({ min: 1, max: 32 }),
          pauses: fc.array(fc.record({ after: fc.integer({ min: 1, max: 14 }), ms: fc.integer({ min: 0, max: 3 }) }), { maxLength: 3 }),
        }),
        async (sc) => {
          const p = seqPair(320 * 1024, sc.maxPayload, { port: { capacityPackets: sc.capacityPackets } });
          p.guestPort.log = [];
          try {
            const [sock, peer] = await connectSeq(p, 70);
            const msgs = sc.sizes.map((n, i) => pattern(n, i + 7));
            const eor = sc.sizes.map((_, i) => ((sc.eorSeed >> i % 16) & 1) === 1);
            const got = collect(peer, new Map(sc.pauses.map((x) => [x.after, x.ms])));
            sock.resume();
            await sendAll(sock, msgs, eor);
            sock.end();
            const r = await got;
            expect(r.msgs.map((m) => m.length)).toEqual(sc.sizes);
            expect(r.msgs.map(sha256)).toEqual(msgs.map(sha256));
            expect(r.eor).toEqual(eor);
            expect(r.viaEvent).toEqual(eor);
            // The wire: packets of one message, EOM only on its last, EOR only there and only when asked.
            const rw = (p.guestPort.log ?? []).filter((h) => h.op === VSOCK_OP_RW && h.srcPort === sock.localPort);
            let m = 0;
            let acc = 0;
            for (const h of rw) {
              expect(h.len).toBeLessThanOrEqual(sc.maxPayload);
              acc += h.len;
              if ((h.flags & VSOCK_SEQ_EOM) !== 0) {
                expect(acc).toBe(sc.sizes[m]);
                expect((h.flags & VSOCK_SEQ_EOR) !== 0).toBe(eor[m]);
                m++;
                acc = 0;
              } else {
                expect(h.flags).toBe(0);
              }
            }
            expect(m).toBe(msgs.length);
            expect(p.checker.violations).toEqual([]);
            peer.end();
            await Promise.all([closed(sock), closed(peer)]);
          } finally {
            await p.close();
          }
        },
      ),
      { seed: 0x5e9, numRuns: 10 },
    );
  }, 60_000);

  it('a message larger than the peer\'s buf_alloc -> EMSGSIZE: sendMessage() throws and the socket stays usable; write() of one fails the stream', async () => {
    const p = (pair = seqPair(64 * 1024));
    const [sock, peer] = await connectSeq(p, 71);
    expect(() => sock.sendMessage(Buffer.alloc(64 * 1024 + 1))).toThrow(expect.objectContaining({ code: 'EMSGSIZE' }));
    const first = once(peer, 'data') as Promise<[Buffer]>;
    sock.sendMessage(pattern(64 * 1024, 1), { eor: true });
    const [m] = await first;
    expect(m.length).toBe(64 * 1024);
    expect(peer.lastMessageEor).toBe(true);
    const err = errorOf(sock);
    peer.on('error', () => {});
    sock.write(Buffer.alloc(100_000));
    expect((await err).code).toBe('EMSGSIZE');
    await Promise.all([closed(sock), closed(peer)]);
  });

  it('credit covers seqpacket: a reader that does not read stops the sender within buf_alloc; reading again delivers every message in order', async () => {
    const p = (pair = seqPair(64 * 1024, 16 * 1024));
    const [sock, peer] = await connectSeq(p, 72);
    peer.pause();
    const msgs = Array.from({ length: 60 }, (_, i) => pattern(20_000 + i, i));
    const sending = sendAll(
      sock,
      msgs,
      msgs.map(() => false),
    );
    await settle(40);
    // Readable: 16 messages (object highWaterMark) + our queue within buf_alloc (64 KiB) + one partial message.
    expect(peer.credit.rxQueued()).toBeLessThanOrEqual(64 * 1024);
    expect(sock.bytesWritten).toBeLessThan(64 * 1024 + 17 * 20_100);
    expect(sock.bytesWritten).toBeLessThan(msgs.reduce((a, m) => a + m.length, 0));
    const got = collect(peer);
    peer.resume();
    await sending;
    sock.end();
    const r = await got;
    expect(r.msgs.map(sha256)).toEqual(msgs.map(sha256));
    expect(p.checker.violations).toEqual([]);
    peer.end();
    sock.resume();
    await Promise.all([closed(sock), closed(peer)]);
  });

  it('seqpacket needs the feature: connect / listen throw ESOCKTNOSUPPORT without it, a seqpacket REQUEST gets RST; a stream REQUEST to a seqpacket listener gets RST', async () => {
    const p = (pair = createPair({ host: { seqpacket: true }, guest: { seqpacket: false } }));
    expect(() => p.guest.connect(HOST_CID, 1, { type: 'seqpacket' })).toThrow(expect.objectContaining({ code: 'ESOCKTNOSUPPORT' }));
    expect(() => p.guest.listen(1, { type: 'seqpacket' })).toThrow(expect.objectContaining({ code: 'ESOCKTNOSUPPORT' }));
    p.host.listen(73, { type: 'seqpacket' });
    const s = p.guest.connect(HOST_CID, 73);
    expect((await errorOf(s)).code).toBe('ECONNREFUSED');
    expect(p.host.stats.badType).toBe(1);
    // From the host (which has it) to the guest (which has not): RST, badType.
    p.guest.listen(74);
    const q = p.host.connect(3, 74, { type: 'seqpacket' });
    expect((await errorOf(q)).code).toBe('ECONNREFUSED');
    await until(() => p.guest.stats.badType === 1, 'guest counted the type');
  });
});
