import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { type LoadResult, type LoadTick, runLoad } from '../lab/load.js';
import { parseSizeMix } from '../lab/load-frames.js';
import { type Placement, probePlacement } from '../lab/placement.js';
import { progressBar } from './progress-bar.js';

export const LOAD_USAGE = `usage: virtio-lab load [--pairs N] [--sizes MIX] [--rate R|max] [--seconds S]
                      [--ring split|packed] [--latency-every N] [--json]

Offer a paced stream of frames of a size mix from NIC a to NIC b (one guest
thread per queue pair, real queue workers), show pps, Gbit/s and drops live,
then a table with the latency percentiles (HDR histogram) at that rate.

  --pairs N          queue pairs per NIC (default 1)
  --sizes MIX        frame sizes with weights, e.g. 64:7,576:4,1500:1 (default 64)
  --rate R           frames/s over all pairs: 200000, 200k, 1.5M, or max
                     (as many as the rings take; default max)
  --seconds S        how long to offer frames (default 5)
  --ring F           ring format: split (default) or packed
  --latency-every N  time one frame in N (default ~10k samples/s per pair)
  --json             print one JSON object instead of the live line and table

Drops: "skipped" frames were due while every tx buffer was in flight (the
generator's own drops, as a hardware tester counts them); "device" drops are
the device's counters. Exit status: 0 when every sent frame was delivered or
counted, 1 when frames were lost or out of order, 2 for a bad command line.
`;

/** "200k" -> 200000, "1.5M" -> 1500000, "max" -> 0 (unpaced). */
export function parseRate(text: string): number {
  if (text === 'max') return 0;
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`--rate ${text}: a number of frames per second (200000, 200k, 1.5M) or max`);
  const scale = m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6;
  const rate = Number(m[1]) * scale;
  if (!(rate > 0)) throw new InvalidArgumentError(`--rate ${text} must be positive`);
  return rate;
}

const fix = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const us = (n: number): string => (!Number.isFinite(n) ? '-' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

/** The live display: one line redrawn in place on a terminal, one line per tick otherwise. */
function liveLine(tty: boolean): (t: LoadTick) => void {
  return (t) => {
    const line = `${progressBar(t.done)} ${fix(t.seconds, 1).padStart(5)} s  ${fix(t.pps / 1e6, 3).padStart(7)} Mpps  ${fix(t.gbps).padStart(6)} Gbit/s  received ${t.received}  skipped ${t.skipped}`;
    if (tty) process.stdout.write(`\r${line}`);
    else console.log(line);
  };
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
    ['threads', `${r.busyThreads} busy (guest, tx worker, rx worker per pair) on ${r.cores} cores, ${r.pairs} pair${r.pairs > 1 ? 's' : ''}, ${r.ring} rings`],
    ['placement', `${placement.placement} (cache-line round trip ${placement.roundTripNs} ns), node ${r.node}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** `virtio-lab load`: returns the exit status. */
export async function loadCommand(args: string[]): Promise<number> {
  let options: Parameters<typeof runLoad>[0];
  let json: boolean;
  try {
    const { values } = parseArgs({
      args,
      options: {
        pairs: { type: 'string', default: '1' },
        sizes: { type: 'string', default: '64' },
        rate: { type: 'string', default: 'max' },
        seconds: { type: 'string', default: '5' },
        ring: { type: 'string', default: 'split' },
        'latency-every': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(LOAD_USAGE);
      return 0;
    }
    if (values.ring !== 'split' && values.ring !== 'packed') throw new InvalidArgumentError(`--ring must be split or packed, not ${values.ring}`);
    json = values.json;
    options = {
      pairs: Number(values.pairs),
      sizes: parseSizeMix(values.sizes),
      ratePps: parseRate(values.rate),
      seconds: Number(values.seconds),
      ring: values.ring,
      latencyEvery: values['latency-every'] === undefined ? undefined : Number(values['latency-every']),
    };
  } catch (e) {
    process.stderr.write(`virtio-lab load: ${(e as Error).message}\n\n${LOAD_USAGE}`);
    return 2;
  }
  const placement = await probePlacement();
  const tty = process.stdout.isTTY === true;
  if (!json) console.log(`placement: ${placement.placement} (cache-line round trip ${placement.roundTripNs} ns), node ${process.version}`);
  let result: LoadResult;
  try {
    // A terminal line redrawn twice a second; a log gets one line per second.
    result = await runLoad({ ...options, tickMs: tty ? 500 : 1000, onTick: json ? undefined : liveLine(tty) });
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    process.stderr.write(`virtio-lab load: ${e.message}\n`);
    return 2;
  }
  if (json) process.stdout.write(`${JSON.stringify({ ...result, placement }, null, 2)}\n`);
  else process.stdout.write(`${tty ? '\n' : ''}${formatLoadResult(result, placement)}`);
  return result.lost === 0 && result.sequenceErrors === 0 ? 0 : 1;
}
