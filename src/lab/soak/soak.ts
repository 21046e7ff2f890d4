/**
 * The soak: net traffic through a switch with loss and delay, vsock streams
 * with every byte checked, and faults under them (queue workers killed,
 * devices reset, queues stopped and restarted) for as long as asked. At the
 * end every frame was delivered or is counted by name, every vsock byte the
 * API reported written arrived exactly once or its connection reported a
 * reset, and memory is where it started.
 */
import { setTimeout as sleep, setImmediate as tick } from 'node:timers/promises';
import { InvalidArgumentError } from '../../errors.js';
import { SOAK_FAULTY_NICS, type SoakFlowReport, SoakNet } from './soak-net.js';
import { seededRandom } from './soak-random.js';
import { SoakVsock, type SoakVsockFigures } from './soak-vsock.js';

/** Options of runSoak(). */
export interface SoakOptions {
  /** How long traffic and faults run, in seconds (then everything drains). */
  seconds: number;
  /** Seed of every random choice (faults, stream sizes, impairment loss); default random, reported. */
  seed?: number;
  /** Mean milliseconds between two faults (default 400). */
  faultEveryMs?: number;
  /** Loss and delay on the impaired switch port (default 1 % and 1 ms). */
  lossPercent?: number;
  delayMs?: number;
  /** Ring format of every queue (default split). */
  ring?: 'split' | 'packed';
  /** vsock streams kept running at once (default 4). */
  vsockStreams?: number;
  /** Heap growth from the first measurement to the end that fails the run (default 64 MiB). */
  maxHeapGrowthBytes?: number;
  /** RSS growth that fails the run (default 256 MiB). */
  maxRssGrowthBytes?: number;
  /** Called every `progressMs` (default 10 s) while it runs. */
  onProgress?: (p: SoakProgress) => void;
  progressMs?: number;
  /** Aborting ends the traffic and faults early; the soak still drains, accounts for everything and resolves with its result. */
  signal?: AbortSignal;
}

/** A progress report. */
export interface SoakProgress {
  seconds: number;
  framesReceived: number;
  faults: number;
  vsockStreams: number;
  heapBytes: number;
}

/** Faults injected, by kind. */
export interface SoakFaults {
  /** Net queue workers killed (rx or tx of NIC b or d). */
  netKills: number;
  /** Net devices reset by their driver mid-traffic. */
  netResets: number;
  /** Net queues stopped and started again from their vring base (any NIC). */
  queueRestarts: number;
  /** vsock queue workers killed. */
  vsockKills: number;
}

/** Memory at the first measurement (after warm-up) and at the end, bytes. */
export interface SoakMemory {
  heapStart: number;
  heapEnd: number;
  rssStart: number;
  rssEnd: number;
  maxHeapGrowth: number;
  maxRssGrowth: number;
}

/** What a soak run found. */
export interface SoakResult {
  seconds: number;
  seed: number;
  ring: 'split' | 'packed';
  flows: SoakFlowReport[];
  /** Frames that reached a NIC they were not for (warm-up floods). */
  strays: number;
  vsock: SoakVsockFigures;
  faults: SoakFaults;
  memory: SoakMemory;
  /** Every rule broken, described; empty when ok. */
  problems: string[];
  ok: boolean;
}

const DRAIN_LIMIT_MS = 30_000;

