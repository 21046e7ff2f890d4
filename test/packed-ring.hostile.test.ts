/**
 * Our packed device against a driver that breaks the packed-ring rules on
 * purpose, and our packed driver against a device that does. Every broken
 * rule comes out as a VirtqueueError with its code and the offending value,
 * before the queue moves and without a byte written outside guest memory.
 * Also validateQueueState for packed queues.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuestMemory, InvalidArgumentError, QueueStateError, VirtqueueError, type VirtqueueErrorCode } from '../src/index.js';
import { VQ_ERROR_CODES } from '../src/errors.js';
import { ChainReader, ChainWriter } from '../src/ring/chain-io.js';
import { PackedQueueDevice } from '../src/ring/packed-device.js';
import { PackedQueueDriver } from '../src/ring/packed-driver.js';
import { PACKED_RING_START, packedDescBytes } from '../src/ring/packed-layout.js';
import { validateQueueState } from '../src/ring/queue-state.js';
import { VIRTQ_DESC_F_INDIRECT as INDIRECT, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE } from '../src/spec/ring.js';
import { MiniPackedDevice } from '../src/testing/mini-packed-device.js';
import { MiniPackedDriver, type PDesc, type Segment, packedRig } from '../src/testing/mini-packed-driver.js';
import { segmentsOf } from '../src/testing/split-ring.js';

const MEM = 0x10000;
const END = MEM + 0x4000;
const SIZE = 8;
const AVAIL = 1 << 7;
const USED = 1 << 15;
const D = (addr: number, len: number, flags = 0, id = 0): PDesc => ({ addr, len, flags, id });

function hostileRig(opts: { indirect?: boolean; size?: number; memSize?: number; inOrder?: boolean } = {}) {
  const size = opts.size ?? SIZE;
  const rig = packedRig(size, { gpa: MEM, memSize: opts.memSize ?? END - MEM, indirect: opts.indirect ?? true, inOrder: opts.inOrder });
  const mini = new MiniPackedDriver(rig.memory, rig.ring);
  const device = new PackedQueueDevice(rig.memory, rig.state);
  const buf = rig.alloc.alloc(256, 16);
  const table = rig.alloc.alloc(16 * 2 * size, 16);
  return { ...rig, mini, device, buf, table, chain: device.newChain() };
}
type Hostile = ReturnType<typeof hostileRig>;

/** pop() refuses with `code` and `value`, twice, leaves the queue where it was and writes nothing outside memory. */
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

/** A table of `n` readable entries. */
const table = (n: number, buf: number, flags = 0): PDesc[] => Array.from({ length: n }, () => D(buf, 8, flags));

