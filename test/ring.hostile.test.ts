/**
 * Our device against a driver that breaks the ring rules on purpose (and our
 * driver against a device that does), for both ring formats. Every broken
 * rule must come out as a VirtqueueError with its code and the offending
 * value, before the queue moves and without a byte written outside guest
 * memory. The rules both formats share run once per format (named after each
 * format's section); the rules of one format follow in its own blocks. Also
 * validateQueueState for packed queues.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuestMemory, InvalidArgumentError, QueueStateError, VirtqueueError, type VirtqueueErrorCode } from '../src/index.js';
import { VQ_ERROR_CODES } from '../src/errors.js';
import type { DescriptorChain } from '../src/ring/chain.js';
import { ChainReader, ChainWriter } from '../src/ring/chain-io.js';
import { PackedQueueDevice } from '../src/ring/packed-device.js';
import { PackedQueueDriver } from '../src/ring/packed-driver.js';
import { PACKED_RING_START, packedDescBytes } from '../src/ring/packed-layout.js';
import { validateQueueState } from '../src/ring/queue-state.js';
import { SplitQueueDevice } from '../src/ring/split-device.js';
import { SplitQueueDriver } from '../src/ring/split-driver.js';
import { VIRTQ_DESC_F_INDIRECT as INDIRECT, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE } from '../src/spec/ring.js';
import type { GuestAllocator } from '../src/memory/allocator.js';
import { MiniDevice } from '../src/testing/mini-device.js';
import { MiniDriver } from '../src/testing/mini-driver.js';
import { MiniPackedDevice } from '../src/testing/mini-packed-device.js';
import { MiniPackedDriver, type PDesc, packedRig, writePDesc } from '../src/testing/mini-packed-driver.js';
import { type RawDesc, type Segment, at, ringRig, segmentsOf } from '../src/testing/split-ring.js';

/** Guest memory is [MEM, END): addresses below and above it are both reachable mistakes. */
const MEM = 0x10000;
const END = MEM + 0x4000;
const SIZE = 8;
const AVAIL = 1 << 7;
const USED = 1 << 15;
/** A descriptor of either format (split reads `next`, packed reads `id`). */
const D = (addr: number, len: number, flags = 0, nextOrId = 0): RawDesc & PDesc => ({ addr, len, flags, next: nextOrId, id: nextOrId });

interface RigOptions {
  indirect?: boolean;
  size?: number;
  memSize?: number;
  inOrder?: boolean;
}

/** What the shared cases need of a ring under a hostile driver. */
interface Hostile {
  memory: GuestMemory;
  alloc: GuestAllocator;
  device: SplitQueueDevice | PackedQueueDevice;
  chain: DescriptorChain;
  /** 256 bytes of buffer and a table area of 2 * size entries, both in guest memory. */
  buf: number;
  table: number;
  guardsIntact(): boolean;
  /**
   * Make `list` available as one chain, its descriptors linked in order
   * (NEXT added to all but the last), its id / head 0.
   */
  offerList(list: readonly (RawDesc & PDesc)[]): void;
  /** Write an indirect table whose entries follow in order. */
  writeTable(gpa: number, entries: readonly (RawDesc & PDesc)[]): void;
}

/** One ring format: its rig and its section numbers for the rules both formats share. */
interface Format {
  name: 'split' | 'packed';
  rig(opts?: RigOptions): Hostile;
  sec: { bounds: string; table: string; indirect: string; tooLong: string; bytes: string; order: string; indirectWrite: string };
}

const chained = (entries: readonly (RawDesc & PDesc)[]): RawDesc[] => entries.map((d, j) => (j + 1 < entries.length ? { ...d, flags: d.flags | NEXT, next: j + 1 } : d));

/** The buffer and table area every hostile rig hands out, and the device's chain. */
const buffersAndChain = (alloc: GuestAllocator, size: number, device: SplitQueueDevice | PackedQueueDevice) => ({
  buf: alloc.alloc(256, 16),
  table: alloc.alloc(16 * 2 * size, 16),
  chain: device.newChain(),
});

