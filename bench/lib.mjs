// Helpers every bench file shares: statistics over runs, placement and
// machine lines, number formats, results files, "run as a script" checks.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/** Median of a list of numbers (the upper middle for an even count). */
export const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** { median, min, max } of a list of numbers. */
export const range = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

/** "1.58 [1.52-1.76]" for a range, each value divided by `scale`. */
export const fmtRange = (r, scale = 1, digits = 2) => `${(r.median / scale).toFixed(digits)} [${(r.min / scale).toFixed(digits)}-${(r.max / scale).toFixed(digits)}]`;

/** Microseconds with a precision that suits their size. */
export const fmtUs = (x) => (!Number.isFinite(x) ? '-' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** Median of the per-run ratios ours[i] / base[i] (both measured in the same run, so placement drift cancels). */
export const ratio = (ours, base) => median(ours.map((o, i) => o / base[i % base.length]));

/** Payload Gbit/s of `pps` frames of `size` bytes. */
export const gbps = (pps, size) => (pps * size * 8) / 1e9;

/** "placement far (508 ns round trip)". */
export const placementText = (p) => `placement ${p.placement} (${p.roundTripNs} ns round trip)`;

/** The machine line every bench prints first. */
export const machineLine = (p) => `node ${process.version}, ${availableParallelism()} cores; ${placementText(p)}`;

/**
 * CPU nanoseconds so far of each thread of this process (Linux:
 * /proc/self/task/<tid>/schedstat), by thread id; with `named`, keyed
 * "name/tid" (Node names its workers' threads).
 */
export function threadCpu(named = false) {
  const cpu = new Map();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      cpu.set(named ? `${readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()}/${tid}` : tid, ns);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return cpu;
}

/** True when `url` (import.meta.url) is the script node was started with. */
export const isMain = (url) => process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;

/** A script's header comment (its leading `//` lines: what it measures, its usage line), as plain text. */
const headerOf = (file) => {
  const lines = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('//')) break;
    lines.push(line.replace(/^\/\/ ?/, ''));
  }
  return `${lines.join('\n')}\n`;
};

/**
 * The command line of the bench script at `url` (import.meta.url), parsed
 * with `options` (node:util parseArgs): `--help` / `-h` prints the script's
 * header comment and exits 0; an unknown option or a missing value prints
 * what was wrong and that header to stderr and exits 2.
 */
export function benchArgs(url, options) {
  const file = fileURLToPath(url);
  let values;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h', default: false } } }));
  } catch (e) {
    if (typeof e?.code !== 'string' || !e.code.startsWith('ERR_PARSE_ARGS')) throw e;
    process.stderr.write(`${basename(file)}: ${e.message}\n\n${headerOf(file)}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(headerOf(file));
    process.exit(0);
  }
  return values;
}

/**
 * Write `name-<stamp>.json` (meta + rows) and `name-<stamp>.md` (the lines)
 * to bench/results/; returns the Markdown.
 */
export function writeResults(name, data, mdLines) {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(new URL(`${name}-${stamp}.json`, dir), `${JSON.stringify(data, null, 2)}\n`);
  const md = mdLines.join('\n');
  writeFileSync(new URL(`${name}-${stamp}.md`, dir), `${md}\n`);
  return md;
}

/** A Markdown table from a header row and rows of cells. */
export function mdTable(header, rows) {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/**
 * Source for a baseline's receiving worker (workerData.warmupMs): `meter(got)`
 * after each batch of frames it took keeps the time of the first, a mark
 * (time and frames so far) at the first batch past the warm-up, and the time
 * of the last, so the rate leaves out the code's warm-up as testpmd's
 * windows and the pump's `warmupSeconds` do. Read with steadyRate().
 */
export const STEADY_METER_SOURCE = `
const steady = { start: 0, markT: 0, markGot: 0, lastT: 0 };
function meter(got) {
  const now = performance.now();
  if (steady.start === 0) steady.start = now;
  else if (steady.markT === 0 && now - steady.start >= workerData.warmupMs) { steady.markT = now; steady.markGot = got; }
  steady.lastT = now;
}
`;

/** Frames per second after the warm-up from a receiver's `steady` record and its final count; throws when the run ended before the warm-up did. */
export function steadyRate(steady, got, what) {
  if (steady.markT === 0 || steady.lastT <= steady.markT) throw new Error(`${what}: the run ended before its warm-up did (${got} frames)`);
  return ((got - steady.markGot) * 1000) / (steady.lastT - steady.markT);
}