describe('packed ring device against a hostile driver', () => {
  describe('2.8.5: every element a descriptor names must lie in guest memory', () => {
    const cases: Array<[string, number, number]> = [
      ['below the first byte', 0x100, 16],
      ['straddling the last byte', END - 8, 16],
      ['just past the end', END, 1],
      ['len 0xffffffff', MEM + 0x1000, 0xffffffff],
      ['a 64-bit address far beyond 2^53', 0xffff_ffff_ffff_f000, 16],
    ];
    it.each(cases)('2.8.5: an element %s is refused with its address', (_, addr, len) => {
      const h = hostileRig();
      h.mini.offerRaw([D(addr, len)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', addr);
    });

    it('2.8.5: a bad element later in the list is refused with its address', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 16, NEXT), D(END - 4, 8, WRITE)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', END - 4);
    });

    it('2.8.7: an indirect table outside guest memory is refused with the table address', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(END - 16, 32, INDIRECT)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', END - 16);
    });

    it('2.8.7: an element named inside an indirect table must lie in guest memory too', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8), D(0x2000, 8, WRITE)]);
      h.mini.offerRaw([D(h.table, 32, INDIRECT)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', 0x2000);
    });
  });

  describe('2.8.13.1: no descriptor list longer than the queue size, nor than the ring the driver owns', () => {
    it('2.8.13.1: a list of size descriptors whose last still says NEXT is refused with the first index', () => {
      const h = hostileRig();
      h.mini.offerRaw(Array.from({ length: SIZE }, () => D(h.buf, 8, NEXT)));
      expectRefused(h, 'CHAIN_TOO_LONG', 0);
    });

    it('2.8.13.1: a list running into descriptors still in flight is refused (the ring room is size minus those)', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 8)]);
      expect(h.device.pop(h.chain)).toBe(true); // ring index 0 in flight
      h.mini.offerRaw(Array.from({ length: SIZE - 1 }, () => D(h.buf, 8, NEXT)));
      expectRefused(h, 'CHAIN_TOO_LONG', 1);
    });

    it('2.8.13.1: an indirect table of size + 1 entries is refused', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, table(SIZE + 1, h.buf));
      h.mini.offerRaw([D(h.table, 16 * (SIZE + 1), INDIRECT)]);
      expectRefused(h, 'CHAIN_TOO_LONG', 0);
    });

    it('2.8.13.1: a list of more than 2^32 bytes is refused with the length that overflows; exactly 2^32 is allowed', () => {
      const seg = 0x8_0000;
      for (const [n, ok] of [
        [8193, false],
        [8192, true],
      ] as const) {
        const h = hostileRig({ size: 16384, memSize: 2 << 20 });
        const data = h.alloc.alloc(seg, 16);
        const t = h.alloc.alloc(16 * n, 16);
        h.mini.writeTable(
          t,
          Array.from({ length: n }, () => D(data, seg, WRITE)),
        );
        h.mini.offerRaw([D(t, 16 * n, INDIRECT)]);
        if (ok) {
          expect(h.device.pop(h.chain)).toBe(true);
          expect(h.chain.writableBytes).toBe(2 ** 32);
        } else expectRefused(h, 'CHAIN_TOO_LARGE', seg);
      }
    });
  });

  describe('2.8.6: a list is made available as a whole (every descriptor available, the first last)', () => {
    it.each([
      ['never written (zero flags, wrap 1)', 0],
      ['available for the other wrap counter', USED],
      ['marked used', AVAIL | USED],
    ])('2.8.6: a descriptor continuing a list but %s is refused with its index', (_, bits) => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 8, NEXT), D(h.buf, 8, NEXT), D(h.buf, 8)], { availBits: (k, w) => (k === 2 ? bits : MiniPackedDriver.availFlags(w)) });
      expectRefused(h, 'PACKED_DESC_NOT_AVAILABLE', 2);
    });

    it('2.8.1: a first descriptor that is not available (AVAIL == USED, or the wrong wrap) is simply not there', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 8)], { availBits: () => AVAIL | USED });
      expect(h.device.available()).toBe(0);
      expect(h.device.pop(h.chain)).toBe(false);
      h.mini.setDesc(0, D(h.buf, 8, USED));
      expect(h.device.pop(h.chain)).toBe(false);
    });
  });

  describe('2.8.7.1: indirect descriptors', () => {
    it('2.8.7.1: INDIRECT without VIRTIO_F_INDIRECT_DESC is refused with the descriptor index', () => {
      const h = hostileRig({ indirect: false });
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      h.mini.offerRaw([D(h.table, 16, INDIRECT)]);
      expectRefused(h, 'INDIRECT_NOT_NEGOTIATED', 0);
    });

    it('2.8.7.1: INDIRECT together with NEXT is refused', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      h.mini.offerRaw([D(h.table, 16, INDIRECT | NEXT), D(h.buf, 8)]);
      expectRefused(h, 'INDIRECT_WITH_NEXT', 0);
    });

    it('2.8.7.1: a direct descriptor with INDIRECT in a list linked by NEXT is refused with its index', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      h.mini.offerRaw([D(h.buf, 8, NEXT), D(h.table, 16, INDIRECT)]);
      expectRefused(h, 'INDIRECT_WITH_NEXT', 1);
    });

    it.each([0, 8, 24, 0xfffffff8])('2.8.7: an indirect table is len / 16 descriptors: len %i is refused with the length', (len) => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.table, len, INDIRECT)]);
      expectRefused(h, 'INDIRECT_BAD_LENGTH', len);
    });

    it('2.8.7.1: INDIRECT inside an indirect table is refused with the entry index', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table + 64, [D(h.buf, 8)]);
      h.mini.writeTable(h.table, [D(h.buf, 8), D(h.table + 64, 16, INDIRECT)]);
      h.mini.offerRaw([D(h.table, 32, INDIRECT)]);
      expectRefused(h, 'INDIRECT_IN_INDIRECT', 1);
    });

    it('2.8.7: NEXT and ids inside a table are ignored (entries are used in table order); WRITE on the INDIRECT descriptor is ignored', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 0x1234), D(h.buf + 8, 8, WRITE | NEXT, 7), D(h.buf + 16, 4, WRITE)]);
      h.mini.offerRaw([D(h.table, 48, INDIRECT | WRITE, 3)]);
      expectPopped(h, [
        { addr: h.buf, len: 8, write: false },
        { addr: h.buf + 8, len: 8, write: true },
        { addr: h.buf + 16, len: 4, write: true },
      ]);
      expect(h.chain.head).toBe(3);
      expect(h.chain.descCount).toBe(3);
    });
  });

  describe('2.8.13.1: device-writable elements after device-readable ones', () => {
    it('2.8.13.1: a readable descriptor after a writable one is refused with its index (direct list)', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 8, NEXT), D(h.buf, 8, WRITE | NEXT), D(h.buf, 8)]);
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 2);
    });

    it('2.8.13.1: ... with its entry index inside an indirect table (also for a zero-length entry)', () => {
      const h = hostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, WRITE), D(h.buf, 0)]);
      h.mini.offerRaw([D(h.table, 32, INDIRECT)]);
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 1);
    });
  });

  describe('2.8: buffer ids', () => {
    it('2.8: a buffer id made available again while its buffer is in flight is refused with the id', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 8, 0, 5)]);
      expect(h.device.pop(h.chain)).toBe(true);
      h.mini.offerRaw([D(h.buf, 8, NEXT, 9), D(h.buf, 8, 0, 5)]);
      expectRefused(h, 'PACKED_ID_IN_FLIGHT', 5);
      // Once used, the id is free again.
      h.device.pushUsed(5, 0);
      h.device.publishUsed();
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.head).toBe(5);
    });

    it('2.8.6: the buffer id is the last descriptor’s; any u16 is accepted (0xffff included) and comes back in the used descriptor', () => {
      const h = hostileRig();
      h.mini.offerRaw([D(h.buf, 8, NEXT, 0xaaaa), D(h.buf, 8, NEXT, 0xbbbb), D(h.buf, 16, WRITE, 0xffff)]);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.head).toBe(0xffff);
      h.device.pushUsed(0xffff, 16);
      h.device.publishUsed();
      expect(h.mini.getDesc(0)).toMatchObject({ id: 0xffff, len: 16, flags: AVAIL | USED | WRITE });
      expect(h.guardsIntact()).toBe(true);
    });
  });

  describe('legal edge cases are accepted', () => {
    it('2.8: a list of exactly the queue size, wrapping past the ring end (the wrap counter flips mid-list)', () => {
      const h = hostileRig();
      for (let k = 0; k < 3; k++) h.mini.offerRaw([D(h.buf, 4, 0, k)]);
      for (let k = 0; k < 3; k++) {
        expect(h.device.pop(h.chain)).toBe(true);
        h.device.pushUsed(k, 0);
      }
      h.device.publishUsed();
      const list = Array.from({ length: SIZE }, (_, k) => D(h.buf + k, 1 + k, (k >= 4 ? WRITE : 0) | (k < SIZE - 1 ? NEXT : 0), 9));
      h.mini.offerRaw(list);
      expectPopped(
        h,
        list.map((d, k) => ({ addr: d.addr, len: d.len, write: k >= 4 })),
      );
      expect(h.chain.descCount).toBe(SIZE);
      expect(h.device.nextAvail).toBe(3); // index 3, wrap counter 0
      h.device.pushUsed(9, 5);
      h.device.publishUsed();
      expect(h.mini.getDesc(3)).toMatchObject({ id: 9, len: 5, flags: AVAIL | USED | WRITE });
      expect(h.device.nextUsed).toBe(3);
      expect(h.guardsIntact()).toBe(true);
    });
  });

  it('2.8: whatever garbage the driver writes, pop() returns chains inside guest memory or throws a VirtqueueError; nothing outside memory is touched', () => {
    const tableAt = (k: number) => MEM + 0x1000 + 0x100 * k;
    const addr = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: MEM, max: END - 1 }) },
      { weight: 1, arbitrary: fc.integer({ min: END - 300, max: END + 16 }) },
      { weight: 2, arbitrary: fc.constantFrom(0, tableAt(0), tableAt(1), tableAt(1) + 3, 2 ** 32 + MEM, 2 ** 64 - 4096) },
    );
    const len = fc.oneof({ weight: 6, arbitrary: fc.nat(64) }, { weight: 2, arbitrary: fc.nat(8).map((k) => 16 * k) }, { weight: 1, arbitrary: fc.nat(0xffffffff) });
    const flags = fc.oneof(
      { weight: 6, arbitrary: fc.tuple(fc.nat(3), fc.constantFrom(AVAIL, USED, 0, AVAIL | USED)).map(([f, b]) => f | b) },
      { weight: 2, arbitrary: fc.tuple(fc.nat(7), fc.constantFrom(AVAIL, USED)).map(([f, b]) => f | b) },
      { weight: 1, arbitrary: fc.nat(0xffff) },
    );
    const desc = fc.record({ addr, len, flags, id: fc.oneof(fc.nat(15), fc.nat(0xffff)) });
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 4, 8, 16),
        fc.boolean(),
        fc.array(desc, { minLength: 16, maxLength: 16 }),
        fc.array(fc.array(desc, { minLength: 8, maxLength: 8 }), { minLength: 2, maxLength: 2 }),
        fc.record({ idx: fc.nat(15), wrap: fc.constantFrom(0, 1) }),
        fc.boolean(),
        (size, indirect, descs, tables, start0, inOrder) => {
          const start = { idx: start0.idx % size, wrap: start0.wrap };
          const rig = packedRig(size, { gpa: MEM, memSize: END - MEM, start, indirect, inOrder });
          descs.slice(0, size).forEach((d, i) => writeRaw(rig.memory, rig.ring.desc + 16 * i, d));
          tables.forEach((t, k) => t.forEach((d, j) => writeRaw(rig.memory, tableAt(k) + 16 * j, d)));
          const device = new PackedQueueDevice(rig.memory, rig.state);
          const chain = device.newChain();
          const reader = new ChainReader();
          const writer = new ChainWriter();
          const sink = new Uint8Array(0x4000);
          const ink = new Uint8Array(0x4000).fill(0xee);
          for (let k = 0; k < 2 * size + 2; k++) {
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
            expect(chain.readable + chain.writable).toBeLessThanOrEqual(size);
            for (const s of segmentsOf(chain)) expect(rig.memory.contains(s.addr, s.len)).toBe(true);
            for (reader.reset(chain); reader.remaining > 0; ) reader.copyTo(sink, 0, sink.length);
            for (writer.reset(chain); writer.remaining > 0; ) writer.copyFrom(ink, 0, ink.length);
            device.pushUsed(chain.head, writer.written);
          }
          device.publishUsed();
          expect(rig.guardsIntact()).toBe(true);
        },
      ),
      { numRuns: 400 },
    );
  });

  describe('API misuse by device code is an InvalidArgumentError', () => {
    it('pushUsed of an id not popped, twice, or out of order under VIRTIO_F_IN_ORDER; unpop of more than popped or of a pushed chain', () => {
      const h = hostileRig({ inOrder: true });
      h.mini.offerRaw([D(h.buf, 8, 0, 1)]);
      h.mini.offerRaw([D(h.buf, 8, 0, 2)]);
      expect(() => h.device.pushUsed(1, 0)).toThrow(InvalidArgumentError);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(() => h.device.pushUsed(2, 0)).toThrow(InvalidArgumentError); // 1 is older
      expect(() => h.device.unpop(3)).toThrow(InvalidArgumentError);
      h.device.pushUsed(1, 0);
      expect(() => h.device.pushUsed(1, 0)).toThrow(InvalidArgumentError);
      expect(() => h.device.unpop(2)).toThrow(InvalidArgumentError); // 1 was pushed
      h.device.unpop(1);
      expect(h.device.available()).toBe(1);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.head).toBe(2);
      expect(() => h.device.enableNotify(-1)).toThrow(InvalidArgumentError);
    });
  });
});

