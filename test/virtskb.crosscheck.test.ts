/**
 * Each side of virtskb against an independent implementation of the other,
 * written from virtio 1.2 section 5.1.6.3-5.1.6.4 (test/support/virtskb-*.ts):
 * RecvBuffers (driver) against a spec device that writes bytes by hand, and
 * RxWriter (device) against a spec driver that posts its own buffer layouts
 * and rebuilds packets from the used ring.
 */
import { describe, expect, it } from 'vitest';
import type { NetRxPacket } from '../src/net/net-rx-packet.js';
import { RX_NO_BUFFERS, RX_TOO_BIG, type RxBufferMode } from '../src/virtskb/index.js';
import { type NetHdrFields, SpecRxDevice, encodeHeader } from './support/virtskb-device.js';
import { SpecRxDriver } from './support/virtskb-driver.js';
import { firstDiff, recvRig, ringSnapshot, writerRig } from './support/virtskb-rig.js';
import { pattern } from '../src/testing/split-ring.js';

const fieldsFor = (i: number): NetHdrFields => ({
  flags: (i * 3) & 7,
  gsoType: [0, 1, 3, 4, 5, 0x81][i % 6],
  hdrLen: 54 + i,
  gsoSize: 1448 - i,
  csumStart: 34 + (i % 20),
  csumOffset: [6, 16][i % 2],
});

interface Seen {
  fields: NetHdrFields;
  numBuffers: number;
  bytes: Uint8Array;
  viaSegments: Uint8Array;
  firstDataGpa: number;
  hdrGpa: number;
}

/** Everything a callback can see of a packet, copied out. */
function record(p: NetRxPacket, bias: number): Seen {
  const bytes = new Uint8Array(p.length);
  expect(p.copyTo(bytes, 0)).toBe(p.length);
  const viaSegments = new Uint8Array(p.length);
  let off = 0;
  for (let s = 0; s < p.segCount; s++) {
    viaSegments.set(p.segU8[s].subarray(p.segIdx[s], p.segIdx[s] + p.segLen[s]), off);
    off += p.segLen[s];
  }
  expect(off).toBe(p.length);
  return {
    fields: { flags: p.flags, gsoType: p.gsoType, hdrLen: p.hdrLen, gsoSize: p.gsoSize, csumStart: p.csumStart, csumOffset: p.csumOffset },
    numBuffers: p.numBuffers,
    bytes,
    viaSegments,
    firstDataGpa: p.segCount > 0 ? p.segIdx[0] - bias : -1,
    hdrGpa: p.hdrIdx - bias,
  };
}

