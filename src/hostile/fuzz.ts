import { HostileDriver, type HostileReport } from './hostile-driver.js';
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
  /** Called every `progressMs` (default 5000) with the figures so far. */
  onProgress?: (s: FuzzSummary) => void;
  progressMs?: number;
  /** Stop after the case running when it aborts (the figures so far are returned). */
  signal?: AbortSignal;
}

/** The figures of a fuzz run. */
export interface FuzzSummary {
  cases: number;
  seconds: number;
  casesPerSecond: number;
  /** Cases run per family (ring, net, vsock, control). */
  byFamily: Record<string, number>;
  /** Named errors the devices reported, by code. */
  errorsByCode: Record<string, number>;
  /** Cases after which DEVICE_NEEDS_RESET was set (each followed by a reset and a recovery check). */
  needsReset: number;
  /** Guard bytes found changed over the run: must be 0. */
  guardViolations: number;
  /** Cases with a broken property. */
  failed: number;
  /** The first failures (case, ring, variant, what broke): enough to replay them. */
  failures: HostileReport[];
  /** True when `signal` stopped the run before `cases` or `seconds`. */
  interrupted: boolean;
}

const KEEP_FAILURES = 20;

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
 * our virtio-net and virtio-vsock devices, turn about, until `cases` ran or
 * `seconds` passed or `signal` aborted; returns the figures.
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const next = random(options.seed);
  const drivers: HostileDriver[] = [];
  const start = Date.now();
  const s: FuzzSummary = { cases: 0, seconds: 0, casesPerSecond: 0, byFamily: {}, errorsByCode: {}, needsReset: 0, guardViolations: 0, failed: 0, failures: [], interrupted: false };
  const update = (): void => {
    s.seconds = (Date.now() - start) / 1000;
    s.casesPerSecond = s.seconds > 0 ? s.cases / s.seconds : 0;
  };
  let lastProgress = start;
  try {
    for (const kind of options.devices) drivers.push(kind === 'net' ? await HostileDriver.net() : HostileDriver.vsock());
    const end = options.seconds === undefined ? Infinity : start + 1000 * options.seconds;
    while (s.cases < options.cases && Date.now() < end) {
      if (options.signal?.aborted === true) {
        s.interrupted = true;
        break;
      }
      const d = drivers[s.cases % drivers.length];
      const ring = options.rings[next() % options.rings.length];
      const cases = d.casesFor(ring);
      const r = await d.run(cases[next() % cases.length], ring, next());
      s.cases++;
      s.byFamily[r.family] = (s.byFamily[r.family] ?? 0) + 1;
      for (const code of r.errors) s.errorsByCode[code] = (s.errorsByCode[code] ?? 0) + 1;
      if (r.needsReset) s.needsReset++;
      s.guardViolations += r.guardViolations;
      if (r.problems.length !== 0) {
        s.failed++;
        if (s.failures.length < KEEP_FAILURES) s.failures.push(r);
      }
      if (options.onProgress !== undefined && Date.now() - lastProgress >= (options.progressMs ?? 5000)) {
        lastProgress = Date.now();
        update();
        options.onProgress(s);
      }
    }
  } finally {
    await Promise.all(drivers.map((d) => d.close()));
  }
  update();
  return s;
}
