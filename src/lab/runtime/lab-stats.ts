import type { ImpairmentOptions } from '../../backends/impairment.js';
import type { SocketLinkStats } from '../../backends/socket-link.js';
import type { VxlanStats } from '../../backends/vxlan-uplink.js';
import type { VirtioNetDevice } from '../../net/net-device.js';
import type { NetQueueStats } from '../../net/net-counters.js';
import { netRxQueue, netTxQueue } from '../../spec/net.js';
import { type LabEntries, portNames, relayDirections } from './lab-entries.js';
import type { LabNetnsStats } from './lab-netns.js';
import type { LabNicStats, LabStats, LabSwitchStats, LabVhostUserStats } from './lab-types.js';

/** Every counter of a started lab (Lab.stats()): what each entry's live object counts, by name. */
export function labStats(entries: LabEntries): LabStats {
  const nics: Record<string, LabNicStats> = {};
  for (const n of entries.nics) {
    if (n.device === undefined) continue;
    nics[n.name] = { mac: n.mac, queues: queuePairStats(n.device, n.queuePairs), driver: n.driver?.stats() ?? [] };
  }
  const switches: Record<string, LabSwitchStats> = {};
  for (const s of entries.switches) {
    if (s.sw === undefined) continue;
    const st = s.sw.stats();
    const names = portNames(s);
    switches[s.name] = { ...st, ports: st.ports.map((p, i) => ({ name: names[i] ?? `port ${i}`, ...p })) };
  }
  const links = entries.links.map((l) => {
    const relay = l.link?.stats() ?? null;
    return { a: l.a, b: l.b, relay, lostAToB: relay?.ports[1].dropsLoss ?? 0, lostBToA: relay?.ports[0].dropsLoss ?? 0 };
  });
  const sockets: Record<string, SocketLinkStats> = {};
  for (const s of entries.sockets) if (s.link !== undefined) sockets[s.name] = s.link.stats();
  const vxlan: Record<string, VxlanStats> = {};
  for (const v of entries.vxlan) if (v.uplink !== undefined) vxlan[v.name] = v.uplink.stats();
  const netns: Record<string, LabNetnsStats> = {};
  for (const n of entries.netns) if (n.port !== undefined) netns[n.name] = { ifname: n.ifname, addresses: n.addresses, ...n.port.stats() };
  return { nics, vhostUser: vhostUserStats(entries), switches, links, sockets, vxlan, netns };
}

function vhostUserStats(entries: LabEntries): Record<string, LabVhostUserStats> {
  const vhostUser: Record<string, LabVhostUserStats> = {};
  for (const v of entries.vhostUser) {
    const server = v.server;
    if (server === undefined) continue;
    vhostUser[v.name] = {
      path: v.path,
      mac: v.mac,
      connected: server.connected,
      connects: v.connects,
      disconnects: v.disconnects,
      ...(v.lastDisconnect === undefined ? {} : { lastDisconnect: v.lastDisconnect }),
      queues: queuePairStats(server.device, v.queuePairs),
      session: server.summary(),
    };
  }
  return vhostUser;
}

/** A net device's queue counters by queue pair. */
function queuePairStats(d: VirtioNetDevice, pairs: number): { rx: NetQueueStats; tx: NetQueueStats }[] {
  return Array.from({ length: pairs }, (_, p) => ({ rx: d.queueStats(netRxQueue(p)), tx: d.queueStats(netTxQueue(p)) }));
}

const delayOf = (i: ImpairmentOptions | undefined): number => (i === undefined ? 0 : (i.delayMs ?? 0) + (i.jitterMs ?? 0));

/** The longest delay plus jitter any link or port of the lab adds, in ms. */
export function maxImpairmentDelayMs(entries: LabEntries): number {
  let max = 0;
  for (const l of entries.links) {
    const d = relayDirections(l.options.impairment);
    max = Math.max(max, delayOf(d.aToB), delayOf(d.bToA));
  }
  for (const s of entries.switches) for (const p of s.ports) max = Math.max(max, delayOf(p.options.impairment));
  return max;
}
