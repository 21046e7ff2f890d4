/**
 * Our device against a driver that breaks the split-ring rules on purpose
 * (and our driver against a device that does). Every broken rule must come
 * out as a VirtqueueError with its code and the offending value, before the
 * queue moves and without a byte written outside guest memory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VirtqueueError, type VirtqueueErrorCode } from '../src/index.js';
import { VQ_ERROR_CODES } from '../src/errors.js';
import { ChainReader, ChainWriter } from '../src/ring/chain-io.js';
import { SplitQueueDevice } from '../src/ring/split-device.js';
import { SplitQueueDriver } from '../src/ring/split-driver.js';
import { VIRTQ_DESC_F_INDIRECT as INDIRECT, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE } from '../src/spec/ring.js';
import { MiniDevice } from '../src/testing/mini-device.js';
import { MiniDriver } from '../src/testing/mini-driver.js';
import { type RawDesc, type Segment, at, ringRig, segmentsOf } from '../src/testing/split-ring.js';

/** Guest memory is [MEM, END): addresses below and above it are both reachable mistakes. */
const MEM = 0x10000;
const END = MEM + 0x4000;
const SIZE = 8;
const D = (addr: number, len: number, flags = 0, next = 0): RawDesc => ({ addr, len, flags, next });

function hostileRig(opts: { indirect?: boolean; size?: number; memSize?: number } = {}) {
  const rig = ringRig(opts.size ?? SIZE, { gpa: MEM, memSize: opts.memSize ?? END - MEM, indirect: opts.indirect ?? true });
  const mini = new MiniDriver(rig.memory, rig.ring);
  const device = new SplitQueueDevice(rig.memory, rig.state);
  const buf = rig.alloc.alloc(256, 16);
  const table = rig.alloc.alloc(16 * 2 * SIZE, 16);
  return { ...rig, mini, device, buf, table, chain: device.newChain() };
}
type Hostile = ReturnType<typeof hostileRig>;

/** Write descriptors into the ring, offer `head` and publish. */
function offer(h: Hostile, head: number, descs: Record<number, RawDesc>): void {
  for (const [i, d] of Object.entries(descs)) h.mini.setDesc(Number(i), d);
  h.mini.offer(head);
  h.mini.publish();
}

/** A table of `n` readable entries chained 0 -> 1 -> ... -> n-1. */
const chainedTable = (n: number, buf: number): RawDesc[] => Array.from({ length: n }, (_, j) => D(buf, 8, j + 1 < n ? NEXT : 0, j + 1));

/** pop() refuses with `code` and `value`, leaves nextAvail alone (so a retry refuses again) and writes nothing outside memory. */
function expectRefused(h: Hostile, code: VirtqueueErrorCode, value: number): void {
  const before = h.device.nextAvail;
  for (let attempt = 0; attempt < 2; attempt++) {
    let err: unknown;
    try {
      h.device.pop(h.chain);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VirtqueueError);
    expect(err).toMatchObject({ code, value });
    expect(h.device.nextAvail).toBe(before);
  }
  expect(h.guardsIntact()).toBe(true);
}

function expectPopped(h: Hostile, segs: Segment[]): void {
  expect(h.device.pop(h.chain)).toBe(true);
  expect(segmentsOf(h.chain)).toEqual(segs);
}

