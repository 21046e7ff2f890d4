/**
 * Neither side of virtskb trusts the other. RecvBuffers against a device that
 * lies (used lengths, num_buffers, used ids, used.idx), and RxWriter against a
 * driver that posts tiny, short or broken buffers; plus misuse of holds.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, VirtqueueError } from '../src/index.js';
import { RX_NO_BUFFERS, RX_SHORT_BUFFER, RX_TOO_BIG, RecvBuffers, type RecvPoolSpec, type RxBufferMode } from '../src/virtskb/index.js';
import type { MiniChain } from '../src/testing/mini-device.js';
import { MiniDriver } from '../src/testing/mini-driver.js';
import { at, pattern } from '../src/testing/split-ring.js';
import { SpecRxDevice, encodeHeader } from './support/virtskb-device.js';
import { SpecRxDriver } from './support/virtskb-driver.js';
import { type RecvRig, firstDiff, recvRig, ringSnapshot, writerRig } from './support/virtskb-rig.js';

const HDR = 12;
const fields = { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };

/** Pop a posted buffer with the mini device and write a header claiming `numBuffers` into it. */
function popWithHeader(r: RecvRig, numBuffers: number): MiniChain {
  const c = r.mini.pop();
  if (c === undefined) throw new Error('no buffer posted');
  const hdr = encodeHeader(HDR, fields);
  hdr[10] = numBuffers & 0xff;
  hdr[11] = numBuffers >>> 8;
  r.rig.memory.write(c.segs[0].addr, hdr);
  return c;
}

/** Send one good packet through the spec device and expect RecvBuffers to deliver exactly it. */
function expectGoodPacket(r: RecvRig, mode: RxBufferMode, len = 300): void {
  const frame = pattern(len, len);
  expect(new SpecRxDevice(r.mini, HDR, mode === 'mergeable').deliver(encodeHeader(HDR, fields), frame)).not.toBe(0);
  r.mini.publish();
  const got: Uint8Array[] = [];
  r.recv.receive((p) => {
    const out = new Uint8Array(p.length);
    p.copyTo(out);
    got.push(out);
  });
  expect(got).toHaveLength(1);
  expect(firstDiff(got[0], frame)).toBe(-1);
}

