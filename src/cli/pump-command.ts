import { InvalidArgumentError } from '../errors.js';
import { MAX_PLAIN_FRAME, MIN_FRAME } from '../lab/pump/frames.js';
import { probePlacement } from '../lab/placement.js';
import { PUMP_THREADS, type PumpTick, runPump } from '../lab/pump/pump.js';
import { interruptOnSignals } from './interrupt.js';
import { type LiveField, LiveLine, liveMode } from './live-line.js';
import { commandLine, usageFailure } from './options.js';
import { progressBar } from './progress-bar.js';

export const PUMP_USAGE = `usage: virtio-lab pump [options]

Move numbered Ethernet frames from one virtio-net NIC to another through real
queue worker threads, printing live packets/s and Gbit/s.

  --frames N       frames to move per pair (default 10000000; 0: until
                   --seconds pass or Ctrl-C)
  --seconds S      stop after S seconds, counted from the first frame
  --warmup S       also print the rate after the first S seconds (the code
                   warms up in them), as testpmd times its windows
  --size B         frame size in bytes, ${MIN_FRAME} to ${MAX_PLAIN_FRAME} (default 64)
  --queue-size N   ring size (default 1024)
  --pairs N        queue pairs per NIC, one guest thread each (default 1)
  --ring F         ring format: split (default) or packed
  --spin-us U      microseconds to poll before sleeping (default 30)
  --threads M      queue threads: auto (default), per-queue, per-pair,
                   per-device, link (one worker per pair serves a.tx and b.rx),
                   guest (that worker also runs the pair's guest side)
  --progress       a plain progress line every tick when stdout is not a terminal
  --json           print the result as JSON

Ctrl-C (SIGINT) or SIGTERM stops the traffic and prints the result; a second
one exits at once. Exit status: 0 when every frame arrived once and in order,
1 when frames were lost or out of order, 2 for a bad command line.
`;

const OPTIONS = {
  frames: { type: 'int', min: 0, default: 10_000_000 },
  seconds: { type: 'number', above: 0 },
  warmup: { type: 'number', above: 0 },
  size: { type: 'int', min: MIN_FRAME, max: MAX_PLAIN_FRAME, default: 64 },
  'queue-size': { type: 'int', min: 2, max: 32768, default: 1024 },
  pairs: { type: 'int', min: 1, max: 64, default: 1 },
  ring: { type: 'string', choices: ['split', 'packed'], default: 'split' },
  'spin-us': { type: 'number', min: 0, default: 30 },
  threads: { type: 'string', choices: PUMP_THREADS, default: 'auto' },
  progress: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

const fmt = (n: number, digits = 2): string => n.toFixed(digits);

/** The live line's fields, most important kept longest on a narrow terminal. */
function liveFields(t: PumpTick, totalFrames: number, seconds: number | undefined): LiveField[] {
  const done = totalFrames > 0 ? t.received / totalFrames : seconds !== undefined ? t.seconds / seconds : undefined;
  const fields: LiveField[] = [];
  if (done !== undefined) fields.push({ text: progressBar(done), keep: 2 });
  fields.push(
    { text: `${fmt(t.seconds, 1).padStart(6)} s`, keep: 4 },
    { text: `${fmt(t.pps / 1e6).padStart(7)} Mpps`, keep: 6 },
    { text: `${fmt(t.gbps).padStart(7)} Gbit/s`, keep: 5 },
    { text: `received ${t.received}`, keep: 3 },
  );
  if (t.perPair.length > 1) fields.push({ text: `per pair ${t.perPair.join(' / ')}`, keep: 1 });
  return fields;
}

/** `virtio-lab pump`: returns the exit status. */
export async function pumpCommand(args: string[]): Promise<number> {
  const parsed = commandLine('pump', PUMP_USAGE, args, OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const { frames, seconds, pairs } = values;
  // Signals are caught from here on: one during the placement probe still ends in a (short) summary.
  const interrupt = interruptOnSignals('pump');
  const placement = await probePlacement();
  if (!values.json) console.log(`placement: ${placement.placement} (cache-line round trip ${placement.roundTripNs} ns), node ${process.version}`);
  const live = new LiveLine(values.json ? 'off' : liveMode(values.progress));
  let result;
  try {
    result = await runPump({
      ring: values.ring,
      frames,
      pairs,
      seconds,
      warmupSeconds: values.warmup,
      // Each guest also times itself from its own first frame: the stop comes on time, not at the next tick.
      guestSeconds: seconds,
      frameSize: values.size,
      queueSize: values['queue-size'],
      spinUs: values['spin-us'],
      threads: values.threads,
      signal: interrupt.signal,
      onTick: live.mode === 'off' ? undefined : (t) => live.draw(liveFields(t, frames * pairs, seconds)),
    });
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    return usageFailure('pump', e.message, PUMP_USAGE);
  } finally {
    interrupt.dispose();
    live.end();
  }
  if (values.json) {
    console.log(JSON.stringify({ ...result, interrupted: interrupt.signal.aborted, placement }, null, 2));
  } else {
    console.log(
      `moved ${result.received} of ${result.sent} frames of ${result.frameSize} B in ${fmt(result.seconds)} s: ` +
        `${fmt(result.pps / 1e6)} Mpps, ${fmt(result.gbps)} Gbit/s; lost ${result.lost}, out of sequence ${result.sequenceErrors}; ` +
        `${result.busyThreads} busy threads (queue threads ${result.threads}) on ${result.cores} cores, ${placement.placement} placement, ${result.ring} rings` +
        (interrupt.signal.aborted ? ' (interrupted)' : ''),
    );
    if (values.warmup !== undefined) {
      const s = result.steady;
      console.log(s === undefined ? `after the ${values.warmup} s warm-up: no frames (the run ended first)` : `after the ${values.warmup} s warm-up: ${s.frames} frames in ${fmt(s.seconds)} s, ${fmt(s.pps / 1e6)} Mpps, ${fmt(s.gbps)} Gbit/s`);
    }
    result.perPair.forEach((n, p) => {
      const tx = result.txQueues[p];
      const rx = result.rxQueues[p];
      console.log(`pair ${p}: received ${n}; tx queue ${tx.sleeps} sleeps, ${tx.interrupts} interrupts; rx queue ${rx.chains} chains, ${rx.sleeps} sleeps, ${rx.interrupts} interrupts`);
    });
  }
  return result.lost === 0 && result.sequenceErrors === 0 ? 0 : 1;
}
