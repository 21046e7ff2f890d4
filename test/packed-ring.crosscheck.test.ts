/**
 * Each side of our packed ring against an independent implementation of the
 * other side (src/testing/mini-packed-*.ts, written from virtio 1.2 section
 * 2.8), and our two sides against each other through one memory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GuestAllocator, QueueStateError } from '../src/index.js';
import { ChainReader, ChainWriter } from '../src/ring/chain-io.js';
import { createQueueDevice, createQueueDriver } from '../src/ring/create-queue.js';
import { PackedQueueDevice } from '../src/ring/packed-device.js';
import { PackedQueueDriver } from '../src/ring/packed-driver.js';
import { validateQueueSize, validateQueueState } from '../src/ring/queue-state.js';
import { MiniPackedDevice } from '../src/testing/mini-packed-device.js';
import { type Cursor, MiniPackedDriver, type PLayout, type Segment, packedRig } from '../src/testing/mini-packed-driver.js';
import { pattern, segmentsOf } from '../src/testing/split-ring.js';

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const capOf = (segs: readonly Segment[]): number => sum(segs.filter((s) => s.write).map((s) => s.len));

/** A random permutation of [0, n) from a seed. */
function permutation(n: number, seed: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  let x = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const startArb = (size: number): fc.Arbitrary<Cursor> => fc.record({ idx: fc.nat(size - 1), wrap: fc.constantFrom(0, 1) });
const shapeArb = fc
  .record({ read: fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 5 }), write: fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 4 }), indirect: fc.boolean() })
  .filter((s) => s.read.length + s.write.length > 0);
type Shape = typeof shapeArb extends fc.Arbitrary<infer T> ? T : never;

describe('PackedQueueDevice against the mini packed driver', () => {
  it('2.8.6 / 2.8.7 / 2.8.9: pop() yields each buffer as written (direct lists, indirect tables, across wraps); used descriptors reach the driver in completion order, in-order batches as one', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 3, 4, 5, 16, 64, 100).chain((size) => fc.tuple(fc.constant(size), startArb(size))),
        fc.array(shapeArb, { minLength: 1, maxLength: 50 }),
        fc.boolean(),
        fc.nat(),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 7 }),
        ([size, start], shapes, inOrder, seed, fulls) => {
          const rig = packedRig(size, { start, indirect: true, inOrder });
          const mini = new MiniPackedDriver(rig.memory, rig.ring, start, inOrder);
          const device = new PackedQueueDevice(rig.memory, rig.state);
          const data = new GuestAllocator(rig.memory, rig.alloc.alloc(16, 16));
          const chain = device.newChain();
          const reader = new ChainReader();
          const writer = new ChainWriter();
          let k = 0;
          let rounds = 0;
          const fit = (s: Shape): Shape => {
            const read = s.read.slice(0, size);
            return { ...s, read, write: s.write.slice(0, size - read.length) };
          };
          while (k < shapes.length) {
            data.reset();
            const round: Array<{ id: number; segs: Segment[]; descs: number; written: number }> = [];
            for (; k < shapes.length; k++) {
              const s = fit(shapes[k]);
              const segs: Segment[] = [...s.read.map((len) => ({ addr: data.alloc(len, 1), len, write: false })), ...s.write.map((len) => ({ addr: data.alloc(len, 1), len, write: true }))];
              const layout: PLayout = s.indirect ? { table: data.alloc(16 * segs.length, 1) } : {};
              const id = mini.addChain(segs, layout);
              if (id === undefined) break;
              mini.scatter(segs.filter((x) => !x.write), pattern(sum(segs.filter((x) => !x.write).map((x) => x.len)), k));
              round.push({ id, segs, descs: s.indirect ? 1 : segs.length, written: 0 });
            }
            expect(round.length).toBeGreaterThan(0);
            expect(device.available()).toBe(round.length);
            round.forEach((c, j) => {
              expect(device.pop(chain)).toBe(true);
              expect(chain.head).toBe(c.id);
              expect(segmentsOf(chain)).toEqual(c.segs);
              expect(chain.descCount).toBe(c.segs.length);
              const got = new Uint8Array(chain.readableBytes);
              reader.reset(chain).copyTo(got, 0, got.length);
              expect(Array.from(got)).toEqual(Array.from(mini.gather(c.segs.filter((x) => !x.write))));
              c.written = fulls[j % fulls.length] ? chain.writableBytes : Math.floor(chain.writableBytes / 3);
              writer.reset(chain).copyFrom(pattern(c.written, 1000 + j), 0, c.written);
            });
            expect(device.pop(chain)).toBe(false);
            const order = inOrder ? round : permutation(round.length, seed + rounds).map((i) => round[i]);
            for (const c of order) device.pushUsed(c.id, c.written);
            expect(device.publishUsed()).toBe(true); // the mini driver never suppresses
            expect(mini.reap()).toEqual(order.map((c) => ({ id: c.id, len: c.written, write: c.written > 0 })));
            for (const [j, c] of round.entries()) {
              expect(Array.from(mini.gather(c.segs.filter((x) => x.write)).subarray(0, c.written))).toEqual(Array.from(pattern(c.written, 1000 + j)));
            }
            rounds++;
          }
          expect(mini.numFree).toBe(size);
          expect(device.nextAvail).toBe(mini.next.idx | (mini.next.wrap << 15));
          expect(device.nextUsed).toBe(device.nextAvail);
          expect(rig.guardsIntact()).toBe(true);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('2.8.9: in order, a run of buffers used completely costs one used descriptor (the last id, skipping the whole batch); a partly written one gets its own', () => {
    const size = 8;
    const rig = packedRig(size, { inOrder: true });
    const mini = new MiniPackedDriver(rig.memory, rig.ring, undefined, true);
    const device = new PackedQueueDevice(rig.memory, rig.state);
    const chain = device.newChain();
    const buf = rig.alloc.alloc(256, 16);
    const ids = [0, 1, 2, 3].map((j) => mini.addChain([{ addr: buf + 16 * j, len: 8, write: false }, { addr: buf + 128 + 16 * j, len: 16, write: true }])!);
    for (const id of ids) {
      expect(device.pop(chain)).toBe(true);
      expect(chain.head).toBe(id);
    }
    device.pushUsed(ids[0], 16);
    device.pushUsed(ids[1], 16);
    device.pushUsed(ids[2], 5); // partial: must be written out
    device.pushUsed(ids[3], 16);
    device.publishUsed();
    // Used descriptors at ring index 0 (id 2, skipping 6 descriptors) and 6 (id 3).
    expect(mini.getDesc(0)).toMatchObject({ id: ids[2], len: 5 });
    expect(mini.getDesc(6)).toMatchObject({ id: ids[3], len: 16 });
    expect(mini.getDesc(2).flags & (1 << 15)).toBe(0); // skipped: still the available descriptor
    expect(mini.reap()).toEqual([
      { id: ids[0], len: 16, write: true },
      { id: ids[1], len: 16, write: true },
      { id: ids[2], len: 5, write: true },
      { id: ids[3], len: 16, write: true },
    ]);
    expect(rig.guardsIntact()).toBe(true);
  });
});

