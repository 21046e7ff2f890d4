// npm run bench: the pump (two NICs, real queue workers) against postMessage
// carrying the same frames, in the same run. Prints placement, threads and
// cores, median and range over the runs, and ratios; writes JSON + Markdown
// to bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { probePlacement, runPump } from '../dist/index.js';
import { postMessageRate } from './post-message-baseline.mjs';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    frames: { type: 'string', default: '2000000' },
    sizes: { type: 'string', default: '64,1500' },
    pairs: { type: 'string', default: '1,2' },
    rings: { type: 'string', default: 'split,packed' },
  },
});
const runs = Math.max(1, Number(values.runs));
const frames = Number(values.frames);
const sizes = values.sizes.split(',').map(Number);
const pairCounts = values.pairs.split(',').map(Number);
const rings = values.rings.split(',');

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const mpps = (x) => (x / 1e6).toFixed(2);

const placementBefore = await probePlacement();
console.log(`node ${process.version}, ${availableParallelism()} cores; placement before: ${placementBefore.placement} (${placementBefore.roundTripNs} ns round trip)`);
console.log(`pump: 3 busy threads per queue pair (guest, tx worker, rx worker); postMessage: 2 busy threads; ${runs} runs of ${frames} frames each (split over the pairs)\n`);

const rows = [];
for (const size of sizes) for (const pairs of pairCounts) {
  const byRing = Object.fromEntries(rings.map((ring) => [ring, []]));
  const base = [];
  const placements = [];
  for (let r = 0; r < runs; r++) {
    // Alternate the formats and the baseline so drifting placement hits all alike.
    const p = await probePlacement(3, 1000);
    placements.push(p.placement);
    for (const ring of rings) {
      const result = await runPump({ frames: Math.ceil(frames / pairs), frameSize: size, pairs, ring });
      if (result.lost !== 0 || result.sequenceErrors !== 0) throw new Error(`pump lost ${result.lost} / misordered ${result.sequenceErrors} frames`);
      byRing[ring].push(result.pps);
    }
    base.push(await postMessageRate(Math.min(frames, 500_000), size));
  }
  for (const ring of rings) {
  const ours = byRing[ring];
  const row = {
    size,
    pairs,
    ring,
    busyThreads: 3 * pairs,
    pumpMpps: { median: median(ours) / 1e6, min: Math.min(...ours) / 1e6, max: Math.max(...ours) / 1e6 },
    pumpGbps: (median(ours) * size * 8) / 1e9,
    postMessageMpps: { median: median(base) / 1e6, min: Math.min(...base) / 1e6, max: Math.max(...base) / 1e6 },
    ratio: median(ours.map((o, i) => o / base[i])),
    placements,
  };
  rows.push(row);
  console.log(
    `${String(size).padStart(5)} B x${pairs} pair${pairs > 1 ? 's' : ' '} ${ring.padEnd(6)}  pump ${mpps(median(ours))} Mpps [${mpps(Math.min(...ours))}-${mpps(Math.max(...ours))}] ${row.pumpGbps.toFixed(2)} Gbit/s` +
      `  postMessage ${mpps(median(base))} Mpps [${mpps(Math.min(...base))}-${mpps(Math.max(...base))}]  pump/postMessage x${row.ratio.toFixed(1)}  placement ${placements.join(',')}`,
  );
  }
  if (byRing.split !== undefined && byRing.packed !== undefined) {
    const ratio = median(byRing.packed.map((x, i) => x / byRing.split[i]));
    console.log(`${String(size).padStart(5)} B x${pairs}: packed / split x${ratio.toFixed(2)} (median of per-run ratios)`);
  }
}

mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const meta = { node: process.version, cores: availableParallelism(), runs, frames, placementBefore };
writeFileSync(new URL(`./results/pump-${stamp}.json`, import.meta.url), JSON.stringify({ ...meta, rows }, null, 2));
const md = [
  `node ${meta.node}, ${meta.cores} cores, ${runs} runs x ${frames} frames; pump = 3 busy threads per pair, postMessage = 2`,
  '',
  '| frame | pairs (threads) | ring | pump Mpps (median [min-max]) | pump Gbit/s | postMessage Mpps | pump / postMessage | placement per run |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map(
    (r) =>
      `| ${r.size} B | ${r.pairs} (${r.busyThreads}) | ${r.ring} | ${r.pumpMpps.median.toFixed(2)} [${r.pumpMpps.min.toFixed(2)}-${r.pumpMpps.max.toFixed(2)}] | ${r.pumpGbps.toFixed(2)} | ${r.postMessageMpps.median.toFixed(2)} [${r.postMessageMpps.min.toFixed(2)}-${r.postMessageMpps.max.toFixed(2)}] | ${r.ratio.toFixed(1)} | ${r.placements.join(', ')} |`,
  ),
].join('\n');
writeFileSync(new URL(`./results/pump-${stamp}.md`, import.meta.url), md + '\n');
console.log(`\n${md}`);
