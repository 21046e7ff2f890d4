import { setTimeout as sleep } from 'node:timers/promises';
import { connectNics } from '../../backends/link.js';
import { netnsExists } from '../../backends/netns.js';
import type { PortAttachable } from '../../net/net-port.js';
import { SocketLink } from '../../backends/socket-link.js';
import type { SwitchStats } from '../../backends/switch-stats.js';
import { NetSwitch } from '../../backends/switch.js';
import { TapPort } from '../../backends/tap-port.js';
import { VxlanUplink } from '../../backends/vxlan-uplink.js';
import { InvalidArgumentError, VirtioLabError } from '../../errors.js';
import type { SharedArena } from '../../memory/arena.js';
import { VirtioNetDevice } from '../../net/net-device.js';
import { NetDriver, setupNetDriver } from '../../net/net-driver.js';
import type { WordRef } from '../../notify/notify-area.js';
import { netRxQueue, netTxQueue } from '../../spec/net.js';
import type { ThreadMapping } from '../../transport/thread-mapping.js';
import { serveVhostUserNet } from '../../vhost-user/devices.js';
import type { VhostUserDisconnect } from '../../vhost-user/server.js';
import { type Endpoint, type LabEntries, portNames, relayDirections } from './lab-entries.js';
import type { LabChildren } from './lab-netns.js';
import { ARENA_SLACK, channelBytes, impairmentBytes } from './lab-sizing.js';

// start() and close() of a Lab: create every entry's live object in the
// arena, wire them, bring the NICs' drivers up, wait for the workers; and
// end them again in dependency order.

/** Default channel capacities of connectNics() and NetSwitch (see link.ts, switch.ts). */
const LINK_CAPACITY = 1 << 20;
const LINK_CAPACITY_MQ = 1 << 18;
const SWITCH_CAPACITY = 1 << 18;
/** How long start() waits for every worker thread to run. */
const WORKER_START_TIMEOUT_MS = 20_000;

/** What bringing a lab up needs of the Lab besides its entries. */
export interface BringUpContext {
  spinUs: number;
  idlePollMs: number;
  threads: ThreadMapping | undefined;
  memoryPerNic: number | undefined;
  /** The word every driver routes its interrupts to. */
  interrupt: WordRef;
  /** Throws when close() came while starting: stop building. */
  abortIfClosed(): void;
}

/** The arena a lab needs: every NIC's guest memory, every channel and impairment queue. */
export function plannedArenaBytes(entries: LabEntries): number {
  let bytes = ARENA_SLACK;
  for (const n of entries.nics) bytes += n.memoryBytes + 4096;
  for (const s of entries.switches) {
    const capacity = s.options.capacity ?? SWITCH_CAPACITY;
    for (const p of s.ports) bytes += channelBytes(2 * entries.pairsOf(p.endpoint), capacity) + impairmentBytes(p.options.impairment);
  }
  for (const l of entries.links) {
    const pa = entries.pairsOf(l.a);
    const pb = entries.pairsOf(l.b);
    const capacity = l.options.capacity ?? (pa > 1 || pb > 1 ? LINK_CAPACITY_MQ : LINK_CAPACITY);
    if (l.options.impairment !== undefined || l.options.capture !== undefined) {
      const d = relayDirections(l.options.impairment);
      bytes += channelBytes(2 * (pa + pb), capacity) + impairmentBytes(d.aToB) + impairmentBytes(d.bToA);
    } else {
      bytes += channelBytes(2 * pa * pb, capacity);
    }
  }
  return bytes;
}

/** Create, wire and start everything (Lab.start()); resolves once every worker runs. */
export async function bringUp(entries: LabEntries, arena: SharedArena, ctx: BringUpContext): Promise<void> {
  await createPorts(entries, arena, ctx);
  await wire(entries, arena, ctx.spinUs);
  for (const n of entries.nics) {
    ctx.abortIfClosed();
    let spec;
    try {
      spec = await setupNetDriver(n.device!, { queueSize: n.queueSize, bufferSize: n.bufferSize, features: n.driverFeatures, interrupt: ctx.interrupt });
    } catch (e) {
      const hint = ctx.memoryPerNic !== undefined ? ` (memoryPerNic is ${ctx.memoryPerNic} bytes)` : '';
      throw new InvalidArgumentError(`NIC "${n.name}" did not come up: ${(e as Error).message}${hint}`);
    }
    n.driver = new NetDriver(spec);
    n.driver.fillRx();
  }
  await workersUp(entries, ctx);
}

/** The devices, sockets, uplinks, namespace TAP ports and vhost-user servers. */
async function createPorts(entries: LabEntries, arena: SharedArena, ctx: BringUpContext): Promise<void> {
  for (const n of entries.nics) {
    n.device = new VirtioNetDevice(arena.guestMemory(n.memoryBytes), {
      mac: n.mac,
      mtu: n.mtu,
      queuePairs: n.queuePairs,
      // The device offers a power of two (4.1.4.3.2); the driver takes the NIC's size, which a packed ring allows to be any.
      queueSize: 2 ** Math.ceil(Math.log2(n.queueSize)),
      features: n.features,
      spinUs: ctx.spinUs,
      idlePollMs: ctx.idlePollMs,
      threads: ctx.threads,
    });
  }
  for (const s of entries.sockets) {
    s.link = await SocketLink.open(s.options);
    ctx.abortIfClosed();
  }
  for (const v of entries.vxlan) {
    v.uplink = await VxlanUplink.open(v.options);
    ctx.abortIfClosed();
  }
  for (const n of entries.netns) {
    if (n.options.existing !== true && netnsExists(n.name)) {
      throw new InvalidArgumentError(`network namespace "${n.name}" exists already: pick another name, delete it (ip netns del ${n.name}), or pass existing: true to use it`);
    }
    n.port = await TapPort.open({ name: n.ifname, netns: n.name, createNetns: n.options.existing !== true, mtu: n.options.mtu, addresses: n.addresses, offloads: n.options.offloads, spinUs: ctx.spinUs });
    ctx.abortIfClosed();
  }
  for (const v of entries.vhostUser) {
    v.server = serveVhostUserNet(v.path, { mac: v.mac, mtu: v.mtu, queuePairs: v.queuePairs, threads: v.threads, spinUs: v.spinUs ?? ctx.spinUs, idlePollMs: ctx.idlePollMs, allowUnsealedMemory: v.allowUnsealedMemory });
    v.server.on('connected', () => v.connects++);
    v.server.on('disconnected', (d: VhostUserDisconnect) => {
      v.disconnects++;
      v.lastDisconnect = d.reason;
    });
  }
}

