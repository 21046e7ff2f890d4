/**
 * The virtio-vsock receiveq through a real 'vsock-rx' worker (5.10.6.3): raw
 * host channel ends put packets on toGuest, a raw driver posts buffers and
 * reads what the device wrote.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { VirtqueueError } from '../../../src/index.js';
import { PortChannelConsumer } from '../../../src/port/port-channel.js';
import { VSOCK_F_MRG_RXBUF, bit } from '../../../src/spec/features.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../../src/spec/status.js';
import { VSOCK_HDR_SIZE, VSOCK_MAX_PKT_PAYLOAD, VSOCK_MRG_HDR_SIZE, VSOCK_OP_RW, VSOCK_OP_SHUTDOWN, VSOCK_RX_QUEUE, VSOCK_SEQ_EOM, VSOCK_SEQ_EOR, VSOCK_TYPE_SEQPACKET, VSOCK_TYPE_STREAM } from '../../../src/spec/vsock.js';
import { BASE_FEATURES, type RxBuffer, type VsockRig, collect, concat, headerOf, packet, payloadOf, sameBytes, until, vsockRig } from './vsock-rig.js';

let rig: VsockRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const HOST = { srcCid: 2, dstCid: 3, srcPort: 80, dstPort: 1024, bufAlloc: 262144, fwdCnt: 777 };
const BOTH = VSOCK_SEQ_EOM | VSOCK_SEQ_EOR;

/** Small mode: check that `bufs` are the parts of `sent` (each a header + part) and return the payload they carry. */
function checkParts(bufs: RxBuffer[], sent: Uint8Array, bufferBytes: number): Uint8Array {
  const want = headerOf(sent);
  let left = want.len;
  bufs.forEach((b, i) => {
    const h = headerOf(b.bytes);
    const last = i === bufs.length - 1;
    const part = Math.min(left, bufferBytes - VSOCK_HDR_SIZE);
    expect(h.len, `part ${i} len`).toBe(part);
    expect(b.len, `part ${i} used length`).toBe(VSOCK_HDR_SIZE + part);
    const flags = want.type === VSOCK_TYPE_SEQPACKET && !last ? want.flags & ~BOTH : want.flags;
    expect(h.flags, `part ${i} flags`).toBe(flags);
    // Every other field is the packet's own.
    expect({ ...h, len: 0, flags: 0 }).toEqual({ ...want, len: 0, flags: 0 });
    left -= part;
  });
  expect(left).toBe(0);
  return concat(bufs.map((b) => b.bytes.subarray(VSOCK_HDR_SIZE)));
}

