/**
 * A hostile receive driver (5.1.6.3.1: "each buffer MUST be at least the size
 * of the struct virtio_net_hdr" with mergeable buffers): the rx worker stops
 * with a named error, the device sets DEVICE_NEEDS_RESET and raises a config
 * interrupt (2.1.2), everything else keeps working, and a reset with a fresh
 * driver brings the NIC back, losing none of the frames that waited.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type QueueErrorEvent, VirtqueueError } from '../../src/index.js';
import { ring } from '../../src/notify/notify-area.js';
import { NET_F_CSUM, NET_F_HOST_TSO4, NET_F_MRG_RXBUF, bit } from '../../src/spec/features.js';
import { STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK } from '../../src/spec/status.js';
import { numberedFrame } from '../support/net-pair.js';
import { BASE_FEATURES, GSO_BUFFER, HdrTransfer, type NetRig, RX0, TX0, netRig, sameFrame } from '../support/net-rig.js';
import { buildTcpFrame, payloadOf, verifySegments } from '../support/packets.js';

let rig: NetRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const MRG = BASE_FEATURES | bit(NET_F_MRG_RXBUF);

function nextError(r: NetRig): Promise<QueueErrorEvent> {
  return new Promise((resolve) => r.b.once('queue-error', resolve));
}

describe('5.1.6.3.1 hostile mergeable receive buffers', () => {
  for (const layout of ['one 8-byte buffer', 'a 100-byte buffer, then an 8-byte one'] as const) {
    it(`${layout}: RX_BUFFER_SHORTER_THAN_HEADER, DEVICE_NEEDS_RESET, the rest keeps working; reset and a fresh driver bring it back`, async () => {
      rig = await netRig({}, { driver: { features: MRG }, fill: false });
      const { a, b, da } = rig;
      const db = rig.db;
      expect(db.pair.recv.layout.mode).toBe('mergeable');
      // Post the bad buffers straight on the ring, as a driver that is not ours could.
      const spec = db.spec.pairs[0];
      const base = spec.rxPool.base;
      if (layout === 'one 8-byte buffer') {
        expect(db.pair.rx.addBuffer(base, 8, true, 0)).toBe(true);
      } else {
        expect(db.pair.rx.addBuffer(base, 100, true, 0)).toBe(true);
        expect(db.pair.rx.addBuffer(base + 4096, 8, true, 1)).toBe(true);
      }
      if (db.pair.rx.publish()) ring(new Int32Array(spec.rxKick.buffer), spec.rxKick.index);
      const irq = db.interruptWord;
      const irqBefore = Atomics.load(irq.i32, irq.index);
      const error = nextError(rig);

      const stuck = numberedFrame(1, 500);
      const t = new HdrTransfer(da, db);
      await t.run([{ frame: stuck }], 0);
      const e = await error;
      expect(e.queue).toBe(RX0);
      expect(e.error).toBeInstanceOf(VirtqueueError);
      expect(e.error.code).toBe('RX_BUFFER_SHORTER_THAN_HEADER');
      expect((e.error as VirtqueueError).value).toBe(12);
      expect(b.queueStats(RX0).errorsByCode).toEqual({ RX_BUFFER_SHORTER_THAN_HEADER: 1 });
      expect(b.status & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
      expect(Atomics.load(irq.i32, irq.index)).not.toBe(irqBefore);
      // Nothing was written into the bad buffers: none came back used.
      expect(db.pair.rx.usedAvailable()).toBe(0);

      // The other direction (b's transmit queue, a's receive queue) and the other NIC keep working.
      const back = Array.from({ length: 50 }, (_, i) => ({ frame: numberedFrame(100 + i, 60 + i) }));
      const tb = new HdrTransfer(db, da);
      await tb.run(back);
      tb.received.forEach((r, i) => expect(sameFrame(r.frame, back[i].frame)).toBeUndefined());
      expect(a.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
      expect(b.queueStats(TX0).chains).toBe(back.length);

      // The driver resets the device and starts over with proper buffers.
      const fresh = await rig.reopen('b');
      expect(b.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
      expect(b.status & STATUS_DRIVER_OK).toBe(STATUS_DRIVER_OK);
      const more = Array.from({ length: 100 }, (_, i) => ({ frame: numberedFrame(200 + i, 60 + 9 * i) }));
      const t2 = new HdrTransfer(da, fresh);
      // The frame that found the bad buffers waited in the channel: it arrives first.
      await t2.run(more, more.length + 1);
      await t2.drain(50);
      expect(t2.received.length).toBe(more.length + 1);
      expect(sameFrame(t2.received[0].frame, stuck)).toBeUndefined();
      t2.received.slice(1).forEach((r, i) => expect(sameFrame(r.frame, more[i].frame), `frame ${i}`).toBeUndefined());
    });
  }

  it('a short buffer met while the device segments a GSO frame: the same error, and after the reset the new driver gets every segment once', async () => {
    rig = await netRig({ driver: { features: BASE_FEATURES | bit(NET_F_CSUM) | bit(NET_F_HOST_TSO4), bufferSize: GSO_BUFFER } }, { driver: { features: MRG }, fill: false });
    const db = rig.db;
    const spec = db.spec.pairs[0];
    // Three good buffers (a segment each), then one shorter than the header.
    for (let i = 0; i < 3; i++) expect(db.pair.rx.addBuffer(spec.rxPool.base + 4096 * i, 2048, true, i)).toBe(true);
    expect(db.pair.rx.addBuffer(spec.rxPool.base + 4096 * 3, 8, true, 3)).toBe(true);
    if (db.pair.rx.publish()) ring(new Int32Array(spec.rxKick.buffer), spec.rxKick.index);
    const error = nextError(rig);
    const { built, hdr } = buildTcpFrame({ ip: 4, payload: payloadOf(10_000, 5) }, 1448);
    await new HdrTransfer(rig.da, db).run([{ frame: built.frame, hdr }], 0);
    expect((await error).error.code).toBe('RX_BUFFER_SHORTER_THAN_HEADER');
    // The segments placed before the bad buffer were never published.
    expect(db.pair.rx.usedAvailable()).toBe(0);
    const fresh = await rig.reopen('b');
    const t = new HdrTransfer(rig.da, fresh);
    await t.run([], 7);
    await t.drain(50);
    expect(t.received.length).toBe(7);
    verifySegments(built, hdr.gsoType, 1448, 1500, t.received.map((r) => r.frame));
    expect(rig.b.queueStats(RX0).segments).toBe(7);
  });
});