describe('RecvBuffers against the spec device', () => {
  const cases: Array<{ name: string; mode: RxBufferMode; size: number; hdrSize?: number; indirect?: boolean; frames: number[]; buffers?: number[] }> = [
    { name: 'small: header and frame in one descriptor (Linux >= 6.1)', mode: 'small', size: 16, frames: [1, 14, 60, 1500, 1518] },
    { name: 'small with the legacy 10-byte header', mode: 'small', size: 8, hdrSize: 10, frames: [1, 64, 1518] },
    { name: 'small with a 44-byte (vsock) header, header-only packet included', mode: 'small', size: 8, hdrSize: 44, frames: [0, 1, 1518] },
    { name: 'big over ring descriptors', mode: 'big', size: 64, frames: [1, 4032, 4033, 30000, 65550] },
    { name: 'big through indirect tables', mode: 'big', size: 32, indirect: true, frames: [1, 4032, 4033, 65550, 65550, 7] },
    { name: 'mergeable: packets of 1, 2 and 17 buffers', mode: 'mergeable', size: 32, frames: [1, 4032, 4033, 8076, 65550, 64], buffers: [1, 1, 2, 2, 17, 1] },
  ];

  it.each(cases)('$name', ({ mode, size, hdrSize = 12, indirect, frames, buffers }) => {
    const r = recvRig({ mode, size, hdrSize, indirect });
    const bias = r.rig.memory.region(r.pool.base, 1).bias;
    const dev = new SpecRxDevice(r.mini, hdrSize, mode === 'mergeable', r.numBuffersAt);
    // Small pools are whole pages, so they may hold a few slots more than the ring.
    const ringHolds = mode === 'big' && indirect !== true ? Math.floor(size / 18) : size;
    const posted = r.recv.refill();
    expect(posted).toBe(Math.min(r.recv.buffers, ringHolds));
    const idle = r.recv.buffers - posted;
    expect(r.recv.freeBuffers).toBe(idle);
    frames.forEach((len, i) => {
      const frame = pattern(len, i + 1);
      const placed = dev.deliver(encodeHeader(hdrSize, fieldsFor(i), 0xee), frame);
      expect(placed).not.toBe(0);
      r.mini.publish();
      const seen: Seen[] = [];
      expect(r.recv.receive((p) => seen.push(record(p, bias)))).toBe(1);
      expect(seen).toHaveLength(1);
      const s = seen[0];
      expect(firstDiff(s.bytes, frame)).toBe(-1);
      expect(firstDiff(s.viaSegments, frame)).toBe(-1);
      if (hdrSize >= 10) expect(s.fields).toEqual(fieldsFor(i));
      const used = placed === 0 ? [] : placed;
      expect(s.numBuffers).toBe(mode === 'mergeable' ? used.length : 1);
      if (buffers !== undefined) expect(used.length).toBe(buffers[i]);
      // Frame data starts 64-aligned in guest memory; the header sits right before it (big: at the page start).
      if (len > 0) expect(s.firstDataGpa % 64).toBe(0);
      if (mode === 'big') expect(s.hdrGpa % 4096).toBe(0);
      else if (len > 0) expect(s.firstDataGpa).toBe(s.hdrGpa + hdrSize);
      // Every buffer went back to the pool and is posted again.
      expect(r.recv.freeBuffers).toBe(idle + used.length);
      expect(r.recv.refill()).toBe(used.length);
    });
    expect(r.recv.stats).toMatchObject({ packets: frames.length, rxLengthErrors: 0, rxNumBuffersErrors: 0, rxBadIdErrors: 0, rxIndexErrors: 0 });
    expect(r.recv.stats.bytes).toBe(frames.reduce((a, b) => a + b, 0));
    expect(r.rig.guardsIntact()).toBe(true);
  });

  it('big mode posts header descriptor + page chain: indirect takes one ring slot per chain, direct takes 18', () => {
    const direct = recvRig({ mode: 'big', size: 64 });
    expect(direct.recv.refill()).toBe(3);
    expect(direct.driver.numFree).toBe(64 - 3 * 18);
    const chain = direct.mini.pop();
    expect(chain?.indirect).toBe(false);
    expect(chain?.segs.map((s) => s.len)).toEqual([12, 4032, ...Array<number>(16).fill(4096)]);
    expect(chain?.segs.every((s) => s.write)).toBe(true);
    const ind = recvRig({ mode: 'big', size: 32, indirect: true });
    expect(ind.recv.refill()).toBe(32);
    expect(ind.driver.numFree).toBe(0);
    const c = ind.mini.pop();
    expect(c?.indirect).toBe(true);
    expect(c?.segs).toHaveLength(18);
    expect(c?.segs[1].addr).toBe((c?.segs[0].addr ?? 0) + 64);
  });

  it('receive(max) stops after max packets; the rest wait for the next call', () => {
    const r = recvRig({ mode: 'mergeable', size: 16 });
    const dev = new SpecRxDevice(r.mini, 12, true);
    r.recv.refill();
    for (let i = 0; i < 5; i++) dev.deliver(encodeHeader(12, fieldsFor(i)), pattern(100 + i, i));
    r.mini.publish();
    const lens: number[] = [];
    expect(r.recv.receive((p) => lens.push(p.length), 2)).toBe(2);
    expect(r.recv.receive((p) => lens.push(p.length), 10)).toBe(3);
    expect(lens).toEqual([100, 101, 102, 103, 104]);
  });

  it('refill() publishes once and reports whether the device asked for a kick (event idx)', () => {
    const r = recvRig({ mode: 'small', size: 8, eventIdx: true });
    r.mini.setAvailEvent(0);
    expect(r.recv.refill()).toBe(8);
    expect(r.recv.kickNeeded).toBe(true);
    r.mini.setAvailEvent(100);
    const dev = new SpecRxDevice(r.mini, 12, false);
    dev.deliver(encodeHeader(12, fieldsFor(0)), pattern(10, 0));
    r.mini.publish();
    r.recv.receive(() => {});
    expect(r.recv.refill()).toBe(1);
    expect(r.recv.kickNeeded).toBe(false);
    expect(r.recv.refill()).toBe(0);
    expect(r.recv.kickNeeded).toBe(false);
  });
});

