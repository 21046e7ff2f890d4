import { InvalidArgumentError } from '../errors.js';
import { type LoadResult, type LoadTick, runLoad } from '../lab/load/load.js';
import { parseSizeMix } from '../lab/pump/frames.js';
import { PUMP_THREADS } from '../lab/pump/pump.js';
import { type Placement, probePlacement } from '../lab/placement.js';
import { interruptOnSignals } from './interrupt.js';
import { type LiveField, LiveLine, liveMode } from './live-line.js';
import { commandLine, usageFailure } from './options.js';
import { progressBar } from './progress-bar.js';

export const LOAD_USAGE = `usage: virtio-lab load [--pairs N] [--sizes MIX] [--rate R|max] [--seconds S]
                      [--ring split|packed] [--threads M] [--latency-every N] [--idle-poll-ms T]
                      [--progress] [--json]

Offer a paced stream of frames of a size mix from NIC a to NIC b (one guest
thread per queue pair, real queue workers), show pps, Gbit/s and drops live,
then a table with the latency percentiles (HDR histogram) at that rate.

  --pairs N          queue pairs per NIC (default 1)
  --sizes MIX        frame sizes with weights, e.g. 64:7,576:4,1500:1 (default 64)
  --rate R           frames/s over all pairs: 200000, 200k, 1.5M, or max
                     (as many as the rings take; default max)
  --seconds S        how long to offer frames, from the first one (default 5)
  --ring F           ring format: split (default) or packed
  --threads M        queue threads, as the pump's: auto (default), per-queue,
                     per-pair, per-device, link, guest
  --latency-every N  time one frame in N (default ~10k samples/s per pair)
  --idle-poll-ms T   sleeping queue threads look at their queues every T ms,
                     for a second after their last work (default 0: never);
                     at low rates a look every 1 ms keeps the first frame
                     after a pause fast
  --progress         a plain progress line every second when stdout is not
                     a terminal
  --json             print one JSON object instead of the live line and table

Drops: "skipped" frames were due while every tx buffer was in flight (the
generator's own drops, as a hardware tester counts them); "device" drops are
the device's counters. Exit status: 0 when every sent frame was delivered or
counted, 1 when frames were lost or out of order, 2 for a bad command line.
Ctrl-C (SIGINT) or SIGTERM stops the stream and prints the table of what
was measured; a second one exits at once.
`;

const OPTIONS = {
  pairs: { type: 'int', min: 1, max: 64, default: 1 },
  sizes: { type: 'parse', parse: parseSizeMix, default: parseSizeMix('64') },
  rate: { type: 'parse', parse: (text: string) => parseRate(text), default: 0 },
  seconds: { type: 'number', above: 0, default: 5 },
  ring: { type: 'string', choices: ['split', 'packed'], default: 'split' },
  threads: { type: 'string', choices: PUMP_THREADS, default: 'auto' },
  'latency-every': { type: 'int', min: 0 },
  'idle-poll-ms': { type: 'number', min: 0, max: 1000, default: 0 },
  progress: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** "200k" -> 200000, "1.5M" -> 1500000, "max" -> 0 (unpaced). */
export function parseRate(text: string): number {
  if (text === 'max') return 0;
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text);
  if (m === null) throw new InvalidArgumentError('must be a number of frames per second (200000, 200k, 1.5M) or max');
  const scale = m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6;
  const rate = Number(m[1]) * scale;
  if (!(rate > 0)) throw new InvalidArgumentError('must be positive (or max)');
  return rate;
}

const fix = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const us = (n: number): string => (!Number.isFinite(n) ? '-' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

/** The live line's fields, most important kept longest on a narrow terminal. */
function liveFields(t: LoadTick): LiveField[] {
  return [
    { text: progressBar(t.done), keep: 2 },
    { text: `${fix(t.seconds, 1).padStart(5)} s`, keep: 4 },
    { text: `${fix(t.pps / 1e6, 3).padStart(7)} Mpps`, keep: 6 },
    { text: `${fix(t.gbps).padStart(6)} Gbit/s`, keep: 5 },
    { text: `received ${t.received}`, keep: 3 },
    { text: `skipped ${t.skipped}`, keep: 1 },
  ];
}

/** The final table, as text. */
export function formatLoadResult(r: LoadResult, placement: Placement): string {
  const mix = r.sizes.map((s) => `${s.size}:${s.weight}`).join(',');
  const rows: [string, string][] = [
    ['frames (size:weight)', `${mix} (mean ${fix(r.meanFrameSize, 0)} B)`],
    ['offered rate', r.offeredPps > 0 ? `${fix(r.offeredPps / 1e6, 3)} Mpps` : 'max (unpaced)'],
    ['achieved rate', `${fix(r.achievedPps / 1e6, 3)} Mpps, ${fix(r.gbps)} Gbit/s over ${fix(r.seconds)} s`],
    ['offered / sent / received', `${r.offered} / ${r.sent} / ${r.received}`],
    ['drops: skipped / device', `${r.skipped} / ${r.drops}`],
    ['lost / out of sequence', `${r.lost} / ${r.sequenceErrors}`],
    [`latency us (1 in ${r.latencyEvery}, ${r.latency.samples} samples)`, `p50 ${us(r.latency.p50)}  p99 ${us(r.latency.p99)}  p99.9 ${us(r.latency.p999)}  max ${us(r.latency.max)}`],
    ['threads', `${r.busyThreads} busy (queue threads ${r.threads}) on ${r.cores} cores, ${r.pairs} pair${r.pairs > 1 ? 's' : ''}, ${r.ring} rings`],
    ['placement', `${placement.placement} (cache-line round trip ${placement.roundTripNs} ns), node ${r.node}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** `virtio-lab load`: returns the exit status. */
export async function loadCommand(args: string[]): Promise<number> {
  const parsed = commandLine('load', LOAD_USAGE, args, OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const json = values.json;
  // Signals are caught from here on: one during the placement probe still ends in a (short) summary.
  const interrupt = interruptOnSignals('load');
  const placement = await probePlacement();
  if (!json) console.log(`placement: ${placement.placement} (cache-line round trip ${placement.roundTripNs} ns), node ${process.version}`);
  const live = new LiveLine(json ? 'off' : liveMode(values.progress));
  let result: LoadResult;
  try {
    // A terminal line redrawn twice a second; a log gets one line per second.
    result = await runLoad({
      pairs: values.pairs,
      sizes: values.sizes,
      ratePps: values.rate,
      seconds: values.seconds,
      ring: values.ring,
      threads: values.threads,
      latencyEvery: values['latency-every'],
      idlePollMs: values['idle-poll-ms'],
      signal: interrupt.signal,
      tickMs: live.mode === 'tty' ? 500 : 1000,
      onTick: live.mode === 'off' ? undefined : (t) => live.draw(liveFields(t)),
    });
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    return usageFailure('load', e.message, LOAD_USAGE);
  } finally {
    interrupt.dispose();
    live.end();
  }
  if (json) process.stdout.write(`${JSON.stringify({ ...result, interrupted: interrupt.signal.aborted, placement }, null, 2)}\n`);
  else process.stdout.write(`${formatLoadResult(result, placement)}${interrupt.signal.aborted ? 'interrupted: the figures cover the run until the signal\n' : ''}`);
  return result.lost === 0 && result.sequenceErrors === 0 ? 0 : 1;
}
