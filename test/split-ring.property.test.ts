/**
 * Our driver against our device in one thread, under random interleavings of
 * every ring operation, checked against a model of what must come out; and
 * needEvent against a brute-force reading of the spec's notification rule.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DescriptorChain } from '../src/ring/chain.js';
import { needEvent } from '../src/ring/event-idx.js';
import type { QueueState } from '../src/ring/queue-state.js';
import { SplitQueueDevice } from '../src/ring/split-device.js';
import { SplitQueueDriver } from '../src/ring/split-driver.js';
import { type RingRig, at, indirectTables, passedEvent, ringRig, segmentsOf } from '../src/testing/split-ring.js';

const MAX_ENTRIES = 4;
const KINDS = ['add', 'fill', 'publish', 'pop', 'complete', 'publishUsed', 'reap', 'notifyOn', 'notifyOff', 'irqOn', 'irqOff'] as const;
type Op = { kind: (typeof KINDS)[number]; n: number };

interface Scenario {
  size: number;
  start: number;
  eventIdx: boolean;
  indirect: boolean;
  /** Complete chains in the order they were popped (else in an order picked by the ops). */
  inOrder: boolean;
  shapes: Array<{ out: number; in: number }>;
  ops: Op[];
}

function check(ok: boolean, what: () => string): void {
  if (!ok) throw new Error(what());
}

/**
 * Our driver and device on one ring, plus a model of where every chain is:
 * added -> published -> popped (in flight) -> pushed -> used-published -> reaped.
 * Chain i carries token 1e6 + i and segments derived from i, so the device can
 * tell which chain it got.
 */
class Pair {
  readonly rig: RingRig;
  readonly driver: SplitQueueDriver;
  readonly device: SplitQueueDevice;
  private readonly chain: DescriptorChain;
  private readonly data: number;
  private added = 0;
  private published = 0;
  private popped = 0;
  private usedPublished = 0;
  private readonly flight: Array<{ i: number; head: number; cap: number }> = [];
  private pushed: Array<{ i: number; head: number; len: number }> = [];
  private readonly visible: Array<{ i: number; head: number; len: number }> = [];
  readonly reaped: number[] = [];
  private readonly heads = new Set<number>();
  private held = 0;
  private availEvent = 0;
  private noNotify = false;
  private usedEvent = 0;
  private noInterrupt = false;

  constructor(readonly s: Scenario) {
    const { size } = s;
    this.rig = ringRig(size, { memSize: size * (48 + 16 * MAX_ENTRIES) + 16384, start: s.start, eventIdx: s.eventIdx, indirect: s.indirect });
    const state: QueueState = this.rig.state;
    this.driver = new SplitQueueDriver(this.rig.memory, state, { indirectTables: s.indirect ? indirectTables(this.rig, MAX_ENTRIES) : undefined });
    this.device = new SplitQueueDevice(this.rig.memory, state);
    this.chain = this.device.newChain();
    this.data = this.rig.alloc.alloc(4096 + 256, 16);
  }

  private u16 = (n: number): number => (this.s.start + n) & 0xffff;

  /** Chain i's segments: the shape cut to the queue size, lengths and addresses derived from i. */
  private segs(i: number): { addrs: number[]; lens: number[]; nOut: number; nIn: number; cost: number } {
    const shape = this.s.shapes[i % this.s.shapes.length];
    const nOut = Math.min(shape.out, this.s.size);
    const nIn = Math.min(shape.in, this.s.size - nOut);
    const n = nOut + nIn;
    const lens = Array.from({ length: n }, (_, k) => 1 + ((i * 37 + k * 11) % 200));
    const addrs = Array.from({ length: n }, (_, k) => this.data + ((i * 13 + k * 5) % 512) * 8);
    const cost = this.s.indirect && n > 1 && n <= MAX_ENTRIES ? 1 : n;
    return { addrs, lens, nOut, nIn, cost };
  }

  add(): boolean {
    const i = this.added;
    const { addrs, lens, nOut, nIn, cost } = this.segs(i);
    const free = this.driver.numFree;
    const ok =
      nOut + nIn === 1 && i % 3 === 0 ? this.driver.addBuffer(addrs[0], lens[0], nIn === 1, 1e6 + i) : this.driver.addChain(addrs, lens, nOut, nIn, 1e6 + i);
    check(ok === cost <= free, () => `chain ${i} costing ${cost} with ${free} free: add returned ${ok}`);
    if (!ok) return false;
    this.added++;
    this.held += cost;
    check(this.driver.numFree === this.s.size - this.held, () => `numFree ${this.driver.numFree}, expected ${this.s.size - this.held}`);
    return true;
  }

  publish(): void {
    const [old, next] = [this.u16(this.published), this.u16(this.added)];
    const kick = this.driver.publish();
    const want = old !== next && (this.s.eventIdx ? passedEvent(this.availEvent, old, next) : !this.noNotify);
    check(kick === want, () => `publish ${old}->${next}: kick ${kick}, spec says ${want}`);
    this.published = this.added;
    check(this.rig.memory.readU16(at.availIdx(this.rig.ring)) === next, () => 'avail.idx not stored');
  }