function splitRig(opts: RigOptions = {}) {
  const size = opts.size ?? SIZE;
  const rig = ringRig(size, { gpa: MEM, memSize: opts.memSize ?? END - MEM, indirect: opts.indirect ?? true });
  const mini = new MiniDriver(rig.memory, rig.ring);
  const device = new SplitQueueDevice(rig.memory, rig.state);
  return {
    ...rig,
    mini,
    device,
    ...buffersAndChain(rig.alloc, size, device),
    offerList(list: readonly (RawDesc & PDesc)[]): void {
      chained(list).forEach((d, i) => mini.setDesc(i, d));
      mini.offer(0);
      mini.publish();
    },
    writeTable: (gpa: number, entries: readonly (RawDesc & PDesc)[]): void => mini.writeTable(gpa, chained(entries)),
  };
}

function packedHostileRig(opts: RigOptions = {}) {
  const size = opts.size ?? SIZE;
  const rig = packedRig(size, { gpa: MEM, memSize: opts.memSize ?? END - MEM, indirect: opts.indirect ?? true, inOrder: opts.inOrder });
  const mini = new MiniPackedDriver(rig.memory, rig.ring);
  const device = new PackedQueueDevice(rig.memory, rig.state);
  return {
    ...rig,
    mini,
    device,
    ...buffersAndChain(rig.alloc, size, device),
    offerList(list: readonly (RawDesc & PDesc)[]): void {
      mini.offerRaw(list.map((d, j) => ({ ...d, flags: j + 1 < list.length ? d.flags | NEXT : d.flags })));
    },
    // Entries of a packed table are used in table order; NEXT there is ignored (2.8.7).
    writeTable: (gpa: number, entries: readonly (RawDesc & PDesc)[]): void => mini.writeTable(gpa, entries),
  };
}

const FORMATS: Format[] = [
  { name: 'split', rig: splitRig, sec: { bounds: '2.7.5', table: '2.7.5.3', indirect: '2.7.5.3.1', tooLong: '2.7.5.3.1', bytes: '2.7.5.2', order: '2.7.4.2', indirectWrite: '2.7.5.3.2' } },
  { name: 'packed', rig: packedHostileRig, sec: { bounds: '2.8.5', table: '2.8.7', indirect: '2.8.7.1', tooLong: '2.8.13.1', bytes: '2.8.13.1', order: '2.8.13.1', indirectWrite: '2.8.7' } },
];

/** pop() refuses with `code` and `value`, twice, leaves the queue where it was and writes nothing outside memory. */
function expectRefused(h: Pick<Hostile, 'device' | 'chain' | 'guardsIntact'>, code: VirtqueueErrorCode, value: number): void {
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

function expectPopped(h: Pick<Hostile, 'device' | 'chain'>, segs: Segment[]): void {
  expect(h.device.pop(h.chain)).toBe(true);
  expect(segmentsOf(h.chain)).toEqual(segs);
}

/**
 * Pop what a garbage ring offers until it refuses or runs dry: every chain
 * popped lies in guest memory and is read and written whole; a refusal is a
 * VirtqueueError of a known code that leaves the queue where it was.
 */
function drainGarbage(device: SplitQueueDevice | PackedQueueDevice, memory: GuestMemory, size: number): void {
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
    for (const s of segmentsOf(chain)) expect(memory.contains(s.addr, s.len)).toBe(true);
    for (reader.reset(chain); reader.remaining > 0; ) reader.copyTo(sink, 0, sink.length);
    for (writer.reset(chain); writer.remaining > 0; ) writer.copyFrom(ink, 0, ink.length);
    device.pushUsed(chain.head, writer.written);
  }
  device.publishUsed();
}

/** A table of `n` readable 8-byte entries. */
const readable = (n: number, buf: number): Array<RawDesc & PDesc> => Array.from({ length: n }, () => D(buf, 8));