describe('RxWriter against the spec driver', () => {
  const cases: Array<{
    name: string;
    mode: RxBufferMode;
    size: number;
    hdrSize?: number;
    numBuffersAt?: number;
    splitHeader?: boolean;
    indirect?: boolean;
    mergeableBytes?: number;
    frames: number[];
    chains?: number[];
  }> = [
    { name: 'small, one descriptor per buffer', mode: 'small', size: 16, frames: [0, 1, 60, 1518] },
    { name: 'small, header in its own descriptor (pre-6.1 layout, odd addresses)', mode: 'small', size: 16, splitHeader: true, frames: [1, 1000, 1518] },
    { name: 'small, legacy 10-byte header without num_buffers', mode: 'small', size: 8, hdrSize: 10, numBuffersAt: -1, frames: [1, 1518] },
    { name: 'small, 44-byte vsock header without num_buffers', mode: 'small', size: 8, hdrSize: 44, numBuffersAt: -1, frames: [0, 1, 1518] },
    { name: 'big over ring descriptors, header sharing the first page', mode: 'big', size: 64, frames: [1, 4084, 4085, 65550] },
    { name: 'big over ring descriptors, header descriptor of its own', mode: 'big', size: 64, splitHeader: true, frames: [1, 65550] },
    { name: 'big through indirect tables', mode: 'big', size: 32, indirect: true, frames: [1, 30000, 65550] },
    { name: 'mergeable, packets of 1, 2 and 17 buffers', mode: 'mergeable', size: 64, frames: [1, 4032, 4033, 65550, 0], chains: [1, 1, 2, 17, 1] },
    { name: 'mergeable, buffers split into header + data descriptors', mode: 'mergeable', size: 64, splitHeader: true, frames: [5, 4033, 65550], chains: [1, 2, 17] },
    { name: 'mergeable, 100-byte buffers', mode: 'mergeable', size: 256, mergeableBytes: 100, frames: [88, 89, 1000, 9000], chains: [1, 2, 11, 91] },
  ];

  it.each(cases)('$name', ({ mode, size, hdrSize = 12, numBuffersAt = 10, splitHeader, indirect, mergeableBytes, frames, chains }) => {
    const w = writerRig({ mode, size, hdrSize, numBuffersAt, indirect, memSize: 16 << 20 });
    const drv = new SpecRxDriver(w.rig, { mode, hdrSize, numBuffersAt, splitHeader, indirect, mergeableBytes });
    drv.fill();
    const src = new Uint8Array(70000);
    frames.forEach((len, i) => {
      const hdr = encodeHeader(hdrSize, fieldsFor(i), 0x5a);
      src.set(hdr, 0);
      const frame = pattern(len, 100 + i);
      src.set(frame, 64);
      const n = w.writer.write(src, 0, src, 64, len);
      expect(n).toBeGreaterThan(0);
      if (chains !== undefined) expect(n).toBe(chains[i]);
      if (mode !== 'mergeable') expect(n).toBe(1);
      w.device.publishUsed();
      const seen = drv.collect();
      expect(seen).toHaveLength(1);
      const p = seen[0];
      expect(p.used).toHaveLength(n);
      expect(firstDiff(p.frame, frame)).toBe(-1);
      // The header as given, with num_buffers = the chains used (1 outside mergeable: 5.1.6.4.1).
      const want = hdr.slice();
      if (numBuffersAt >= 0) {
        want[numBuffersAt] = n & 0xff;
        want[numBuffersAt + 1] = n >>> 8;
      }
      expect(firstDiff(p.hdr, want)).toBe(-1);
      expect(p.numBuffers).toBe(numBuffersAt >= 0 ? n : 1);
      // 5.1.6.4.2: every buffer but the last is filled completely.
      const caps = p.used.map((u) => u.len);
      const total = caps.reduce((a, b) => a + b, 0);
      expect(total).toBe(hdrSize + len);
      drv.fill();
    });
    expect(w.writer.packets).toBe(frames.length);
    expect(w.rig.guardsIntact()).toBe(true);
  });

  it('5.1.6.4: the header arrives byte for byte, num_buffers set, from sources at every alignment and view offset, taking turns', () => {
    const w = writerRig({ mode: 'mergeable', size: 64, hdrSize: 12, numBuffersAt: 10, memSize: 1 << 20 });
    const drv = new SpecRxDriver(w.rig, { mode: 'mergeable', hdrSize: 12, numBuffersAt: 10, mergeableBytes: 1536 });
    const plain = new Uint8Array(4096);
    const shared = new Uint8Array(new SharedArrayBuffer(4096));
    // Whole views and views that start 1-3 bytes into their buffer; headers at index 0-3 of each.
    const sources = [plain, shared, ...[1, 2, 3].map((o) => plain.subarray(o)), ...[1, 2, 3].map((o) => shared.subarray(o))];
    drv.fill();
    let sent = 0;
    for (let round = 0; round < 3; round++) {
      for (const src of sources) {
        for (let at = 0; at < 4; at++) {
          const hdr = pattern(12, sent + 1);
          src.set(hdr, at);
          src.set(pattern(100, sent), 64);
          expect(w.writer.write(src, at, src, 64, 100)).toBe(1);
          w.device.publishUsed();
          const [p] = drv.collect();
          const want = Uint8Array.from(hdr);
          want[10] = 1; // num_buffers, little-endian
          want[11] = 0;
          expect(firstDiff(p.hdr, want), `source offset ${src.byteOffset}, header at ${at}`).toBe(-1);
          expect(firstDiff(p.frame, pattern(100, sent))).toBe(-1);
          drv.fill();
          sent++;
        }
      }
    }
    expect(w.rig.guardsIntact()).toBe(true);
  });

  it('5.1.6.4.2: all but the last mergeable buffer are used to their full length', () => {
    const w = writerRig({ mode: 'mergeable', size: 32, hdrSize: 12, numBuffersAt: 10, memSize: 1 << 20 });
    const drv = new SpecRxDriver(w.rig, { mode: 'mergeable', hdrSize: 12, numBuffersAt: 10, mergeableBytes: 300 });
    drv.fill();
    const src = new Uint8Array(4096);
    const n = w.writer.write(src, 0, src, 64, 2000);
    expect(n).toBe(7);
    w.device.publishUsed();
    const [p] = drv.collect();
    expect(p.used.map((u) => u.len)).toEqual([300, 300, 300, 300, 300, 300, 212]);
  });

  it('single-buffer modes: a frame larger than the buffer is RX_TOO_BIG and the buffer is kept for the next packet', () => {
    const w = writerRig({ mode: 'small', size: 4, hdrSize: 12, numBuffersAt: 10, memSize: 1 << 20 });
    const drv = new SpecRxDriver(w.rig, { mode: 'small', hdrSize: 12, numBuffersAt: 10, buffers: 1 });
    const src = new Uint8Array(4096);
    expect(w.writer.write(src, 0, src, 64, 10)).toBe(RX_NO_BUFFERS);
    drv.fill();
    const before = ringSnapshot(w);
    expect(w.writer.write(src, 0, src, 64, 1519)).toBe(RX_TOO_BIG);
    expect(ringSnapshot(w)).toEqual(before);
    src.set(pattern(1518, 7), 64);
    expect(w.writer.write(src, 0, src, 64, 1518)).toBe(1);
    w.device.publishUsed();
    const [p] = drv.collect();
    expect(firstDiff(p.frame, pattern(1518, 7))).toBe(-1);
    expect(w.writer).toMatchObject({ packets: 1, tooBig: 1, noBuffers: 1, shortBuffers: 0 });
  });
});
