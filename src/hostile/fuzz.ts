import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { InvalidArgumentError } from '../errors.js';
import { workerFile } from '../transport/worker-file.js';
import { type FuzzCaseReport, type FuzzTask, fuzzCases } from './fuzz-task.js';
import type { HostileDeviceKind, RingFormat } from './hostile-target.js';

/** What runFuzz() runs. */
export interface FuzzOptions {
  /** Cases to run at most. */
  cases: number;
  /** Stop after this many seconds (whichever comes first). */
  seconds?: number;
  /** Seed of the case, ring and variant choice (the same seed runs the same sequence). */
  seed: number;
  devices: readonly HostileDeviceKind[];
  rings: readonly RingFormat[];
  /**
   * Threads of the pool (piscina) that run cases side by side, each on
   * devices of its own (default `defaultFuzzWorkers()`). The sequence of
   * cases depends on the seed only, not on this.
   */
  workers?: number;
  /**
   * A module (URL or absolute path) whose `cases` export (HostileCase[])
   * replaces HOSTILE_CASES: cases of your own, loaded by every pool thread.
   */
  caseModule?: string;
  /** Called every `progressMs` (default 5000) with the figures so far. */
  onProgress?: (s: FuzzSummary) => void;
  progressMs?: number;
  /** Stop once the cases running when it aborts have ended (the figures so far are returned). */
  signal?: AbortSignal;
}

/** A case with a broken property: its report and its place in the seed's sequence. */
export interface FuzzFailure extends FuzzCaseReport {
  /** Position in the sequence the seed draws (0-based). */
  index: number;
}

/** The figures of a fuzz run. */
export interface FuzzSummary {
  cases: number;
  seconds: number;
  casesPerSecond: number;
  /** Pool threads that ran the cases. */
  workers: number;
  /** Cases run per family (ring, net, vsock, control). */
  byFamily: Record<string, number>;
  /** Named errors the devices reported, by code. */
  errorsByCode: Record<string, number>;
  /** Cases after which DEVICE_NEEDS_RESET was set (each followed by a reset and a recovery check). */
  needsReset: number;
  /** Guard bytes found changed over the run: must be 0. */
  guardViolations: number;
  /** Cases with a broken property (a pool thread that died in a case counts its case). */
  failed: number;
  /** The failures earliest in the sequence (case, ring, variant, what broke): enough to replay them. */
  failures: FuzzFailure[];
  /** True when `signal` stopped the run before `cases` or `seconds`. */
  interrupted: boolean;
}

const KEEP_FAILURES = 20;

/**
 * Pool threads for this machine: half of `os.availableParallelism()` (at
 * least 1), since a running case keeps two threads busy, the pool thread
 * that drives it and its device's queue thread. On 2 cores 2 workers ran
 * fewer cases/s than 1 (docs/hostile-driver.md).
 */
export function defaultFuzzWorkers(): number {
  return Math.max(1, Math.floor(availableParallelism() / 2));
}

/** xorshift32: a small seeded generator, so a run can be replayed from its seed. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/**
 * Run random cases (case, ring format and variant drawn from `seed`) against
 * our virtio-net and virtio-vsock devices, turn about, on a pool of
 * `workers` threads, until `cases` ran or `seconds` passed or `signal`
 * aborted; returns the figures, merged over the pool. Case i of a seed is the
 * same case, ring and variant whatever the number of workers.
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const workers = options.workers ?? defaultFuzzWorkers();
  if (!Number.isInteger(workers) || workers < 1) throw new InvalidArgumentError(`fuzz workers ${workers} must be a whole number >= 1`);
  const caseList = await fuzzCases(options.caseModule);
  const next = random(options.seed);
  const start = Date.now();
  const s: FuzzSummary = { cases: 0, seconds: 0, casesPerSecond: 0, workers, byFamily: {}, errorsByCode: {}, needsReset: 0, guardViolations: 0, failed: 0, failures: [], interrupted: false };
  const update = (): void => {
    s.seconds = (Date.now() - start) / 1000;
    s.casesPerSecond = s.seconds > 0 ? s.cases / s.seconds : 0;
  };
  let lastProgress = start;
  const merge = (task: FuzzTask, r: FuzzCaseReport): void => {
    s.cases++;
    s.byFamily[r.family] = (s.byFamily[r.family] ?? 0) + 1;
    for (const code of r.errors) s.errorsByCode[code] = (s.errorsByCode[code] ?? 0) + 1;
    if (r.needsReset) s.needsReset++;
    s.guardViolations += r.guardViolations;
    if (r.problems.length !== 0) {
      s.failed++;
      // Cases end out of order: keep the earliest in the sequence, so any worker count reports the same ones.
      s.failures.push({ ...r, index: task.index });
      s.failures.sort((a, b) => a.index - b.index);
      s.failures.length = Math.min(s.failures.length, KEEP_FAILURES);
    }
    if (options.onProgress !== undefined && Date.now() - lastProgress >= (options.progressMs ?? 5000)) {
      lastProgress = Date.now();
      update();
      options.onProgress(s);
    }
  };
  // The draws of case i, in the order a single thread has always made them.
  const draw = (index: number): FuzzTask => {
    const kind = options.devices[index % options.devices.length];
    const ring = options.rings[next() % options.rings.length];
    const cases = caseList.filter((c) => c.applies(kind, ring));
    const c = cases[next() % cases.length];
    return { index, kind, ring, case: c.name, variant: next(), caseModule: options.caseModule };
  };
  const pool = new Piscina<FuzzTask, FuzzCaseReport>({ filename: workerFile('fuzz-worker').href, minThreads: workers, maxThreads: workers, idleTimeout: Infinity });
  try {
    const end = options.seconds === undefined ? Infinity : start + 1000 * options.seconds;
    const running = new Set<Promise<void>>();
    for (let index = 0; index < options.cases && Date.now() < end; ) {
      if (options.signal?.aborted === true) {
        s.interrupted = true;
        break;
      }
      // One case per thread in flight: the time limit and Ctrl-C leave no queue behind.
      if (running.size >= workers) {
        await Promise.race(running);
        continue;
      }
      const task = draw(index++);
      const done: Promise<void> = pool
        .run(task)
        .then(
          (r) => merge(task, r),
          (e: unknown) => merge(task, crashed(task, e)),
        )
        .finally(() => running.delete(done));
      running.add(done);
    }
    await Promise.all(running);
  } finally {
    // Ends every pool thread, and with each the queue threads of its devices.
    await pool.destroy();
  }
  update();
  return s;
}

/** The report of a case whose pool thread threw or died: a broken property like any other. */
function crashed(task: FuzzTask, e: unknown): FuzzCaseReport {
  return {
    case: task.case,
    family: 'crash',
    spec: '',
    ring: task.ring,
    variant: task.variant,
    expected: undefined,
    errors: [],
    needsReset: false,
    guardViolations: 0,
    problems: [`the pool thread failed: ${e instanceof Error ? e.message : String(e)}`],
    ms: 0,
  };
}