/** A heap figure after a collection when the process allows one (node --expose-gc). */
function memoryNow(): { heap: number; rss: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

/** One fault picked at random (net worker kill, NIC reset, queue restart, vsock worker kill), counted; what went wrong, if anything. */
async function injectFault(net: SoakNet, vsock: SoakVsock, rand: () => number, faults: SoakFaults): Promise<string | null> {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const r = rand();
  if (r < 0.3) {
    faults.netKills++;
    return net.kill(pick(SOAK_FAULTY_NICS), pick(['rx', 'tx'] as const));
  }
  if (r < 0.45) {
    faults.netResets++;
    return net.reset(pick(SOAK_FAULTY_NICS));
  }
  if (r < 0.75) {
    faults.queueRestarts++;
    await net.restart(pick(['a', 'b', 'c', 'd'] as const), pick(['rx', 'tx'] as const));
    return null;
  }
  faults.vsockKills++;
  return vsock.kill(pick(['rx', 'tx'] as const));
}

/** Let the net flows and the vsock streams finish after the traffic stopped; what did not. */
async function drain(net: SoakNet, vsock: SoakVsock): Promise<string[]> {
  const problems: string[] = [];
  const stuck = await net.drain();
  if (stuck !== null) problems.push(stuck);
  // The limit timer is cancelled once the drain wins: left pending it held the process ~30 s after the result.
  const limit = new AbortController();
  const drained = await Promise.race([
    vsock.drain().then(() => true),
    sleep(DRAIN_LIMIT_MS, false, { signal: limit.signal }).catch(() => false),
  ]).finally(() => limit.abort());
  if (!drained) problems.push(`vsock: streams still running ${DRAIN_LIMIT_MS} ms after the traffic stopped (a hang)`);
  return problems;
}

/** The rules checked at the end: every flow accounted for, the vsock streams' own problems, memory growth within its limits. */
function endProblems(flows: readonly SoakFlowReport[], vsockProblems: readonly string[], memory: SoakMemory): string[] {
  const problems: string[] = [];
  for (const f of flows) if (!f.ok) problems.push(`flow ${f.name}: ${f.missingOutsideFaults} frames missing outside faults vs ${JSON.stringify(f.drops)} counted; ${f.duplicatesOrReordered} duplicated or reordered`);
  problems.push(...vsockProblems);
  if (memory.heapEnd - memory.heapStart > memory.maxHeapGrowth) problems.push(`heap grew ${memory.heapEnd - memory.heapStart} bytes (limit ${memory.maxHeapGrowth})`);
  if (memory.rssEnd - memory.rssStart > memory.maxRssGrowth) problems.push(`RSS grew ${memory.rssEnd - memory.rssStart} bytes (limit ${memory.maxRssGrowth})`);
  return problems;
}

/** Run the soak for `options.seconds`, then drain and account for everything. */
export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const seconds = options.seconds;
  if (!(seconds > 0)) throw new InvalidArgumentError(`soak seconds ${seconds} must be positive`);
  const seed = options.seed ?? Math.floor(Math.random() * 0x7fffffff);
  const ring = options.ring ?? 'split';
  const faultEveryMs = options.faultEveryMs ?? 400;
  const streams = options.vsockStreams ?? 4;
  const rand = seededRandom(seed);
  const problems: string[] = [];
  const faults: SoakFaults = { netKills: 0, netResets: 0, queueRestarts: 0, vsockKills: 0 };
  const net = await SoakNet.start({ seed, ring, lossPercent: options.lossPercent, delayMs: options.delayMs });
  let vsock: SoakVsock;
  try {
    vsock = await SoakVsock.start({ rand: seededRandom(seed + 1), ring });
  } catch (e) {
    await net.close();
    throw e;
  }
  const t0 = Date.now();
  let end = t0 + seconds * 1000;
  // Cuts the fault loop's sleeps short when the caller aborts.
  const pause = new AbortController();
  const stopEarly = (): void => {
    end = Math.min(end, Date.now());
    pause.abort();
  };
  const nap = (ms: number): Promise<void> => sleep(ms, undefined, { signal: pause.signal }).catch(() => undefined);
  if (options.signal?.aborted === true) stopEarly();
  options.signal?.addEventListener('abort', stopEarly, { once: true });
  let first: { heap: number; rss: number } | undefined;
  let last: { heap: number; rss: number };
  try {
    const traffic = async (): Promise<void> => {
      while (Date.now() < end) {
        vsock.top(streams);
        if (net.step(true) === 0) await net.idle(5);
        else await tick();
      }
    };
    const faulting = async (): Promise<void> => {
      // Warm-up: a tenth of the run (at most 10 s) without faults, then the first memory figure.
      await nap(Math.min(10_000, (seconds * 1000) / 10));
      first = memoryNow();
      while (Date.now() < end) {
        await nap(-Math.log(1 - rand()) * faultEveryMs);
        if (Date.now() >= end) break;
        const problem = await injectFault(net, vsock, rand, faults);
        if (problem !== null) problems.push(problem);
      }
    };
    const progress = options.onProgress === undefined ? undefined : setInterval(() => {
      const framesReceived = net.flows.reduce((n, f) => n + f.received, 0);
      const n = faults.netKills + faults.netResets + faults.queueRestarts + faults.vsockKills;
      options.onProgress?.({ seconds: (Date.now() - t0) / 1000, framesReceived, faults: n, vsockStreams: vsock.figures.streams, heapBytes: process.memoryUsage().heapUsed });
    }, options.progressMs ?? 10_000);
    try {
      await Promise.all([traffic(), faulting()]);
    } finally {
      clearInterval(progress);
    }
    problems.push(...(await drain(net, vsock)));
    // Measured with everything still open: what the run accumulated is still held.
    last = memoryNow();
  } finally {
    options.signal?.removeEventListener('abort', stopEarly);
    await vsock.close();
  }
  const flows = net.report(true);
  const strays = net.strays;
  await net.close();
  const start = first ?? last;
  const memory: SoakMemory = {
    heapStart: start.heap,
    heapEnd: last.heap,
    rssStart: start.rss,
    rssEnd: last.rss,
    maxHeapGrowth: options.maxHeapGrowthBytes ?? 64 << 20,
    maxRssGrowth: options.maxRssGrowthBytes ?? 256 << 20,
  };
  problems.push(...endProblems(flows, vsock.problems, memory));
  return { seconds: (Date.now() - t0) / 1000, seed, ring, flows, strays, vsock: vsock.figures, faults, memory, problems, ok: problems.length === 0 };
}
