import { parseArgs } from 'node:util';
import { type FuzzSummary, runFuzz } from '../hostile/fuzz.js';
import type { HostileDeviceKind, RingFormat } from '../hostile/hostile-target.js';

export const FUZZ_USAGE = `usage: virtio-lab fuzz [--cases N] [--seconds S] [--seed N] [--device net|vsock|all] [--ring split|packed|both] [--json]

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
  --device D    net, vsock or all (default all)
  --ring R      split, packed or both (default both)
  --json        print the figures as one JSON object

Exit status: 0 when every property held, 1 when one broke (the failures are
printed with their case, ring and variant), 2 for a bad command line.
`;

const fmt = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none';

const progress = (s: FuzzSummary): string => `${s.cases} cases in ${s.seconds.toFixed(1)} s, ${s.casesPerSecond.toFixed(1)} cases/s, ${s.failed} failed, ${s.guardViolations} guard violations`;

/** `virtio-lab fuzz`: returns the exit status. */
export async function fuzzCommand(args: string[]): Promise<number> {
  let values: { cases: string; seconds?: string; seed?: string; device: string; ring: string; json: boolean; help: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        cases: { type: 'string', default: '1000000' },
        seconds: { type: 'string' },
        seed: { type: 'string' },
        device: { type: 'string', default: 'all' },
        ring: { type: 'string', default: 'both' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n${FUZZ_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(FUZZ_USAGE);
    return 0;
  }
  const cases = Number(values.cases);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  const seed = values.seed === undefined ? Date.now() >>> 0 : Number(values.seed);
  const devices: Record<string, HostileDeviceKind[]> = { net: ['net'], vsock: ['vsock'], all: ['net', 'vsock'] };
  const rings: Record<string, RingFormat[]> = { split: ['split'], packed: ['packed'], both: ['split', 'packed'] };
  const bad =
    (!Number.isInteger(cases) || cases < 1 ? `--cases ${values.cases} must be a positive integer` : undefined) ??
    (seconds !== undefined && !(seconds > 0) ? `--seconds ${values.seconds} must be positive` : undefined) ??
    (!Number.isInteger(seed) || seed < 0 ? `--seed ${values.seed} must be a non-negative integer` : undefined) ??
    (devices[values.device] === undefined ? `--device must be net, vsock or all, not ${values.device}` : undefined) ??
    (rings[values.ring] === undefined ? `--ring must be split, packed or both, not ${values.ring}` : undefined);
  if (bad !== undefined) {
    process.stderr.write(`${bad}\n${FUZZ_USAGE}`);
    return 2;
  }
  if (!values.json) console.log(`fuzz: seed ${seed}, devices ${devices[values.device].join('+')}, rings ${rings[values.ring].join('+')}`);
  const s = await runFuzz({
    cases,
    seconds,
    seed,
    devices: devices[values.device],
    rings: rings[values.ring],
    onProgress: values.json ? undefined : (p) => console.log(progress(p)),
  });
  if (values.json) {
    console.log(JSON.stringify({ seed, ...s }, null, 2));
  } else {
    console.log(progress(s));
    console.log(`cases per family: ${fmt(s.byFamily)}`);
    console.log(`errors by name: ${fmt(s.errorsByCode)}`);
    console.log(`DEVICE_NEEDS_RESET then reset and recovered: ${s.needsReset}`);
    console.log(`guard violations: ${s.guardViolations} (must be 0)`);
    for (const f of s.failures) console.log(`FAILED ${f.case} (${f.spec}) on ${f.ring} rings, variant ${f.variant}: ${f.problems.join('; ')}`);
  }
  return s.failed === 0 && s.guardViolations === 0 ? 0 : 1;
}
