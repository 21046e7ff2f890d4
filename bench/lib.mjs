// Helpers every bench file shares: statistics over runs, placement and
// machine lines, number formats, results files, "run as a script" checks.
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';

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

/** True when `url` (import.meta.url) is the script node was started with. */
export const isMain = (url) => process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;

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
