import { setTimeout as sleep } from 'node:timers/promises';
import type { SocketLinkStats } from '../../backends/socket-link.js';
import type { VxlanStats } from '../../backends/vxlan-uplink.js';
import type { VirtqueueErrorCode } from '../../errors.js';
import type { NetQueueStats } from '../../net/net-counters.js';
import type { Lab } from '../runtime/lab.js';
import type { LabLinkStats, LabOptions, LabStats, LabSwitchStats, LabVhostUserStats } from '../runtime/lab-types.js';
import { type LabHostReport, type LabHosts, startLabHosts } from './topology-hosts.js';
import type { LabNetnsStats } from '../runtime/lab-netns.js';
import { buildLab } from './build-lab.js';
import type { LabTopology } from './topology-types.js';
import { type FlowResult, runTraffic } from '../runtime/lab-traffic.js';

/** Options of runTopology(). */
export interface LabRunOptions {
  /** Stop sending after this many seconds; with no traffic, keep the lab up this long. */
  seconds?: number;
  /** Options of the lab itself (memory per NIC, spin time, queue size). */
  lab?: LabOptions;
  /**
   * Aborting stops the traffic (flows report what they sent) and ends a lab
   * without traffic; the report is still made. Without traffic and without
   * `seconds`, the lab stays up until this signal aborts.
   */
  signal?: AbortSignal;
  /** Called once the lab runs, before its traffic starts (to watch its counters). */
  onRunning?: (lab: Lab) => void;
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

/** One queue pair of a vhost-user port, device side: what the front end's guest sent (tx) and was given (rx). */
export interface LabVhostUserQueueSummary {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Frames the device dropped (too big, malformed, bad header, filtered). */
  drops: number;
  /** Ring rule violations by the front end's driver (each sets DEVICE_NEEDS_RESET). */
  errors: number;
}

/**
 * A vhost-user port: its queues, what its front ends negotiated, and how
 * often they came and went (`connected`: a front end was connected when the
 * lab closed).
 */
export interface LabVhostUserSummary extends Pick<LabVhostUserStats, 'path' | 'mac' | 'connected' | 'connects' | 'disconnects' | 'lastDisconnect'> {
  /** By queue pair. */
  queues: LabVhostUserQueueSummary[];
  /** Ring errors over every queue, by code (only codes seen). */
  errorsByCode: Partial<Record<VirtqueueErrorCode, number>>;
  /** The last front end's SET_FEATURES (hex), protocol features (hex), and requests refused; undefined before any connected. */
  features?: string;
  protocolFeatures?: string;
  refused: string[];
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
  vhostUser: Record<string, LabVhostUserSummary>;
  switches: Record<string, LabSwitchStats>;
  links: LabLinkStats[];
  sockets: Record<string, SocketLinkStats>;
  /** VXLAN uplinks: frames in and out, learned MACs, drops by reason. */
  vxlan: Record<string, VxlanStats>;
  /** Network namespaces on TAP ports, by name. */
  netns: Record<string, LabNetnsStats>;
  /** Capture files written, and what each one captured. */
  captures: { file: string; of: string }[];
  /** The topology's IP hosts (and their TFTP / DHCP servers), by name. */
  hosts: Record<string, LabHostReport>;
}

/** Wait `seconds`, or until `signal` aborts, whichever comes first (not at all when neither is given). */
async function stayUp(seconds: number | undefined, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted === true || (seconds === undefined && signal === undefined)) return;
  const timer = new AbortController();
  const cancel = (): void => timer.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    // Without seconds only the signal ends it: a timer would need a bound (setTimeout caps at 2^31 - 1 ms).
    if (seconds !== undefined) await sleep(seconds * 1000, undefined, { signal: timer.signal }).catch(() => undefined);
    else await new Promise<void>((resolve) => timer.signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}

/**
 * Build the lab a topology describes, start it, run its traffic (or stay up
 * `seconds` when it has none), close it, and report. The lab is closed
 * however the run ends.
 */
export async function runTopology(t: LabTopology, options: LabRunOptions = {}): Promise<LabRunReport> {
  const lab = buildLab(t, options.lab);
  let traffic: Awaited<ReturnType<typeof runTraffic>> = { flows: [], seconds: 0, stray: {} };
  let hosts: LabHosts | undefined;
  let hostReports: Record<string, LabHostReport> = {};
  try {
    await lab.start();
    hosts = await startLabHosts(lab, t.hosts ?? []);
    options.onRunning?.(lab);
    if ((t.traffic ?? []).length !== 0) traffic = await runTraffic(lab, t.traffic ?? [], { seconds: options.seconds, signal: options.signal });
    else await stayUp(options.seconds, options.signal);
    await hosts.close();
    hostReports = hosts.stats();
  } catch (e) {
    await hosts?.close().catch(() => undefined);
    await lab.close().catch(() => undefined);
    throw e;
  }
  await lab.close();
  return { ...labRunReport(t, lab.stats(), traffic), hosts: hostReports };
}

/**
 * The report of a topology's lab from its counters (read after close(), so
 * they are final) and what its traffic did.
 */
export function labRunReport(t: LabTopology, stats: LabStats, traffic: { flows: FlowResult[]; seconds: number; stray: Record<string, number> } = { flows: [], seconds: 0, stray: {} }): LabRunReport {
  const nics: Record<string, LabNicSummary> = {};
  for (const [name, n] of Object.entries(stats.nics)) {
    const sum = (f: (d: (typeof n.driver)[number]) => number): number => n.driver.reduce((s, d) => s + f(d), 0);
    let deviceDrops = 0;
    let queueErrors = 0;
    for (const q of n.queues) {
      deviceDrops += drops(q.rx) + drops(q.tx);
      queueErrors += q.rx.errors + q.tx.errors;
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
  const vhostUser: Record<string, LabVhostUserSummary> = {};
  for (const [name, v] of Object.entries(stats.vhostUser)) {
    const errorsByCode: Partial<Record<VirtqueueErrorCode, number>> = {};
    for (const q of v.queues) {
      for (const s of [q.rx, q.tx]) {
        for (const [code, n] of Object.entries(s.errorsByCode) as [VirtqueueErrorCode, number][]) errorsByCode[code] = (errorsByCode[code] ?? 0) + n;
      }
    }
    vhostUser[name] = {
      path: v.path,
      mac: v.mac,
      connected: v.connected,
      connects: v.connects,
      disconnects: v.disconnects,
      ...(v.lastDisconnect === undefined ? {} : { lastDisconnect: v.lastDisconnect }),
      queues: v.queues.map((q) => ({
        rxPackets: q.rx.chains,
        rxBytes: q.rx.bytes,
        txPackets: q.tx.chains,
        txBytes: q.tx.bytes,
        drops: drops(q.rx) + drops(q.tx),
        errors: q.rx.errors + q.tx.errors,
      })),
      errorsByCode,
      ...(v.session?.features === undefined ? {} : { features: v.session.features }),
      ...(v.session?.protocolFeatures === undefined ? {} : { protocolFeatures: v.session.protocolFeatures }),
      refused: v.session?.refused ?? [],
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
    vhostUser,
    switches: stats.switches,
    links: stats.links,
    sockets: stats.sockets,
    vxlan: stats.vxlan,
    netns: stats.netns,
    captures,
    hosts: {},
  };
}

/** Frames a queue dropped, whatever the reason. */
function drops(s: NetQueueStats): number {
  return s.dropsTooBig + s.dropsMalformed + s.dropsBadHeader + s.dropsFiltered;
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
  if (Object.keys(r.nics).length !== 0) {
    out.push('nics:');
    out.push(
      table([
        ['nic', 'mac', 'tx packets', 'rx packets', 'device drops', 'stray test frames'],
        ...Object.entries(r.nics).map(([name, n]) => [name, n.mac, n.txPackets, n.rxPackets, n.deviceDrops, r.stray[name] ?? 0]),
      ]),
    );
  }
  for (const [name, v] of Object.entries(r.vhostUser)) {
    const features = v.features === undefined ? 'no front end has connected' : `features 0x${v.features}, protocol features 0x${v.protocolFeatures ?? '0'}`;
    const gone = v.lastDisconnect === undefined ? '' : ` (last: ${v.lastDisconnect})`;
    out.push(`vhost-user ${name} (${v.path}, ${v.mac}): ${v.connects} connects, ${v.disconnects} disconnects${gone}; ${features}`);
    out.push(
      table([
        ['queue pair', 'rx packets', 'rx bytes', 'tx packets', 'tx bytes', 'drops', 'ring errors'],
        ...v.queues.map((q, i) => [String(i), q.rxPackets, q.rxBytes, q.txPackets, q.txBytes, q.drops, q.errors]),
      ]),
    );
    const codes = Object.entries(v.errorsByCode);
    if (codes.length !== 0) out.push(`  ring errors: ${codes.map(([c, n]) => `${c} ${n}`).join(', ')}`);
    if (v.refused.length !== 0) out.push(`  refused: ${v.refused.join('; ')}`);
  }
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
  for (const [name, v] of Object.entries(r.vxlan)) out.push(formatVxlan(name, v));
  for (const [name, n] of Object.entries(r.netns)) {
    const bad = n.dropsShort + n.dropsWrite + n.readErrors;
    out.push(`netns ${name} (${n.ifname} ${n.addresses.join(' ') || 'no address'}): ${n.readFrames} frames in from its stack, ${n.writtenFrames} out to it, ${bad} dropped or failed`);
  }
  for (const [name, h] of Object.entries(r.hosts)) {
    const ip = h.ip;
    const parts = [`${ip.rxFrames} frames in, ${ip.txFrames} out`, `${ip.echoRepliesSent} ping replies`, `${ip.udpIn} UDP datagrams in`, `${ip.dropped} dropped`];
    if (h.tftp !== undefined) parts.push(`TFTP ${h.tftp.done} transfers done, ${h.tftp.failed} failed`);
    if (h.dhcp !== undefined) parts.push(`DHCP ${h.dhcp.acks} acks, ${h.dhcp.naks} naks, leases ${h.dhcp.leases.map((l) => `${l.ip} ${l.mac}`).join(', ') || 'none'}`);
    out.push(`host ${name} (${h.address}, ${h.mac}): ${parts.join('; ')}`);
  }
  for (const c of r.captures) out.push(`capture ${c.file}: ${c.of}`);
  return `${out.join('\n')}\n`;
}

/** The drop counters of a VXLAN uplink and how the report names them. */
const VXLAN_DROPS: [keyof VxlanStats, string][] = [
  ['dropsShort', 'short'],
  ['dropsBadFlags', 'bad flags'],
  ['dropsBadVni', 'bad VNI'],
  ['dropsUnknownSource', 'unknown source'],
  ['dropsTooBig', 'too big'],
  ['dropsFull', 'lab channel full'],
  ['dropsNotAttached', 'not plugged in'],
  ['dropsKernel', 'kernel receive buffer full'],
  ['dropsNoRemote', 'no remote'],
  ['dropsOffload', 'offload'],
  ['sendErrors', 'send errors'],
];

/** One line for a VXLAN uplink: traffic, learning, and each drop reason seen. */
function formatVxlan(name: string, v: VxlanStats): string {
  const drops = VXLAN_DROPS.filter(([key]) => v[key] !== 0).map(([key, what]) => `${what} ${v[key]}`);
  const remotes = v.remotes.map((r) => `${r.host}:${r.port}${r.learned ? ' (learned)' : ''}`).join(', ') || 'none';
  return `vxlan ${name} (VNI ${v.vni} on ${v.local}, remotes ${remotes}): ${v.rxFrames} frames in, ${v.txFrames} datagrams out (${v.flooded} frames flooded), ${v.fdbEntries} MACs learned; drops: ${drops.join(', ') || 'none'}`;
}