describe.each(FORMATS)('$name ring device against a hostile driver: the rules both formats share', ({ rig, sec }) => {
  describe(`${sec.bounds}: every buffer a descriptor names must lie in guest memory`, () => {
    const cases: Array<[string, number, number]> = [
      ['below the first byte', 0x100, 16],
      ['straddling the last byte', END - 8, 16],
      ['just past the end', END, 1],
      ['len 0xffffffff', MEM + 0x1000, 0xffffffff],
      ['a 64-bit address far beyond 2^53', 0xffff_ffff_ffff_f000, 16],
    ];
    it.each(cases)(`${sec.bounds}: a descriptor buffer %s is refused with its address`, (_, addr, len) => {
      const h = rig();
      h.offerList([D(addr, len)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', addr);
    });

    it(`${sec.bounds}: a bad buffer later in the chain is refused with its address, the valid first one notwithstanding`, () => {
      const h = rig();
      h.offerList([D(h.buf, 16), D(END - 4, 8, WRITE)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', END - 4);
    });

    it(`${sec.table}: an indirect table outside guest memory is refused with the table address`, () => {
      const h = rig();
      h.offerList([D(END - 16, 32, INDIRECT)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', END - 16);
    });

    it(`${sec.table}: a buffer named inside an indirect table must lie in guest memory too`, () => {
      const h = rig();
      h.writeTable(h.table, [D(h.buf, 8), D(0x2000, 8, WRITE)]);
      h.offerList([D(h.table, 32, INDIRECT)]);
      expectRefused(h, 'DESC_ADDRESS_OUT_OF_BOUNDS', 0x2000);
    });
  });

  describe(`${sec.tooLong} / ${sec.bytes}: chains no longer than the queue size, nor than 2^32 bytes`, () => {
    it(`${sec.tooLong}: an indirect table of size + 1 entries is refused`, () => {
      const h = rig();
      h.writeTable(h.table, readable(SIZE + 1, h.buf));
      h.offerList([D(h.table, 16 * (SIZE + 1), INDIRECT)]);
      expectRefused(h, 'CHAIN_TOO_LONG', 0);
    });

    const seg = 0x8_0000; // 512 KiB
    const bigTable = (h: Hostile, n: number): number => {
      const data = h.alloc.alloc(seg, 16);
      const t = h.alloc.alloc(16 * n, 16);
      h.writeTable(
        t,
        Array.from({ length: n }, () => D(data, seg, WRITE)),
      );
      return t;
    };

    it(`${sec.bytes}: a chain of more than 2^32 bytes in total (8193 x 512 KiB) is refused with the length that overflows`, () => {
      const h = rig({ size: 16384, memSize: 2 << 20 });
      h.offerList([D(bigTable(h, 8193), 16 * 8193, INDIRECT)]);
      expectRefused(h, 'CHAIN_TOO_LARGE', seg);
    });

    it(`${sec.bytes}: a chain of exactly 2^32 bytes is allowed (8192 x 512 KiB, through one indirect table)`, () => {
      const h = rig({ size: 16384, memSize: 2 << 20 });
      h.offerList([D(bigTable(h, 8192), 16 * 8192, INDIRECT)]);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.writableBytes).toBe(2 ** 32);
      expect(h.guardsIntact()).toBe(true);
    });
  });

  describe(`${sec.indirect}: indirect descriptors`, () => {
    it(`${sec.indirect}: INDIRECT without VIRTIO_F_INDIRECT_DESC is refused with the descriptor index`, () => {
      const h = rig({ indirect: false });
      h.writeTable(h.table, [D(h.buf, 8)]);
      h.offerList([D(h.table, 16, INDIRECT)]);
      expectRefused(h, 'INDIRECT_NOT_NEGOTIATED', 0);
    });

    it(`${sec.indirect}: INDIRECT together with NEXT is refused`, () => {
      const h = rig();
      h.writeTable(h.table, [D(h.buf, 8)]);
      h.offerList([D(h.table, 16, INDIRECT), D(h.buf, 8)]);
      expectRefused(h, 'INDIRECT_WITH_NEXT', 0);
    });

    it.each([0, 8, 24, 0xfffffff8])(`${sec.table}: an indirect table is len / 16 descriptors: len %i is refused with the length`, (len) => {
      const h = rig();
      h.writeTable(h.table, [D(h.buf, 8)]);
      h.offerList([D(h.table, len, INDIRECT)]);
      expectRefused(h, 'INDIRECT_BAD_LENGTH', len);
    });

    it(`${sec.indirect}: INDIRECT inside an indirect table is refused with the entry index`, () => {
      const h = rig();
      h.writeTable(h.table + 64, [D(h.buf, 8)]);
      h.writeTable(h.table, [D(h.buf, 8), D(h.table + 64, 16, INDIRECT)]);
      h.offerList([D(h.table, 32, INDIRECT)]);
      expectRefused(h, 'INDIRECT_IN_INDIRECT', 1);
    });

    it(`${sec.indirectWrite}: the device ignores WRITE on the descriptor that refers to an indirect table`, () => {
      const h = rig();
      h.writeTable(h.table, [D(h.buf, 8), D(h.buf + 8, 8, WRITE)]);
      h.offerList([D(h.table, 32, INDIRECT | WRITE)]);
      expectPopped(h, [
        { addr: h.buf, len: 8, write: false },
        { addr: h.buf + 8, len: 8, write: true },
      ]);
    });
  });

  describe(`${sec.order}: device-writable descriptors after device-readable ones`, () => {
    it(`${sec.order}: a readable descriptor after a writable one is refused with its index (direct chain)`, () => {
      const h = rig();
      h.offerList([D(h.buf, 8), D(h.buf, 8, WRITE), D(h.buf, 8)]);
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 2);
    });

    it.each([8, 0])(`${sec.order}: ... with its entry index inside an indirect table (readable entry of %i bytes)`, (len) => {
      const h = rig();
      h.writeTable(h.table, [D(h.buf, 8, WRITE), D(h.buf, len)]);
      h.offerList([D(h.table, 32, INDIRECT)]);
      expectRefused(h, 'READABLE_AFTER_WRITABLE', 1);
    });
  });
});

describe('split ring device against a hostile driver: split-only rules', () => {
  type SplitHostile = ReturnType<typeof splitRig>;
  /** Write descriptors at the indices given, offer `head` and publish. */
  function offer(h: SplitHostile, head: number, descs: Record<number, RawDesc>): void {
    for (const [i, d] of Object.entries(descs)) h.mini.setDesc(Number(i), d);
    h.mini.offer(head);
    h.mini.publish();
  }

  describe('2.7.5.2 / 2.7.5.3.1: chains are finite and no longer than the queue size', () => {
    it('2.7.5.2: loops are forbidden (a -> b -> a), refused with the head', () => {
      const h = splitRig();
      offer(h, 2, { 2: D(h.buf, 16, NEXT, 5), 5: D(h.buf, 16, NEXT, 2) });
      expectRefused(h, 'CHAIN_TOO_LONG', 2);
    });

    it('2.7.5.2: loops are forbidden (a -> a), refused with the head', () => {
      const h = splitRig();
      offer(h, 3, { 3: D(h.buf, 16, WRITE | NEXT, 3) });
      expectRefused(h, 'CHAIN_TOO_LONG', 3);
    });

    it('2.7.5.2: loops are forbidden inside an indirect table too (0 -> 1 -> 0)', () => {
      const h = splitRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(h.buf, 8, NEXT, 0)]);
      offer(h, 4, { 4: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'CHAIN_TOO_LONG', 4);
    });

    it('2.7.5.3.1: a driver must not create a chain longer than the queue size (3 direct descriptors + a table of size - 2)', () => {
      const h = splitRig();
      h.writeTable(h.table, readable(SIZE - 2, h.buf));
      offer(h, 0, { 0: D(h.buf, 4, NEXT, 1), 1: D(h.buf, 4, NEXT, 2), 2: D(h.buf, 4, NEXT, 3), 3: D(h.table, 16 * (SIZE - 2), INDIRECT) });
      expectRefused(h, 'CHAIN_TOO_LONG', 0);
    });
  });

  describe('2.7.5 / 2.7.6: every index the driver writes names something that exists', () => {
    it.each([SIZE, 0xffff])('2.7.5: next must name a descriptor of the table (next = %i)', (next) => {
      const h = splitRig();
      offer(h, 0, { 0: D(h.buf, 16, NEXT, 1), 1: D(h.buf, 16, NEXT, next) });
      expectRefused(h, 'DESC_INDEX_OUT_OF_RANGE', next);
    });

    it.each([2, 0x0102])('2.7.5.3: next inside an indirect table must name one of its entries (next = %i)', (next) => {
      const h = splitRig();
      h.mini.writeTable(h.table, [D(h.buf, 8, NEXT, 1), D(h.buf, 8, NEXT, next)]);
      offer(h, 0, { 0: D(h.table, 32, INDIRECT) });
      expectRefused(h, 'DESC_INDEX_OUT_OF_RANGE', next);
    });

    it.each([SIZE, 0xffff])('2.7.6: an avail ring entry must be a descriptor head below the queue size (head = %i)', (head) => {
      const h = splitRig();
      offer(h, head, {});
      expectRefused(h, 'AVAIL_HEAD_OUT_OF_RANGE', head);
    });

    it('2.7.13.3: avail.idx moves by the chains added, never more than the queue size ahead of the device', () => {
      const h = splitRig();
      h.mini.publish(SIZE + 1);
      expectRefused(h, 'AVAIL_INDEX_JUMP', SIZE + 1);
    });

    it('2.7.6.1: a driver must not decrement avail.idx', () => {
      const h = splitRig();
      offer(h, 0, { 0: D(h.buf, 16) });
      expectPopped(h, [{ addr: h.buf, len: 16, write: false }]);
      h.mini.publish(0);
      expectRefused(h, 'AVAIL_INDEX_JUMP', 0);
    });
  });

  it('2.7.5.3.1: INDIRECT without VIRTIO_F_INDIRECT_DESC after a direct prefix is refused with its descriptor index', () => {
    const h = splitRig({ indirect: false });
    h.mini.writeTable(h.table, [D(h.buf, 8)]);
    offer(h, 2, { 2: D(h.buf, 8, NEXT, 5), 5: D(h.table, 16, INDIRECT) });
    expectRefused(h, 'INDIRECT_NOT_NEGOTIATED', 5);
  });

  it('2.7.4.2: a readable entry after writable ones is refused even across a direct prefix and its table (a zero-length readable entry)', () => {
    const h = splitRig();
    h.mini.writeTable(h.table, [D(h.buf, 0)]);
    offer(h, 0, { 0: D(h.buf, 8, WRITE | NEXT, 1), 1: D(h.table, 16, INDIRECT) });
    expectRefused(h, 'READABLE_AFTER_WRITABLE', 0);
  });

  describe('legal edge cases are accepted', () => {
    it('2.7.5: a chain of exactly the queue size, in any descriptor order', () => {
      const h = splitRig();
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
      const h = splitRig();
      h.writeTable(h.table, readable(SIZE, h.buf));
      offer(h, 0, { 0: D(h.table, 16 * SIZE, INDIRECT) });
      expectPopped(h, readable(SIZE, h.buf).map(() => ({ addr: h.buf, len: 8, write: false })));
      h.writeTable(h.table, readable(SIZE - 3, h.buf));
      offer(h, 1, { 1: D(h.buf, 4, NEXT, 2), 2: D(h.buf, 4, NEXT, 3), 3: D(h.buf, 4, NEXT, 4), 4: D(h.table, 16 * (SIZE - 3), INDIRECT) });
      expectPopped(h, [...Array(3).fill({ addr: h.buf, len: 4, write: false }), ...Array(SIZE - 3).fill({ addr: h.buf, len: 8, write: false })]);
    });

    it('2.7.13: avail.idx exactly the queue size ahead; a buffer ending on the last byte of memory', () => {
      const h = splitRig();
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
        drainGarbage(new SplitQueueDevice(rig.memory, rig.state), rig.memory, g.size);
        expect(rig.guardsIntact()).toBe(true);
      }),
      { seed: 42, numRuns: 400 },
    );
  });
});

describe('packed ring device against a hostile driver: packed-only rules', () => {
  describe('2.8.13.1: no descriptor list longer than the queue size, nor than the ring the driver owns', () => {
    it('2.8.13.1: a list of size descriptors whose last still says NEXT is refused with the first index', () => {
      const h = packedHostileRig();
      h.mini.offerRaw(Array.from({ length: SIZE }, () => D(h.buf, 8, NEXT)));
      expectRefused(h, 'CHAIN_TOO_LONG', 0);
    });

    it('2.8.13.1: a list running into descriptors still in flight is refused (the ring room is size minus those)', () => {
      const h = packedHostileRig();
      h.mini.offerRaw([D(h.buf, 8)]);
      expect(h.device.pop(h.chain)).toBe(true); // ring index 0 in flight
      h.mini.offerRaw(Array.from({ length: SIZE - 1 }, () => D(h.buf, 8, NEXT)));
      expectRefused(h, 'CHAIN_TOO_LONG', 1);
    });

    it('2.8.13.1: with every descriptor in flight the driver owns none: a descriptor made available for the next lap is not there until one comes back', () => {
      const h = packedHostileRig();
      // size one-descriptor chains, popped one by one with no available() first (pop reads each head alone).
      h.mini.offerRaw(Array.from({ length: SIZE }, (_, k) => D(h.buf, 8, 0, k)));
      for (let k = 0; k < SIZE; k++) expect(h.device.pop(h.chain)).toBe(true);
      // Ring index 0 rewritten as available for wrap counter 0 (the next lap), a free id: the device returned nothing yet.
      h.mini.setDesc(0, D(h.buf, 8, USED, 99));
      const before = h.device.nextAvail;
      expect(h.device.pop(h.chain)).toBe(false);
      expect(h.device.available()).toBe(0);
      expect(h.device.pop(h.chain)).toBe(false);
      expect(h.device.nextAvail).toBe(before);
      // One buffer used and published (its used descriptor lands at index 0), then offered again: now it is there.
      h.device.pushUsed(0, 0);
      h.device.publishUsed();
      h.mini.setDesc(0, D(h.buf, 8, USED, 99));
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.head).toBe(99);
    });
  });

  describe('2.8.6: a list is made available as a whole (every descriptor available, the first last)', () => {
    it.each([
      ['never written (zero flags, wrap 1)', 0],
      ['available for the other wrap counter', USED],
      ['marked used', AVAIL | USED],
    ])('2.8.6: a descriptor continuing a list but %s is refused with its index', (_, bits) => {
      const h = packedHostileRig();
      h.mini.offerRaw([D(h.buf, 8, NEXT), D(h.buf, 8, NEXT), D(h.buf, 8)], { availBits: (k, w) => (k === 2 ? bits : MiniPackedDriver.availFlags(w)) });
      expectRefused(h, 'PACKED_DESC_NOT_AVAILABLE', 2);
    });

    it('2.8.1: a first descriptor that is not available (AVAIL == USED, or the wrong wrap) is simply not there', () => {
      const h = packedHostileRig();
      h.mini.offerRaw([D(h.buf, 8)], { availBits: () => AVAIL | USED });
      expect(h.device.available()).toBe(0);
      expect(h.device.pop(h.chain)).toBe(false);
      h.mini.setDesc(0, D(h.buf, 8, USED));
      expect(h.device.pop(h.chain)).toBe(false);
    });
  });

  describe('2.8.7.1: indirect descriptors', () => {
    it('2.8.7.1: a direct descriptor with INDIRECT in a list linked by NEXT is refused with its index', () => {
      const h = packedHostileRig();
      h.mini.writeTable(h.table, [D(h.buf, 8)]);
      h.mini.offerRaw([D(h.buf, 8, NEXT), D(h.table, 16, INDIRECT)]);
      expectRefused(h, 'INDIRECT_WITH_NEXT', 1);
    });

    it('2.8.7: NEXT and ids inside a table are ignored (entries are used in table order); WRITE on the INDIRECT descriptor is ignored', () => {
      const h = packedHostileRig();
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

  describe('2.8: buffer ids', () => {
    it('2.8: a buffer id made available again while its buffer is in flight is refused with the id', () => {
      const h = packedHostileRig();
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

    it('2.8: a one-descriptor buffer made available with an id in flight is refused the same way, and the queue stays where it was', () => {
      const h = packedHostileRig();
      h.mini.offerRaw([D(h.buf, 8, 0, 7)]);
      expect(h.device.pop(h.chain)).toBe(true);
      h.mini.offerRaw([D(h.buf + 8, 8, WRITE, 7)]);
      expectRefused(h, 'PACKED_ID_IN_FLIGHT', 7);
      h.device.pushUsed(7, 0);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.head).toBe(7);
      expect(h.chain.writableBytes).toBe(8);
      // An id beyond the queue size in a one-descriptor buffer is legal (2.8.13 leaves ids to the driver).
      h.mini.offerRaw([D(h.buf, 8, 0, 0x9000)]);
      expect(h.device.pop(h.chain)).toBe(true);
      expect(h.chain.head).toBe(0x9000);
    });

    it('2.8.6: the buffer id is the last descriptor’s; any u16 is accepted (0xffff included) and comes back in the used descriptor', () => {
      const h = packedHostileRig();
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
      const h = packedHostileRig();
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
          descs.slice(0, size).forEach((d, i) => writePDesc(rig.memory, rig.ring.desc + 16 * i, d));
          tables.forEach((t, k) => t.forEach((d, j) => writePDesc(rig.memory, tableAt(k) + 16 * j, d)));
          drainGarbage(new PackedQueueDevice(rig.memory, rig.state), rig.memory, size);
          expect(rig.guardsIntact()).toBe(true);
        },
      ),
      { seed: 42, numRuns: 400 },
    );
  });

  describe('API misuse by device code is an InvalidArgumentError', () => {
    it('pushUsed of an id not popped, twice, or out of order under VIRTIO_F_IN_ORDER; unpop of more than popped or of a pushed chain', () => {
      const h = packedHostileRig({ inOrder: true });
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

/** Our driver with two chains in flight, seen by a mini device: a 1 + 1 segment chain (16 writable bytes, token 11) and one readable buffer (token 22). */
interface DriverRig {
  driver: SplitQueueDriver | PackedQueueDriver;
  guardsIntact(): boolean;
  /** The ids the device returns for the two chains. */
  ids: [number, number];
  /** The device returns `id` with `len` written (a used descriptor covering `descs` descriptors, packed). */
  push(id: number, len: number, descs?: number): void;
}

function splitTwoInFlight() {
  const rig = ringRig(SIZE, { gpa: MEM, memSize: END - MEM });
  const driver = new SplitQueueDriver(rig.memory, rig.state);
  const device = new MiniDevice(rig.memory, rig.ring);
  const buf = rig.alloc.alloc(64, 16);
  expect(driver.addChain([buf, buf], [8, 16], 1, 1, 11)).toBe(true);
  expect(driver.addBuffer(buf, 8, false, 22)).toBe(true);
  driver.publish();
  const chains = [device.pop()!, device.pop()!];
  const ids: [number, number] = [chains[0].head, chains[1].head];
  const push = (id: number, len: number): void => {
    device.push(id, len);
    device.publish();
  };
  return { ...rig, driver, device, chains, ids, push };
}

function packedTwoInFlight(inOrder = false) {
  const rig = packedRig(SIZE, { gpa: MEM, memSize: END - MEM, inOrder });
  const driver = new PackedQueueDriver(rig.memory, rig.state);
  const device = new MiniPackedDevice(rig.memory, rig.ring);
  const buf = rig.alloc.alloc(64, 16);
  expect(driver.addChain([buf, buf], [8, 16], 1, 1, 11)).toBe(true);
  expect(driver.addBuffer(buf, 8, false, 22)).toBe(true);
  driver.publish();
  const chains = [device.pop()!, device.pop()!];
  const ids: [number, number] = [chains[0].id, chains[1].id];
  const push = (id: number, len: number, descs = 1): void => device.push(id, len, descs);
  return { ...rig, driver, device, chains, ids, buf, push };
}

function expectGetUsedRefused(r: DriverRig, code: VirtqueueErrorCode, value: number): void {
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

describe.each([
  { name: 'split', twoInFlight: splitTwoInFlight as () => DriverRig, used: '2.7.8', len: '2.7.8.2' },
  { name: 'packed', twoInFlight: packedTwoInFlight as () => DriverRig, used: '2.8.22', len: '2.8.4' },
])('$name ring driver against a hostile device: the rules both formats share', ({ twoInFlight, used, len }) => {
  it.each([SIZE, 0xffff])(`${used}: a used id must be one the driver handed out (id %i)`, (id) => {
    const r = twoInFlight();
    r.push(id, 0);
    expectGetUsedRefused(r, 'USED_ID_OUT_OF_RANGE', id);
  });

  it(`${used}: a used id must name a chain in flight (not one already returned)`, () => {
    const r = twoInFlight();
    r.push(r.ids[1], 0);
    expect(r.driver.getUsed()).toBe(22);
    r.push(r.ids[1], 0);
    expect(() => r.driver.getUsed()).toThrow(expect.objectContaining({ code: 'USED_ID_NOT_IN_FLIGHT', value: r.ids[1] }));
    expect(r.driver.numFree).toBe(SIZE - 2);
  });

  it(`${len}: a used length cannot exceed the bytes of the chain’s device-writable buffers`, () => {
    const r = twoInFlight();
    r.push(r.ids[0], 17, 2);
    expectGetUsedRefused(r, 'USED_LEN_TOO_LARGE', 17);
  });
});

describe('split ring driver against a hostile device: split-only rules', () => {
  it('2.7.8: a used id must be the head of a chain in flight (not its second descriptor)', () => {
    const r = splitTwoInFlight();
    const second = r.chains[0].descs[1];
    r.push(second, 0);
    expectGetUsedRefused(r, 'USED_ID_NOT_IN_FLIGHT', second);
  });

  it('2.7.8: used.idx cannot run ahead of the chains in flight', () => {
    const r = splitTwoInFlight();
    r.memory.writeU16(at.usedIdx(r.ring), 3);
    expectGetUsedRefused(r, 'USED_INDEX_JUMP', 3);
  });
});

describe('packed ring driver against a hostile device: packed-only rules', () => {
  it('2.8.22: a used buffer id must name a buffer in flight (not a free id)', () => {
    const r = packedTwoInFlight();
    r.push(5, 0);
    expectGetUsedRefused(r, 'USED_ID_NOT_IN_FLIGHT', 5);
  });

  it('2.8.22: ... nor one added but not yet made available (publish)', () => {
    const r = packedTwoInFlight();
    expect(r.driver.addBuffer(r.buf, 8, true, 33)).toBe(true); // id 2, not published
    r.push(2, 0);
    expect(() => r.driver.getUsed()).toThrow(expect.objectContaining({ code: 'USED_ID_NOT_IN_FLIGHT', value: 2 }));
  });

  it('2.8.4: the length of a used descriptor without WRITE is reserved and ignored (usedLen 0)', () => {
    const r = packedTwoInFlight();
    r.device.push(r.ids[1], 0xffffffff, 1, { flags: AVAIL | USED });
    expect(r.driver.getUsed()).toBe(22);
    expect(r.driver.usedLen).toBe(0);
  });

  it('2.8.1: a descriptor that is available, or used for the other wrap counter, is not a used one', () => {
    const r = packedTwoInFlight();
    r.device.push(r.ids[1], 0, 1, { flags: 0 }); // used for wrap 0
    expect(r.driver.usedAvailable()).toBe(0);
    expect(r.driver.getUsed()).toBe(-1);
    expect(r.driver.pending).toBe(2);
  });

  it('2.8.9: in order, a used id not in flight, or a batch’s last length too large, is refused before anything is reaped', () => {
    const r = packedTwoInFlight(true);
    r.push(6, 0, 3);
    expectGetUsedRefused(r, 'USED_ID_NOT_IN_FLIGHT', 6);
    const s = packedTwoInFlight(true);
    s.device.push(s.ids[1], 9, 3, { flags: AVAIL | USED | WRITE }); // readable-only buffer, 9 bytes "written"
    expectGetUsedRefused(s, 'USED_LEN_TOO_LARGE', 9);
  });

  it('2.8.9: a device claiming in-order that reports a buffer after a later one (out of order) is refused, and nothing is lost or returned twice', () => {
    const r = packedTwoInFlight(true);
    // The later buffer first: under IN_ORDER that one descriptor also gives back the earlier one, used completely.
    r.push(r.ids[1], 0, 3);
    expect([r.driver.getUsed(), r.driver.usedLen]).toEqual([11, 16]);
    expect([r.driver.getUsed(), r.driver.usedLen]).toEqual([22, 0]);
    expect(r.driver.addBuffer(r.buf, 8, true, 33)).toBe(true);
    r.driver.publish();
    expect(r.device.pop()).toBeDefined();
    // Then the earlier one, already given back: the driver refuses it and keeps the buffer in flight.
    r.push(r.ids[0], 4, 1);
    for (let attempt = 0; attempt < 2; attempt++) {
      expect(() => r.driver.getUsed()).toThrow(expect.objectContaining({ name: 'VirtqueueError', code: 'USED_ID_NOT_IN_FLIGHT', value: r.ids[0] }));
      expect(r.driver.usedAvailable()).toBe(1);
      expect([r.driver.pending, r.driver.numFree]).toEqual([1, SIZE - 1]);
    }
    expect(r.guardsIntact()).toBe(true);
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
