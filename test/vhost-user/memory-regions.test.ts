/**
 * A front end with more than 4 GiB of guest memory in one region: the back
 * end views it in chunks of at most 1 GiB, cut at multiples of 1 GiB of the
 * guest-physical address. Addresses are guest-physical (virtio 1.2 2.7.5), so
 * the chunk edges must not show: this front end puts a ring's parts on both
 * sides of one edge and buffers across edges, both directions, and moves
 * traffic. The memfd is sparse (only the touched pages cost memory). Workers
 * load from dist/: build first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FE_MAC,
  FrontEnd,
  type FrontEndRx,
  NET_FEATURES,
  NIC_MAC,
  type NetRig,
  PF,
  RX,
  TX,
  frame,
  netRig,
  seqOf,
  takeRx,
  until,
} from '../support/vhost-user/front-end.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
/** The region starts 1 MiB in, so its chunk edges (at 1, 2, 3, 4 GiB) are not at multiples of 1 GiB from its start. */
const RAM_GPA = MIB;
const RAM_SIZE = 4 * GIB + GIB / 2;
const RAM_UVA = 0x7f00_0000_0000n;
/** The front end views [1 GiB - 1 MiB, 3 GiB + 1 MiB) of the guest (a typed array holds less than 4 GiB). */
const WINDOW = { offset: GIB - MIB - RAM_GPA, length: 2 * GIB + 2 * MIB };
const SIZE = 8;
const SLOT = 2048;
/** Split ring parts at `base`: desc 16 * 8, avail 6 + 2 * 8 (4-aligned), used 6 + 8 * 8 (16-aligned). */
const RING_BYTES = 128 + 24 + 80;
/** Receive ring: its parts below the 3 GiB edge, its 4th buffer across it (1000 bytes below, 1048 above). */
const RX_RING = 3 * GIB - RING_BYTES - 3 * SLOT - 1000;
/** Transmit ring: the descriptor table ends at the 1 GiB edge, the driver and device areas start there. */
const TX_RING = GIB - 128;
/** Where every transmitted frame sits: across the 2 GiB edge. */
const TX_BUFFER = 2 * GIB - 700;
const FRAME_LEN = 1400;

let rig: NetRig;
beforeAll(async () => {
  rig = await netRig();
});
afterAll(async () => {
  await rig?.close();
});

describe('vhost-user: a 4.5 GiB guest whose rings and buffers sit on the 1 GiB view edges', () => {
  it('moves frames both ways: ring parts on both sides of an edge, buffers across edges, every byte where it belongs', async () => {
    const fe = FrontEnd.connect(rig.path);
    const before = rig.disconnects.length;
    try {
      await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK | PF.STATUS });
      const ram = fe.addRam(RAM_SIZE, BigInt(RAM_GPA), RAM_UVA, { window: WINDOW });
      await fe.setMemTable();
      const rx = await fe.setupRing(RX, SIZE, ram, BigInt(RX_RING), SLOT);
      const tx = await fe.setupRing(TX, SIZE, ram, BigInt(TX_RING), SLOT);
      // The layout is what the test says it is.
      expect(tx.descGpa + 128n).toBe(BigInt(GIB));
      expect(tx.availGpa).toBe(BigInt(GIB));
      expect(rx.slotGpa(3) < BigInt(3 * GIB) && rx.slotGpa(3) + BigInt(SLOT) > BigInt(3 * GIB)).toBe(true);
      rx.postRx(SIZE);
      await fe.startRing(RX);
      await fe.startRing(TX);
      fe.kick(RX);

      // Front end -> NIC: each frame in one descriptor across the 2 GiB edge, one at a time (same buffer).
      rig.pump();
      const firstAtNic = rig.received.length;
      const sent: Uint8Array[] = [];
      for (let i = 0; i < 2 * SIZE; i++) {
        const f = frame(NIC_MAC, FE_MAC, 100 + i, FRAME_LEN);
        sent.push(f);
        const at = ram.off(BigInt(TX_BUFFER));
        ram.u8.fill(0, at, at + 12); // virtio_net_hdr: no offloads
        ram.u8.set(f, at + 12);
        tx.postDesc(BigInt(TX_BUFFER), 12 + f.length, false);
        fe.kick(TX);
        await until(() => (rig.pump(), rig.received.length > firstAtNic + i), 10_000, `frame ${i} at the NIC`);
        await until(() => tx.takeUsed().length > 0 || tx.freeCount === SIZE, 10_000, `frame ${i} used`);
      }
      const atNic = rig.received.slice(firstAtNic);
      expect(atNic.map(seqOf)).toEqual(sent.map(seqOf));
      for (let i = 0; i < sent.length; i++) expect(Buffer.from(atNic[i]).equals(Buffer.from(sent[i])), `frame ${i} bytes`).toBe(true);

      // NIC -> front end: 3 * SIZE frames through the receive ring, whose 4th buffer crosses the 3 GiB edge.
      const back: Uint8Array[] = [];
      for (let i = 0; i < 3 * SIZE; i++) back.push(frame(FE_MAC, NIC_MAC, 5000 + i, FRAME_LEN));
      const got: FrontEndRx[] = [];
      for (const f of back) {
        rig.driver.send(f);
        rig.driver.flushTx();
        const want = got.length + 1;
        await until(() => (takeRx(fe, got), fe.kick(RX), got.length >= want), 10_000, `frame ${seqOf(f)} in the front end's rx ring`);
        rig.driver.reclaimTx();
      }
      expect(got.map((g) => seqOf(g.frame))).toEqual(back.map(seqOf));
      for (let i = 0; i < back.length; i++) expect(Buffer.from(got[i].frame).equals(Buffer.from(back[i])), `frame ${5000 + i} bytes`).toBe(true);
      // Every buffer was used at least twice, so the one across the edge carried frames.
      expect(rig.logs.filter((l) => /ring \d|dropping/.test(l))).toEqual([]);
      expect(rig.server.device.status & 0x40).toBe(0);
    } finally {
      fe.close();
    }
    await until(() => rig.disconnects.length > before && !rig.server.connected, 10_000, 'the disconnect');
  }, 60_000);
});
