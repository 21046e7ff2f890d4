/**
 * RxFilterTable: the receive filter the control queue programs (virtio 1.2
 * 5.1.6.5.1 - 5.1.6.5.3), its defaults, its accept() rules, and its seqlock.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, formatMac } from '../src/index.js';
import { NET_CTRL_RX_ALLMULTI, NET_CTRL_RX_ALLUNI, NET_CTRL_RX_NOBCAST, NET_CTRL_RX_NOMULTI, NET_CTRL_RX_NOUNI, NET_CTRL_RX_PROMISC } from '../src/spec/net.js';
import { RX_FILTER_BYTES, RX_FILTER_MAC_ENTRIES, type RxFilterSnapshot, RxFilterTable } from '../src/net/ctrl/index.js';
import { BROADCAST, MAC, frame, multiMac, uniMac } from './support/ctrl-rig.js';

/** A filter with promiscuous mode off and nothing else set. */
function filtering(): RxFilterTable {
  const f = RxFilterTable.create(MAC);
  f.setRxMode(NET_CTRL_RX_PROMISC, false);
  return f;
}

const accepts = (f: RxFilterTable, bytes: Uint8Array): boolean => f.accept(bytes, 0, bytes.length);

describe('RxFilterTable defaults', () => {
  it('5.1.6.5.2.1: the MAC filtering table is empty on reset', () => {
    const f = RxFilterTable.create(MAC);
    expect(f.snapshot()).toMatchObject({ unicast: [], multicast: [], unicastOverflow: false, multicastOverflow: false });
    f.setMacTables([uniMac(1)], [multiMac(1)]);
    f.reset(MAC);
    expect(f.snapshot()).toMatchObject({ unicast: [], multicast: [] });
  });

  it('reset: promiscuous on and every other rx mode off (no rx mode is given by the spec; without CTRL_RX a driver cannot ask for multicast, 5.1.6.5.1.2)', () => {
    const f = RxFilterTable.create(MAC);
    for (const c of [1, 2, 3, 4, 5]) f.setRxMode(c, true);
    f.setRxMode(NET_CTRL_RX_PROMISC, false);
    f.reset(MAC);
    expect(f.snapshot()).toMatchObject({ promisc: true, allMulti: false, allUni: false, noMulti: false, noUni: false, noBcast: false });
    // Promiscuous: anything goes, multicast the driver never asked for included.
    expect(accepts(f, frame(multiMac(7)))).toBe(true);
    expect(accepts(f, frame(uniMac(7)))).toBe(true);
  });

  it('1.3 5.1.6.5.3: the VLAN table starts empty and filtering is off until CTRL_VLAN turns it on', () => {
    const f = RxFilterTable.create(MAC);
    f.setVlanFiltering(true);
    f.addVlan(5);
    f.reset(Uint8Array.of(2, 0, 0, 0, 0, 9));
    expect(f.snapshot()).toMatchObject({ vlans: [], vlanFiltering: false, mac: '02:00:00:00:00:09' });
  });

  it('a reader built from the buffer sees the writer table at once and later changes only after refresh()', () => {
    const w = filtering();
    const r = new RxFilterTable(w.buffer);
    expect(r.snapshot()).toEqual(w.snapshot());
    expect(r.refresh()).toBe(false);
    w.setRxMode(NET_CTRL_RX_NOBCAST, true);
    expect(r.snapshot().noBcast).toBe(false);
    expect(accepts(r, frame(BROADCAST))).toBe(true);
    expect(r.refresh()).toBe(true);
    expect(r.refresh()).toBe(false);
    expect(r.generation).toBe(w.generation);
    expect(accepts(r, frame(BROADCAST))).toBe(false);
  });

  it('refuses a buffer of the wrong size and bad writer arguments', () => {
    expect(() => new RxFilterTable(new SharedArrayBuffer(RX_FILTER_BYTES + 4))).toThrow(InvalidArgumentError);
    const f = RxFilterTable.create(MAC);
    expect(() => f.setRxMode(6, true)).toThrow(InvalidArgumentError);
    expect(() => f.setRxMode(-1, true)).toThrow(InvalidArgumentError);
    expect(() => f.addVlan(4096)).toThrow(InvalidArgumentError);
    expect(() => f.delVlan(-1)).toThrow(InvalidArgumentError);
    expect(() => f.setPrimaryMac(new Uint8Array(5))).toThrow(InvalidArgumentError);
    expect(() => f.setMacTables([new Uint8Array(7)], [])).toThrow(InvalidArgumentError);
    expect(() => RxFilterTable.create(new Uint8Array(4))).toThrow(InvalidArgumentError);
  });
});