describe('split ring device against a hostile driver', () => {
  describe('2.7.5: every buffer a descriptor names must lie in guest memory', () => {
    const cases: Array<[string, number, number]> = [
      ['below the first byte', 0x100, 16],
      ['straddling the last byte', END - 8, 16],
      ['just past the end', END, 1],
      ['len 0xffffffff', MEM + 0x1000, 0xffffffff],
      ['a 64-bit address far beyond 2^53', 0xffff_ffff_ffff_f000, 16],
    ];
    it.each(cases)('2.7.5: a descriptor buffer %s is refused with its address', (_, addr, len) => {
      const h = hostileRig();
      offer(h, 0, { 0: D(addr, len) });
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', addr);
    });

    it('2.7.5: a bad buffer later in the chain is refused with its address, the valid head notwithstanding', () => {
      const h = hostileRig();
      offer(h, 6, { 6: D(h.buf, 16, NEXT, 1), 1: D(END - 4, 8, WRITE) });
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', END - 4);
    });

    it('2.7.5.3: an indirect table outside guest memory is refused with the table address', () => {
      const h = hostileRig();
      offer(h, 0, { 0: D(END - 16, 32, INDIRECT) });
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', END - 16);
    });

    it('2.7.5.3: a buffer named inside an indirect table must lie in guest memory too', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(0x2000, 8, WRITE)]);
      offer(h, 0, { 0: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', 0x2000);
    });
  });

  describe('2.7.5.2 / 2.7.5.3.1: chains are finite and no longer than the queue size', () => {
    it('2.7.5.2: loops are forbidden (a -> b -> a), refused with the head', () => {
      const h = hostileRig();
      offer(h, 2, { 2: D(h.buf, 16, NEXT, 5), 5: D(h.buf, 16, NEXT, 2) });
      expectRefused(h, 'CHAIN_TOO_LONG', 2);
    });

    it('2.7.5.2: loops are forbidden (a -> a), refused with the head', () => {
      const h = hostileRig();
      offer(h, 3, { 3: D(h.buf, 16, WRITE | NEXT, 3) });
      expectRefused(h, 'CHAIN_TOO_LONG', 3);
    });

    it('2.7.5.2: loops are forbidden inside an indirect table too (0 -> 1 -> 0)', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(h.buf, 8, NEXT, 0)]);
      offer(h, 4, { 4: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'CHAIN_TOO_LONG', 4);
    });

    it('2.7.5.3.1: a driver must not create a chain longer than the queue size (an indirect table of size + 1 entries)', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, chainedTable(SIZE + 1, h.buf));
      offer(h, 1, { 1: D(h.table, 16 * (SIZE + 1), INDIRECT) });
      expectRefused(h, 'CHAIN_TOO_LONG', 1);
    });

    it('2.7.5.3.1: a driver must not create a chain longer than the queue size (3 direct descriptors + a table of size - 2)', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, chainedTable(SIZE - 2, h.buf));
      offer(h, 0, { 0: D(h.buf, 4, NEXT, 1), 1: D(h.buf, 4, NEXT, 2), 2: D(h.buf, 4, NEXT, 3), 3: D(h.table, 16 * (SIZE - 2), INDIRECT) });
      expectRefused(h, 'CHAIN_TOO_LONG', 0);
    });

    it('2.7.5.2: a driver must not add a chain longer than 2^32 bytes in total, refused with the length that overflows', () => {
      const seg = 0x8_0000; // 8193 x 512 KiB > 2^32
      const h = hostileRig({ size: 16384, memSize: 2 << 20 });
      const data = h.alloc.alloc(seg, 16);
      const table = h.alloc.alloc(16 * 8193, 16);
      h.mini.writeTable(
        table,
        Array.from({ length: 8193 }, (_, j) => D(data, seg, WRITE | (j < 8192 ? NEXT : 0), j + 1)),
      );
      offer(h, 0, { 0: D(table, 16 * 8193, INDIRECT) });
      expectRefused(h, 'CHAIN_TOO_LARGE', seg);
    });

    it('2.7.5.2: a chain of exactly 2^32 bytes is allowed (8192 x 512 KiB, through one indirect table)', () => {
      const seg = 0x8_0000;
      const h = hostileRig({ size: 16384, memSize: 2 << 20 });
      const data = h.alloc.alloc(seg, 16);
      const table = h.alloc.alloc(16 * 8192, 16);
      h.mini.writeTable(
        table,
        Array.from({ length: 8192 }, (_, j) => D(data, seg, WRITE | (j < 8191 ? NEXT : 0), j + 1)),
      );
      offer(h, 0, { 0: D(table, 16 * 8192, INDIRECT) });
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.writableBytes).toBe(2 ** 32);
      expect(h.guardsIntact()).toBe(true);
    });
  });

  describe('2.7.5 / 2.7.6: every index the driver writes names something that exists', () => {
    it.each([SIZE, 0xffff])('2.7.5: next must name a descriptor of the table (next = %i)', (next) => {
      const h = hostileRig();
      offer(h, 0, { 0: D(h.buf, 16, NEXT, 1), 1: D(h.buf, 16, NEXT, next) });
      expectRefused(h, 'DESC_INDEX_OUT_OF_RANGE', next);
    });

    it.each([2, 0x0102])('2.7.5.3: next inside an indirect table must name one of its entries (next = %i)', (next) => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(h.buf, 8, NEXT, next)]);
      offer(h, 0, { 0: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'DESC_INDEX_OUT_OF_RANGE', next);
    });

    it.each([SIZE, 0xffff])('2.7.6: an avail ring entry must be a descriptor head below the queue size (head = %i)', (head) => {
      const h = hostileRig();
      offer(h, head, {});
      expectRefused(h, 'AVAIL_HEAD_OUT_OF_RANGE', head);
    });

    it('2.7.13.3: avail.idx moves by the chains added, never more than the queue size ahead of the device', () => {
      const h = hostileRig();
      h.mini.publish(SIZE + 1);
      expectRefused(h, 'AVAIL_INDEX_JUMP', SIZE + 1);
    });

    it('2.7.6.1: a driver must not decrement avail.idx', () => {
      const h = hostileRig();
      offer(h, 0, { 0: D(h.buf, 16) });
      expectPopped(h, [{ addr: h.buf, len: 16, write: false }]);
      h.mini.publish(0);
      expectRefused(h, 'AVAIL_INDEX_JUMP', 0);
    });
  });

  describe('2.7.5.3.1: indirect descriptors', () => {
    it('2.7.5.3.1: a driver must not set INDIRECT unless VIRTIO_F_INDIRECT_DESC was negotiated, refused with the descriptor index', () => {
      const h = hostileRig({ indirect: false });
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      offer(h, 2, { 2: D(h.buf, 8, NEXT, 5), 5: D(h.table, 16, INDIRECT) });
      expectRefused(h, 'INDIRECT_NOT_NEGOTIATED', 5);
    });

    it('2.7.5.3.1: a driver must not set INDIRECT and NEXT together', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      offer(h, 3, { 3: D(h.table, 16, INDIRECT | NEXT, 4), 4: D(h.buf, 8) });
      expectRefused(h, 'INDIRECT_WITH_NEXT', 3);
    });

    it.each([0, 8, 24, 0xfffffff8])('2.7.5.3: an indirect table is len / 16 descriptors: len %i is refused with the length', (len) => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      offer(h, 0, { 0: D(h.table, len, INDIRECT) });
      expectRefused(h, 'INDIRECT_BAD_LENGTH', len);
    });

    it('2.7.5.3.1: a driver must not set INDIRECT within an indirect descriptor, refused with the entry index', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table + 64, [D(h.buf, 8)]);
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(h.table + 64, 16, INDIRECT)]);
      offer(h, 0, { 0: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'INDIRECT_IN_INDIRECT', 1);
    });
  });

  describe('2.7.4.2: the driver must place device-writable descriptors after device-readable ones', () => {
    it('2.7.4.2: a readable descriptor after a writable one is refused with its index (direct chain)', () => {
      const h = hostileRig();
      offer(h, 0, { 0: D(h.buf, 8, NEXT, 7), 7: D(h.buf, 8, WRITE | NEXT, 1), 1: D(h.buf, 8) });
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 1);
    });

    it('2.7.4.2: ... with its entry index inside an indirect table', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, WRITE | NEXT, 1), D(h.buf, 8)]);
      offer(h, 0, { 0: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 1);
    });

    it('2.7.4.2: ... even across a direct prefix and its table (also for a zero-length readable entry)', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 0)]);
      offer(h, 0, { 0: D(h.buf, 8, WRITE | NEXT, 1), 1: D(h.table, 16, INDIRECT) });
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 0);
    });
  });

  describe('legal edge cases are accepted', () => {
    it('2.7.5: a chain of exactly the queue size, in any descriptor order', () => {
      const h = hostileRig();
      const order = [5, 0, 7, 2, 6, 1, 3, 4];
      order.forEach((i, k) => h.mini.setDesc(i, D(h.buf + k, 1 + k, (k >= 4 ? WRITE : 0) | (k < 7 ? NEXT : 0), order[k + 1] ?? 0)));
      offer(h, 5, {});
      expectPopped(
        h,
        order.map((_, k) => ({ addr: h.buf + k, len: 1 + k, write: k >= 4 })),
      );
      expect(h.chain.descCount).toBe(SIZE);
    });

    it('2.7.5.3.1: an indirect table of exactly queue-size entries, and 3 direct descriptors + a table of size - 3', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, chainedTable(SIZE, h.buf));
      offer(h, 0, { 0: D(h.table, 16 * SIZE, INDIRECT) });
      expectPopped(h, chainedTable(SIZE, h.buf).map(() => ({ addr: h.buf, len: 8, write: false })));
      h.mini.writeTable(h.table, chainedTable(SIZE - 3, h.buf));
      offer(h, 1, { 1: D(h.buf, 4, NEXT, 2), 2: D(h.buf, 4, NEXT, 3), 3: D(h.buf, 4, NEXT, 4), 4: D(h.table, 16 * (SIZE - 3), INDIRECT) });
      expectPopped(h, [...Array(3).fill({ addr: h.buf, len: 4, write: false }), ...Array(SIZE - 3).fill({ addr: h.buf, len: 8, write: false })]);
    });

    it('2.7.5.3.2: the device ignores WRITE on the descriptor that refers to an indirect table', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(h.buf + 8, 8, WRITE)]);
      offer(h, 0, { 0: D(h.table, 32, INDIRECT | WRITE) });
      expectPopped(h, [
        { addr: h.buf, len: 8, write: false },
        { addr: h.buf + 8, len: 8, write: true },
      ]);
    });

    it('2.7.13: avail.idx exactly the queue size ahead; a buffer ending on the last byte of memory', () => {
      const h = hostileRig();
      h.mini.setDesc(0, D(END - 16, 16, WRITE));
      for (let k = 0; k < SIZE; k++) h.mini.offer(0);
      h.mini.publish();
      for (let k = 0; k < SIZE; k++) expectPopped(h, [{ addr: END - 16, len: 16, write: true }]);
      expect(h.device.pop(h.chain)).toBe(false);
    });
  });

  it('2.7: whatever garbage the driver writes, pop() returns chains inside guest memory or throws a VirtqueueError, and nothing outside memory is touched', () => {
    const tableAt = (k: number) => MEM + 0x1000 + 0x100 * k;
    // Mostly plausible values, so that chains get deep before something breaks.
    const addr = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: MEM, max: END - 1 }) },
      { weight: 1, arbitrary: fc.integer({ min: MEM - 32, max: MEM + 32 }) },
      { weight: 1, arbitrary: fc.integer({ min: END - 300, max: END + 16 }) },
      { weight: 2, arbitrary: fc.constantFrom(0, tableAt(0), tableAt(1), tableAt(1) + 3, 2 ** 32 + MEM, 2 ** 53, 2 ** 64 - 4096) },
    );
    const len = fc.oneof(
      { weight: 6, arbitrary: fc.nat(64) },
      { weight: 2, arbitrary: fc.nat(8).map((k) => 16 * k) },
      { weight: 1, arbitrary: fc.constantFrom(0xffffffff, 0x4000, 0x4001) },
      { weight: 1, arbitrary: fc.nat(0xffffffff) },
    );
    /** An index: below 16 it is taken modulo the queue size (plausible), else as is (out of range). */
    const index = fc.oneof({ weight: 8, arbitrary: fc.nat(15) }, { weight: 1, arbitrary: fc.nat(0xffff) });
    const desc = fc.record({
      addr,
      len,
      flags: fc.oneof({ weight: 6, arbitrary: fc.nat(3) }, { weight: 2, arbitrary: fc.nat(7) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
      next: index,
    });
    const garbage = fc.record({
      size: fc.constantFrom(1, 2, 4, 8, 16),
      indirect: fc.boolean(),
      start: fc.nat(0xffff),
      descs: fc.array(desc, { minLength: 16, maxLength: 16 }),
      tables: fc.array(fc.array(desc, { minLength: 8, maxLength: 8 }), { minLength: 2, maxLength: 2 }),
      heads: fc.array(index, { minLength: 16, maxLength: 16 }),
      ahead: index,
    });
    fc.assert(
      fc.property(garbage, (g) => {
        const plausible = (v: number): number => (v < 16 ? v % g.size : v);
        const rig = ringRig(g.size, { gpa: MEM, memSize: END - MEM, start: g.start, indirect: g.indirect });
        const mini = new MiniDriver(rig.memory, rig.ring);
        g.descs.slice(0, g.size).forEach((d, i) => mini.setDesc(i, { ...d, next: plausible(d.next) }));
        g.tables.forEach((t, k) => mini.writeTable(tableAt(k), t));
        g.heads.slice(0, g.size).forEach((head) => mini.offer(plausible(head)));
        mini.publish((g.start + (g.ahead < 16 ? g.ahead % (g.size + 1) : g.ahead)) & 0xffff);
        const device = new SplitQueueDevice(rig.memory, rig.state);
        const chain = device.newChain();
        const reader = new ChainReader();
        const writer = new ChainWriter();
        const sink = new Uint8Array(0x4000);
        const ink = new Uint8Array(0x4000).fill(0xee);
        for (let k = 0; k < 2 * g.size + 2; k++) {
          const before = device.nextAvail;
          let popped: boolean;
          try {
            popped = device.pop(chain);
          } catch (e) {
            if (!(e instanceof VirtqueueError)) throw e;
            expect(VQ_ERROR_CODES).toContain(e.code);
            expect(device.nextAvail).toBe(before);
            break;
          }
          if (!popped) break;
          expect(chain.readable + chain.writable).toBeLessThanOrEqual(g.size);
          for (const s of segmentsOf(chain)) expect(rig.memory.contains(s.addr, s.len)).toBe(true);
          for (reader.reset(chain); reader.remaining > 0; ) reader.copyTo(sink, 0, sink.length);
          for (writer.reset(chain); writer.remaining > 0; ) writer.copyFrom(ink, 0, ink.length);
          device.pushUsed(chain.head, writer.written);
        }
        device.publishUsed();
        expect(rig.guardsIntact()).toBe(true);
      }),
      { seed: 42, numRuns: 400 },
    );
  });
});