describe('PackedQueueDriver against the mini packed device', () => {
  it('2.8.21 / 2.8.22: chains come out as added (direct lists or indirect tables, ids from the free list, across wraps); used buffers come back in any order, or in-order batches, with their lengths', () => {
    const MAX = 4;
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 3, 4, 5, 16, 64, 100).chain((size) => fc.tuple(fc.constant(size), startArb(size))),
        fc.array(shapeArb, { minLength: 1, maxLength: 50 }),
        fc.boolean(),
        fc.boolean(),
        fc.nat(),
        fc.array(fc.nat(3), { minLength: 1, maxLength: 6 }),
        ([size, start], shapes, inOrder, useIndirect, seed, batchCuts) => {
          const rig = packedRig(size, { start, indirect: useIndirect, inOrder });
          const tables = useIndirect ? { base: rig.alloc.alloc(size * MAX * 16, 16), maxEntries: MAX } : undefined;
          const driver = new PackedQueueDriver(rig.memory, rig.state, { indirectTables: tables });
          const mini = new MiniPackedDevice(rig.memory, rig.ring, start);
          const data = rig.alloc.alloc(4096, 16);
          let k = 0;
          let rounds = 0;
          while (k < shapes.length) {
            const round: Array<{ token: number; segs: Segment[]; descs: number }> = [];
            for (; k < shapes.length; k++) {
              const s = shapes[k];
              const nOut = Math.min(s.read.length, size);
              const nIn = Math.min(s.write.length, size - nOut);
              const lens = [...s.read.slice(0, nOut), ...s.write.slice(0, nIn)];
              const addrs = lens.map((_, j) => data + 8 * ((k * 7 + j * 3) % 400));
              const segs = lens.map((len, j) => ({ addr: addrs[j], len, write: j >= nOut }));
              if (!driver.addChain(addrs, lens, nOut, nIn, 5000 + k)) break;
              round.push({ token: 5000 + k, segs, descs: useIndirect && lens.length > 1 && lens.length <= MAX ? 1 : lens.length });
            }
            expect(round.length).toBeGreaterThan(0);
            expect(mini.pop()).toBeUndefined(); // nothing visible before publish()
            expect(driver.publish()).toBe(true); // the mini device never suppresses
            const popped = round.map((c) => {
              const m = mini.pop()!;
              expect(m).toBeDefined();
              expect(m.segs).toEqual(c.segs);
              expect(m.descs).toBe(c.descs);
              return { ...c, id: m.id, len: Math.floor(capOf(c.segs) / 2) };
            });
            expect(mini.pop()).toBeUndefined();
            expect(new Set(popped.map((c) => c.id)).size).toBe(popped.length);
            expect(driver.numFree).toBe(size - sum(popped.map((c) => c.descs)));
            let expected: Array<{ token: number; len: number }>;
            if (!inOrder) {
              const order = permutation(popped.length, seed + rounds).map((i) => popped[i]);
              for (const c of order) mini.push(c.id, c.len, c.descs);
              expected = order.map((c) => ({ token: c.token, len: c.len }));
            } else {
              // Batches: one used descriptor for the last buffer of each; the others count as used completely.
              expected = [];
              for (let j = 0, b = 0; j < popped.length; b++) {
                const end = Math.min(popped.length, j + 1 + batchCuts[b % batchCuts.length]);
                const batch = popped.slice(j, end);
                const last = batch[batch.length - 1];
                mini.push(last.id, last.len, sum(batch.map((c) => c.descs)));
                for (const c of batch) expected.push({ token: c.token, len: c === last ? c.len : capOf(c.segs) });
                j = end;
              }
            }
            expect(driver.usedAvailable()).toBe(popped.length);
            const got: Array<{ token: number; len: number }> = [];
            for (let t = driver.getUsed(); t !== -1; t = driver.getUsed()) got.push({ token: t, len: driver.usedLen });
            expect(got).toEqual(expected);
            expect(driver.pending).toBe(0);
            expect(driver.numFree).toBe(size);
            rounds++;
          }
          expect(driver.nextUsed).toBe(mini.nextUsed.idx | (mini.nextUsed.wrap << 15));
          expect(driver.nextAvail).toBe(driver.nextUsed);
          expect(rig.guardsIntact()).toBe(true);
        },
      ),
      { numRuns: 120 },
    );
  });
});