describe('RxFilterTable.accept: rx modes (5.1.6.5.1.1) and MAC tables (5.1.6.5.2)', () => {
  type Kind = 'primary' | 'unicast listed' | 'unicast other' | 'multicast listed' | 'multicast other' | 'broadcast';
  const KINDS: Kind[] = ['primary', 'unicast listed', 'unicast other', 'multicast listed', 'multicast other', 'broadcast'];
  const dst: Record<Kind, Uint8Array> = {
    primary: MAC,
    'unicast listed': uniMac(1),
    'unicast other': uniMac(999),
    'multicast listed': multiMac(1),
    'multicast other': multiMac(999),
    broadcast: BROADCAST,
  };
  interface Mode {
    promisc: boolean;
    allMulti: boolean;
    allUni: boolean;
    noMulti: boolean;
    noUni: boolean;
    noBcast: boolean;
    uniOverflow: boolean;
    multiOverflow: boolean;
  }
  const MODE_BITS: Array<[keyof Mode, number]> = [
    ['promisc', NET_CTRL_RX_PROMISC],
    ['allMulti', NET_CTRL_RX_ALLMULTI],
    ['allUni', NET_CTRL_RX_ALLUNI],
    ['noMulti', NET_CTRL_RX_NOMULTI],
    ['noUni', NET_CTRL_RX_NOUNI],
    ['noBcast', NET_CTRL_RX_NOBCAST],
  ];

  /** The spec's sentences, one per line. */
  function specAccepts(m: Mode, kind: Kind): boolean {
    // PROMISC: "the device SHOULD receive all incoming packets. This SHOULD take effect even if one of the other modes ... is on."
    if (m.promisc) return true;
    switch (kind) {
      // NOBCAST suppresses broadcast "even if ALLMULTI is on"; NOMULTI "SHOULD NOT apply to broadcast packets".
      case 'broadcast':
        return !m.noBcast;
      // NOMULTI: "SHOULD NOT send multicast packets ... even if ALLMULTI is on"; ALLMULTI: "allow all incoming multicast packets".
      case 'multicast listed':
        return !m.noMulti;
      case 'multicast other':
        return !m.noMulti && (m.allMulti || m.multiOverflow);
      // NOUNI: "SHOULD NOT send unicast packets ... even if ALLUNI is on"; else drop what matches neither mac nor the table (5.1.6.5.2.1).
      case 'primary':
      case 'unicast listed':
        return !m.noUni;
      case 'unicast other':
        return !m.noUni && (m.allUni || m.uniOverflow);
    }
  }

  const allModes: Mode[] = [];
  for (let bits = 0; bits < 256; bits++) {
    const m = {} as Mode;
    MODE_BITS.forEach(([k], i) => (m[k] = (bits & (1 << i)) !== 0));
    m.uniOverflow = (bits & 64) !== 0;
    m.multiOverflow = (bits & 128) !== 0;
    allModes.push(m);
  }

  function program(f: RxFilterTable, m: Mode): void {
    f.reset(MAC);
    for (const [k, c] of MODE_BITS) f.setRxMode(c, m[k]);
    const uni = [uniMac(1), ...(m.uniOverflow ? Array.from({ length: RX_FILTER_MAC_ENTRIES }, (_, i) => uniMac(100 + i)) : [])];
    const multi = [multiMac(1), ...(m.multiOverflow ? Array.from({ length: RX_FILTER_MAC_ENTRIES }, (_, i) => multiMac(100 + i)) : [])];
    f.setMacTables(uni, multi);
  }

  for (const kind of KINDS) {
    it(`truth table over all 64 rx modes x unicast/multicast overflow: ${kind} destination`, () => {
      const f = RxFilterTable.create(MAC);
      const reader = new RxFilterTable(f.buffer);
      for (const m of allModes) {
        program(f, m);
        reader.refresh();
        const want = specAccepts(m, kind);
        expect({ m, kind, got: accepts(f, frame(dst[kind])) }).toEqual({ m, kind, got: want });
        expect(accepts(reader, frame(dst[kind]))).toBe(want);
      }
    });
  }

  it('5.1.6.5.1.1: PROMISC takes effect even with NOUNI, NOMULTI and NOBCAST on', () => {
    const f = filtering();
    for (const c of [NET_CTRL_RX_NOUNI, NET_CTRL_RX_NOMULTI, NET_CTRL_RX_NOBCAST]) f.setRxMode(c, true);
    f.setRxMode(NET_CTRL_RX_PROMISC, true);
    for (const d of [MAC, uniMac(5), multiMac(5), BROADCAST]) expect(accepts(f, frame(d))).toBe(true);
  });

  it('5.1.6.5.1.1: NOMULTI takes effect even if ALLMULTI is on, and does not apply to broadcast', () => {
    const f = filtering();
    f.setRxMode(NET_CTRL_RX_ALLMULTI, true);
    f.setRxMode(NET_CTRL_RX_NOMULTI, true);
    expect(accepts(f, frame(multiMac(5)))).toBe(false);
    expect(accepts(f, frame(BROADCAST))).toBe(true);
  });

  it('5.1.6.5.1.1: NOBCAST takes effect even if ALLMULTI is on', () => {
    const f = filtering();
    f.setRxMode(NET_CTRL_RX_ALLMULTI, true);
    f.setRxMode(NET_CTRL_RX_NOBCAST, true);
    expect(accepts(f, frame(BROADCAST))).toBe(false);
    expect(accepts(f, frame(multiMac(5)))).toBe(true);
  });

  it('5.1.6.5.1.1: NOUNI suppresses all unicast, the primary MAC included, even if ALLUNI is on', () => {
    const f = filtering();
    f.setMacTables([uniMac(1)], []);
    f.setRxMode(NET_CTRL_RX_ALLUNI, true);
    f.setRxMode(NET_CTRL_RX_NOUNI, true);
    for (const d of [MAC, uniMac(1), uniMac(2)]) expect(accepts(f, frame(d))).toBe(false);
    expect(accepts(f, frame(BROADCAST))).toBe(true);
  });

  it('5.1.6.5.2.1: with promiscuous mode off, unicast matching neither mac nor the table is dropped', () => {
    const f = filtering();
    f.setMacTables([uniMac(1), uniMac(2)], [multiMac(3)]);
    expect(accepts(f, frame(MAC))).toBe(true);
    expect(accepts(f, frame(uniMac(2)))).toBe(true);
    expect(accepts(f, frame(uniMac(3)))).toBe(false);
    expect(accepts(f, frame(multiMac(3)))).toBe(true);
    expect(accepts(f, frame(multiMac(2)))).toBe(false);
    // A MAC that differs only in its last byte, or its first: never a match.
    expect(accepts(f, frame(Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x57)))).toBe(false);
    expect(accepts(f, frame(Uint8Array.of(0x50, 0x54, 0x00, 0x12, 0x34, 0x56)))).toBe(false);
  });

  it('5.1.6.5.2: setPrimaryMac (MAC_ADDR_SET) moves the station address', () => {
    const f = filtering();
    const next = uniMac(77);
    f.setPrimaryMac(next);
    expect(accepts(f, frame(next))).toBe(true);
    expect(accepts(f, frame(MAC))).toBe(false);
    expect(f.snapshot().mac).toBe(formatMac(next));
  });

  it(`5.1.6.5.2 footnote: more than ${RX_FILTER_MAC_ENTRIES} entries of a kind accept all of that kind (QEMU's overflow); a smaller table ends it`, () => {
    const f = filtering();
    const many = (mk: (n: number) => Uint8Array, n: number) => Array.from({ length: n }, (_, i) => mk(i));
    f.setMacTables(many(uniMac, RX_FILTER_MAC_ENTRIES + 1), many(multiMac, RX_FILTER_MAC_ENTRIES));
    expect(f.snapshot()).toMatchObject({ unicastOverflow: true, multicastOverflow: false, unicast: [] });
    expect(f.snapshot().multicast).toHaveLength(RX_FILTER_MAC_ENTRIES);
    expect(accepts(f, frame(uniMac(5000)))).toBe(true);
    expect(accepts(f, frame(multiMac(RX_FILTER_MAC_ENTRIES - 1)))).toBe(true);
    expect(accepts(f, frame(multiMac(5000)))).toBe(false);
    f.setMacTables([uniMac(1)], many(multiMac, RX_FILTER_MAC_ENTRIES + 1));
    expect(f.snapshot()).toMatchObject({ unicastOverflow: false, multicastOverflow: true, unicast: [formatMac(uniMac(1))], multicast: [] });
    expect(accepts(f, frame(uniMac(5000)))).toBe(false);
    expect(accepts(f, frame(multiMac(5000)))).toBe(true);
  });

  it('a frame shorter than an Ethernet header is dropped unless promiscuous', () => {
    const f = filtering();
    expect(accepts(f, frame(MAC, { len: 13 }))).toBe(false);
    expect(accepts(f, frame(MAC, { len: 14 }))).toBe(true);
    f.setRxMode(NET_CTRL_RX_PROMISC, true);
    expect(accepts(f, frame(MAC, { len: 0 }))).toBe(true);
  });

  it('reads the frame at `at`, not at the start of the buffer', () => {
    const f = filtering();
    const buf = new Uint8Array(200).fill(0xff);
    buf.set(frame(uniMac(9)), 100);
    expect(f.accept(buf, 100, 64)).toBe(false);
    buf.set(frame(MAC), 100);
    expect(f.accept(buf, 100, 64)).toBe(true);
    expect(f.accept(buf, 0, 64)).toBe(true); // broadcast bytes at 0
  });
});

