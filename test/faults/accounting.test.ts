/**
 * The soak's bookkeeping catches what it is there to catch: a frame lost
 * outside a fault, a duplicate, a byte lost or repeated in a stream, and a
 * stream that stops short without reporting a reset (silent truncation).
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/lab/soak/soak-random.js';
import { checkedStream, streamBytes, streamOutcomeOk } from '../../src/lab/soak/soak-streams.js';
import { FlowAccount } from '../../src/lab/soak/soak-flows.js';

describe('frame flow accounting', () => {
  it('explains gaps inside fault windows, and only those', () => {
    const f = new FlowAccount('x->y');
    f.sent = 100;
    for (let s = 0; s < 10; s++) f.onReceive(s);
    f.openFault(); // in flight: 10 .. 29
    f.sent = 30;
    f.closeFault();
    f.sent = 100;
    f.onReceive(25); // 10..24 lost in the fault
    f.onReceive(40); // 26..39: 26..29 in the window, 30..39 not
    f.onReceive(40); // a duplicate
    for (let s = 41; s < 98; s++) f.onReceive(s);
    const fig = f.figures(true); // 98, 99 never arrived
    expect(fig).toMatchObject({ sent: 100, missing: 15 + 14 + 2, lostInFault: 15 + 4, missingOutsideFaults: 10 + 2, duplicatesOrReordered: 1, faults: 1 });
  });

  it('a fault still open covers what it has in flight', () => {
    const f = new FlowAccount('x->y');
    f.onReceive(0);
    f.openFault();
    f.sent = 10;
    f.onReceive(5);
    expect(f.figures()).toMatchObject({ missing: 4, lostInFault: 4 });
  });
});

describe('stream accounting', () => {
  const rand = seededRandom(1);

  it('a whole stream is ok', async () => {
    const pipe = new PassThrough();
    const o = await checkedStream(7, pipe, pipe, 100_000, 4096, rand);
    expect(o).toMatchObject({ written: 100_000, received: 100_000, mismatched: 0, reset: false, ended: true });
    expect(streamOutcomeOk(o)).toBe(true);
  });

  it('a lost or repeated byte is a mismatch; stopping short without a reset is a violation', () => {
    expect(streamBytes(3, 0, 4096).equals(streamBytes(3, 1, 4096))).toBe(false);
    expect(streamOutcomeOk({ written: 10, received: 10, mismatched: 1, reset: true, ended: false })).toBe(false);
    expect(streamOutcomeOk({ written: 10, received: 6, mismatched: 0, reset: false, ended: false })).toBe(false);
    expect(streamOutcomeOk({ written: 10, received: 6, mismatched: 0, reset: false, ended: true })).toBe(false);
    expect(streamOutcomeOk({ written: 10, received: 6, mismatched: 0, reset: true, ended: false })).toBe(true);
  });

  it('a reader destroyed without an error is reported as a silent truncation', async () => {
    const w = new PassThrough();
    const r = new PassThrough();
    w.on('data', (d: Buffer) => {
      if (!r.destroyed) r.write(d);
      if (r.writableLength > 0 || w.readableLength === 0) r.destroy(); // cut after the first chunk, no error
    });
    const o = await checkedStream(1, w, r, 50_000, 1000, rand);
    expect(o.reset).toBe(false);
    expect(streamOutcomeOk(o)).toBe(false);
  });
});