describe('5.10.6 virtio-vsock receiveq, small buffers', () => {
  it('a packet that fits arrives in one buffer, byte-exact; a header-only packet too', async () => {
    const r = (rig = await vsockRig());
    r.post(4, 4096);
    const a = packet({ ...HOST }, payloadOf(1000, 1));
    const b = packet({ ...HOST, op: VSOCK_OP_SHUTDOWN, flags: 3 });
    expect(r.hostSend(a)).toBe(true);
    expect(r.hostSend(b)).toBe(true);
    const got = await collect(() => r.reap(), 2, 'two packets');
    expect(got.map((g) => g.len)).toEqual([a.length, b.length]);
    expect(sameBytes(got[0].bytes, a)).toBe(true);
    expect(sameBytes(got[1].bytes, b)).toBe(true);
    expect(r.vsockStats().rx.segments).toBe(0);
  });

  it('vhost_transport_do_send_pkt: a 64 KiB SEQPACKET RW packet is split over 4 KiB buffers, len rewritten, EOM/EOR only on the last part', async () => {
    const r = (rig = await vsockRig());
    r.post(24, 4096);
    const body = payloadOf(VSOCK_MAX_PKT_PAYLOAD, 7);
    const sent = packet({ ...HOST, type: VSOCK_TYPE_SEQPACKET, op: VSOCK_OP_RW, flags: BOTH }, body);
    expect(r.hostSend(sent)).toBe(true);
    const parts = Math.ceil(VSOCK_MAX_PKT_PAYLOAD / (4096 - VSOCK_HDR_SIZE));
    const got = await collect(() => r.reap(), parts, 'the parts');
    expect(got.length).toBe(parts);
    expect(sameBytes(checkParts(got, sent, 4096), body)).toBe(true);
    const s = r.vsockStats();
    expect(s.rxPackets).toBe(parts);
    expect(s.rxSplitParts).toBe(parts);
    expect(s.rxBytes).toBe(VSOCK_MAX_PKT_PAYLOAD);
    // The record is gone: the next packet comes whole.
    const next = packet({ ...HOST }, payloadOf(10, 8));
    r.hostSend(next);
    const [n] = await collect(() => r.reap(), 1, 'the next packet');
    expect(sameBytes(n.bytes, next)).toBe(true);
  });

  it('a STREAM packet keeps its flags on every part; buffers split over several descriptors (header across them) work too', async () => {
    const r = (rig = await vsockRig());
    r.post(8, 2048, r.rx, [10, 30, 8, 2000]);
    const body = payloadOf(10_000, 11);
    const sent = packet({ ...HOST, type: VSOCK_TYPE_STREAM, flags: VSOCK_SEQ_EOM }, body);
    r.hostSend(sent);
    const parts = Math.ceil(10_000 / (2048 - VSOCK_HDR_SIZE));
    const got = await collect(() => r.reap(), parts, 'the parts');
    expect(sameBytes(checkParts(got, sent, 2048), body)).toBe(true);
  });

  it('a packet cut into more parts than one batch (33 parts into 2 KiB buffers) goes on in the next batch', async () => {
    const r = (rig = await vsockRig());
    r.post(40, 2048);
    const body = payloadOf(VSOCK_MAX_PKT_PAYLOAD, 12);
    const sent = packet({ ...HOST, type: VSOCK_TYPE_SEQPACKET, flags: BOTH }, body);
    r.hostSend(sent);
    const parts = Math.ceil(VSOCK_MAX_PKT_PAYLOAD / (2048 - VSOCK_HDR_SIZE));
    expect(parts).toBeGreaterThan(32);
    const got = await collect(() => r.reap(), parts, 'the parts');
    expect(got.length).toBe(parts);
    expect(sameBytes(checkParts(got, sent, 2048), body)).toBe(true);
  });

  it('no buffer posted: the packet waits in its channel (avail_event), and goes out when the driver posts one', async () => {
    const r = (rig = await vsockRig());
    const sent = packet({ ...HOST }, payloadOf(100, 3));
    r.hostSend(sent);
    await new Promise((res) => setTimeout(res, 100));
    expect(r.device.queueStats(VSOCK_RX_QUEUE).chains).toBe(0);
    r.post(1, 4096);
    const [got] = await collect(() => r.reap(), 1, 'the packet');
    expect(sameBytes(got.bytes, sent)).toBe(true);
    expect(r.vsockStats().drops).toBe(0);
  });

  it('a split resumes across a worker stop/restart (stopQueue/startQueue): every payload byte once, nothing lost', async () => {
    const r = (rig = await vsockRig());
    r.post(5, 4096);
    const body = payloadOf(VSOCK_MAX_PKT_PAYLOAD, 21);
    const sent = packet({ ...HOST, type: VSOCK_TYPE_SEQPACKET, flags: BOTH }, body);
    r.hostSend(sent);
    const first = await collect(() => r.reap(), 5, 'the first five parts');
    await new Promise((res) => setTimeout(res, 30));
    // The record stays, with the payload bytes delivered so far as its progress.
    const look = new PortChannelConsumer(r.device.hostPort.toGuest);
    const at = look.peek();
    expect(look.len).toBe(sent.length - VSOCK_HDR_SIZE);
    expect(look.progress(at)).toBe(5 * (4096 - VSOCK_HDR_SIZE));
    const state = await r.device.stopQueue(VSOCK_RX_QUEUE);
    expect(state.nextUsed).toBe(5);
    r.device.startQueue(VSOCK_RX_QUEUE);
    r.post(3, 4096);
    const second = await collect(() => r.reap(), 3, 'three more parts');
    await r.device.stopQueue(VSOCK_RX_QUEUE);
    r.device.startQueue(VSOCK_RX_QUEUE);
    const parts = Math.ceil(VSOCK_MAX_PKT_PAYLOAD / (4096 - VSOCK_HDR_SIZE));
    r.post(parts - 8 + 2, 4096);
    const rest = await collect(() => r.reap(), parts - 8, 'the remaining parts');
    const all = [...first, ...second, ...rest];
    expect(all.length).toBe(parts);
    expect(sameBytes(checkParts(all, sent, 4096), body)).toBe(true);
    // Nothing more (no part twice), and the next packet comes whole.
    const next = packet({ ...HOST }, payloadOf(33, 4));
    r.hostSend(next);
    const after = await collect(() => r.reap(), 1, 'the next packet');
    expect(after.length).toBe(1);
    expect(sameBytes(after[0].bytes, next)).toBe(true);
    expect(r.vsockStats().rxBytes).toBe(VSOCK_MAX_PKT_PAYLOAD + 33);
  });

  it('a posted rx buffer shorter than the header is a driver error: RX_BUFFER_SHORTER_THAN_HEADER, DEVICE_NEEDS_RESET', async () => {
    const r = (rig = await vsockRig());
    r.post(1, VSOCK_HDR_SIZE - 1);
    r.hostSend(packet({ ...HOST, op: VSOCK_OP_SHUTDOWN }));
    await until(() => r.errors.length === 1, 'the queue error');
    expect(r.errors[0].queue).toBe(VSOCK_RX_QUEUE);
    expect(r.errors[0].error).toBeInstanceOf(VirtqueueError);
    expect((r.errors[0].error as VirtqueueError).code).toBe('RX_BUFFER_SHORTER_THAN_HEADER');
    expect(r.device.status & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
    expect(r.device.queueStats(VSOCK_RX_QUEUE).errorsByCode).toEqual({ RX_BUFFER_SHORTER_THAN_HEADER: 1 });
    expect(r.vsockStats().errors).toBe(1);
    // The buffer was not used.
    expect(r.reap()).toEqual([]);
  });

  it('a buffer that holds the header but no payload byte cannot carry a data packet: dropped and counted, the next packet still goes', async () => {
    const r = (rig = await vsockRig());
    r.post(1, VSOCK_HDR_SIZE);
    r.hostSend(packet({ ...HOST }, payloadOf(10, 1)));
    const ctrl = packet({ ...HOST, op: VSOCK_OP_SHUTDOWN, flags: 1 });
    r.hostSend(ctrl);
    const [got] = await collect(() => r.reap(), 1, 'the header-only packet');
    expect(sameBytes(got.bytes, ctrl)).toBe(true);
    expect(r.device.queueStats(VSOCK_RX_QUEUE).dropsTooBig).toBe(1);
  });

  it('records whose hdr.len disagrees with their payload length (shorter, longer) are dropped as malformed', async () => {
    const r = (rig = await vsockRig());
    r.post(2, 4096);
    r.hostSend(packet({ ...HOST, len: 5 }, payloadOf(6, 1)));
    r.hostSend(packet({ ...HOST, len: 7 }, payloadOf(6, 3)));
    const good = packet({ ...HOST }, payloadOf(6, 2));
    r.hostSend(good);
    const [got] = await collect(() => r.reap(), 1, 'the good packet');
    expect(sameBytes(got.bytes, good)).toBe(true);
    expect(r.device.queueStats(VSOCK_RX_QUEUE).dropsMalformed).toBe(2);
    expect(r.vsockStats().drops).toBe(2);
  });
});

describe('VSOCK_F_MRG_RXBUF: mergeable receive buffers (46-byte header, num_buffers at 44)', () => {
  const MRG = BASE_FEATURES | bit(VSOCK_F_MRG_RXBUF);

  /** The packet a mergeable packet's buffers carry: the 44-byte header and the payload, with num_buffers. */
  function mergedOf(bufs: RxBuffer[]): { numBuffers: number; packet: Uint8Array } {
    const first = bufs[0].bytes;
    const numBuffers = first[44] | (first[45] << 8);
    return { numBuffers, packet: concat([first.subarray(0, VSOCK_HDR_SIZE), first.subarray(VSOCK_MRG_HDR_SIZE), ...bufs.slice(1).map((b) => b.bytes)]) };
  }

  it('a 64 KiB packet spans num_buffers 4 KiB buffers, len not rewritten; a small packet takes one buffer with num_buffers 1', async () => {
    const r = (rig = await vsockRig({ features: MRG }));
    expect(r.device.hostPort.features).toBe(MRG.toString(16));
    r.post(40, 4096);
    const sent = packet({ ...HOST, type: VSOCK_TYPE_SEQPACKET, flags: BOTH }, payloadOf(VSOCK_MAX_PKT_PAYLOAD, 5));
    r.hostSend(sent);
    const n = Math.ceil((VSOCK_MRG_HDR_SIZE + VSOCK_MAX_PKT_PAYLOAD) / 4096);
    const got = await collect(() => r.reap(), n, 'the buffers');
    expect(got.length).toBe(n);
    expect(got.slice(0, -1).every((b) => b.len === 4096)).toBe(true);
    const m = mergedOf(got);
    expect(m.numBuffers).toBe(n);
    expect(sameBytes(m.packet, sent)).toBe(true);
    const small = packet({ ...HOST }, payloadOf(100, 6));
    r.hostSend(small);
    const [one] = await collect(() => r.reap(), 1, 'the small packet');
    expect(one.len).toBe(VSOCK_MRG_HDR_SIZE + 100);
    const ms = mergedOf([one]);
    expect(ms.numBuffers).toBe(1);
    expect(sameBytes(ms.packet, small)).toBe(true);
    expect(r.vsockStats().rxSplitParts).toBe(0);
  });

  it('a packet that needs more buffers than the ring holds is split: the first part fills the whole ring', async () => {
    const r = (rig = await vsockRig({ features: MRG, queueSize: 16 }));
    r.post(16, 4096);
    const body = payloadOf(VSOCK_MAX_PKT_PAYLOAD, 9);
    const sent = packet({ ...HOST, type: VSOCK_TYPE_SEQPACKET, flags: BOTH }, body);
    r.hostSend(sent);
    const first = await collect(() => r.reap(), 16, 'the first part');
    const a = mergedOf(first);
    const firstLen = 16 * 4096 - VSOCK_MRG_HDR_SIZE;
    expect(a.numBuffers).toBe(16);
    expect(headerOf(a.packet).len).toBe(firstLen);
    expect(headerOf(a.packet).flags).toBe(0);
    r.post(2, 4096);
    const second = await collect(() => r.reap(), 1, 'the second part');
    const b = mergedOf(second);
    expect(b.numBuffers).toBe(1);
    expect(headerOf(b.packet).len).toBe(VSOCK_MAX_PKT_PAYLOAD - firstLen);
    expect(headerOf(b.packet).flags).toBe(BOTH);
    expect(sameBytes(concat([a.packet.subarray(VSOCK_HDR_SIZE), b.packet.subarray(VSOCK_HDR_SIZE)]), body)).toBe(true);
  });
});