describe('RxFilterTable.accept: VLAN filtering (5.1.6.5.3)', () => {
  it('1.3 5.1.6.5.3.1: without VLAN filtering (CTRL_VLAN not negotiated) every VLAN tagged packet is accepted', () => {
    const f = filtering();
    for (const vid of [0, 1, 100, 4095]) expect(accepts(f, frame(MAC, { vid }))).toBe(true);
  });

  it('1.3 5.1.6.5.3.1: with filtering, a tagged frame is accepted iff its VID is in the table; untagged frames pass', () => {
    const f = filtering();
    f.setVlanFiltering(true);
    expect(accepts(f, frame(MAC, { vid: 10 }))).toBe(false);
    f.addVlan(10);
    f.addVlan(4095);
    expect(accepts(f, frame(MAC, { vid: 10 }))).toBe(true);
    expect(accepts(f, frame(MAC, { vid: 4095 }))).toBe(true);
    expect(accepts(f, frame(MAC, { vid: 11 }))).toBe(false);
    expect(accepts(f, frame(MAC))).toBe(true);
    f.delVlan(10);
    expect(accepts(f, frame(MAC, { vid: 10 }))).toBe(false);
    expect(f.snapshot().vlans).toEqual([4095]);
  });

  it('the VID is the low 12 bits of the TCI: priority and DEI bits do not matter', () => {
    const f = filtering();
    f.setVlanFiltering(true);
    f.addVlan(0x123);
    expect(accepts(f, frame(MAC, { vid: 0x123, pcp: 7 }))).toBe(true);
    expect(accepts(f, frame(MAC, { vid: 0x124, pcp: 7 }))).toBe(false);
  });

  it('a tagged frame in the VLAN table still has to pass the MAC filter', () => {
    const f = filtering();
    f.setVlanFiltering(true);
    f.addVlan(7);
    expect(accepts(f, frame(uniMac(3), { vid: 7 }))).toBe(false);
    expect(accepts(f, frame(BROADCAST, { vid: 7 }))).toBe(true);
    expect(accepts(f, frame(BROADCAST, { vid: 8 }))).toBe(false);
  });

  it('only TPID 0x8100 is an 802.1Q tag; a tagged frame too short for its tag is dropped', () => {
    const f = filtering();
    f.setVlanFiltering(true);
    expect(accepts(f, frame(MAC, { vid: 9, tpid: 0x88a8 }))).toBe(true);
    f.addVlan(9);
    expect(accepts(f, frame(MAC, { vid: 9, len: 17 }))).toBe(false);
    expect(accepts(f, frame(MAC, { vid: 9, len: 18 }))).toBe(true);
  });

  it('5.1.6.5.1.1: promiscuous mode receives all incoming packets, VLANs outside the table included (as QEMU)', () => {
    const f = RxFilterTable.create(MAC);
    f.setVlanFiltering(true);
    expect(accepts(f, frame(uniMac(3), { vid: 99 }))).toBe(true);
  });
});

