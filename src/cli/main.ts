#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { probePlacement } from '../lab/placement.js';
import { PUMP_THREADS, type PumpTick, runPump } from '../lab/pump.js';
import { LAB_USAGE, labCommand } from './lab-command.js';
import { LOAD_USAGE, loadCommand } from './load-command.js';
import { progressBar } from './progress-bar.js';

const USAGE = `usage: virtio-lab pump [options]

Move numbered Ethernet frames from one virtio-net NIC to another through real
queue worker threads, printing live packets/s and Gbit/s.

  --frames N       frames to move (default 10000000; 0 with --seconds: run for a time)
  --seconds S      stop after S seconds
  --size B         frame size in bytes (default 64)
  --queue-size N   ring size (default 1024): a power of two for split rings, any size in [1, 32768] for packed
  --pairs N        queue pairs per NIC, one guest thread each (default 1)
  --ring F         ring format: split (default) or packed
  --spin-us U      microseconds to poll before sleeping (default 30)
  --threads M      queue threads: auto (default), per-queue, per-pair,
                   per-device, link (one worker per pair serves a.tx and b.rx)
  --json           print the result as JSON
`;

const fmt = (n: number, digits = 2): string => n.toFixed(digits);

/**
 * The live display: on a terminal one line redrawn in place (progress bar,
 * packets/s, Gbit/s, frames per pair); otherwise one line per tick.
 */
function liveLine(totalFrames: number, seconds: number | undefined): (t: PumpTick) => void {
  const tty = process.stdout.isTTY === true;
  return (t) => {
    const done = totalFrames > 0 ? t.received / totalFrames : seconds !== undefined ? t.seconds / seconds : 0;
    const pairs = t.perPair.length > 1 ? `  per pair ${t.perPair.join(' / ')}` : '';
    const line = `${progressBar(done)} ${fmt(t.seconds, 1).padStart(6)} s  ${fmt(t.pps / 1e6).padStart(7)} Mpps  ${fmt(t.gbps).padStart(7)} Gbit/s  received ${t.received}${pairs}`;
    if (tty) process.stdout.write(`\r${line}`);
    else console.log(line);
  };
}

async function pump(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      frames: { type: 'string', default: '10000000' },
      seconds: { type: 'string' },
      size: { type: 'string', default: '64' },
      'queue-size': { type: 'string', default: '1024' },
      pairs: { type: 'string', default: '1' },
      ring: { type: 'string', default: 'split' },
      'spin-us': { type: 'string', default: '30' },
      threads: { type: 'string', default: 'auto' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const placement = await probePlacement();
  const live = !values.json;
  if (live) console.log(`placement: ${placement.placement} (cache-line round trip ${placement.roundTripNs} ns), node ${process.version}`);
  const frames = Number(values.frames);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  const pairs = Number(values.pairs);
  if (values.ring !== 'split' && values.ring !== 'packed') {
    process.stderr.write(`--ring must be split or packed, not ${values.ring}\n`);
    return 2;
  }
  const threads = PUMP_THREADS.find((t) => t === values.threads);
  if (threads === undefined) {
    process.stderr.write(`--threads must be one of ${PUMP_THREADS.join(', ')}, not ${values.threads}\n`);
    return 2;
  }
  const result = await runPump({
    ring: values.ring,
    frames,
    pairs,
    seconds,
    frameSize: Number(values.size),
    queueSize: Number(values['queue-size']),
    spinUs: Number(values['spin-us']),
    threads,
    onTick: live ? liveLine(frames * pairs, seconds) : undefined,
  });
  if (live && process.stdout.isTTY) process.stdout.write('\n');
  if (values.json) {
    console.log(JSON.stringify({ ...result, placement }, null, 2));
  } else {
    console.log(
      `moved ${result.received} of ${result.sent} frames of ${result.frameSize} B in ${fmt(result.seconds)} s: ` +
        `${fmt(result.pps / 1e6)} Mpps, ${fmt(result.gbps)} Gbit/s; lost ${result.lost}, out of sequence ${result.sequenceErrors}; ` +
        `${result.busyThreads} busy threads (queue threads ${result.threads}) on ${result.cores} cores, ${placement.placement} placement, ${result.ring} rings`,
    );
    result.perPair.forEach((n, p) => {
      const tx = result.txQueues[p];
      const rx = result.rxQueues[p];
      console.log(`pair ${p}: received ${n}; tx queue ${tx.sleeps} sleeps, ${tx.interrupts} interrupts; rx queue ${rx.chains} chains, ${rx.sleeps} sleeps, ${rx.interrupts} interrupts`);
    });
  }
  return result.lost === 0 && result.sequenceErrors === 0 ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'pump':
      return pump(rest);
    case 'lab':
      return labCommand(rest);
    case 'fuzz': // usage: virtio-lab fuzz --help
      return (await import('./fuzz-command.js')).fuzzCommand(rest);
    case 'load':
      return loadCommand(rest);
    case 'soak': // usage: virtio-lab soak --help
      return (await import('../lab/soak-cli.js')).soakCommand(rest);
    case 'vhost-user': // usage: virtio-lab vhost-user --help
      return (await import('./vhost-user-command.js')).vhostUserCommand(rest);
    default:
      process.stderr.write(`${USAGE}\n${LAB_USAGE}\n${LOAD_USAGE}`);
      return command === undefined || command === '--help' ? 0 : 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
    process.exitCode = 1;
  },
);