  pop(): boolean {
    const ok = this.device.pop(this.chain);
    check(ok === this.popped < this.published, () => `pop returned ${ok} with ${this.published - this.popped} published`);
    if (!ok) return false;
    const i = this.popped++;
    const { addrs, lens, nOut } = this.segs(i);
    const got = segmentsOf(this.chain);
    const same = got.length === lens.length && got.every((g, k) => g.addr === addrs[k] && g.len === lens[k] && g.write === k >= nOut);
    check(same, () => `chain ${i} popped as ${JSON.stringify(got)}`);
    check(!this.heads.has(this.chain.head), () => `head ${this.chain.head} handed out twice`);
    this.heads.add(this.chain.head);
    this.flight.push({ i, head: this.chain.head, cap: this.chain.writableBytes });
    return true;
  }

  complete(pick: number): boolean {
    if (this.flight.length === 0) return false;
    const [f] = this.flight.splice(this.s.inOrder ? 0 : pick % this.flight.length, 1);
    const len = (f.i * 7) % (f.cap + 1);
    this.device.pushUsed(f.head, len);
    this.pushed.push({ i: f.i, head: f.head, len });
    return true;
  }

  publishUsed(): void {
    const [old, next] = [this.u16(this.usedPublished), this.u16(this.usedPublished + this.pushed.length)];
    const irq = this.device.publishUsed();
    const want = old !== next && (this.s.eventIdx ? passedEvent(this.usedEvent, old, next) : !this.noInterrupt);
    check(irq === want, () => `publishUsed ${old}->${next}: interrupt ${irq}, spec says ${want}`);
    this.visible.push(...this.pushed);
    this.usedPublished += this.pushed.length;
    this.pushed = [];
  }

  reap(): boolean {
    const token = this.driver.getUsed();
    const v = this.visible.shift();
    if (v === undefined) {
      check(token === -1, () => `getUsed returned ${token} with nothing used`);
      return false;
    }
    check(token === 1e6 + v.i && this.driver.usedLen === v.len, () => `getUsed ${token}/${this.driver.usedLen}, expected chain ${v.i}/${v.len}`);
    this.reaped.push(v.i);
    this.heads.delete(v.head);
    this.held -= this.segs(v.i).cost;
    check(this.driver.numFree === this.s.size - this.held, () => `numFree ${this.driver.numFree} after reaping, expected ${this.s.size - this.held}`);
    check(this.driver.pending === this.added - this.reaped.length, () => `pending ${this.driver.pending}`);
    return true;
  }

  apply({ kind, n }: Op, step: number): void {
    const times = (f: () => boolean, max: number): void => {
      for (let k = 0; k < max && f(); k++);
    };
    switch (kind) {
      case 'add':
        return times(() => this.add(), n);
      case 'fill':
        return times(() => this.add(), this.s.size + 1);
      case 'publish':
        return this.publish();
      case 'pop':
        return times(() => this.pop(), n);
      case 'complete':
        return times(() => this.complete(n * 31 + step), n);
      case 'publishUsed':
        return this.publishUsed();
      case 'reap':
        return times(() => this.reap(), n);
      case 'notifyOn':
        this.device.enableNotify();
        this.availEvent = this.u16(this.popped);
        this.noNotify = false;
        return;
      case 'notifyOff':
        this.device.disableNotify();
        this.noNotify ||= !this.s.eventIdx;
        return;
      case 'irqOn': {
        const waiting = this.driver.enableInterrupts();
        check(waiting === this.visible.length > 0, () => `enableInterrupts said ${waiting} with ${this.visible.length} waiting`);
        this.usedEvent = this.u16(this.reaped.length);
        this.noInterrupt = false;
        return;
      }
      case 'irqOff':
        this.driver.disableInterrupts();
        this.noInterrupt ||= !this.s.eventIdx;
    }
  }

  /** Everything still in the ring goes round to the driver. */
  drain(): void {
    this.publish();
    while (this.pop());
    while (this.complete(0));
    this.publishUsed();
    while (this.reap());
  }

  /** `chains` more chains in small batches, drained each time (walks the indices on). */
  cycle(chains: number): void {
    for (let left = chains; left > 0; ) {
      for (let k = Math.min(5, this.s.size, left); k > 0 && this.add(); k--) left--;
      this.drain();
    }
  }

