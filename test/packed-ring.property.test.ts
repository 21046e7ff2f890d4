/**
 * Our packed driver against our packed device in one thread, under random
 * interleavings of every ring operation (sizes 1..1024, powers of two or
 * not (2.8.10.1), chain shapes direct
 * and indirect, completion out of order or in-order batches, many wraps,
 * unpop), checked against a model of what must come out; every kick and
 * interrupt decision against the spec's event rule read literally (2.8.10);
 * and no lost wake-up on either side.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DescriptorChain } from '../src/ring/chain.js';
import { PackedQueueDevice } from '../src/ring/packed-device.js';
import { PackedQueueDriver } from '../src/ring/packed-driver.js';
import { packedEventPassed, packedPosition } from '../src/ring/packed-layout.js';
import { type Cursor, type PackedRig, advance, eventHit, packedRig, shouldNotify } from '../src/testing/mini-packed-driver.js';

const MAX_ENTRIES = 4;
const KINDS = ['add', 'publish', 'pop', 'complete', 'publishUsed', 'reap', 'unpop', 'notifyOn', 'notifyOff', 'arm', 'irqOn', 'irqOff'] as const;
type Op = { kind: (typeof KINDS)[number]; n: number };

interface Scenario {
  size: number;
  start: Cursor;
  eventIdx: boolean;
  indirect: boolean;
  inOrder: boolean;
  shapes: Array<{ out: number; in: number }>;
  ops: Op[];
}

const AVAIL = 1 << 7;
const USED = 1 << 15;
const cursorOf = (v: number): Cursor => ({ idx: v & 0x7fff, wrap: v >>> 15 });
const distance = (from: number, to: number, size: number): number => (packedPosition(to, size) - packedPosition(from, size) + 2 * size) % (2 * size);

function check(ok: boolean, what: () => string): void {
  if (!ok) throw new Error(what());
}

class Pair {
  readonly rig: PackedRig;
  readonly driver: PackedQueueDriver;
  readonly device: PackedQueueDevice;
  private readonly chain: DescriptorChain;
  private readonly data: number;
  private added = 0;
  /** Chains popped and not pushed, in pop order. */
  private held: Array<{ i: number; id: number; cap: number }> = [];
  /** Length pushed used per token (-1 until pushed). */
  private readonly lenOf = new Map<number, number>();
  private readonly reaped = new Set<number>();
  private lastPublished: number;
  /** Device asleep waiting for more than `posted` chains (armForMoreThan said false). */
  private deviceAsleep: number | null = null;
  private driverAsleep = false;
  /** Expected pop order after an unpop: tokens to come first. */
  private replay: number[] = [];
  readonly stats = { kicks: 0, irqs: 0, unpops: 0, wraps: 0 };

  constructor(readonly s: Scenario) {
    const { size } = s;
    this.rig = packedRig(size, { memSize: size * (48 + 16 * MAX_ENTRIES) + 16384, start: s.start, eventIdx: s.eventIdx, indirect: s.indirect, inOrder: s.inOrder });
    const tables = s.indirect ? { base: this.rig.alloc.alloc(size * MAX_ENTRIES * 16, 16), maxEntries: MAX_ENTRIES } : undefined;
    this.driver = new PackedQueueDriver(this.rig.memory, this.rig.state, { indirectTables: tables });
    this.device = new PackedQueueDevice(this.rig.memory, this.rig.state);
    this.chain = this.device.newChain();
    this.data = this.rig.alloc.alloc(4096 + 256, 16);
    this.lastPublished = this.driver.nextAvail;
  }

  private segs(i: number) {
    const shape = this.s.shapes[i % this.s.shapes.length];
    const nOut = Math.min(shape.out, this.s.size);
    const nIn = Math.min(shape.in, this.s.size - nOut);
    const n = nOut + nIn;
    const lens = Array.from({ length: n }, (_, k) => 1 + ((i * 37 + k * 11) % 200));
    const addrs = Array.from({ length: n }, (_, k) => this.data + ((i * 13 + k * 5) % 512) * 8);
    return { addrs, lens, nOut, nIn, cap: lens.slice(nOut).reduce((a, b) => a + b, 0) };
  }

  private word(gpa: number): { offWrap: number; flags: number } {
    return { offWrap: this.rig.memory.readU16(gpa), flags: this.rig.memory.readU16(gpa + 2) & 3 };
  }

  /** Chains available from the device's next position, walked from the flags (independent of the device's cache). */
  private freshAvailable(): number {
    const { size } = this.s;
    let c = cursorOf(this.device.nextAvail);
    let room = size - distance(this.device.nextUsed, this.device.nextAvail, size);
    let n = 0;
    while (room > 0) {
      let f = this.rig.memory.readU16(this.rig.ring.desc + 16 * c.idx + 14);
      if (((f & AVAIL) !== 0 ? 1 : 0) !== c.wrap || ((f & USED) !== 0 ? 1 : 0) === c.wrap) break;
      let len = 1;
      while ((f & 5) === 1) {
        c = advance(c, 1, size);
        f = this.rig.memory.readU16(this.rig.ring.desc + 16 * c.idx + 14);
        len++;
      }
      c = advance(c, 1, size);
      room -= len;
      n++;
    }
    return n;
  }

  private usedWaiting(): boolean {
    const c = cursorOf(this.driver.nextUsed);
    const f = this.rig.memory.readU16(this.rig.ring.desc + 16 * c.idx + 14);
    const a = (f & AVAIL) !== 0 ? 1 : 0;
    return a === ((f & USED) !== 0 ? 1 : 0) && a === c.wrap;
  }

  run(op: Op): void {
    const { driver, device, s } = this;
    switch (op.kind) {
      case 'add':
        for (let k = 0; k <= op.n % 4; k++) {
          const g = this.segs(this.added);
          const before = driver.nextAvail;
          if (!driver.addChain(g.addrs, g.lens, g.nOut, g.nIn, this.added)) break;
          // The buffer id is in the chain's last descriptor (2.8.6): the model learns which id carries which token.
          const last = advance(cursorOf(before), distance(before, driver.nextAvail, s.size) - 1, s.size);
          this.idToken.set(this.rig.memory.readU16(this.rig.ring.desc + 16 * last.idx + 12), this.added);
          this.lenOf.set(this.added, -1);
          this.added++;
        }
        break;
      case 'publish': {
        const ev = this.word(this.rig.ring.deviceEvent);
        const from = this.lastPublished;
        const kick = driver.publish();
        const n = distance(from, driver.nextAvail, s.size);
        const want = shouldNotify(ev.flags, ev.offWrap, cursorOf(from), n, s.size, s.eventIdx);
        check(kick === want, () => `publish() said kick=${kick}, the spec rule says ${want} (event ${JSON.stringify(ev)}, from ${from.toString(16)}, ${n} descriptors)`);
        if (cursorOf(driver.nextAvail).wrap !== cursorOf(from).wrap) this.stats.wraps++;
        this.lastPublished = driver.nextAvail;
        if (kick) {
          this.stats.kicks++;
          this.deviceAsleep = null;
        }
        if (this.deviceAsleep !== null) {
          check(this.freshAvailable() <= this.deviceAsleep, () => `lost kick: device asleep for more than ${this.deviceAsleep}, ${this.freshAvailable()} available`);
        }
        break;
      }
      case 'pop':
        this.deviceAsleep = null;
        for (let k = 0; k <= op.n % 4; k++) {
          const avail = device.available();
          check(avail <= this.freshAvailable(), () => `available() ${avail} > ${this.freshAvailable()}`);
          if (!device.pop(this.chain)) {
            check(this.freshAvailable() === 0, () => 'pop() false with chains available');
            break;
          }
          const token = this.idToken.get(this.chain.head);
          if (token === undefined) throw new Error(`popped unknown id ${this.chain.head}`);
          this.popOrder.push(token);
          if (this.replay.length > 0) check(this.replay.shift() === token, () => `after unpop, pop returned ${token} out of order`);
          const g = this.segs(token);
          check(this.chain.readable === g.nOut && this.chain.writable === g.nIn && this.chain.writableBytes === g.cap, () => `chain ${token} has the wrong shape`);
          this.held.push({ i: token, id: this.chain.head, cap: this.chain.writableBytes });
        }
        break;
      case 'complete': {
        for (let k = 0; k <= op.n % 3 && this.held.length > 0; k++) {
          const at = s.inOrder ? 0 : (op.n >>> 3) % this.held.length;
          const c = this.held.splice(at, 1)[0];
          const len = c.cap === 0 ? 0 : (op.n + k) % 2 === 0 ? c.cap : (op.n * 7 + k) % (c.cap + 1);
          device.pushUsed(c.id, len);
          this.lenOf.set(c.i, len);
        }
        break;
      }
      case 'publishUsed': {
        const ev = this.word(this.rig.ring.driverEvent);
        const from = device.nextUsed;
        const irq = device.publishUsed();
        const n = distance(from, device.nextUsed, s.size);
        const want = shouldNotify(ev.flags, ev.offWrap, cursorOf(from), n, s.size, s.eventIdx);
        check(irq === want, () => `publishUsed() said interrupt=${irq}, the spec rule says ${want}`);
        if (irq) {
          this.stats.irqs++;
          this.driverAsleep = false;
        }
        if (this.driverAsleep) check(!this.usedWaiting(), () => 'lost interrupt: driver asleep with used buffers waiting');
        break;
      }
      case 'reap': {
        this.driverAsleep = false;
        const ready = driver.usedAvailable();
        let got = 0;
        for (let t = driver.getUsed(); t !== -1; t = driver.getUsed()) {
          check(!this.reaped.has(t), () => `token ${t} reaped twice`);
          check(this.lenOf.get(t) === driver.usedLen, () => `token ${t}: usedLen ${driver.usedLen}, pushed ${this.lenOf.get(t)}`);
          this.reaped.add(t);
          got++;
        }
        check(got === ready, () => `usedAvailable() said ${ready}, getUsed() gave ${got}`);
        break;
      }
      case 'unpop': {
        // Give back a tail of the chains popped and not pushed (the last popped ones).
        const n = Math.min(op.n % 4, this.tailUnpushed());
        if (n === 0) break;
        const back = this.held.splice(this.held.length - n, n);
        this.popOrder.splice(this.popOrder.length - n, n);
        device.unpop(n);
        this.replay = [...back.map((c) => c.i), ...this.replay];
        this.deviceAsleep = null;
        this.stats.unpops++;
        break;
      }
      case 'notifyOn':
        this.deviceAsleep = null;
        device.enableNotify(op.n % 3);
        break;
      case 'notifyOff':
        this.deviceAsleep = null;
        device.disableNotify();
        break;
      case 'arm': {
        const posted = device.available();
        const more = device.armForMoreThan(posted);
        check(more === this.freshAvailable() > posted, () => 'armForMoreThan disagrees with the ring');
        // Sleeping needs kicks: only meaningful with notifications the device asked for.
        this.deviceAsleep = more ? null : posted;
        break;
      }
      case 'irqOn': {
        const waiting = driver.enableInterrupts();
        check(waiting === this.usedWaiting(), () => 'enableInterrupts() disagrees with the ring');
        this.driverAsleep = !waiting;
        break;
      }
      case 'irqOff':
        this.driverAsleep = false;
        driver.disableInterrupts();
        break;
    }
  }

  /** Chains at the end of the pop order that were not pushed: the ones unpop may give back. */
  private tailUnpushed(): number {
    const held = new Set(this.held.map((c) => c.i));
    let n = 0;
    while (n < this.popOrder.length && held.has(this.popOrder[this.popOrder.length - 1 - n])) n++;
    return n;
  }

  private readonly popOrder: number[] = [];
  private readonly idToken = new Map<number, number>();

  /** Drain everything: all chains added come back exactly once. */
  finish(): void {
    this.run({ kind: 'publish', n: 0 });
    for (let guard = 0; this.reaped.size < this.added; guard++) {
      check(guard < 4 * this.s.size + 10, () => `stuck: ${this.reaped.size} of ${this.added} reaped`);
      this.run({ kind: 'pop', n: 3 });
      while (this.held.length > 0) this.run({ kind: 'complete', n: 2 });
      this.run({ kind: 'publishUsed', n: 0 });
      this.run({ kind: 'reap', n: 0 });
    }
    check(this.driver.pending === 0 && this.driver.numFree === this.s.size, () => `driver not back to empty: ${this.driver.pending} pending, ${this.driver.numFree} free`);
    check(this.rig.guardsIntact(), () => 'guard bytes changed');
  }
}