describe('split ring driver against a hostile device', () => {
  /** Our driver with two chains in flight, seen by the mini device: a 1 + 1 segment chain (16 writable bytes) and one readable buffer. */
  function twoInFlight() {
    const rig = ringRig(SIZE, { gpa: MEM, memSize: END - MEM });
    const driver = new SplitQueueDriver(rig.memory, rig.state);
    const device = new MiniDevice(rig.memory, rig.ring);
    const buf = rig.alloc.alloc(64, 16);
    expect(driver.addChain([buf, buf], [8, 16], 1, 1, 11)).toBe(true);
    expect(driver.addBuffer(buf, 8, false, 22)).toBe(true);
    driver.publish();
    const chains = [device.pop()!, device.pop()!];
    return { ...rig, driver, device, chains };
  }
  type Rig = ReturnType<typeof twoInFlight>;

  function expectGetUsedRefused(r: Rig, code: VirtqueueErrorCode, value: number): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      let err: unknown;
      try {
        r.driver.getUsed();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VirtqueueError);
      expect(err).toMatchObject({ code, value });
      expect(r.driver.pending).toBe(2);
      expect(r.driver.numFree).toBe(SIZE - 3);
    }
  }

  it('2.7.8: a used id must name a descriptor of the table', () => {
    const r = twoInFlight();
    r.device.push(SIZE, 0);
    r.device.publish();
    expectGetUsedRefused(r, 'USED_ID_OUT_OF_RANGE', SIZE);
  });

  it('2.7.8: a used id must be the head of a chain in flight (not its second descriptor)', () => {
    const r = twoInFlight();
    const second = r.chains[0].descs[1];
    r.device.push(second, 0);
    r.device.publish();
    expectGetUsedRefused(r, 'USED_ID_NOT_IN_FLIGHT', second);
  });

  it('2.7.8: a used id must be the head of a chain in flight (not one already returned)', () => {
    const r = twoInFlight();
    r.device.push(r.chains[1].head, 0);
    r.device.publish();
    expect(r.driver.getUsed()).toBe(22);
    r.device.push(r.chains[1].head, 0);
    r.device.publish();
    expect(() => r.driver.getUsed()).toThrow(expect.objectContaining({ code: 'USED_ID_NOT_IN_FLIGHT', value: r.chains[1].head }));
    expect(r.driver.numFree).toBe(SIZE - 2);
  });

  it('2.7.8.2: used len cannot exceed the bytes of the chain’s device-writable buffers', () => {
    const r = twoInFlight();
    r.device.push(r.chains[0].head, 17);
    r.device.publish();
    expectGetUsedRefused(r, 'USED_LEN_TOO_LARGE', 17);
  });

  it('2.7.8: used.idx cannot run ahead of the chains in flight', () => {
    const r = twoInFlight();
    r.memory.writeU16(at.usedIdx(r.ring), 3);
    expectGetUsedRefused(r, 'USED_INDEX_JUMP', 3);
  });
});