  /** After a drain: every chain came back exactly once, indices agree everywhere. */
  verifyDrained(): void {
    const n = this.added;
    const sorted = [...this.reaped].sort((a, b) => a - b);
    check(
      sorted.length === n && sorted.every((v, k) => v === k),
      () => `reaped ${this.reaped.length} of ${n} chains, some lost or twice`,
    );
    if (this.s.inOrder) check(this.reaped.every((v, k) => v === k), () => 'in-order completion came back reordered');
    check(this.driver.numFree === this.s.size && this.driver.pending === 0, () => `numFree ${this.driver.numFree}, pending ${this.driver.pending}`);
    const idx = this.u16(n);
    const m = this.rig.memory;
    check(this.device.nextAvail === idx && this.device.nextUsed === idx, () => `device at ${this.device.nextAvail}/${this.device.nextUsed}, expected ${idx}`);
    check(m.readU16(at.availIdx(this.rig.ring)) === idx && m.readU16(at.usedIdx(this.rig.ring)) === idx, () => 'ring idx fields disagree');
    check(this.rig.guardsIntact(), () => 'guard bytes overwritten');
  }
}

const scenario = (sizeLog: fc.Arbitrary<number>, opCount: number, fillFirst = false): fc.Arbitrary<Scenario> =>
  fc.record({
    size: sizeLog.map((k) => 2 ** k),
    start: fc.oneof(fc.integer({ min: 65500, max: 65535 }), fc.nat(0xffff)),
    eventIdx: fc.boolean(),
    indirect: fc.boolean(),
    inOrder: fc.boolean(),
    shapes: fc.array(
      fc.record({ out: fc.nat(4), in: fc.nat(4) }).filter((s) => s.out + s.in > 0),
      { minLength: 1, maxLength: 8 },
    ),
    ops: fc
      .array(fc.record({ kind: fc.constantFrom(...KINDS), n: fc.integer({ min: 1, max: 40 }) }), { minLength: opCount / 2, maxLength: opCount })
      .map((ops): Op[] => (fillFirst ? [{ kind: 'fill', n: 1 }, ...ops] : ops)),
  });

function runScenario(s: Scenario): void {
  const pair = new Pair(s);
  s.ops.forEach((op, step) => pair.apply(op, step));
  pair.drain();
  pair.cycle(70); // from any start in [65500, 65535] this crosses 65535 -> 0
  pair.verifyDrained();
}

describe('split ring: our driver against our device (2.7)', () => {
  it('2.7.13 / 2.7.14: under random interleavings no chain is lost, duplicated or reordered, and idx wraps at 65536 (sizes 1..256)', () => {
    fc.assert(fc.property(scenario(fc.integer({ min: 0, max: 8 }), 80), runScenario), { seed: 42, numRuns: 300 });
  });

  it('2.7.13 / 2.7.14: the same for large rings, filled to the last descriptor (sizes 512..32768)', () => {
    fc.assert(fc.property(scenario(fc.integer({ min: 9, max: 15 }), 30, true), runScenario), { seed: 42, numRuns: 16, endOnFailure: true });
  });

  it('2.7.13.3: starting near 65535, idx wraps naturally and every index field agrees with the model after each drain', () => {
    fc.assert(
      fc.property(fc.integer({ min: 65520, max: 65535 }), fc.integer({ min: 0, max: 5 }), fc.boolean(), (start, k, eventIdx) => {
        const pair = new Pair({ size: 2 ** k, start, eventIdx, indirect: false, inOrder: true, shapes: [{ out: 1, in: 1 }], ops: [] });
        pair.cycle(40);
        pair.verifyDrained();
        expect(pair.reaped).toHaveLength(40);
        expect(pair.device.nextAvail).toBe((start + 40) & 0xffff);
        expect(pair.device.nextAvail).toBeLessThan(start); // it really wrapped
      }),
      { seed: 42, numRuns: 50 },
    );
  });
});

describe('needEvent (2.7.7.2 / 2.7.10)', () => {
  const u16 = fc.nat(0xffff);

  it('2.7.10: needEvent(event, new, old) is true iff an entry was written at index event, for random (event, old, new)', () => {
    fc.assert(
      fc.property(u16, u16, u16, (event, old, next) => needEvent(event, next, old) === passedEvent(event, old, next)),
      { seed: 42, numRuns: 2000 },
    );
  });

  it('2.7.10: the same close to and across the 65535 -> 0 wrap', () => {
    const near = fc.integer({ min: -40, max: 40 }).map((d) => (65536 + d) & 0xffff);
    fc.assert(
      fc.property(near, near, fc.integer({ min: 0, max: 80 }), (event, old, dist) => {
        const next = (old + dist) & 0xffff;
        return needEvent(event, next, old) === passedEvent(event, old, next);
      }),
      { seed: 42, numRuns: 5000 },
    );
  });

  it('2.7.10: exhaustively over every event for moves that wrap, are empty, half and full circle', () => {
    const moves: Array<[number, number]> = [
      [65530, 5],
      [0, 0],
      [1234, 1234],
      [65535, 0],
      [100, 100 + 32768],
      [7, 6],
      [0, 65535],
    ];
    for (const [old, next] of moves) {
      const written = new Uint8Array(65536);
      for (let i = old; i !== next; i = (i + 1) & 0xffff) written[i] = 1;
      for (let event = 0; event < 65536; event++) {
        if (needEvent(event, next, old) !== (written[event] === 1)) expect.fail(`needEvent(${event}, ${next}, ${old})`);
      }
    }
  });
});
