/** `virtio-lab soak`: run the soak from the command line. */
import { parseArgs } from 'node:util';
import { runSoak } from './soak.js';
import { formatSoakReport } from './soak-report.js';

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
`;

/** Parse `args`, run, print the summary; resolves with the exit code. */
export async function soakCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      minutes: { type: 'string', default: '1' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      ring: { type: 'string', default: 'split' },
      'fault-ms': { type: 'string', default: '400' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(SOAK_USAGE);
    return 0;
  }
  if (values.ring !== 'split' && values.ring !== 'packed') {
    process.stderr.write(`--ring must be split or packed, not ${values.ring}\n`);
    return 2;
  }
  const seconds = values.seconds !== undefined ? Number(values.seconds) : Number(values.minutes) * 60;
  const json = values.json;
  const result = await runSoak({
    seconds,
    seed: values.seed === undefined ? undefined : Number(values.seed),
    ring: values.ring,
    faultEveryMs: Number(values['fault-ms']),
    onProgress: json
      ? undefined
      : (p) => console.log(`${p.seconds.toFixed(0).padStart(5)} s  frames ${p.framesReceived}  faults ${p.faults}  vsock streams ${p.vsockStreams}  heap ${(p.heapBytes / (1 << 20)).toFixed(1)} MiB`),
  });
  console.log(json ? JSON.stringify(result, null, 2) : formatSoakReport(result));
  return result.ok ? 0 : 1;
}
