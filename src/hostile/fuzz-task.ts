import { InvalidArgumentError } from '../errors.js';
import { HOSTILE_CASES } from './cases/index.js';
import type { ExpectationRecord, HostileCase } from './hostile-case.js';
import type { HostileReport } from './hostile-driver.js';
import type { HostileDeviceKind, RingFormat } from './hostile-target.js';

/** One fuzz case as the pool runs it: plain data, drawn from the run's seed on the main thread. */
export interface FuzzTask {
  /** Position in the run's sequence (what `--seed` replays). */
  index: number;
  kind: HostileDeviceKind;
  ring: RingFormat;
  /** The case's name (a HostileCase of the case list). */
  case: string;
  variant: number;
  /** Module whose `cases` export is the case list, or undefined for HOSTILE_CASES. */
  caseModule: string | undefined;
}

/**
 * A case's report as it crosses threads: plain data, so a pool thread's
 * report reaches the run's JSON whole. `expected` is recordExpectation() of
 * the case's expectation (whose counters hold functions); undefined when the
 * case never returned one (it threw or hung, or its pool thread died).
 */
export type FuzzCaseReport = Omit<HostileReport, 'expected'> & { expected: ExpectationRecord | undefined };

/**
 * The case list of a run: HOSTILE_CASES, or the `cases` export of
 * `caseModule` (a module URL or absolute path, for cases of your own).
 */
export async function fuzzCases(caseModule: string | undefined): Promise<readonly HostileCase[]> {
  if (caseModule === undefined) return HOSTILE_CASES;
  const m = (await import(caseModule)) as { cases?: unknown };
  if (!Array.isArray(m.cases) || m.cases.length === 0) throw new InvalidArgumentError(`case module ${caseModule} exports no "cases" array (got ${typeof m.cases})`);
  return m.cases as HostileCase[];
}
