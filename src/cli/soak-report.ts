/** The soak's summary as text tables. */
import type { SoakResult } from '../lab/soak/soak.js';

const MiB = (n: number): string => `${(n / (1 << 20)).toFixed(1)} MiB`;

/** Columns padded to their widest cell. */
function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')).join('\n');
}

/** The summary a soak run prints: flows and their drop counters, vsock streams, faults, memory, verdict. */
export function formatSoakReport(r: SoakResult): string {
  const flows = table([
    ['flow', 'sent', 'received', 'lost in faults', 'missing otherwise', 'counted drops', 'dup/reorder', 'ok'],
    ...r.flows.map((f) => [
      f.name,
      String(f.sent),
      String(f.received),
      String(f.lostInFault),
      String(f.missingOutsideFaults),
      Object.entries(f.drops)
        .filter(([, n]) => n !== 0)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ') || '0',
      String(f.duplicatesOrReordered),
      f.ok ? 'yes' : 'NO',
    ]),
  ]);
  const v = r.vsock;
  const vsock = table([
    ['vsock streams', 'clean', 'reset', 'connect failed', 'violations', 'bytes written', 'bytes received'],
    [String(v.streams), String(v.clean), String(v.reset), String(v.connectFailures), String(v.violations), String(v.bytesWritten), String(v.bytesReceived)],
  ]);
  const f = r.faults;
  const m = r.memory;
  return [
    `soak: ${r.seconds.toFixed(1)} s, seed ${r.seed}, ${r.ring} rings`,
    '',
    flows,
    '',
    vsock,
    '',
    `faults: ${f.netKills} net worker kills, ${f.netResets} net device resets, ${f.queueRestarts} queue restarts, ${f.vsockKills} vsock worker kills`,
    `memory: heap ${MiB(m.heapStart)} -> ${MiB(m.heapEnd)} (limit +${MiB(m.maxHeapGrowth)}), RSS ${MiB(m.rssStart)} -> ${MiB(m.rssEnd)} (limit +${MiB(m.maxRssGrowth)})`,
    r.ok ? 'result: ok' : `result: FAILED\n${r.problems.map((p) => `  - ${p}`).join('\n')}`,
  ].join('\n');
}
