/**
 * vhost-user conformance: an independent front end (test/support/vhost-user/
 * front-end.ts, wire layouts written from QEMU's docs/interop/vhost-user.rst)
 * drives the back end of src/vhost-user/ and checks it against the spec's
 * rules, one rule per test. The back end's device is linked to an
 * in-process NIC driven by NetDriver, so data-path rules are checked end to
 * end. Workers load from dist/: build first.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FE_MAC,
  F_PROTOCOL_FEATURES,
  FLAG_NEED_REPLY,
  FrontEnd,
  type FrontEndRx,
  NET_FEATURES,
  NIC_MAC,
  type NetRig,
  PF,
  R,
  RAM_GPA,
  RAM_SIZE,
  RAM_UVA,
  RX,
  RX_BASE,
  S,
  TX,
  TX_BASE,
  VF,
  VERSION_1,
  exchange,
  frame,
  netRig,
  seqOf,
  takeRx,
  u64,
  until,
  upNet,
  vringState,
} from '../support/vhost-user/front-end.js';
import { serveVhostUserVsock } from '../../src/vhost-user/index.js';

let rig: NetRig | undefined;
const frontEnds: FrontEnd[] = [];

async function newRig(): Promise<NetRig> {
  rig = await netRig();
  return rig;
}

function track(fe: FrontEnd): FrontEnd {
  frontEnds.push(fe);
  return fe;
}

afterEach(async () => {
  for (const fe of frontEnds.splice(0)) fe.close();
  await rig?.close();
  rig = undefined;
});

const bit = (features: bigint, b: bigint): boolean => ((features >> b) & 1n) === 1n;

describe('vhost-user: message rules', () => {
  it('GET_FEATURES offers VHOST_USER_F_PROTOCOL_FEATURES (bit 30), VERSION_1, and none of the control-queue features', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    const f = await fe.requestU64(R.GET_FEATURES);
    expect(bit(f, 30n)).toBe(true);
    expect(bit(f, 32n)).toBe(true); // VIRTIO_F_VERSION_1
    // The control virtqueue stays with the front end: CTRL_VQ (17), CTRL_RX (18), CTRL_VLAN (19), GUEST_ANNOUNCE (21), MQ (22), CTRL_MAC_ADDR (23).
    for (const b of [17n, 18n, 19n, 21n, 22n, 23n]) expect(bit(f, b), `bit ${b}`).toBe(false);
  });

  it('a reply carries the request number and flags 0x5 (version 1 | reply), and GET_FEATURES tolerates a zeroed u64 payload', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    fe.send(R.GET_FEATURES, u64(0n));
    const reply = await fe.readReply();
    expect(reply.request).toBe(R.GET_FEATURES);
    expect(reply.flags).toBe(0x5);
    expect(reply.payload.length).toBe(8);
  });

  it('GET_PROTOCOL_FEATURES offers REPLY_ACK, RESET_DEVICE, STATUS and MQ (GET_QUEUE_NUM 1), not CONFIG for net; GET_MAX_MEM_SLOTS 8', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    const p = await fe.requestU64(R.GET_PROTOCOL_FEATURES);
    for (const want of [PF.REPLY_ACK, PF.RESET_DEVICE, PF.STATUS, PF.MQ]) expect(p & want).toBe(want);
    // Net front ends keep their config space (QEMU warns when a net back end offers CONFIG).
    expect(p & PF.CONFIG).toBe(0n);
    await fe.request(R.SET_PROTOCOL_FEATURES, u64(p));
    expect(await fe.requestU64(R.GET_QUEUE_NUM)).toBe(1n);
    expect(await fe.requestU64(R.GET_MAX_MEM_SLOTS)).toBe(8n);
  });

  it('REPLY_ACK: a request with NEED_REPLY gets a u64 0 reply; a refused one gets a non-zero reply and the connection stays', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.request(R.SET_PROTOCOL_FEATURES, u64(PF.REPLY_ACK));
    expect(await fe.requestU64(R.SET_OWNER, undefined, { needReply: true })).toBe(0n);
    expect(await fe.requestU64(R.SET_FEATURES, u64(VF.VERSION_1 | F_PROTOCOL_FEATURES), { needReply: true })).toBe(0n);
    // SET_CONFIG on a read-only config space: refused, acked with a failure.
    const cfg = new Uint8Array(12 + 6);
    new DataView(cfg.buffer).setUint32(4, 6, true);
    expect(await fe.requestU64(R.SET_CONFIG, cfg, { needReply: true })).not.toBe(0n);
    // Still served.
    expect(await fe.requestU64(R.GET_QUEUE_NUM)).toBe(1n);
  });

  it('REPLY_ACK: a request that has its own reply gets only that reply under NEED_REPLY', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.request(R.SET_PROTOCOL_FEATURES, u64(PF.REPLY_ACK));
    const f = await fe.requestU64(R.GET_FEATURES, undefined, { needReply: true });
    expect(bit(f, 30n)).toBe(true);
    expect(await fe.quiet(100)).toBe(true);
  });

  it('REPLY_ACK not negotiated: NEED_REPLY is ignored (no ack is sent)', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    fe.send(R.SET_OWNER, new Uint8Array(0), [], VERSION_1 | FLAG_NEED_REPLY);
    expect(await fe.quiet(100)).toBe(true);
    expect(await fe.requestU64(R.GET_QUEUE_NUM)).toBe(1n);
  });

  it('GET_STATUS returns what SET_STATUS set (FEATURES_OK once SET_FEATURES was accepted), and 0 after SET_STATUS 0', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.request(R.SET_PROTOCOL_FEATURES, u64(PF.STATUS | PF.REPLY_ACK));
    fe.protocolFeatures = PF.STATUS | PF.REPLY_ACK;
    expect(await fe.requestU64(R.SET_STATUS, u64(BigInt(S.ACKNOWLEDGE)), { needReply: true })).toBe(0n);
    expect(await fe.requestU64(R.GET_STATUS)).toBe(BigInt(S.ACKNOWLEDGE));
    await fe.request(R.SET_STATUS, u64(BigInt(S.ACKNOWLEDGE | S.DRIVER)));
    expect(await fe.requestU64(R.GET_STATUS)).toBe(BigInt(S.ACKNOWLEDGE | S.DRIVER));
    expect(await fe.requestU64(R.SET_FEATURES, u64(VF.VERSION_1 | F_PROTOCOL_FEATURES), { needReply: true })).toBe(0n);
    const ok = S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK;
    await fe.request(R.SET_STATUS, u64(BigInt(ok)));
    expect(await fe.requestU64(R.GET_STATUS)).toBe(BigInt(ok));
    await fe.request(R.SET_STATUS, u64(BigInt(ok | S.DRIVER_OK)));
    expect(await fe.requestU64(R.GET_STATUS)).toBe(BigInt(ok | S.DRIVER_OK));
    await fe.request(R.SET_STATUS, u64(0n));
    expect(await fe.requestU64(R.GET_STATUS)).toBe(0n);
  });

  it('GET_CONFIG (vsock, CONFIG offered) returns the device config space: guest_cid at offset 0', async () => {
    const path = join(tmpdir(), `vu-vsock-${process.pid}-${Date.now()}.sock`);
    const server = serveVhostUserVsock(path, { guestCid: 0x1234_5678 });
    const fe = track(FrontEnd.connect(path));
    try {
      const p = await fe.requestU64(R.GET_PROTOCOL_FEATURES);
      expect(p & PF.CONFIG).toBe(PF.CONFIG);
      await fe.request(R.SET_PROTOCOL_FEATURES, u64(PF.CONFIG));
      const req = new Uint8Array(12 + 8);
      new DataView(req.buffer).setUint32(4, 8, true);
      const reply = await fe.request(R.GET_CONFIG, req);
      expect(reply?.length).toBe(20);
      const v = new DataView(reply!.buffer, reply!.byteOffset, 20);
      expect(v.getUint32(4, true)).toBe(8);
      expect(v.getBigUint64(12, true)).toBe(0x1234_5678n);
    } finally {
      fe.close();
      await server.close();
    }
  });

  it("the 'disconnected' event reports the hang-up and a summary of what the front end negotiated", async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path));
    fe.closeSocket();
    await until(() => r.disconnects.length === 1, 5000, 'the disconnect');
    const d = r.disconnects[0];
    expect(d.reason).toMatch(/closed/);
    // SessionSummary.features: the last SET_FEATURES, VHOST_USER_F_PROTOCOL_FEATURES (bit 30) included.
    expect(BigInt(`0x${d.summary.features}`)).toBe(NET_FEATURES);
    expect(d.summary.regions).toBe(1);
    expect(d.summary.memoryBytes).toBe(RAM_SIZE);
    expect(d.summary.messages.SET_MEM_TABLE).toBe(1);
    expect(r.server.connected).toBe(false);
  });
});

describe('vhost-user: rings', () => {
  it('a ring starts on its kick and GET_VRING_BASE returns where it stopped', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
    await fe.setMemTable();
    await fe.setupRing(RX, 64, ram, RX_BASE);
    const tx = await fe.setupRing(TX, 64, ram, TX_BASE);
    for (let i = 0; i < 5; i++) tx.postTx(frame(NIC_MAC, FE_MAC, i));
    fe.kick(TX); // the eventfd counts; the back end has no kick fd yet
    await fe.request(R.SET_VRING_ENABLE, vringState(TX, 1), fe.ack());
    await sleep(200);
    r.pump();
    expect(r.received.length, 'frames moved before the ring had its kick').toBe(0);
    expect(tx.usedIdx).toBe(0);
    // SET_VRING_KICK: the ring starts, and the kick already pending on the eventfd is seen.
    await fe.request(R.SET_VRING_KICK, u64(BigInt(TX)), { ...fe.ack(), fds: [fe.rings.get(TX)!.fds.kick] });
    await until(() => (r.pump(), r.received.length === 5), 5000, 'the 5 frames');
    expect(r.received.map(seqOf)).toEqual([0, 1, 2, 3, 4]);
    await until(() => tx.usedIdx === 5, 2000, 'used.idx 5');
    expect(await fe.getVringBase(TX)).toBe(5);
    // Stopped: a new frame and a kick move nothing.
    tx.postTx(frame(NIC_MAC, FE_MAC, 5));
    fe.kick(TX);
    await sleep(200);
    r.pump();
    expect(r.received.length).toBe(5);
    expect(tx.usedIdx).toBe(5);
  });

  it('ring addresses are front-end virtual addresses translated through the memory table (two regions, uva != gpa)', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    // Region A low in gpa and high in uva; region B the other way round; rings in B.
    fe.addRam(1 << 20, 0x10_0000n, 0x7fff_0000_0000n);
    const b = fe.addRam(2 << 20, 0x2_0000_0000n, 0x5555_0000_0000n);
    await fe.setMemTable();
    const rx = await fe.setupRing(RX, 64, b, b.gpa + 0x1000n);
    await fe.setupRing(TX, 64, b, b.gpa + 0x10_0000n);
    rx.postRx(64);
    await fe.startRing(RX);
    await fe.startRing(TX);
    const { atNic, atFrontEnd } = await exchange(r, fe, 3);
    expect(atNic.map(seqOf)).toEqual([1000, 1001, 1002]);
    expect(atFrontEnd.map((x) => seqOf(x.frame))).toEqual([501_000, 501_001, 501_002]);
  });

  it('a ring address given as a guest-physical address (in no region of the front-end virtual space) is refused', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
    await fe.setMemTable();
    const tx = await fe.setupRing(TX, 64, ram, TX_BASE);
    // Re-send the address as gpas: a back end that used them untranslated would find the ring.
    const { vringAddr } = await import('../support/vhost-user/front-end.js');
    fe.send(R.SET_VRING_ADDR, vringAddr(TX, tx.descGpa, tx.usedGpa, tx.availGpa));
    fe.send(R.SET_VRING_KICK, u64(BigInt(TX)), [fe.rings.get(TX)!.fds.kick]);
    fe.send(R.SET_VRING_ENABLE, vringState(TX, 1));
    expect(await fe.waitHangUp()).toBe(true);
    await until(() => r.disconnects.length === 1, 5000, 'the disconnect');
    expect(r.logs.join('\n')).toMatch(/in no memory region/);
  });

  it("a frame the front end posts on the tx ring reaches the linked NIC; a frame sent by the linked NIC's NetDriver lands in the front end's rx ring with a valid virtio_net_hdr and num_buffers", async () => {
    const r = await newRig();
    // 256-byte receive buffers: a 600-byte frame needs 3 of them (12-byte header + 600 bytes).
    const fe = track(await upNet(r.path, { rxSlot: 256 }));
    const { atNic, atFrontEnd } = await exchange(r, fe, 4);
    expect(atNic.map(seqOf)).toEqual([1000, 1001, 1002, 1003]);
    expect(atNic.every((f, i) => f.length === 64 && f.every((x, k) => x === frame(NIC_MAC, FE_MAC, 1000 + i)[k]))).toBe(true);
    for (const [i, x] of atFrontEnd.entries()) {
      expect(x.numBuffers).toBe(1);
      expect(x.gsoType).toBe(0); // VIRTIO_NET_HDR_GSO_NONE
      expect(x.hdrFlags & ~0x2).toBe(0); // at most DATA_VALID
      expect(Array.from(x.frame)).toEqual(Array.from(frame(FE_MAC, NIC_MAC, 501_000 + i)));
    }
    // A frame spanning mergeable buffers.
    const big = frame(FE_MAC, NIC_MAC, 77, 600);
    r.driver.send(big);
    r.driver.flushTx();
    const got: FrontEndRx[] = [];
    await until(() => (takeRx(fe, got), fe.kick(RX), got.length === 1), 5000, 'the 600-byte frame');
    expect(got[0].numBuffers).toBe(3);
    expect(Array.from(got[0].frame)).toEqual(Array.from(big));
  });

  it('restart after GET_VRING_BASE resumes without loss or duplicates (tx and rx)', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path, { rxBuffers: 16 }));
    const tx = fe.ring(TX);
    const rx = fe.ring(RX);
    await exchange(r, fe, 3, 0);
    // tx: stop, post while stopped, restart from the base the back end returned.
    const txBase = await fe.getVringBase(TX);
    expect(txBase).toBe(tx.availIdx);
    for (let i = 3; i < 10; i++) tx.postTx(frame(NIC_MAC, FE_MAC, i));
    fe.kick(TX);
    await sleep(150);
    r.pump();
    expect(r.received.length).toBe(3);
    await fe.configureRing(TX, txBase);
    await fe.startRing(TX);
    fe.kick(TX);
    await until(() => (r.pump(), r.received.length >= 10), 5000, 'the frames posted while stopped');
    await sleep(100);
    r.pump();
    expect(r.received.map(seqOf)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await until(() => tx.usedIdx === 10, 2000, 'tx used.idx 10');
    tx.takeUsed();
    // rx: the base is the avail index the device consumed (3 frames, one buffer each).
    const rxBase = await fe.getVringBase(RX);
    expect(rxBase).toBe(3);
    expect(rx.usedIdx).toBe(3);
    await fe.configureRing(RX, rxBase);
    await fe.startRing(RX);
    fe.kick(RX);
    const got: FrontEndRx[] = [];
    takeRx(fe, got); // the 3 frames of the first exchange were taken already
    for (let i = 0; i < 5; i++) r.driver.send(frame(FE_MAC, NIC_MAC, 200 + i));
    r.driver.flushTx();
    await until(() => (takeRx(fe, got), fe.kick(RX), got.length >= 5), 5000, 'frames after the rx restart');
    await sleep(100);
    takeRx(fe, got);
    expect(got.map((x) => seqOf(x.frame))).toEqual([200, 201, 202, 203, 204]);
    expect(rx.usedIdx).toBe(8); // used.idx continued from memory
  });

  it('GET_VRING_BASE in the middle of a stream: every descriptor before the base is in the used ring, none after (tx and mergeable rx)', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path, { rxSlot: 256, ringSize: 256, rxBuffers: 256 }));
    const tx = fe.ring(TX);
    const rx = fe.ring(RX);
    // tx: 200 frames posted in batches, the ring stopped while they move.
    for (let i = 0; i < 200; i++) {
      tx.postTx(frame(NIC_MAC, FE_MAC, i, 300));
      if (i % 20 === 19) fe.kick(TX);
    }
    await until(() => tx.usedIdx > 0, 5000, 'tx to begin');
    const txBase = await fe.getVringBase(TX);
    await sleep(100);
    expect(tx.usedIdx, 'tx used.idx against the base').toBe(txBase);
    await until(() => (r.pump(), r.received.length >= txBase), 5000, 'the frames before the base at the NIC');
    await sleep(100);
    r.pump();
    expect(r.received.map(seqOf)).toEqual(Array.from({ length: txBase }, (_, i) => i));
    // rx: 600-byte frames take 3 buffers each; stop while they stream in.
    for (let i = 0; i < 60; i++) r.driver.send(frame(FE_MAC, NIC_MAC, 1000 + i, 600));
    r.driver.flushTx();
    await until(() => rx.usedIdx > 0, 5000, 'rx to begin');
    const rxBase = await fe.getVringBase(RX);
    await sleep(100);
    expect(rx.usedIdx, 'rx used.idx (buffers) against the base').toBe(rxBase);
    const got: FrontEndRx[] = [];
    takeRx(fe, got);
    expect(got.every((x) => x.numBuffers === 3 && x.frame.length === 600)).toBe(true);
  });

  it('EVENT_IDX: the call eventfd is signalled only when used_event is crossed', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path, { features: NET_FEATURES | VF.EVENT_IDX }));
    expect(fe.features & VF.EVENT_IDX).toBe(VF.EVENT_IDX);
    const tx = fe.ring(TX);
    const ram = fe.rams[0];
    const usedEventAt = ram.off(tx.availGpa) + 4 + 2 * tx.size;
    // used_event = 5: no interrupt for the used entries 1..5 (idx 0..4), one when idx 5 is used (the 6th).
    ram.dv.setUint16(usedEventAt, 5, true);
    fe.takeCalls(TX);
    for (let i = 0; i < 5; i++) tx.postTx(frame(NIC_MAC, FE_MAC, i));
    fe.kick(TX);
    await until(() => tx.usedIdx === 5, 5000, '5 frames used');
    await sleep(100);
    expect(fe.takeCalls(TX), 'interrupt before used_event was crossed').toBe(0n);
    tx.postTx(frame(NIC_MAC, FE_MAC, 5));
    fe.kick(TX);
    await until(() => tx.usedIdx === 6, 5000, 'the 6th frame used');
    let calls = 0n;
    await until(() => (calls += fe.takeCalls(TX)) > 0n, 2000, 'the interrupt once used_event was crossed');
  });

  it('SET_VRING_BASE N: GET_VRING_BASE of the unstarted ring returns N, and the ring starts consuming at avail index N', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
    await fe.setMemTable();
    const tx = await fe.setupRing(TX, 64, ram, TX_BASE, 2048, 65530);
    expect(await fe.getVringBase(TX)).toBe(65530);
    await fe.configureRing(TX, 65530);
    // 10 frames: the indexes wrap past 65535.
    for (let i = 0; i < 10; i++) tx.postTx(frame(NIC_MAC, FE_MAC, i));
    await fe.startRing(TX);
    fe.kick(TX);
    await until(() => (r.pump(), r.received.length >= 10), 5000, 'the 10 frames');
    expect(r.received.map(seqOf)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await until(() => tx.usedIdx === 4, 2000, 'used.idx to wrap to 4');
    expect(tx.takeUsed().length).toBe(10);
    expect(await fe.getVringBase(TX)).toBe(4);
  });

  it('SET_VRING_KICK with the "no fd" bit (polling mode): the ring runs without kicks, or the request is refused', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    const ram = fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA);
    await fe.setMemTable();
    const tx = await fe.setupRing(TX, 64, ram, TX_BASE);
    const ack = await fe.requestU64(R.SET_VRING_KICK, u64(BigInt(TX) | 0x100n), { needReply: true });
    if (ack !== 0n) return; // refused: the front end knows to give a kick fd
    await fe.request(R.SET_VRING_ENABLE, vringState(TX, 1), fe.ack());
    await sleep(200); // the ring is running and idle
    for (let i = 0; i < 3; i++) tx.postTx(frame(NIC_MAC, FE_MAC, i));
    // No kick can be sent: the back end must poll.
    await until(() => (r.pump(), r.received.length >= 3), 3000, 'frames on a ring without a kick fd');
  });

  it('the call eventfd is signalled when the driver did not suppress interrupts, and not when it set VRING_AVAIL_F_NO_INTERRUPT', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path));
    const tx = fe.ring(TX);
    fe.takeCalls(TX);
    tx.suppressInterrupts(true);
    tx.postTx(frame(NIC_MAC, FE_MAC, 1));
    fe.kick(TX);
    await until(() => tx.usedIdx === 1, 5000, 'the first frame used');
    await sleep(100);
    expect(fe.takeCalls(TX)).toBe(0n);
    tx.suppressInterrupts(false);
    tx.postTx(frame(NIC_MAC, FE_MAC, 2));
    fe.kick(TX);
    await until(() => tx.usedIdx === 2, 5000, 'the second frame used');
    let calls = 0n;
    await until(() => (calls += fe.takeCalls(TX)) > 0n, 2000, 'the call eventfd');
    // rx too: a frame from the NIC interrupts the front end.
    fe.takeCalls(RX);
    r.driver.send(frame(FE_MAC, NIC_MAC, 3));
    r.driver.flushTx();
    let rxCalls = 0n;
    await until(() => (rxCalls += fe.takeCalls(RX)) > 0n, 5000, 'the rx call eventfd');
    expect(fe.ring(RX).usedIdx).toBe(1);
  });

  it('SET_VRING_CALL while the ring runs: interrupts go to the new eventfd', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path));
    const tx = fe.ring(TX);
    const fresh = fe.eventfd();
    await fe.request(R.SET_VRING_CALL, u64(BigInt(TX)), { ...fe.ack(), fds: [fresh] });
    fe.takeCalls(TX);
    tx.postTx(frame(NIC_MAC, FE_MAC, 9));
    fe.kick(TX);
    await until(() => tx.usedIdx === 1, 5000, 'the frame used');
    const b = new BigUint64Array(1);
    const { read } = await import('../../src/os/libc.js');
    await until(() => read(fresh, new Uint8Array(b.buffer)) === 8, 2000, 'the new call eventfd');
    expect(fe.takeCalls(TX)).toBe(0n);
  });

  it('SET_MEM_TABLE while the rings run (memory hotplug): the rings restart where they stopped and traffic goes on without loss', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path, { rxBuffers: 32 }));
    await exchange(r, fe, 3, 0);
    fe.addRam(1 << 20, 0x1_0000_0000n, 0x7f55_0000_0000n);
    await fe.setMemTable();
    // Frames posted right after the new table are not lost.
    await exchange(r, fe, 3, 3);
    expect(r.received.map(seqOf)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(fe.ring(TX).usedIdx).toBe(6);
    expect(fe.ring(RX).usedIdx).toBe(6);
    expect(r.server.summary()?.regions).toBe(2);
  });

  it('SET_VRING_ENABLE 0 stops a ring with its state kept; SET_VRING_ENABLE 1 resumes it without loss', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path));
    const tx = fe.ring(TX);
    await exchange(r, fe, 2, 0);
    await fe.request(R.SET_VRING_ENABLE, vringState(TX, 0), fe.ack());
    for (let i = 2; i < 6; i++) tx.postTx(frame(NIC_MAC, FE_MAC, i));
    fe.kick(TX);
    await sleep(150);
    r.pump();
    expect(r.received.length, 'frames moved on a disabled ring').toBe(2);
    await fe.request(R.SET_VRING_ENABLE, vringState(TX, 1), fe.ack());
    fe.kick(TX);
    await until(() => (r.pump(), r.received.length >= 6), 5000, 'the frames posted while disabled');
    await sleep(100);
    r.pump();
    expect(r.received.map(seqOf)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('without VHOST_USER_F_PROTOCOL_FEATURES negotiated, rings start enabled: the kick alone starts them', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path, { features: NET_FEATURES & ~F_PROTOCOL_FEATURES }));
    expect(fe.features & F_PROTOCOL_FEATURES).toBe(0n);
    const { atNic, atFrontEnd } = await exchange(r, fe, 2);
    expect(atNic.length).toBe(2);
    expect(atFrontEnd.length).toBe(2);
  });

  it('SET_VRING_NUM above the device maximum is refused with a REPLY_ACK failure and the connection stays', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
    expect(await fe.requestU64(R.SET_VRING_NUM, vringState(TX, 32768), { needReply: true })).not.toBe(0n);
    expect(await fe.requestU64(R.SET_VRING_NUM, vringState(TX, 256), { needReply: true })).toBe(0n);
  });

  it('2.8.10.1: with VIRTIO_F_RING_PACKED negotiated SET_VRING_NUM takes sizes that are not a power of two (up to the device maximum)', async () => {
    const r = await newRig();
    const fe = track(FrontEnd.connect(r.path));
    await fe.negotiate({ features: NET_FEATURES | VF.RING_PACKED, protocolFeatures: PF.REPLY_ACK });
    expect(fe.features & VF.RING_PACKED).toBe(VF.RING_PACKED);
    for (const size of [1, 3, 100, 255]) expect(await fe.requestU64(R.SET_VRING_NUM, vringState(TX, size), { needReply: true }), `size ${size}`).toBe(0n);
    expect(await fe.requestU64(R.SET_VRING_NUM, vringState(TX, 32767), { needReply: true })).not.toBe(0n);
  });

  it('RESET_DEVICE stops the rings; set up again, the front end moves traffic', async () => {
    const r = await newRig();
    const fe = track(await upNet(r.path));
    await exchange(r, fe, 2, 0);
    await fe.request(R.SET_PROTOCOL_FEATURES, u64(PF.REPLY_ACK | PF.RESET_DEVICE));
    fe.protocolFeatures = PF.REPLY_ACK | PF.RESET_DEVICE;
    expect(await fe.requestU64(R.RESET_DEVICE, undefined, { needReply: true })).toBe(0n);
    fe.ring(TX).postTx(frame(NIC_MAC, FE_MAC, 50));
    fe.kick(TX);
    await sleep(150);
    r.pump();
    expect(r.received.length, 'a frame moved after RESET_DEVICE').toBe(2);
    // Bring it up again from scratch: features, rings at base 0 in fresh memory.
    expect(await fe.requestU64(R.SET_FEATURES, u64(NET_FEATURES), { needReply: true })).toBe(0n);
    const ram = fe.rams[0];
    const rx = await fe.setupRing(RX, 64, ram, RX_BASE);
    await fe.setupRing(TX, 64, ram, TX_BASE);
    rx.postRx(64);
    await fe.startRing(RX);
    await fe.startRing(TX);
    const { atNic, atFrontEnd } = await exchange(r, fe, 2, 60);
    expect(atNic.map(seqOf)).toEqual([60, 61]);
    expect(atFrontEnd.length).toBe(2);
  });

  it('a second front end that connects while the first is served waits, and is served once the first hangs up', async () => {
    const r = await newRig();
    const first = track(await upNet(r.path));
    const second = track(FrontEnd.connect(r.path));
    second.send(R.GET_FEATURES);
    expect(await second.quiet(200)).toBe(true);
    first.closeSocket();
    const reply = await second.readReply(5000);
    expect(reply.request).toBe(R.GET_FEATURES);
  });

  it('a second front end is served after the first hangs up (memory and rings set up afresh)', async () => {
    const r = await newRig();
    const first = track(await upNet(r.path));
    await exchange(r, first, 2, 10);
    first.closeSocket();
    await until(() => r.disconnects.length === 1, 5000, 'the disconnect');
    const second = track(await upNet(r.path));
    const { atNic } = await exchange(r, second, 2, 20);
    expect(atNic.map(seqOf)).toEqual([20, 21]);
  });
});
