/** `virtio-lab soak`: run the soak from the command line. */
import { runSoak } from '../lab/soak/soak.js';
import { formatSoakReport } from './soak-report.js';
import { interruptOnSignals } from './interrupt.js';
import { commandLine } from './options.js';

export const SOAK_USAGE = `usage: virtio-lab soak [options]

Net traffic through a switch with loss and delay, vsock streams with every
byte checked, and faults under them (queue workers killed, devices reset,
queues restarted); then every frame and byte is accounted for and memory is
compared with the start. Exit code 1 when a rule was broken.

  --minutes M      how long to run (default 1)
  --seconds S      how long to run, in seconds (instead of --minutes)
  --seed N         seed of every random choice (default random, printed)
  --ring F         split (default) or packed
  --fault-ms N     mean milliseconds between faults (default 400)
  --json           print the result as JSON

Ctrl-C (SIGINT) or SIGTERM ends the traffic early; the soak still drains and
accounts for everything. A second one exits at once.
`;

const OPTIONS = {
  minutes: { type: 'number', above: 0, default: 1 },
  seconds: { type: 'number', above: 0 },
  seed: { type: 'int', min: 0, max: 0x7fffffff },
  ring: { type: 'string', choices: ['split', 'packed'], default: 'split' },
  'fault-ms': { type: 'number', above: 0, default: 400 },
  json: { type: 'boolean' },
} as const;

/** Parse `args`, run, print the summary; resolves with the exit code. */
export async function soakCommand(args: string[]): Promise<number> {
  const parsed = commandLine('soak', SOAK_USAGE, args, OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const json = values.json;
  const interrupt = interruptOnSignals('soak');
  try {
    const result = await runSoak({
      seconds: values.seconds ?? values.minutes * 60,
      seed: values.seed,
      ring: values.ring,
      faultEveryMs: values['fault-ms'],
      signal: interrupt.signal,
      onProgress: json
        ? undefined
        : (p) => console.log(`${p.seconds.toFixed(0).padStart(5)} s  frames ${p.framesReceived}  faults ${p.faults}  vsock streams ${p.vsockStreams}  heap ${(p.heapBytes / (1 << 20)).toFixed(1)} MiB`),
    });
    console.log(json ? JSON.stringify(result, null, 2) : formatSoakReport(result));
    return result.ok ? 0 : 1;
  } finally {
    interrupt.dispose();
  }
}
