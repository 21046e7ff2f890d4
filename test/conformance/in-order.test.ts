/**
 * VIRTIO_F_IN_ORDER (2.7.5 / 2.8.9 "In-order use of descriptors") as the
 * library's net guest and device take it: which ring formats it is
 * negotiated with, and what it does to a net queue pair on packed rings
 * (the device's own transmit and receive handlers, polled on this thread,
 * against NetPairDriver on the queues PciDriver laid out).
 */
import { describe, expect, it } from 'vitest';
import { NET_DEFAULT_FEATURES, type FeatureSet, NetPairDriver, SharedArena, hasFeature } from '../../src/index.js';
import { createQueueDevice } from '../../src/ring/create-queue.js';
import type { QueueState } from '../../src/ring/queue-state.js';
import { NET_QUEUE_COUNTERS, NetRxQueue, NetTxQueue, StatsBlock, TX_HEADER_AT, allocNetChannel, netRecvConfig } from '../../src/entries/testing.js';
import { F_IN_ORDER, F_RING_PACKED, bit } from '../../src/spec/features.js';
import { NET_HDR_SIZE, netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { allocRecvPool } from '../../src/virtskb/index.js';
import type { NetRxPacket } from '../../src/net/net-rx-packet.js';
import { netRig, readDriverFeatures } from './harness.js';

const QUEUE_SIZE = 64;
const BATCH = 32;
const FRAME = 64;
/** Packed descriptor flags (2.8.1). */
const AVAIL = 1 << 7;
const USED = 1 << 15;

/** Negotiate `wanted` on a fresh net device; the accepted set and the states of queue pair 0. */
async function negotiated(wanted: FeatureSet, bytes?: number) {
  const rig = netRig({ bytes });
  const features = await rig.driver.negotiate(wanted);
  expect(readDriverFeatures(rig.pci)).toBe(features);
  const rx = rig.driver.setupQueue(netRxQueue(0), { size: QUEUE_SIZE });
  const tx = rig.driver.setupQueue(netTxQueue(0), { size: QUEUE_SIZE });
  return { ...rig, features, rx, tx };
}

/** Frame k of a round: its bytes say which it is. */
function frameOf(k: number): Uint8Array {
  const f = new Uint8Array(FRAME);
  for (let j = 0; j < FRAME; j++) f[j] = (k * 7 + j) & 0xff;
  return f;
}

/** A guest's queue pair on `rx`/`tx`, its transmitq looped to its receiveq through a port channel, the device's handlers polled by hand. */
function loopedPair(r: Awaited<ReturnType<typeof negotiated>>) {
  const { memory, alloc, features, rx, tx } = r;
  const word = () => ({ buffer: new SharedArrayBuffer(64), index: 0 });
  const recv = netRecvConfig(features, 1500);
  const stride = Math.ceil((TX_HEADER_AT + NET_HDR_SIZE + 1518) / 64) * 64;
  const pair = new NetPairDriver(memory, features, 1500, {
    rx,
    tx,
    rxPool: allocRecvPool(alloc, QUEUE_SIZE, recv),
    txBuffers: { base: alloc.alloc(QUEUE_SIZE * stride, 64), count: QUEUE_SIZE, stride },
    rxKick: word(),
    txKick: word(),
  });
  // The channel is the device's, outside guest memory.
  const channel = allocNetChannel(new SharedArena(1 << 18), 1 << 17, 1518, word(), word());
  const stats = StatsBlock.create(2, NET_QUEUE_COUNTERS);
  const ctx = <P>(queue: number, state: QueueState, params: P) => ({ queue, memory, device: createQueueDevice(memory, state), stats, interrupt() {}, params });
  const txq = new NetTxQueue(ctx(1, tx, { output: { channels: [channel], active: null }, hdrSize: NET_HDR_SIZE, offloads: 0, maxPlainFrame: 1518 }));
  const rxq = new NetRxQueue(ctx(0, rx, { inputs: [channel], hdrSize: NET_HDR_SIZE, mode: recv.mode, offloads: 0, mtu: 1500, filter: null }));
  const drain = (h: { poll(): number }) => {
    let n = 0;
    for (let k = h.poll(); k !== 0; k = h.poll()) n += k;
    return n;
  };
  return { pair, pollTx: () => drain(txq), pollRx: () => drain(rxq) };
}

describe('VIRTIO_F_IN_ORDER (2.7.5 / 2.8.9): the net guest and device', () => {
  it('2.7.5: the guest takes IN_ORDER only with packed rings (its split driver does not use descriptors in table order)', async () => {
    const packed = await negotiated(NET_DEFAULT_FEATURES | bit(F_IN_ORDER) | bit(F_RING_PACKED));
    expect(hasFeature(packed.features, F_IN_ORDER)).toBe(true);
    expect([packed.rx.inOrder, packed.tx.inOrder]).toEqual([true, true]);
    const split = await negotiated((NET_DEFAULT_FEATURES | bit(F_IN_ORDER)) & ~bit(F_RING_PACKED));
    expect(hasFeature(split.features, F_IN_ORDER)).toBe(false);
    expect([split.rx.inOrder, split.tx.inOrder]).toEqual([false, false]);
  });

  it('2.8.9 in-order use of descriptors: a transmitted batch comes back as one used descriptor naming its last buffer; the guest reclaims every buffer, and every frame arrives once, in order, with its length and bytes', async () => {
    const r = await negotiated(NET_DEFAULT_FEATURES | bit(F_IN_ORDER) | bit(F_RING_PACKED), 1 << 20);
    expect(r.tx.inOrder).toBe(true);
    const { pair, pollTx, pollRx } = loopedPair(r);
    const flagsAt = (i: number) => r.memory.readU16(r.tx.desc + 16 * i + 14);
    const idAt = (i: number) => r.memory.readU16(r.tx.desc + 16 * i + 12);
    pair.fillRx();
    const got: number[][] = [];
    const onPacket = (p: NetRxPacket) => {
      const b = new Uint8Array(p.length);
      p.copyTo(b);
      got.push([...b]);
    };
    // Three rounds: the second and third reuse the buffers (ids, ring slots) the first gave back, across the ring's wrap.
    for (let round = 0; round < 3; round++) {
      const start = (round * BATCH) % QUEUE_SIZE;
      for (let k = 0; k < BATCH; k++) expect(pair.send(frameOf(round * BATCH + k))).toBe(true);
      pair.flushTx();
      const lastId = idAt(start + BATCH - 1);
      expect(pollTx()).toBe(BATCH);
      // Buffers used completely (nothing written) fold into one used descriptor, at the batch's first slot (2.8.9).
      const wrap = round < 2 ? AVAIL | USED : 0;
      const used = [...Array(BATCH).keys()].filter((j) => (flagsAt(start + j) & (AVAIL | USED)) === wrap);
      expect(used, `round ${round}: used descriptors of the batch, by slot from its first`).toEqual([0]);
      expect(idAt(start)).toBe(lastId);
      expect(pair.reclaimTx()).toBe(BATCH);
      expect(pair.tx.pending).toBe(0);
      expect(pollRx()).toBe(BATCH);
      got.length = 0;
      expect(pair.receive(onPacket)).toBe(BATCH);
      expect(got).toEqual([...Array(BATCH).keys()].map((k) => [...frameOf(round * BATCH + k)]));
    }
    const s = pair.stats();
    expect([s.rxPackets, s.rxLengthErrors, s.rxNumBuffersErrors, s.rxBadIdErrors, s.rxIndexErrors]).toEqual([3 * BATCH, 0, 0, 0, 0]);
  });

  it('2.8.9 / 2.8.21: the used descriptor a transmitted batch shares is written once, when the device publishes; until then the ring holds what the driver wrote', async () => {
    const r = await negotiated(NET_DEFAULT_FEATURES | bit(F_IN_ORDER) | bit(F_RING_PACKED), 1 << 20);
    const { pair } = loopedPair(r);
    for (let k = 0; k < BATCH; k++) expect(pair.send(frameOf(k))).toBe(true);
    pair.flushTx();
    const ringWords = () => [...Array(4 * BATCH).keys()].map((w) => r.memory.readU32(r.tx.desc + 4 * w));
    const written = ringWords();
    const device = createQueueDevice(r.memory, r.tx);
    const chain = device.newChain();
    let lastId = -1;
    for (let k = 0; k < BATCH; k++) {
      expect(device.pop(chain)).toBe(true);
      lastId = chain.head;
      device.pushUsed(chain.head, 0);
    }
    // The driver polls the batch's first slot: pushes write nothing there (nor anywhere) before the publish.
    expect(ringWords()).toEqual(written);
    device.publishUsed();
    const after = ringWords();
    expect(r.memory.readU16(r.tx.desc + 12)).toBe(lastId);
    expect(r.memory.readU16(r.tx.desc + 14) & (AVAIL | USED)).toBe(AVAIL | USED);
    // Only the first slot's id, length and flags changed; the other 31 descriptors are as the driver wrote them.
    expect(after.slice(4)).toEqual(written.slice(4));
    expect(pair.reclaimTx()).toBe(BATCH);
  });
});