describe('PackedQueueDriver and PackedQueueDevice through one memory', () => {
  it.each([
    ['out of order', false, false],
    ['out of order, event idx, indirect', true, false],
    ['in order', false, true],
    ['in order, event idx, indirect', true, true],
  ])('2.8: 10 x size chains with random completion (%s) all come back once, with their bytes and lengths', (_, eventIdx, inOrder) => {
    for (const size of [1, 3, 8, 64, 100, 256]) {
      const rig = packedRig(size, { eventIdx, indirect: eventIdx, inOrder, memSize: 1 << 21 });
      const driver = createQueueDriver(rig.memory, rig.state, eventIdx ? { indirectTables: { base: rig.alloc.alloc(size * 3 * 16, 16), maxEntries: 3 } } : {});
      const device = createQueueDevice(rig.memory, rig.state);
      expect(driver).toBeInstanceOf(PackedQueueDriver);
      expect(device).toBeInstanceOf(PackedQueueDevice);
      const chain = device.newChain();
      const reader = new ChainReader();
      const writer = new ChainWriter();
      const total = 10 * size;
      const bufs = rig.alloc.alloc(total * 64, 16);
      const held: Array<{ id: number; token: number; cap: number }> = [];
      const lenOf = new Map<number, number>();
      const reaped = new Set<number>();
      let x = 12345 + size;
      const rnd = (n: number): number => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return (x >>> 8) % n;
      };
      let added = 0;
      let kicks = 0;
      let irqs = 0;
      for (let guard = 0; reaped.size < total; guard++) {
        expect(guard).toBeLessThan(100 * total);
        for (let m = 1 + rnd(4); m > 0 && added < total; m--) {
          const n = Math.min(1 + (added % 3), size);
          const base = bufs + 64 * added;
          const addrs = [base, base + 16, base + 32].slice(0, n);
          const lens = [16, 16, 16].slice(0, n);
          const nOut = n > 1 ? 1 : added % 2;
          rig.memory.write(base, pattern(16, added));
          if (!driver.addChain(addrs, lens, nOut, n - nOut, added)) break;
          added++;
        }
        if (driver.publish()) kicks++;
        for (let m = rnd(5); m > 0 && device.pop(chain); m--) {
          const token = (chain.segIdx[0] - chain.segRegion[0].bias - bufs) / 64;
          if (chain.readable > 0) {
            const got = new Uint8Array(16);
            reader.reset(chain).copyTo(got, 0, 16);
            expect(Array.from(got)).toEqual(Array.from(pattern(16, token)));
          }
          const len = chain.writableBytes === 0 ? 0 : rnd(2) === 0 ? chain.writableBytes : 1 + rnd(chain.writableBytes);
          writer.reset(chain).copyFrom(pattern(len, 7000 + token), 0, len);
          lenOf.set(token, len);
          held.push({ id: chain.head, token, cap: chain.writableBytes });
        }
        for (let m = rnd(4); m > 0 && held.length > 0; m--) {
          const c = held.splice(inOrder ? 0 : rnd(held.length), 1)[0];
          device.pushUsed(c.id, lenOf.get(c.token)!);
        }
        if (device.publishUsed()) irqs++;
        for (let t = driver.getUsed(); t !== -1; t = driver.getUsed()) {
          expect(reaped.has(t)).toBe(false);
          reaped.add(t);
          expect(driver.usedLen).toBe(lenOf.get(t));
          const n = Math.min(1 + (t % 3), size);
          const nOut = n > 1 ? 1 : t % 2;
          if (driver.usedLen > 0) {
            const back = new Uint8Array(16 * (n - nOut));
            rig.memory.read(bufs + 64 * t + 16 * nOut, back);
            expect(Array.from(back.subarray(0, driver.usedLen))).toEqual(Array.from(pattern(driver.usedLen, 7000 + t)));
          }
        }
        if (rnd(5) === 0) driver.disableInterrupts();
        else driver.enableInterrupts();
        if (rnd(5) === 0) device.disableNotify();
        else device.enableNotify();
      }
      expect(driver.pending).toBe(0);
      expect(driver.numFree).toBe(size);
      expect(device.available()).toBe(0);
      expect(kicks).toBeGreaterThan(0);
      expect(irqs).toBeGreaterThan(0);
      expect(rig.guardsIntact()).toBe(true);
    }
  });
});

