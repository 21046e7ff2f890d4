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

/** What must not depend on the number of workers. */
const figures = (s: FuzzSummary) => ({
  cases: s.cases,
  failed: s.failed,
  byFamily: s.byFamily,
  errorsByCode: s.errorsByCode,
  needsReset: s.needsReset,
  guardViolations: s.guardViolations,
  failures: s.failures.map((f) => ({ index: f.index, case: f.case, ring: f.ring, variant: f.variant, problems: f.problems })),
});

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
    expect(figures(two)).toEqual(figures(one));
  }, 180_000);

  it('a case module without a "cases" array is refused, naming it', async () => {
    const empty = 'data:text/javascript,export const cases = 1;';
    await expect(runFuzz({ cases: 1, seed: 1, devices: ['net'], rings: ['split'], workers: 1, caseModule: empty })).rejects.toThrow(/case module data:text\/javascript.* exports no "cases" array \(got number\)/);
  });

  it('workers must be a whole number >= 1', async () => {
    await expect(runFuzz({ cases: 1, seed: 1, devices: ['net'], rings: ['split'], workers: 0 })).rejects.toThrow(/fuzz workers 0 must be a whole number >= 1/);
  });
});