function writeRaw(memory: GuestMemory, gpa: number, d: PDesc): void {
  const hi = Math.floor(d.addr / 2 ** 32);
  memory.writeU32(gpa, d.addr - hi * 2 ** 32);
  memory.writeU32(gpa + 4, hi);
  memory.writeU32(gpa + 8, d.len);
  memory.writeU16(gpa + 12, d.id);
  memory.writeU16(gpa + 14, d.flags);
}

describe('packed ring driver against a hostile device', () => {
  /** Our driver with two chains in flight seen by the mini device: 1 + 1 segments (16 writable bytes), and one readable buffer. */
  function twoInFlight(inOrder = false) {
    const rig = packedRig(SIZE, { gpa: MEM, memSize: END - MEM, inOrder });
    const driver = new PackedQueueDriver(rig.memory, rig.state);
    const device = new MiniPackedDevice(rig.memory, rig.ring);
    const buf = rig.alloc.alloc(64, 16);
    expect(driver.addChain([buf, buf], [8, 16], 1, 1, 11)).toBe(true);
    expect(driver.addBuffer(buf, 8, false, 22)).toBe(true);
    driver.publish();
    const chains = [device.pop()!, device.pop()!];
    return { ...rig, driver, device, chains, buf };
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
    expect(r.guardsIntact()).toBe(true);
  }

  it.each([SIZE, 0xffff])('2.8.22: a used buffer id must be one the driver handed out (id %i)', (id) => {
    const r = twoInFlight();
    r.device.push(id, 0, 1);
    expectGetUsedRefused(r, 'USED_ID_OUT_OF_RANGE', id);
  });

  it('2.8.22: a used buffer id must name a buffer in flight (not a free id)', () => {
    const r = twoInFlight();
    r.device.push(5, 0, 1);
    expectGetUsedRefused(r, 'USED_ID_NOT_IN_FLIGHT', 5);
  });

  it('2.8.22: ... nor one already returned', () => {
    const r = twoInFlight();
    r.device.push(r.chains[1].id, 0, 1);
    expect(r.driver.getUsed()).toBe(22);
    r.device.push(r.chains[1].id, 0, 1);
    expect(() => r.driver.getUsed()).toThrow(expect.objectContaining({ code: 'USED_ID_NOT_IN_FLIGHT', value: r.chains[1].id }));
    expect(r.driver.numFree).toBe(SIZE - 2);
  });

  it('2.8.22: ... nor one added but not yet made available (publish)', () => {
    const r = twoInFlight();
    expect(r.driver.addBuffer(r.buf, 8, true, 33)).toBe(true); // id 2, not published
    r.device.push(2, 0, 1);
    expect(() => r.driver.getUsed()).toThrow(expect.objectContaining({ code: 'USED_ID_NOT_IN_FLIGHT', value: 2 }));
  });

  it('2.8.4: a used length cannot exceed the buffer’s device-writable bytes', () => {
    const r = twoInFlight();
    r.device.push(r.chains[0].id, 17, 2);
    expectGetUsedRefused(r, 'USED_LEN_TOO_LARGE', 17);
  });

  it('2.8.4: the length of a used descriptor without WRITE is reserved and ignored (usedLen 0)', () => {
    const r = twoInFlight();
    r.device.push(r.chains[1].id, 0xffffffff, 1, { flags: AVAIL | USED });
    expect(r.driver.getUsed()).toBe(22);
    expect(r.driver.usedLen).toBe(0);
  });

  it('2.8.1: a descriptor that is available, or used for the other wrap counter, is not a used one', () => {
    const r = twoInFlight();
    r.device.push(r.chains[1].id, 0, 1, { flags: 0 }); // used for wrap 0
    expect(r.driver.usedAvailable()).toBe(0);
    expect(r.driver.getUsed()).toBe(-1);
    expect(r.driver.pending).toBe(2);
  });

  it('2.8.9: in order, a used id not in flight, or a batch’s last length too large, is refused before anything is reaped', () => {
    const r = twoInFlight(true);
    r.device.push(6, 0, 3);
    expectGetUsedRefused(r, 'USED_ID_NOT_IN_FLIGHT', 6);
    const s = twoInFlight(true);
    s.device.push(s.chains[1].id, 9, 3, { flags: AVAIL | USED | WRITE }); // readable-only buffer, 9 bytes "written"
    expectGetUsedRefused(s, 'USED_LEN_TOO_LARGE', 9);
  });
});