describe('RecvBuffers against a lying device', () => {
  const modes: RxBufferMode[] = ['small', 'big', 'mergeable'];
  const sizeFor = (mode: RxBufferMode): number => (mode === 'big' ? 64 : 8);

  it.each(modes)('%s: a used length shorter than the header is an rx length error; the buffer is reposted and the queue goes on', (mode) => {
    const r = recvRig({ mode, size: sizeFor(mode) });
    const posted = r.recv.refill();
    const c = popWithHeader(r, 1);
    r.mini.push(c.head, HDR - 1);
    r.mini.publish();
    const seen: number[] = [];
    expect(r.recv.receive((p) => seen.push(p.length))).toBe(0);
    expect(seen).toEqual([]);
    expect(r.recv.stats.rxLengthErrors).toBe(1);
    expect(r.recv.broken).toBeNull();
    expect(r.recv.refill()).toBe(1);
    expect(r.driver.pending).toBe(posted);
    expectGoodPacket(r, mode);
  });

  it('minLength (Linux: ETH_HLEN): a frame shorter than it is an rx length error', () => {
    const r = recvRig({ mode: 'small', size: 8, minLength: 14 });
    r.recv.refill();
    const dev = new SpecRxDevice(r.mini, HDR, false);
    dev.deliver(encodeHeader(HDR, fields), pattern(13, 1));
    dev.deliver(encodeHeader(HDR, fields), pattern(14, 2));
    r.mini.publish();
    const lens: number[] = [];
    expect(r.recv.receive((p) => lens.push(p.length))).toBe(1);
    expect(lens).toEqual([14]);
    expect(r.recv.stats.rxLengthErrors).toBe(1);
  });

  it.each(modes)('%s: a used length larger than the buffer is a length error that breaks the ring (getUsed cannot move past it): nothing delivered, nothing thrown, nothing posted after', (mode) => {
    const r = recvRig({ mode, size: sizeFor(mode) });
    r.recv.refill();
    const c = popWithHeader(r, 1);
    const cap = c.segs.reduce((n, s) => n + s.len, 0);
    r.mini.push(c.head, cap + 1);
    r.mini.publish();
    let calls = 0;
    expect(r.recv.receive(() => calls++)).toBe(0);
    expect(calls).toBe(0);
    expect(r.recv.stats.rxLengthErrors).toBe(1);
    expect(r.recv.broken).toBeInstanceOf(VirtqueueError);
    expect(r.recv.broken?.code).toBe('USED_LEN_TOO_LARGE');
    expect(r.recv.receive(() => calls++)).toBe(0);
    expect(r.recv.refill()).toBe(0);
    expect(r.recv.stats.rxLengthErrors).toBe(1);
  });

  it('mergeable: num_buffers 0 drops that buffer only', () => {
    const r = recvRig({ mode: 'mergeable', size: 8 });
    r.recv.refill();
    const c = popWithHeader(r, 0);
    r.mini.push(c.head, 100);
    expectGoodPacket(r, 'mergeable');
    expect(r.recv.stats).toMatchObject({ packets: 1, rxNumBuffersErrors: 1 });
    expect(r.recv.freeBuffers).toBe(2);
  });

  it('mergeable: num_buffers larger than the chains in flight drops the first buffer only; the packets after it survive', () => {
    const r = recvRig({ mode: 'mergeable', size: 8 });
    r.recv.refill();
    const c = popWithHeader(r, 9);
    r.mini.push(c.head, 100);
    expectGoodPacket(r, 'mergeable');
    expect(r.recv.stats).toMatchObject({ packets: 1, rxNumBuffersErrors: 1 });
  });

  it('mergeable: num_buffers larger than the used entries that follow (Linux "buffers missing") drops the entries taken', () => {
    const r = recvRig({ mode: 'mergeable', size: 8 });
    r.recv.refill();
    const c1 = popWithHeader(r, 3);
    const c2 = r.mini.pop() as MiniChain;
    r.mini.push(c1.head, c1.segs[0].len);
    r.mini.push(c2.head, 7);
    r.mini.publish();
    expect(r.recv.receive(() => {})).toBe(0);
    expect(r.recv.stats.rxNumBuffersErrors).toBe(1);
    expect(r.recv.freeBuffers).toBe(2);
    expect(r.recv.refill()).toBe(2);
    expectGoodPacket(r, 'mergeable', 5000);
    expect(r.recv.broken).toBeNull();
  });

  it('a used id that names no descriptor (USED_ID_OUT_OF_RANGE) breaks the ring, counted', () => {
    const r = recvRig({ mode: 'small', size: 8 });
    r.recv.refill();
    r.mini.pop();
    r.mini.push(8, 20);
    r.mini.publish();
    expect(r.recv.receive(() => {})).toBe(0);
    expect(r.recv.stats.rxBadIdErrors).toBe(1);
    expect(r.recv.broken?.code).toBe('USED_ID_OUT_OF_RANGE');
  });

  it('a used id returned twice (USED_ID_NOT_IN_FLIGHT): the first is delivered, the second breaks the ring', () => {
    const r = recvRig({ mode: 'small', size: 8 });
    r.recv.refill();
    const c = popWithHeader(r, 1);
    r.mini.push(c.head, 40);
    r.mini.push(c.head, 40);
    r.mini.publish();
    expect(r.recv.receive(() => {})).toBe(1);
    expect(r.recv.stats).toMatchObject({ packets: 1, rxBadIdErrors: 1 });
    expect(r.recv.broken?.code).toBe('USED_ID_NOT_IN_FLIGHT');
  });

  it('mergeable: a bad id in the middle of a packet breaks the ring; the buffers taken go back to the pool', () => {
    const r = recvRig({ mode: 'mergeable', size: 8 });
    r.recv.refill();
    const c = popWithHeader(r, 2);
    r.mini.push(c.head, c.segs[0].len);
    r.mini.push(200, 5);
    r.mini.publish();
    expect(r.recv.receive(() => {})).toBe(0);
    expect(r.recv.stats).toMatchObject({ rxBadIdErrors: 1, rxNumBuffersErrors: 0 });
    expect(r.recv.freeBuffers).toBe(1);
  });

  it('used.idx moved past what is in flight (USED_INDEX_JUMP) breaks the ring, counted', () => {
    const r = recvRig({ mode: 'small', size: 8 });
    r.recv.refill();
    r.rig.memory.writeU16(at.usedIdx(r.rig.ring), 9);
    expect(r.recv.receive(() => {})).toBe(0);
    expect(r.recv.stats.rxIndexErrors).toBe(1);
    expect(r.recv.broken?.code).toBe('USED_INDEX_JUMP');
  });
});