/** Switches and their ports, links, taps; then the switch workers start. */
async function wire(entries: LabEntries, arena: SharedArena, spinUs: number): Promise<void> {
  for (const s of entries.switches) {
    const sw = new NetSwitch(arena, { ...s.options, spinUs: s.options.spinUs ?? spinUs });
    s.sw = sw;
    for (const p of s.ports) sw.connect(attachable(entries, p.endpoint), p.options);
  }
  // Links after every connect(): a switch's link ports are numbered after its connected ones, in link() order.
  for (const l of entries.links) l.link = connectNics(arena, cableAttachable(entries, l.a), cableAttachable(entries, l.b), { ...l.options, spinUs: l.options.spinUs ?? spinUs });
  for (const s of entries.switches) {
    for (const t of s.taps) {
      const port = typeof t.port === 'string' ? portNames(s).indexOf(t.port) : t.port;
      await s.sw!.tap(t.path, port === null ? t.options : { ...t.options, port });
    }
  }
  for (const s of entries.switches) s.sw!.start();
}

/** A link's end: a new port of a switch, or the endpoint itself. */
function cableAttachable(entries: LabEntries, name: string): PortAttachable {
  const e = entries.get(name);
  return e?.kind === 'switch' ? e.sw!.uplink() : attachable(entries, name);
}

function attachable(entries: LabEntries, name: string): PortAttachable {
  const e = entries.get(name) as Endpoint;
  return e.kind === 'nic' ? e.device! : e.kind === 'vhost-user' ? e.server!.device : e.kind === 'vxlan' ? e.uplink! : e.kind === 'netns' ? e.port! : e.link!;
}

/**
 * Resolve once every worker of the lab runs its loop. Threads take tens of
 * milliseconds to boot (more when a lab starts ten of them on two cores);
 * traffic sent before that would wait in rings and, for floods, find
 * channels of NICs whose receive workers are not there yet full. A worker
 * is up once it has gone idle (its sleep counter moved) or done work.
 */
async function workersUp(entries: LabEntries, ctx: BringUpContext): Promise<void> {
  const end = performance.now() + WORKER_START_TIMEOUT_MS;
  for (;;) {
    const waiting = workersNotUp(entries);
    if (waiting.length === 0) return;
    if (performance.now() > end) {
      throw new VirtioLabError('LAB_START_TIMEOUT', `workers not running ${WORKER_START_TIMEOUT_MS} ms after start: ${waiting.slice(0, 5).join(', ')}${waiting.length > 5 ? ', ...' : ''}`);
    }
    ctx.abortIfClosed();
    await sleep(2);
  }
}

function workersNotUp(entries: LabEntries): string[] {
  const waiting: string[] = [];
  for (const n of entries.nics) {
    const d = n.device!;
    const pairs = n.driver?.pairs.length ?? 0;
    for (let p = 0; p < pairs; p++) {
      for (const [q, what] of [[netRxQueue(p), 'rx'], [netTxQueue(p), 'tx']] as const) {
        if (!d.queueRunning(q)) continue;
        const st = d.queueStats(q);
        if (st.sleeps === 0 && st.chains === 0) waiting.push(`NIC "${n.name}" ${what} queue ${p}`);
      }
    }
  }
  const idle = (st: SwitchStats): boolean => st.sleeps !== 0 || st.ports.some((p) => p.rxFrames !== 0 || p.txFrames !== 0);
  for (const s of entries.switches) if (!idle(s.sw!.stats())) waiting.push(`switch "${s.name}"`);
  for (const n of entries.netns) if (n.port!.error !== undefined) throw n.port!.error;
  for (const n of entries.netns) if (!n.port!.running) waiting.push(`TAP port of namespace "${n.name}"`);
  for (const l of entries.links) {
    const st = l.link!.stats();
    if (st !== undefined && !idle(st)) waiting.push(`relay of link "${l.a}" <-> "${l.b}"`);
  }
  return waiting;
}

/** Close in dependency order; every stage runs even when an earlier one failed; the first failure is thrown after. */
export async function shutdown(entries: LabEntries, children: LabChildren): Promise<void> {
  const failures: unknown[] = [];
  const stage = async (closers: (Promise<void> | undefined)[]): Promise<void> => {
    for (const r of await Promise.allSettled(closers)) if (r.status === 'rejected') failures.push(r.reason);
  };
  await stage(entries.switches.map((s) => s.sw?.close()));
  await stage(entries.links.map((l) => l.link?.close()));
  await stage(entries.sockets.map((s) => s.link?.close()));
  await stage(entries.vxlan.map((v) => v.uplink?.close()));
  await children.killAll();
  await stage(entries.netns.map((n) => n.port?.close()));
  await stage(entries.vhostUser.map((v) => v.server?.close()));
  await stage(entries.nics.map((n) => n.device?.close()));
  if (failures.length !== 0) throw failures[0];
}
