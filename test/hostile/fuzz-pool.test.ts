/**
 * The fuzzer's piscina pool: cases drawn from the seed on the main thread
 * run side by side on pool threads, each on devices of its own, and the
 * figures are merged. The same seed must find the same failures (a case list
 * with a deliberately broken property) and the same figures with 1 or 2
 * workers, and every pool thread (with its devices' queue threads) must end.
 */
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type FuzzSummary, runFuzz } from '../../src/hostile/fuzz.js';
import { recordExpectation } from '../../src/hostile/hostile-case.js';

const BROKEN = new URL('../support/hostile/broken-cases.mjs', import.meta.url).href;

/** Threads of this process. */
const threads = (): number => readdirSync('/proc/self/task').length;

async function settleThreads(expected: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = threads();
  while (n > expected && Date.now() < deadline) {
    await sleep(20);
    n = threads();
  }
  return n;
}

/** What must not depend on the number of workers, as the run's JSON carries it. */
const figures = (s: FuzzSummary) => JSON.parse(JSON.stringify({
  cases: s.cases,
  failed: s.failed,
  byFamily: s.byFamily,
  errorsByCode: s.errorsByCode,
  needsReset: s.needsReset,
  guardViolations: s.guardViolations,
  failures: s.failures.map((f) => ({ index: f.index, case: f.case, ring: f.ring, variant: f.variant, expected: f.expected, problems: f.problems })),
}));

describe('virtio-lab fuzz on a piscina pool', () => {
  it('2 workers find the same failures, at the same places in the sequence, as 1 worker for the same seed; all pool threads end', async () => {
    const before = threads();
    const run = (workers: number): Promise<FuzzSummary> => runFuzz({ cases: 18, seed: 12345, devices: ['net', 'vsock'], rings: ['split', 'packed'], workers, caseModule: BROKEN });
    const one = await run(1);
    expect(await settleThreads(before, 10_000), 'threads after the 1-worker run').toBe(before);
    const two = await run(2);
    expect(await settleThreads(before, 10_000), 'threads after the 2-worker run').toBe(before);
    expect(one.workers).toBe(1);
    expect(two.workers).toBe(2);
    expect(one.failed, 'the broken property was drawn and caught').toBeGreaterThan(0);
    expect(one.failures.every((f) => f.case.includes('lying about DEVICE_NEEDS_RESET') && f.variant % 3 === 0)).toBe(true);
    expect(one.failures[0].problems.join('; ')).toMatch(/DEVICE_NEEDS_RESET is (set|clear), expected (set|clear)/);
    // Each failure says what the case expected, as plain data that crossed the pool thread: the planted lie's
    // DEVICE_NEEDS_RESET is the one its problem names, and the control-plane error it asks for is there by code.
    for (const f of [...one.failures, ...two.failures]) {
      const said = /DEVICE_NEEDS_RESET is (?:set|clear), expected (set|clear)/.exec(f.problems.join('; '));
      expect(said, `case ${f.index}: ${f.problems.join('; ')}`).not.toBeNull();
      expect(f.expected, `case ${f.index}: expected crossed the thread`).toMatchObject({ needsReset: said![1] === 'set', error: { code: expect.any(String) } });
      expect(JSON.parse(JSON.stringify(f.expected)), 'plain data: JSON keeps all of it').toEqual(f.expected);
    }
    expect(figures(two)).toEqual(figures(one));
  }, 180_000);

  it('recordExpectation keeps what a case asked for (error, reset, counters by name and bounds, broken queues) and drops the counters\' functions', () => {
    const e = { error: { code: 'DESC_OUT_OF_BOUNDS', value: 4096, queue: 1 }, needsReset: true, counters: [{ name: 'a', delta: () => 3 }, { name: 'b', delta: () => 0, min: 0, max: 0 }], broken: [1] };
    const r = recordExpectation(e);
    expect(r).toEqual({ error: { code: 'DESC_OUT_OF_BOUNDS', value: 4096, queue: 1 }, needsReset: true, counters: [{ name: 'a', min: 1 }, { name: 'b', min: 0, max: 0 }], broken: [1] });
    expect(structuredClone(r)).toEqual(r);
    expect(recordExpectation({ error: { code: 'FEATURES_REFUSED' }, needsReset: false })).toStrictEqual({ error: { code: 'FEATURES_REFUSED' }, needsReset: false });
  });

  it('a case module without a "cases" array is refused, naming it', async () => {
    const empty = 'data:text/javascript,export const cases = 1;';
    await expect(runFuzz({ cases: 1, seed: 1, devices: ['net'], rings: ['split'], workers: 1, caseModule: empty })).rejects.toThrow(/case module data:text\/javascript.* exports no "cases" array \(got number\)/);
  });

  it('workers must be a whole number >= 1', async () => {
    await expect(runFuzz({ cases: 1, seed: 1, devices: ['net'], rings: ['split'], workers: 0 })).rejects.toThrow(/fuzz workers 0 must be a whole number >= 1/);
  });
});