describe('RxWriter against a hostile driver', () => {
  const src = pattern(70000, 5);

  it('tiny mergeable buffers: a packet needing more buffers than the queue holds is RX_TOO_BIG, ring untouched', () => {
    const w = writerRig({ mode: 'mergeable', size: 16, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const drv = new SpecRxDriver(w.rig, { mode: 'mergeable', hdrSize: HDR, numBuffersAt: 10, mergeableBytes: 12 });
    drv.fill();
    const before = ringSnapshot(w);
    expect(w.writer.write(src, 0, src, 64, 1000)).toBe(RX_TOO_BIG);
    expect(ringSnapshot(w)).toEqual(before);
    expect(w.writer.tooBig).toBe(1);
    // 16 buffers of 12 bytes hold a header and 180 bytes: that still goes through.
    expect(w.writer.write(src, 0, src, 64, 180)).toBe(16);
  });

  it('one tiny descriptor offered over and over: the writer stops at the queue size', () => {
    const w = writerRig({ mode: 'mergeable', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const mini = new MiniDriver(w.rig.memory, w.rig.ring);
    mini.setDesc(0, { addr: w.rig.alloc.alloc(16, 8), len: 16, flags: 2, next: 0 });
    for (let k = 0; k < 8; k++) mini.offer(0);
    mini.publish();
    const before = ringSnapshot(w);
    expect(w.writer.write(src, 0, src, 64, 60_000)).toBe(RX_TOO_BIG);
    expect(ringSnapshot(w)).toEqual(before);
  });

  it('tiny but sufficient buffers: 12-byte buffers carry the header alone in the first, frame bytes in the rest', () => {
    const w = writerRig({ mode: 'mergeable', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const drv = new SpecRxDriver(w.rig, { mode: 'mergeable', hdrSize: HDR, numBuffersAt: 10, mergeableBytes: 12 });
    drv.fill();
    expect(w.writer.write(src, 0, src, 64, 20)).toBe(3);
    w.device.publishUsed();
    const [p] = drv.collect();
    expect(p.used.map((u) => u.len)).toEqual([12, 12, 8]);
    expect(p.numBuffers).toBe(3);
    expect(firstDiff(p.frame, src.subarray(64, 84))).toBe(-1);
  });

  it('5.1.6.3.1: a mergeable buffer shorter than the header is RX_SHORT_BUFFER (first or later buffer), counted, ring untouched', () => {
    for (const sizes of [[8], [100, 4], [100, 100, 11]]) {
      const w = writerRig({ mode: 'mergeable', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
      const mini = new MiniDriver(w.rig.memory, w.rig.ring);
      for (const len of sizes) mini.addChain([{ addr: w.rig.alloc.alloc(len, 1), len, write: true }]);
      mini.publish();
      const before = ringSnapshot(w);
      expect(w.writer.write(src, 0, src, 64, 500)).toBe(RX_SHORT_BUFFER);
      expect(ringSnapshot(w)).toEqual(before);
      expect(w.writer.shortBuffers).toBe(1);
    }
  });

  it('single-buffer modes: a buffer shorter than the header is RX_TOO_BIG for every packet, never written', () => {
    const w = writerRig({ mode: 'small', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const mini = new MiniDriver(w.rig.memory, w.rig.ring);
    const addr = w.rig.alloc.alloc(8, 8);
    w.rig.memory.fill(addr, 0x77, 8);
    mini.addChain([{ addr, len: 8, write: true }]);
    mini.publish();
    const before = ringSnapshot(w);
    expect(w.writer.write(src, 0, src, 64, 0)).toBe(RX_TOO_BIG);
    expect(w.writer.write(src, 0, src, 64, 1)).toBe(RX_TOO_BIG);
    expect(ringSnapshot(w)).toEqual(before);
    const buf = new Uint8Array(8);
    w.rig.memory.read(addr, buf);
    expect(Array.from(buf)).toEqual(Array(8).fill(0x77));
  });

  it('a broken chain in the middle of a mergeable packet throws the VirtqueueError with every chain given back', () => {
    const w = writerRig({ mode: 'mergeable', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const mini = new MiniDriver(w.rig.memory, w.rig.ring);
    mini.addChain([{ addr: w.rig.alloc.alloc(100, 8), len: 100, write: true }]);
    mini.addChain([{ addr: 0x7fff_0000_0000, len: 100, write: true }]);
    mini.publish();
    const before = ringSnapshot(w);
    expect(() => w.writer.write(src, 0, src, 64, 150)).toThrow(VirtqueueError);
    expect(ringSnapshot(w)).toEqual(before);
  });

  it('a device-readable prefix in an rx chain is skipped; the writable part takes the packet', () => {
    const w = writerRig({ mode: 'small', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const mini = new MiniDriver(w.rig.memory, w.rig.ring);
    const ro = w.rig.alloc.alloc(32, 8);
    const rw = w.rig.alloc.alloc(200, 8);
    w.rig.memory.fill(ro, 0x33, 32);
    mini.addChain([
      { addr: ro, len: 32, write: false },
      { addr: rw, len: 200, write: true },
    ]);
    mini.publish();
    expect(w.writer.write(src, 0, src, 64, 100)).toBe(1);
    w.device.publishUsed();
    expect(mini.reap()).toEqual([{ id: 0, len: 112 }]);
    const out = new Uint8Array(100);
    w.rig.memory.read(rw + HDR, out);
    expect(firstDiff(out, src.subarray(64, 164))).toBe(-1);
    const r = new Uint8Array(32);
    w.rig.memory.read(ro, r);
    expect(r.every((b) => b === 0x33)).toBe(true);
  });

  it('RX_NO_BUFFERS on an empty ring; the constants are 0, -1, -2', () => {
    const w = writerRig({ mode: 'mergeable', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    expect(w.writer.write(src, 0, src, 64, 10)).toBe(RX_NO_BUFFERS);
    expect([RX_NO_BUFFERS, RX_TOO_BIG, RX_SHORT_BUFFER]).toEqual([0, -1, -2]);
  });
});

describe('holding packets: misuse is a named error', () => {
  function rigWithPackets(n: number): RecvRig {
    const r = recvRig({ mode: 'mergeable', size: 8 });
    r.recv.refill();
    const dev = new SpecRxDevice(r.mini, HDR, true);
    for (let i = 0; i < n; i++) dev.deliver(encodeHeader(HDR, fields), pattern(100, i));
    r.mini.publish();
    return r;
  }

  it('hold() outside the callback throws; hold() twice in one callback returns the same handle', () => {
    const r = rigWithPackets(1);
    expect(() => r.recv.packet.hold()).toThrow(InvalidArgumentError);
    const handles: number[] = [];
    r.recv.receive((p) => handles.push(p.hold(), p.hold()));
    expect(handles[0]).toBe(handles[1]);
    expect(r.recv.heldBuffers).toBe(1);
    expect(() => r.recv.packet.hold()).toThrow(InvalidArgumentError);
    r.recv.release(handles[0]);
    expect(r.recv.heldBuffers).toBe(0);
  });

  it('double release, unknown handles and hold() after release throw InvalidArgumentError', () => {
    const r = rigWithPackets(2);
    let h = -1;
    let afterRelease: unknown;
    r.recv.receive((p) => {
      if (h < 0) {
        h = p.hold();
        return;
      }
      const h2 = p.hold();
      r.recv.release(h2);
      try {
        p.hold();
      } catch (e) {
        afterRelease = e;
      }
    });
    expect(afterRelease).toBeInstanceOf(InvalidArgumentError);
    r.recv.release(h);
    expect(() => r.recv.release(h)).toThrow(InvalidArgumentError);
    for (const bad of [-1, 0, 0.5, Number.NaN, 123456789, h + 1]) expect(() => r.recv.release(bad)).toThrow(InvalidArgumentError);
    expect(r.recv.freeBuffers).toBe(2);
  });

  it('a handle from a released slot stays dead after the slot is reused', () => {
    const r = rigWithPackets(2);
    const hs: number[] = [];
    r.recv.receive((p) => {
      hs.push(p.hold());
      if (hs.length === 1) r.recv.release(hs[0]);
    });
    expect(hs[1]).not.toBe(hs[0]);
    expect(() => r.recv.release(hs[0])).toThrow(InvalidArgumentError);
    r.recv.release(hs[1]);
  });

  it('receive() inside onPacket, and the wrong mode, throw', () => {
    const r = rigWithPackets(1);
    let inner: unknown;
    r.recv.receive(() => {
      try {
        r.recv.receive(() => {});
      } catch (e) {
        inner = e;
      }
    });
    expect(inner).toBeInstanceOf(InvalidArgumentError);
    expect(() => r.recv.addRecvbufSmall()).toThrow(InvalidArgumentError);
    expect(() => r.recv.receiveBig(() => {})).toThrow(InvalidArgumentError);
  });

  it('a throwing callback: the packet counts as delivered and its buffer returns to the pool', () => {
    const r = rigWithPackets(2);
    expect(() =>
      r.recv.receive(() => {
        throw new Error('user bug');
      }),
    ).toThrow('user bug');
    expect(r.recv.freeBuffers).toBe(1);
    expect(r.recv.receive(() => {})).toBe(1);
    expect(r.recv.stats.packets).toBe(2);
  });
});

describe('RecvBuffers: a pool it cannot use is a named error', () => {
  const options = (r: RecvRig, mode: RxBufferMode) => ({ mode, hdrSize: HDR, pageSize: 4096, numBuffersAt: r.numBuffersAt });

  it('a misaligned base, no pages, or too few pages for one buffer: InvalidArgumentError naming the value', () => {
    const r = recvRig({ mode: 'small', size: 8 });
    const make = (pool: RecvPoolSpec) => () => new RecvBuffers(r.driver, r.rig.memory, pool, options(r, 'small'));
    expect(make({ ...r.pool, base: r.pool.base + 1 })).toThrow(new RegExp(`receive pool base 0x${(r.pool.base + 1).toString(16)} must be a \\d+-aligned guest address`));
    expect(make({ ...r.pool, pages: 0 })).toThrow('receive pool of 0 pages: need at least one');
    const big = recvRig({ mode: 'big', size: 64 });
    expect(() => new RecvBuffers(big.driver, big.rig.memory, { ...big.pool, pages: 1 }, options(big, 'big'))).toThrow(/a receive pool of 1 pages holds no big buffer \(\d+ bytes each\)/);
  });

  it('2.7.5.3.1: a buffer whose chain is longer than the queue is refused, naming both', () => {
    const big = recvRig({ mode: 'big', size: 64 });
    const small = recvRig({ mode: 'small', size: 8 });
    const make = () => new RecvBuffers(small.driver, big.rig.memory, big.pool, options(big, 'big'));
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(/a big receive buffer takes \d+ descriptors; queue size 8 is smaller/);
  });
});

describe('SplitQueueDevice.unpop(count)', () => {
  it('gives back the last count popped chains in one step; the next pops walk them again in order', () => {
    const w = writerRig({ mode: 'small', size: 8, hdrSize: HDR, numBuffersAt: 10, memSize: 1 << 20 });
    const mini = new MiniDriver(w.rig.memory, w.rig.ring);
    const heads = [10, 20, 30, 40].map((len) => mini.addChain([{ addr: w.rig.alloc.alloc(len, 8), len, write: true }]));
    mini.publish();
    const chain = w.device.newChain();
    for (let k = 0; k < 3; k++) w.device.pop(chain);
    w.device.unpop(2);
    expect(w.device.available()).toBe(3);
    const again: number[] = [];
    while (w.device.pop(chain)) again.push(chain.head);
    expect(again).toEqual(heads.slice(1));
    w.device.unpop();
    expect(w.device.available()).toBe(1);
    w.device.unpop(0);
    expect(w.device.available()).toBe(1);
    for (const bad of [-1, 9, 1.5, Number.NaN]) expect(() => w.device.unpop(bad)).toThrow(InvalidArgumentError);
  });
});
