/**
 * Per-queue counters laid out from a device's counter schema: the common
 * counters and error codes first, then the schema's counters, then each
 * reason group; a snapshot names only what that device counts.
 */
import { expect, it } from 'vitest';
import { VirtioLabError } from '../../src/errors.js';
import { BAD_HEADER_REASONS, C_DROPS_BAD_HEADER, C_SEGMENTS, NET_QUEUE_COUNTERS, type NetQueueStats, badHeaderField } from '../../src/net/net-counters.js';
import { C_CHAINS, C_ERRORS, type CounterSchema, NO_DEVICE_COUNTERS, QUEUE_COUNTERS, type QueueStats, StatsBlock, deviceCounter, reasonBase } from '../../src/stats/queue-stats.js';
import { VSOCK_DROP_REASONS, VSOCK_QUEUE_COUNTERS, type VsockQueueStats, vsockDropField } from '../../src/vsock/vsock-counters.js';

const TWO_GROUPS = { counters: ['a', 'b'], reasons: { first: ['x', 'y', 'z'], second: ['w'] } } as const satisfies CounterSchema;
// A device reads its block's snapshots as its schema's QueueStats (VirtioDevice<S>.queueStats does).
const twoGroups = (s: StatsBlock, q: number): QueueStats<typeof TWO_GROUPS> => s.snapshot(q) as QueueStats<typeof TWO_GROUPS>;

it('a schema-less block holds the common counters and error codes only, and its snapshot has no device fields', () => {
  const s = StatsBlock.create(2, NO_DEVICE_COUNTERS);
  s.f64[s.base(1) + C_CHAINS] = 5;
  s.countError(1, 'CHAIN_TOO_LONG');
  const snap = s.snapshot(1);
  expect(Object.keys(snap).sort()).toEqual([...QUEUE_COUNTERS, 'errorsByCode'].sort());
  expect(snap.chains).toBe(5);
  expect(snap.errors).toBe(1);
  expect(snap.errorsByCode).toEqual({ CHAIN_TOO_LONG: 1 });
  expect(s.snapshot(0).chains).toBe(0);
});

it('every field of a slot is a different counter, and one queue never shows in the next', () => {
  const s = StatsBlock.create(3, TWO_GROUPS);
  const fields = [C_CHAINS, C_ERRORS, deviceCounter(TWO_GROUPS, 'a'), deviceCounter(TWO_GROUPS, 'b'), ...[0, 1, 2].map((i) => reasonBase(TWO_GROUPS, 'first') + i), reasonBase(TWO_GROUPS, 'second')];
  expect(new Set(fields).size).toBe(fields.length);
  const slot = s.base(1) - s.base(0);
  expect(Math.max(...fields)).toBe(slot - 1);
  fields.forEach((f, i) => (s.f64[s.base(1) + f] = i + 1));
  const snap = twoGroups(s, 1);
  expect([snap.chains, snap.errors, snap.a, snap.b]).toEqual([1, 2, 3, 4]);
  expect(snap.first).toEqual({ x: 5, y: 6, z: 7 });
  expect(snap.second).toEqual({ w: 8 });
  expect(s.snapshot(0)).toEqual({ ...Object.fromEntries(QUEUE_COUNTERS.map((c) => [c, 0])), errorsByCode: {}, a: 0, b: 0, first: {}, second: {} });
  expect(twoGroups(s, 2).a).toBe(0);
  s.clear(1);
  expect(twoGroups(s, 1).first).toEqual({});
});

it('the net and vsock schemas count their own reasons and nothing of the other', () => {
  const net = StatsBlock.create(1, NET_QUEUE_COUNTERS);
  net.f64[net.base(0) + C_DROPS_BAD_HEADER]++;
  net.f64[net.base(0) + badHeaderField(BAD_HEADER_REASONS.indexOf('gsoSize'))]++;
  net.f64[net.base(0) + C_SEGMENTS] += 3;
  const n = net.snapshot(0) as NetQueueStats;
  expect(n.badHeaderByReason).toEqual({ gsoSize: 1 });
  expect([n.dropsBadHeader, n.segments]).toEqual([1, 3]);
  expect(n).not.toHaveProperty('vsockDropsByReason');
  const vsock = StatsBlock.create(1, VSOCK_QUEUE_COUNTERS);
  vsock.f64[vsock.base(0) + vsockDropField(VSOCK_DROP_REASONS.indexOf('wrongDstCid'))]++;
  const v = vsock.snapshot(0) as VsockQueueStats;
  expect(v.vsockDropsByReason).toEqual({ wrongDstCid: 1 });
  expect(v).not.toHaveProperty('badHeaderByReason');
  expect(v).not.toHaveProperty('dropsBadHeader');
});

it('a counter or reason group the schema does not name is an UNKNOWN_COUNTER error naming it', () => {
  const wide: CounterSchema = TWO_GROUPS;
  expect(() => deviceCounter(wide, 'c')).toThrow(VirtioLabError);
  expect(() => deviceCounter(wide, 'c')).toThrow('"c"');
  expect(() => reasonBase(wide, 'third')).toThrow('"third"');
});
