import { setTimeout as sleep } from 'node:timers/promises';
import type { SocketLinkStats } from '../backends/socket-link.js';
import type { LabLinkStats, LabOptions, LabSwitchStats } from './lab.js';
import { type LabTopology, buildLab } from './lab-topology.js';
import { type FlowResult, runTraffic } from './lab-traffic.js';

/** Options of runTopology(). */
export interface LabRunOptions {
  /** Stop sending after this many seconds; with no traffic, keep the lab up this long. */
  seconds?: number;
  /** Options of the lab itself (memory per NIC, spin time, queue size). */
  lab?: LabOptions;
}

/** One NIC, summed over its queue pairs. */
export interface LabNicSummary {
  mac: string;
  /** What the lab's driver sent and received. */
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** Frames the device dropped (too big, malformed, bad header, filtered). */
  deviceDrops: number;
  /** Ring rule violations the device counted (0 with the lab's own driver). */
  queueErrors: number;
}

/** What a topology run did: the traffic, then every counter once the lab was closed. */
export interface LabRunReport {
  description?: string;
  /** Seconds of traffic (first frame sent to last received). */
  seconds: number;
  flows: FlowResult[];
  /** Test frames NICs got that were not theirs (floods before a switch learned the address). */
  stray: Record<string, number>;
  nics: Record<string, LabNicSummary>;
  switches: Record<string, LabSwitchStats>;
  links: LabLinkStats[];
  sockets: Record<string, SocketLinkStats>;
  /** Capture files written, and what each one captured. */
  captures: { file: string; of: string }[];
}

/**
 * Build the lab a topology describes, start it, run its traffic (or stay up
 * `seconds` when it has none), close it, and report. The lab is closed
 * however the run ends.
 */
export async function runTopology(t: LabTopology, options: LabRunOptions = {}): Promise<LabRunReport> {
  const lab = buildLab(t, options.lab);
  let traffic: Awaited<ReturnType<typeof runTraffic>> = { flows: [], seconds: 0, stray: {} };
  try {
    await lab.start();
    if ((t.traffic ?? []).length !== 0) traffic = await runTraffic(lab, t.traffic ?? [], { seconds: options.seconds });
    else if (options.seconds !== undefined) await sleep(options.seconds * 1000);
  } catch (e) {
    await lab.close().catch(() => undefined);
    throw e;
  }
  await lab.close();
  const stats = lab.stats();
  const nics: Record<string, LabNicSummary> = {};
  for (const [name, n] of Object.entries(stats.nics)) {
    const sum = (f: (d: (typeof n.driver)[number]) => number): number => n.driver.reduce((s, d) => s + f(d), 0);
    let deviceDrops = 0;
    let queueErrors = 0;
    for (const q of n.queues) {
      for (const s of [q.rx, q.tx]) {
        deviceDrops += s.dropsTooBig + s.dropsMalformed + s.dropsBadHeader + s.dropsFiltered;
        queueErrors += s.errors;
      }
    }
    nics[name] = {
      mac: n.mac,
      txPackets: sum((d) => d.txPackets),
      txBytes: sum((d) => d.txBytes),
      rxPackets: sum((d) => d.rxPackets),
      rxBytes: sum((d) => d.rxBytes),
      deviceDrops,
      queueErrors,
    };
  }
  const captures = [
    ...(t.taps ?? []).map((tap) => ({ file: tap.file, of: `switch ${tap.switch}${tap.port === undefined ? '' : ` port ${tap.port}`}` })),
    ...(t.links ?? []).flatMap((l) => (l.capture === undefined ? [] : [{ file: l.capture, of: `link ${l.a} <-> ${l.b}` }])),
  ];
  return {
    ...(t.description === undefined ? {} : { description: t.description }),
    seconds: traffic.seconds,
    flows: traffic.flows,
    stray: traffic.stray,
    nics,
    switches: stats.switches,
    links: stats.links,
    sockets: stats.sockets,
    captures,
  };
}

/** A fixed-width table: first row is the header. */
function table(rows: (string | number)[][], indent = '  '): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  return cells.map((r) => indent + r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  ')).join('\n');
}

const pct = (part: number, whole: number): string => (whole === 0 ? '0.00%' : `${((100 * part) / whole).toFixed(2)}%`);

/** The report as text, for people. */
export function formatLabReport(r: LabRunReport): string {
  const out: string[] = [];
  if (r.description !== undefined) out.push(r.description);
  if (r.flows.length !== 0) {
    out.push(`traffic (${r.seconds.toFixed(3)} s):`);
    out.push(
      table([
        ['flow', 'frames', 'size', 'sent', 'received', 'lost', 'loss', 'out of order', 'duplicates'],
        ...r.flows.map((f) => [`${f.from} -> ${f.to}`, f.frames, f.size, f.sent, f.received, f.lost, pct(f.lost, f.sent), f.outOfOrder, f.duplicates]),
      ]),
    );
  }
  out.push('nics:');
  out.push(
    table([
      ['nic', 'mac', 'tx packets', 'rx packets', 'device drops', 'stray test frames'],
      ...Object.entries(r.nics).map(([name, n]) => [name, n.mac, n.txPackets, n.rxPackets, n.deviceDrops, r.stray[name] ?? 0]),
    ]),
  );
  for (const [name, s] of Object.entries(r.switches)) {
    out.push(`switch ${name}: ${s.macEntries} MAC entries, ${s.captured} frames captured`);
    out.push(
      table([
        ['port', 'name', 'rx frames', 'tx frames', 'flooded', 'drops full', 'drops loss', 'drops bad', 'drops filtered'],
        ...s.ports.map((p, i) => [String(i), p.name, p.rxFrames, p.txFrames, p.flooded, p.dropsEgressFull, p.dropsLoss, p.dropsBad, p.dropsFiltered]),
      ]),
    );
  }
  for (const l of r.links) {
    out.push(
      l.relay === null
        ? `link ${l.a} <-> ${l.b}: direct (no relay)`
        : `link ${l.a} <-> ${l.b}: ${l.relay.ports[0].rxFrames} frames ${l.a} -> ${l.b} (${l.lostAToB} lost by impairment), ${l.relay.ports[1].rxFrames} frames ${l.b} -> ${l.a} (${l.lostBToA} lost)${l.relay.captured > 0 ? `, ${l.relay.captured} captured` : ''}`,
    );
  }
  for (const [name, s] of Object.entries(r.sockets)) {
    out.push(`socket link ${name}: ${s.connected ? 'connected' : 'not connected'}, ${s.rxFrames} frames in, ${s.txFrames} out, ${s.dropsNotConnected} dropped while unconnected${s.dropsKernel > 0 ? `, ${s.dropsKernel} lost in the kernel (receive buffer full)` : ''}`);
  }
  for (const c of r.captures) out.push(`capture ${c.file}: ${c.of}`);
  return `${out.join('\n')}\n`;
}