describe('packed ring: our driver and our device under random interleavings', () => {
  const scenario = fc
    .record({
      // Powers of two and any other size up to 1024 (2.8.10.1).
      size: fc.oneof(fc.integer({ min: 0, max: 10 }).map((log2) => 1 << log2), fc.integer({ min: 1, max: 1024 })),
      startIdx: fc.nat(1023),
      startWrap: fc.constantFrom(0, 1),
      eventIdx: fc.boolean(),
      indirect: fc.boolean(),
      inOrder: fc.boolean(),
      shapes: fc.array(fc.record({ out: fc.nat(3), in: fc.nat(3) }).filter((x) => x.out + x.in > 0), { minLength: 1, maxLength: 6 }),
      ops: fc.array(fc.record({ kind: fc.constantFrom(...KINDS), n: fc.nat(255) }), { minLength: 10, maxLength: 300 }),
    })
    .map(
      (r): Scenario => ({
        size: r.size,
        start: { idx: r.startIdx % r.size, wrap: r.startWrap },
        eventIdx: r.eventIdx,
        indirect: r.indirect,
        inOrder: r.inOrder,
        shapes: r.shapes,
        ops: r.ops,
      }),
    );

  it('2.8: every chain comes back once with its length; kicks and interrupts follow 2.8.10 exactly; no lost wake-up; unpop replays', () => {
    const totals = { kicks: 0, irqs: 0, unpops: 0, wraps: 0 };
    fc.assert(
      fc.property(scenario, (s) => {
        const p = new Pair(s);
        for (const op of s.ops) p.run(op);
        p.finish();
        for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += p.stats[k];
      }),
      { numRuns: 300 },
    );
    expect(totals.kicks).toBeGreaterThan(0);
    expect(totals.irqs).toBeGreaterThan(0);
    expect(totals.unpops).toBeGreaterThan(0);
    expect(totals.wraps).toBeGreaterThan(0);
  });

  it('2.8.1: many wraps of a small ring, out of order and in order', () => {
    for (const inOrder of [false, true]) {
      for (const size of [1, 2, 3, 4, 5]) {
        const s: Scenario = { size, start: { idx: 0, wrap: 1 }, eventIdx: true, indirect: false, inOrder, shapes: [{ out: 1, in: 1 }, { out: 0, in: 1 }], ops: [] };
        const p = new Pair(s);
        for (let k = 0; k < 200 * size; k++) {
          for (const kind of ['add', 'publish', 'pop', 'complete', 'publishUsed', 'reap', 'irqOn', 'arm'] as const) p.run({ kind, n: k });
        }
        p.finish();
        expect(p.stats.wraps).toBeGreaterThan(50);
      }
    }
  });
});

describe('2.8.10: the event rule', () => {
  it('packedEventPassed() agrees with walking the descriptors one by one, for every size, start, count and event', () => {
    fc.assert(
      fc.property(
        // Powers of two and any other size (2.8.10.1).
        fc.oneof(fc.integer({ min: 0, max: 15 }).map((log2) => 1 << log2), fc.integer({ min: 1, max: 32768 })).chain((size) => {
          return fc.tuple(fc.constant(size), fc.nat(2 * size - 1), fc.integer({ min: 1, max: size }), fc.nat(0xffff));
        }),
        ([size, old, n, offWrap]) => {
          const from: Cursor = old < size ? { idx: old, wrap: 1 } : { idx: old - size, wrap: 0 };
          const next = (old + n) % (2 * size);
          // Also aim an event near the range, so that hits are common.
          const near = ((from.idx + (offWrap % (n + 2))) % size) | ((offWrap & 1) << 15);
          for (const e of [offWrap, near]) expect(packedEventPassed(e, old, next, size)).toBe(eventHit(e, from, n, size));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
