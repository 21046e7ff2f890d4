import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MacTable } from '../../src/backends/switch-mac-table.js';

const macBytes = (m: number): Uint8Array => Uint8Array.of(0x52, 0, (m >>> 24) & 0xff, (m >>> 16) & 0xff, (m >>> 8) & 0xff, m & 0xff);
const macText = (m: number): string => Array.from(macBytes(m), (b) => b.toString(16).padStart(2, '0')).join(':');

describe('MAC table', () => {
  it('agrees with a Map under any sequence of learns, lookups and expiries (property)', () => {
    // Few distinct addresses in a small table: long probe runs, wrap-around, many shifts on removal.
    const op = fc.oneof(
      fc.record({ kind: fc.constant('learn' as const), mac: fc.integer({ min: 0, max: 40 }), port: fc.integer({ min: 0, max: 3 }), dt: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ kind: fc.constant('expire' as const), dt: fc.integer({ min: 0, max: 60 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const t = new MacTable(32);
        const model = new Map<number, { port: number; seen: number }>();
        let now = 0;
        const maxAge = 50;
        for (const o of ops) {
          now += o.dt;
          if (o.kind === 'learn') {
            const b = macBytes(o.mac);
            t.learn(b, 0, o.port, now);
            if (model.has(o.mac) || model.size < 32) model.set(o.mac, { port: o.port, seen: now });
          } else {
            t.expire(now, maxAge);
            for (const [k, v] of model) if (now - v.seen > maxAge) model.delete(k);
          }
          expect(t.size).toBe(model.size);
          for (let m = 0; m <= 40; m++) {
            const e = model.get(m);
            expect(t.lookup(macBytes(m), 0, now, maxAge)).toBe(e === undefined || now - e.seen > maxAge ? -1 : e.port);
          }
        }
        expect(t.entries(now).map((e) => e.mac)).toEqual([...model.keys()].map(macText).sort());
      }),
      { numRuns: 200 },
    );
  });

  it('refuses to learn beyond its size (counted) and counts moves', () => {
    const t = new MacTable(2);
    t.learn(macBytes(1), 0, 0, 0);
    t.learn(macBytes(2), 0, 1, 0);
    t.learn(macBytes(3), 0, 1, 0);
    expect(t.size).toBe(2);
    expect(t.refused).toBe(1);
    t.learn(macBytes(1), 0, 2, 1);
    expect(t.moves).toBe(1);
    expect(t.lookup(macBytes(1), 0, 1, 100)).toBe(2);
    expect(t.lookup(macBytes(3), 0, 1, 100)).toBe(-1);
  });
});