describe('RxFilterTable seqlock: a reader never uses a half-written table', () => {
  type Op =
    | { op: 'mode'; cmd: number; on: boolean }
    | { op: 'tables'; uni: number[]; multi: number[] }
    | { op: 'mac'; n: number }
    | { op: 'vlan'; add: boolean; vid: number }
    | { op: 'vlanFiltering'; on: boolean }
    | { op: 'reset'; n: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ op: fc.constant('mode' as const), cmd: fc.integer({ min: 0, max: 5 }), on: fc.boolean() }),
    fc.record({
      op: fc.constant('tables' as const),
      uni: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: RX_FILTER_MAC_ENTRIES + 3 }),
      multi: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: RX_FILTER_MAC_ENTRIES + 3 }),
    }),
    fc.record({ op: fc.constant('mac' as const), n: fc.integer({ min: 0, max: 300 }) }),
    fc.record({ op: fc.constant('vlan' as const), add: fc.boolean(), vid: fc.integer({ min: 0, max: 4095 }) }),
    fc.record({ op: fc.constant('vlanFiltering' as const), on: fc.boolean() }),
    fc.record({ op: fc.constant('reset' as const), n: fc.integer({ min: 0, max: 300 }) }),
  );

  function apply(f: RxFilterTable, o: Op): void {
    switch (o.op) {
      case 'mode':
        return f.setRxMode(o.cmd, o.on);
      case 'tables':
        return f.setMacTables(o.uni.map(uniMac), o.multi.map(multiMac));
      case 'mac':
        return f.setPrimaryMac(uniMac(o.n));
      case 'vlan':
        return o.add ? f.addVlan(o.vid) : f.delVlan(o.vid);
      case 'vlanFiltering':
        return f.setVlanFiltering(o.on);
      case 'reset':
        return f.reset(uniMac(o.n));
    }
  }

  type Word = (ta: Int32Array, i: number, v?: number) => number;
  const A = Atomics as unknown as Record<'store' | 'add' | 'load', Word>;

  it('property: refreshes inside a write, and writes inside a refresh copy, never leave the reader on a table the writer did not finish', () => {
    const totals = { refreshesInWrite: 0, writesInCopy: 0, adopted: 0 };
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.array(fc.nat({ max: 99 }), { minLength: 1, maxLength: 64 }), (ops, dice) => {
        const writer = RxFilterTable.create(MAC);
        const reader = new RxFilterTable(writer.buffer);
        const strip = (snap: RxFilterSnapshot): RxFilterSnapshot => ({ ...snap, generation: 0 });
        // Every table the writer completed, by its sequence number.
        const done = new Map<number, ReturnType<typeof strip>>([[writer.generation, strip(writer.snapshot())]]);
        let die = 0;
        const roll = (percent: number): boolean => dice[die++ % dice.length] < percent;
        const queue = [...ops];
        let inWrite = false;
        let inRefresh = false;

        const write = (): void => {
          const o = queue.shift();
          if (o === undefined) return;
          inWrite = true;
          try {
            apply(writer, o);
          } finally {
            inWrite = false;
          }
          done.set(writer.generation, strip(writer.snapshot()));
        };
        const refresh = (): void => {
          inRefresh = true;
          let moved: boolean;
          try {
            moved = reader.refresh();
          } finally {
            inRefresh = false;
          }
          if (moved) {
            totals.adopted++;
            // The table in use is exactly one the writer finished.
            expect(done.has(reader.generation)).toBe(true);
            expect(strip(reader.snapshot())).toEqual(done.get(reader.generation));
          }
        };

        const real = { store: A.store, add: A.add, load: A.load };
        const ours = (ta: Int32Array) => ta.buffer === writer.buffer;
        // The writer's stores: sometimes the reader refreshes between two of them.
        const midWrite = (): void => {
          totals.refreshesInWrite++;
          refresh();
        };
        A.store = (ta, i, v) => {
          const r = real.store(ta, i, v);
          if (ours(ta) && inWrite && !inRefresh && roll(30)) midWrite();
          return r;
        };
        A.add = (ta, i, v) => {
          const r = real.add(ta, i, v);
          if (ours(ta) && inWrite && !inRefresh) {
            // The closing add completes a table: it is one the writer finished.
            const seq = real.load(ta, 0);
            if ((seq & 1) === 0) done.set(seq, strip(writer.snapshot()));
            if (roll(30)) midWrite();
          }
          return r;
        };
        // The reader's loads: sometimes a whole write lands in the middle of its copy.
        A.load = (ta, i) => {
          const r = real.load(ta, i);
          if (ours(ta) && inRefresh && !inWrite && roll(2)) {
            totals.writesInCopy++;
            write();
          }
          return r;
        };
        try {
          // Every fourth step writes whatever the dice say, so the loop ends.
          for (let step = 0; queue.length > 0; step++) {
            if (roll(50) || step % 4 === 3) write();
            else refresh();
          }
        } finally {
          Object.assign(A, real);
        }
        // Quiet now: one refresh brings the reader to the writer's last table.
        reader.refresh();
        expect(reader.generation).toBe(writer.generation);
        expect(strip(reader.snapshot())).toEqual(strip(writer.snapshot()));
      }),
      { numRuns: 300 },
    );
    // The interleavings really happened, and readers did take tables up.
    expect(totals.refreshesInWrite).toBeGreaterThan(0);
    expect(totals.writesInCopy).toBeGreaterThan(0);
    expect(totals.adopted).toBeGreaterThan(0);
  });

  it('a write that lands during every copy makes refresh() keep its old table (and a later refresh catches up)', () => {
    const writer = filtering();
    const reader = new RxFilterTable(writer.buffer);
    const before = reader.snapshot();
    writer.setRxMode(NET_CTRL_RX_ALLMULTI, true);
    const real = A.load;
    let writing = false;
    let n = 0;
    A.load = (ta, i) => {
      const r = real(ta, i);
      // In the middle of each copy (word 100 of the table), the writer changes something.
      if (ta.buffer === writer.buffer && i === 100 && !writing) {
        writing = true;
        writer.addVlan(n++ % 4096);
        writing = false;
      }
      return r;
    };
    let moved: boolean;
    try {
      moved = reader.refresh();
    } finally {
      A.load = real;
    }
    expect(moved).toBe(false);
    expect(n).toBeGreaterThan(1);
    expect(reader.snapshot()).toEqual(before);
    expect(reader.refresh()).toBe(true);
    expect(reader.snapshot()).toEqual(writer.snapshot());
  });
});