describe('2.8.10.1 packed queue size need not be a power of two', () => {
  // Sizes around the edges: 1, small odd, and large odd up to the largest (32768 - 1).
  const SIZES = [1, 3, 100, 1000, 32767];
  /** Chains through 2.5 laps of the ring (the wrap counters flip at index size - 1 -> 0 several times); a lap and a bit for the largest. */
  const lapsOf = (size: number): number => (size > 4096 ? size + 2048 : Math.ceil(2.5 * size));
  /** Alternating shapes: one readable descriptor, then (room permitting) a readable and a writable one. */
  const shapeOf = (k: number, size: number, data: number): Segment[] =>
    k % 2 === 0 || size === 1
      ? [{ addr: data + 16 * (k % 64), len: 8 + (k % 5), write: false }]
      : [
          { addr: data + 16 * (k % 64), len: 12, write: false },
          { addr: data + 1024 + 16 * (k % 64), len: 16, write: true },
        ];

  it.each(SIZES)('2.8.10.1 packed queue size need not be a power of two: PackedQueueDriver (size %i) against the mini packed device, across wraps', (size) => {
    const rig = packedRig(size, { memSize: 16 * size + (1 << 20) });
    const driver = new PackedQueueDriver(rig.memory, rig.state);
    const mini = new MiniPackedDevice(rig.memory, rig.ring, { idx: 0, wrap: 1 });
    const data = rig.alloc.alloc(4096, 16);
    const total = lapsOf(size);
    let k = 0;
    let descs = 0;
    while (k < total) {
      const round: Array<{ token: number; segs: Segment[] }> = [];
      for (; k < total && round.length < 512; k++) {
        const segs = shapeOf(k, size, data);
        const nOut = segs.filter((x) => !x.write).length;
        if (!driver.addChain(segs.map((x) => x.addr), segs.map((x) => x.len), nOut, segs.length - nOut, k)) break;
        round.push({ token: k, segs });
      }
      expect(round.length).toBeGreaterThan(0);
      driver.publish();
      const popped = round.map((c) => {
        const m = mini.pop()!;
        expect(m?.segs).toEqual(c.segs);
        descs += m.descs;
        return { ...c, id: m.id, descs: m.descs, len: capOf(c.segs) };
      });
      expect(mini.pop()).toBeUndefined();
      // Completed last to first: out of order.
      for (const c of [...popped].reverse()) mini.push(c.id, c.len, c.descs);
      const got: Array<[number, number]> = [];
      for (let t = driver.getUsed(); t !== -1; t = driver.getUsed()) got.push([t, driver.usedLen]);
      expect(got).toEqual([...popped].reverse().map((c) => [c.token, c.len]));
      expect(driver.numFree).toBe(size);
    }
    expect(descs).toBeGreaterThan(size);
    expect(driver.nextAvail).toBe(mini.nextUsed.idx | (mini.nextUsed.wrap << 15));
    expect(driver.nextAvail & 0x7fff).toBe(descs % size);
    expect(rig.guardsIntact()).toBe(true);
  });

  it.each(SIZES)('2.8.10.1 packed queue size need not be a power of two: PackedQueueDevice (size %i) against the mini packed driver, across wraps', (size) => {
    const rig = packedRig(size, { memSize: 16 * size + (1 << 20) });
    const mini = new MiniPackedDriver(rig.memory, rig.ring, { idx: 0, wrap: 1 }, false);
    const device = new PackedQueueDevice(rig.memory, rig.state);
    const chain = device.newChain();
    const data = rig.alloc.alloc(4096, 16);
    const total = lapsOf(size);
    let k = 0;
    let descs = 0;
    while (k < total) {
      const round: Array<{ id: number; segs: Segment[] }> = [];
      for (; k < total && round.length < 512; k++) {
        const segs = shapeOf(k, size, data);
        const id = mini.addChain(segs);
        if (id === undefined) break;
        round.push({ id, segs });
        descs += segs.length;
      }
      expect(round.length).toBeGreaterThan(0);
      expect(device.available()).toBe(round.length);
      for (const c of round) {
        expect(device.pop(chain)).toBe(true);
        expect(chain.head).toBe(c.id);
        expect(segmentsOf(chain)).toEqual(c.segs);
      }
      expect(device.pop(chain)).toBe(false);
      for (const c of [...round].reverse()) device.pushUsed(c.id, capOf(c.segs));
      device.publishUsed();
      expect(mini.reap()).toEqual([...round].reverse().map((c) => ({ id: c.id, len: capOf(c.segs), write: capOf(c.segs) > 0 })));
    }
    expect(descs).toBeGreaterThan(size);
    expect(device.nextAvail).toBe(mini.next.idx | (mini.next.wrap << 15));
    expect(device.nextUsed).toBe(device.nextAvail);
    expect(device.nextAvail & 0x7fff).toBe(descs % size);
    expect(rig.guardsIntact()).toBe(true);
  });

  it('2.8.10.1: validateQueueState takes a packed queue of any size in [1, 32768]; a split queue still needs a power of two (2.7)', () => {
    const rig = packedRig(3);
    for (const size of [1, 3, 5, 100, 1000, 32767, 32768]) expect(() => validateQueueSize(size, 32768, true), `packed ${size}`).not.toThrow();
    for (const size of [0, -1, 2.5, 32769, Number.NaN]) expect(() => validateQueueSize(size, 32768, true), `packed ${size}`).toThrow(QueueStateError);
    for (const size of [3, 100, 32767]) expect(() => validateQueueSize(size), `split ${size}`).toThrow(QueueStateError);
    expect(() => validateQueueState(rig.state, rig.memory)).not.toThrow();
    expect(() => new PackedQueueDevice(rig.memory, rig.state)).not.toThrow();
    expect(() => new PackedQueueDriver(rig.memory, rig.state)).not.toThrow();
    expect(() => validateQueueState({ ...rig.state, packed: false }, rig.memory)).toThrow(QueueStateError);
    // The ring index in nextAvail / nextUsed stays below the size.
    expect(() => validateQueueState({ ...rig.state, nextAvail: 0x8003, nextUsed: 0x8003 }, rig.memory)).toThrow(QueueStateError);
    expect(() => validateQueueState({ ...rig.state, nextAvail: 0x0002, nextUsed: 0x8002 }, rig.memory)).not.toThrow();
  });
});