describe('2.8.10.1 validateQueueState for packed queues', () => {
  const memory = new GuestMemory([{ gpa: 0x1000, size: 0x2000, buffer: new SharedArrayBuffer(0x2000), byteOffset: 0 }]);
  const base = { size: 16, desc: 0x1000, avail: 0x1100, used: 0x1104, nextAvail: PACKED_RING_START, nextUsed: PACKED_RING_START, eventIdx: false, indirect: false, packed: true };
  const rejected = (change: Record<string, number>, why: string) => expect(() => validateQueueState({ ...base, ...change }, memory), why).toThrow(QueueStateError);

  it('2.8.10.1: a fresh queue starts at index 0 with wrap counter 1; the areas are 16 * size and 4 + 4 bytes', () => {
    expect(PACKED_RING_START).toBe(0x8000);
    expect(packedDescBytes(16)).toBe(256);
    expect(() => validateQueueState(base, memory)).not.toThrow();
    // The split sizes would not fit here: the event areas are only 4 bytes.
    expect(() => validateQueueState({ ...base, used: 0x2ffc, avail: 0x2ff8 }, memory)).not.toThrow();
  });

  it('2.8.10.1: the descriptor ring is 16-aligned, the event suppression areas 4-aligned, all inside memory', () => {
    for (const [field, by] of [['desc', 8], ['avail', 2], ['used', 1]] as const) rejected({ [field]: base[field] + by }, `${field}+${by}`);
    rejected({ desc: 0x3000 - 128 }, 'ring straddles the end');
    rejected({ avail: 0x3000 }, 'driver area past the end');
    rejected({ used: 0x0ffc }, 'device area before memory');
  });

  it('2.8: nextAvail / nextUsed are u16 with a ring index below the queue size, at most a queue size of descriptors apart', () => {
    rejected({ nextAvail: 0x8010 }, 'index 16 of 16');
    rejected({ nextUsed: 0x0010 }, 'index 16 of 16, wrap 0');
    rejected({ nextAvail: 0x10000 }, 'not u16');
    rejected({ nextUsed: -1 }, 'negative');
    const ok = (nextAvail: number, nextUsed: number) => () => validateQueueState({ ...base, nextAvail, nextUsed }, memory);
    expect(ok(0x0000, 0x8000)).not.toThrow(); // a full lap in flight
    expect(ok(0x8003, 0x0003)).not.toThrow(); // 16 in flight across the wrap
    expect(ok(0x8004, 0x0003)).toThrow(QueueStateError); // 17
    expect(ok(0x8000, 0x8001)).toThrow(QueueStateError); // used ahead of avail
  });
});
