/**
 * The virtio-vsock transmitq through a real 'vsock-tx' worker (5.10.6): a
 * raw driver offers chains, raw host channel ends read what the device
 * forwards.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { VSOCK_HDR_SIZE, VSOCK_MAX_PKT_PAYLOAD, VSOCK_OP_INVALID, VSOCK_TX_QUEUE, VSOCK_TYPE_SEQPACKET } from '../../../src/spec/vsock.js';
import { GUEST_CID, type VsockRig, collect, headerOf, packet, payloadOf, sameBytes, until, vsockRig } from './vsock-rig.js';

let rig: VsockRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** Wait until the tx ring has completed `n` chains (reaped), returning their used lengths. */
async function usedTx(r: VsockRig, n: number): Promise<number[]> {
  return (await collect(() => r.tx.mini.reap(), n, 'tx used entries')).map((u) => u.len);
}

describe('5.10.6 virtio-vsock transmitq', () => {
  it('5.10.6.1: a header split across descriptors at any byte is read whole (property: split points x payload sizes x direct/indirect)', async () => {
    const r = (rig = await vsockRig());
    let seed = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 60_000, max: VSOCK_MAX_PKT_PAYLOAD })),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        fc.boolean(),
        async (len, fractions, indirect) => {
          const bytes = packet({ type: seed % 2 === 0 ? 1 : VSOCK_TYPE_SEQPACKET, flags: seed & 3, fwdCnt: seed }, payloadOf(len, seed++));
          // Cut points anywhere in [0, total]: inside the header, at 44, inside the payload, repeated.
          const cuts = fractions.map((f) => Math.floor(f * bytes.length));
          r.sendTx(bytes, cuts, indirect);
          const got = await collect(() => r.hostRecv(), 1, 'the packet on toHost');
          expect(got.length).toBe(1);
          expect(sameBytes(got[0], bytes), `payload ${len}, cuts ${cuts.join(',')}`).toBe(true);
          expect(await usedTx(r, 1)).toEqual([0]);
        },
      ),
      { numRuns: 120, seed: 0x5106 },
    );
    expect(r.vsockStats().txPackets).toBe(120);
    expect(r.vsockStats().drops).toBe(0);
  });

  it('5.10.6.1: Linux layouts (header and payload in one descriptor, >= 6.1; or two) and a zero-length descriptor between them', async () => {
    const r = (rig = await vsockRig());
    const sends = [
      packet({}, payloadOf(1000, 1)),
      packet({}, payloadOf(1000, 2)),
      packet({}, payloadOf(1000, 3)),
      packet({ op: 6 /* CREDIT_UPDATE */ }),
    ];
    r.sendTx(sends[0]);
    r.sendTx(sends[1], [VSOCK_HDR_SIZE]);
    r.sendTx(sends[2], [VSOCK_HDR_SIZE, VSOCK_HDR_SIZE]);
    r.sendTx(sends[3]);
    const got = await collect(() => r.hostRecv(), 4, 'four packets');
    got.forEach((g, i) => expect(sameBytes(g, sends[i])).toBe(true));
    expect(await usedTx(r, 4)).toEqual([0, 0, 0, 0]);
  });

  it('records carry the header as meta and hdr.len payload bytes, progress 0; extra readable bytes are ignored', async () => {
    const r = (rig = await vsockRig());
    // Fill the channel with junk first so the progress word of later records would show it.
    for (let i = 0; i < 20; i++) r.sendTx(packet({}, new Uint8Array(50_000).fill(0xff)));
    await collect(() => r.hostRecv(), 20, 'junk packets');
    await usedTx(r, 20);
    const body = payloadOf(300, 9);
    const bytes = new Uint8Array(VSOCK_HDR_SIZE + 400).fill(0xab);
    bytes.set(packet({ len: 300 }, body));
    r.sendTx(bytes, [17, 200]);
    await until(() => r.peekProgress() !== undefined, 'the record');
    expect(r.peekProgress()).toBe(0);
    const [got] = r.hostRecv();
    expect(got.length).toBe(VSOCK_HDR_SIZE + 300);
    expect(sameBytes(got, packet({ len: 300 }, body))).toBe(true);
  });

  it('op and type are the host stack\'s to judge: a structurally valid packet with an unknown op and type is forwarded', async () => {
    const r = (rig = await vsockRig());
    const odd = packet({ op: VSOCK_OP_INVALID, type: 77, flags: 0xffffffff }, payloadOf(10, 3));
    r.sendTx(odd);
    const [got] = await collect(() => r.hostRecv(), 1, 'the odd packet');
    expect(sameBytes(got, odd)).toBe(true);
    expect(r.vsockStats().drops).toBe(0);
  });

  const BAD: Array<{ reason: string; bytes: () => Uint8Array }> = [
    { reason: 'shortHeader', bytes: () => packet().subarray(0, VSOCK_HDR_SIZE - 1) },
    { reason: 'shortHeader', bytes: () => new Uint8Array(0) },
    { reason: 'lenBeyondBuffer', bytes: () => packet({ len: 101 }, payloadOf(100, 1)) },
    { reason: 'lenBeyondBuffer', bytes: () => packet({ len: 1 }) },
    { reason: 'lenTooLarge', bytes: () => packet({}, payloadOf(VSOCK_MAX_PKT_PAYLOAD + 1, 2)) },
    { reason: 'wrongSrcCid', bytes: () => packet({ srcCid: GUEST_CID + 1 }, payloadOf(10, 3)) },
    { reason: 'wrongSrcCid', bytes: () => packet({ srcCid: GUEST_CID + 2 ** 32 }) },
    { reason: 'wrongDstCid', bytes: () => packet({ dstCid: 1 }) },
    { reason: 'wrongDstCid', bytes: () => packet({ dstCid: 2 + 2 ** 32 }) },
  ];
  for (const c of BAD) {
    it(`a ${c.reason} packet is dropped and counted by reason, completed with used length 0, and the next packet is still delivered`, async () => {
      const r = (rig = await vsockRig());
      const good = packet({ srcPort: 4242 }, payloadOf(64, 5));
      const bad = c.bytes();
      // The empty "packet" is a chain with one zero-length readable descriptor.
      if (bad.length === 0) r.offerTx(new Uint8Array(0), []);
      else r.offerTx(bad, [Math.min(bad.length, 20)]);
      r.sendTx(good);
      const got = await collect(() => r.hostRecv(), 1, 'the good packet');
      expect(got.length).toBe(1);
      expect(sameBytes(got[0], good)).toBe(true);
      expect(await usedTx(r, 2)).toEqual([0, 0]);
      const s = r.vsockStats();
      expect(s.tx.vsockDropsByReason).toEqual({ [c.reason]: 1 });
      expect(s.txDropsByReason).toEqual({ [c.reason]: 1 });
      expect(s.tx.dropsMalformed).toBe(1);
      expect(s.tx.chains).toBe(2);
      expect(s.txPackets).toBe(1);
      expect(s.txBytes).toBe(64);
      expect(s.drops).toBe(1);
      expect(r.errors).toEqual([]);
    });
  }

  it('back-pressure: while the host does not read, chains stay unused in the ring; once it reads, every packet arrives in order, nothing lost', async () => {
    // 256 KiB channel: three 64 KiB records fit, the fourth does not.
    const r = (rig = await vsockRig({ device: { channelBytes: 1 << 18 } }));
    const sends = Array.from({ length: 12 }, (_, i) => packet({ fwdCnt: i }, payloadOf(VSOCK_MAX_PKT_PAYLOAD - i, i)));
    for (const s of sends) r.offerTx(s, [VSOCK_HDR_SIZE]);
    r.tx.kick();
    await until(() => r.device.queueStats(VSOCK_TX_QUEUE).chains === 3, 'three packets in the channel');
    await new Promise((res) => setTimeout(res, 100));
    // Nothing more moved, and the rest of the chains are still the driver's.
    expect(r.device.queueStats(VSOCK_TX_QUEUE).chains).toBe(3);
    expect(r.tx.mini.reap().length).toBe(3);
    expect(r.device.queueStats(VSOCK_TX_QUEUE).sleeps).toBeGreaterThan(0);
    const got = await collect(() => r.hostRecv(), sends.length, 'every packet');
    expect(got.length).toBe(sends.length);
    got.forEach((g, i) => expect(sameBytes(g, sends[i]), `packet ${i} (fwd_cnt ${headerOf(g).fwdCnt})`).toBe(true));
    expect(await usedTx(r, sends.length - 3)).toEqual(new Array(sends.length - 3).fill(0));
    expect(r.vsockStats().drops).toBe(0);
  });

  it('5.10.6.6: after transportReset(newCid) the tx queue takes src_cid = the new CID and drops the old one', async () => {
    const r = (rig = await vsockRig());
    r.device.transportReset(GUEST_CID + 10);
    r.sendTx(packet({ srcCid: GUEST_CID }, payloadOf(5, 1)));
    const fresh = packet({ srcCid: GUEST_CID + 10 }, payloadOf(5, 2));
    r.sendTx(fresh);
    const got = await collect(() => r.hostRecv(), 1, 'the packet from the new CID');
    expect(sameBytes(got[0], fresh)).toBe(true);
    await usedTx(r, 2);
    expect(r.vsockStats().txDropsByReason).toEqual({ wrongSrcCid: 1 });
  });
});
