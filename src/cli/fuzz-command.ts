import { type FuzzSummary, defaultFuzzWorkers, runFuzz } from '../hostile/fuzz.js';
import type { HostileDeviceKind, RingFormat } from '../hostile/hostile-target.js';
import { interruptOnSignals } from './interrupt.js';
import { commandLine } from './options.js';

export const FUZZ_USAGE = `usage: virtio-lab fuzz [--cases N] [--seconds S] [--seed N] [--workers N] [--device net|vsock|all] [--ring split|packed|both] [--json]

Drive our virtio-net and virtio-vsock devices with HostileDriver: random
named lies (bad descriptors, chain loops, index jumps, wrap counter lies,
bad headers, malformed control commands, vsock protocol lies, status and
register misuse, resets mid-traffic) through the real control plane and
queue workers, checking after each that the device refused it with a named,
counted error, wrote and read nothing outside guest memory (guard regions),
kept its other queues working, and works again after a reset.

  --cases N     cases to run (default 1000000)
  --seconds S   stop after S seconds
  --seed N      seed of the random choices (default: from the clock; printed)
  --workers N   threads that run cases side by side, each on devices of its
                own (default: half the machine's available parallelism, at
                least 1: a case keeps two threads busy); case i of a seed
                is the same whatever N
  --device D    net, vsock or all (default all)
  --ring R      split, packed or both (default both)
  --json        print the figures as one JSON object

Ctrl-C (or SIGTERM) stops after the running case and prints the figures so
far; a second one exits at once.

Exit status: 0 when every property held, 1 when one broke (the failures are
printed with their case, ring and variant), 2 for a bad command line.
`;

const fmt = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none';

const progress = (s: FuzzSummary): string => `${s.cases} cases in ${s.seconds.toFixed(1)} s, ${s.casesPerSecond.toFixed(1)} cases/s, ${s.failed} failed, ${s.guardViolations} guard violations`;

const OPTIONS = {
  cases: { type: 'int', min: 1, default: 1_000_000 },
  seconds: { type: 'number', above: 0 },
  seed: { type: 'int', min: 0, max: 0xffffffff },
  workers: { type: 'int', min: 1, max: 256 },
  device: { type: 'string', choices: ['net', 'vsock', 'all'], default: 'all' },
  ring: { type: 'string', choices: ['split', 'packed', 'both'], default: 'both' },
  json: { type: 'boolean' },
} as const;

const DEVICES: Record<'net' | 'vsock' | 'all', HostileDeviceKind[]> = { net: ['net'], vsock: ['vsock'], all: ['net', 'vsock'] };
const RINGS: Record<'split' | 'packed' | 'both', RingFormat[]> = { split: ['split'], packed: ['packed'], both: ['split', 'packed'] };

/** `virtio-lab fuzz`: returns the exit status. */
export async function fuzzCommand(args: string[]): Promise<number> {
  const parsed = commandLine('fuzz', FUZZ_USAGE, args, OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const { cases, seconds } = values;
  const seed = values.seed ?? Date.now() >>> 0;
  const workers = values.workers ?? defaultFuzzWorkers();
  if (!values.json) console.log(`fuzz: seed ${seed}, ${workers} worker${workers === 1 ? '' : 's'}, devices ${DEVICES[values.device].join('+')}, rings ${RINGS[values.ring].join('+')}`);
  const interrupt = interruptOnSignals('fuzz');
  let s: FuzzSummary;
  try {
    s = await runFuzz({
      cases,
      seconds,
      seed,
      workers,
      devices: DEVICES[values.device],
      rings: RINGS[values.ring],
      signal: interrupt.signal,
      onProgress: values.json ? undefined : (p) => console.log(progress(p)),
    });
  } finally {
    interrupt.dispose();
  }
  if (values.json) {
    console.log(JSON.stringify({ seed, ...s }, null, 2));
  } else {
    console.log(progress(s) + (s.interrupted ? ' (interrupted)' : ''));
    console.log(`cases per family: ${fmt(s.byFamily)}`);
    console.log(`errors by name: ${fmt(s.errorsByCode)}`);
    console.log(`DEVICE_NEEDS_RESET then reset and recovered: ${s.needsReset}`);
    console.log(`guard violations: ${s.guardViolations} (must be 0)`);
    for (const f of s.failures) console.log(`FAILED case ${f.index}: ${f.case} (${f.spec}) on ${f.ring} rings, variant ${f.variant}: ${f.problems.join('; ')}`);
  }
  return s.failed === 0 && s.guardViolations === 0 ? 0 : 1;
}
