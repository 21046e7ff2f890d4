/**
 * The net half of the soak: four NICs on a learning switch, their drivers on
 * this thread, numbered frame flows a <-> c (c's port loses and delays
 * frames) and b <-> d (their queue workers are killed and their devices
 * reset). Every frame either arrives (once, in order) or is accounted for:
 * by the switch's drop counters for its destination port, by the devices'
 * drop counters, or by a fault window (it was in flight when a worker of its
 * NIC died or its driver reset the device).
 */
import { SharedArena } from '../../memory/arena.js';
import { getU16le, getU32le, putU16le, putU32le } from '../../memory/le-bytes.js';
import { NetSwitch } from '../../backends/switch.js';
import type { PortStats } from '../../backends/switch-stats.js';
import { parseMac } from '../../net/mac.js';
import { VirtioNetDevice } from '../../net/net-device.js';
import { NET_DEFAULT_FEATURES, NetDriver, newInterruptWord, setupNetDriver } from '../../net/net-driver.js';
import { type WordRef, waitAsync } from '../../notify/notify-area.js';
import { F_RING_PACKED, bit } from '../../spec/features.js';
import { netRxQueue, netTxQueue } from '../../spec/net.js';
import { FlowAccount, type FlowFigures } from './soak-flows.js';

/** Options of the net half. */
export interface SoakNetOptions {
  /** Loss on the way into NIC c, percent (default 1). */
  lossPercent?: number;
  /** Delay on the way into NIC c, ms (default 1). */
  delayMs?: number;
  /** Ring format (default split). */
  ring?: 'split' | 'packed';
  /** Seed of the impairment's loss generator. */
  seed: number;
}

/** A flow's figures and the named drop counters that must account for what it lost outside faults. */
export interface SoakFlowReport extends FlowFigures {
  /** Drops counted for the destination port and NICs since the flows started, by name. */
  drops: Record<string, number>;
  /** missingOutsideFaults equals the sum of `drops`, nothing duplicated or reordered. */
  ok: boolean;
}

const NICS = ['a', 'b', 'c', 'd'] as const;
type NicName = (typeof NICS)[number];
/** Flows: [name, from, to]. The flow id on the wire is its index. */
const FLOWS: ReadonlyArray<readonly [string, NicName, NicName]> = [
  ['a->c', 'a', 'c'],
  ['c->a', 'c', 'a'],
  ['b->d', 'b', 'd'],
  ['d->b', 'd', 'b'],
];
/** NICs whose workers are killed and devices reset (their flows cross no impairment). */
export const SOAK_FAULTY_NICS: readonly NicName[] = ['b', 'd'];
const HELLO_FLOW = 0xffff;
const ETHERTYPE = [0x88, 0xb5];
const QUEUE_SIZE = 128;

interface Nic {
  name: NicName;
  mac: Uint8Array;
  device: VirtioNetDevice;
  driver: NetDriver;
  port: number;
  /** Being killed or reset: not driven. */
  down: boolean;
}

/** Drop counters of one destination, as counted by the switch port and both devices. */
function dropsOf(port: PortStats, deviceDrops: number): Record<string, number> {
  return { impairmentLoss: port.dropsLoss, egressFull: port.dropsEgressFull, switchBad: port.dropsBad, deviceDrops };
}

/** Four NICs on a switch with numbered flows between them, driven from this thread. */
export class SoakNet {
  readonly flows = FLOWS.map(([name]) => new FlowAccount(name));
  /** Frames that reached a NIC they were not for (floods), or hello frames. */
  strays = 0;
  private readonly nics: Record<NicName, Nic>;
  private baseline: Record<string, Record<string, number>> = {};
  private readonly irq: Int32Array;

  private constructor(
    private readonly sw: NetSwitch,
    nics: Record<NicName, Nic>,
    private readonly features: bigint,
    private readonly interrupt: WordRef,
  ) {
    this.nics = nics;
    this.irq = new Int32Array(interrupt.buffer);
  }

  /** Build, start and warm up (every MAC learned); flows are counted from here. */
  static async start(options: SoakNetOptions): Promise<SoakNet> {
    const arena = new SharedArena(4 * (8 << 20) + (16 << 20));
    const sw = new NetSwitch(arena, { ageingMs: 24 * 3600_000 });
    const interrupt = newInterruptWord();
    const features = options.ring === 'packed' ? NET_DEFAULT_FEATURES | bit(F_RING_PACKED) : NET_DEFAULT_FEATURES & ~bit(F_RING_PACKED);
    const nics = {} as Record<NicName, Nic>;
    for (const [i, name] of NICS.entries()) {
      const mac = `52:54:00:50:00:0${i + 1}`;
      const device = new VirtioNetDevice(arena.guestMemory(8 << 20), { mac, queueSize: QUEUE_SIZE, spinUs: 10 });
      const impairment = name === 'c' ? { lossPercent: options.lossPercent ?? 1, delayMs: options.delayMs ?? 1, seed: options.seed } : undefined;
      const port = sw.connect(device, { impairment });
      nics[name] = { name, mac: parseMac(mac), device, driver: undefined as unknown as NetDriver, port, down: false };
    }
    sw.start();
    const net = new SoakNet(sw, nics, features, interrupt);
    for (const nic of Object.values(nics)) nic.driver = await net.open(nic);
    await net.warmUp();
    return net;
  }

  /** Send what fits on every flow, reap, receive. Returns frames moved. */
  step(sending: boolean): number {
    let n = 0;
    if (sending) FLOWS.forEach(([, from, to], id) => (n += this.send(id, this.nics[from], this.nics[to])));
    for (const nic of Object.values(this.nics)) {
      if (nic.down) continue;
      nic.driver.reclaimTx();
      n += nic.driver.receive((p) => this.onFrame(p.segU8[0], p.segIdx[0]));
    }
    return n;
  }

  /** Sleep on the drivers' interrupt word until something happens or `ms` pass. */
  async idle(ms: number): Promise<void> {
    const seen = Atomics.load(this.irq, this.interrupt.index);
    let ready = false;
    for (const nic of Object.values(this.nics)) if (!nic.down && nic.driver.enableInterrupts()) ready = true;
    if (!ready) await waitAsync(this.irq, this.interrupt.index, seen, ms);
    for (const nic of Object.values(this.nics)) if (!nic.down) nic.driver.disableInterrupts();
  }

  /**
   * Kill `nic`'s rx or tx queue worker as a crash would, check that the
   * driver sees DEVICE_NEEDS_RESET, and bring the NIC back through a fresh
   * driver. Returns a problem, or null.
   */
  async kill(name: NicName, queue: 'rx' | 'tx'): Promise<string | null> {
    const nic = this.nics[name];
    return this.fault(nic, async () => {
      const dead = new Promise((resolve) => nic.device.once('queue-error', resolve));
      await nic.device.killQueueWorker(queue === 'rx' ? netRxQueue(0) : netTxQueue(0));
      await dead;
      return nic.driver.needsReset ? null : `NIC ${name}: the driver did not see DEVICE_NEEDS_RESET after its ${queue} worker died`;
    });
  }

  /** The driver of `nic` resets the device mid-traffic and sets it up again. */
  async reset(name: NicName): Promise<string | null> {
    return this.fault(this.nics[name], async () => null);
  }

  /** Stop one queue of `nic` and start it again from its vring base: nothing may be lost. */
  async restart(name: NicName, queue: 'rx' | 'tx'): Promise<void> {
    const dev = this.nics[name].device;
    const q = queue === 'rx' ? netRxQueue(0) : netTxQueue(0);
    dev.startQueue(q, await dev.stopQueue(q));
  }

  /**
   * Stop sending and receive until nothing has arrived for `quietMs` and
   * nothing is in flight: no frame in a transmit ring, a switch channel or
   * the delay line, and then none in a used ring either (a receive finds
   * nothing). Returns a problem when that does not happen within `limitMs`
   * (a hang), else null. Quiet alone is not enough: a queue thread that
   * replaces a killed one can take longer than `quietMs` to boot on a loaded
   * machine, with the NIC's frames waiting in its channel; those are late,
   * not lost.
   */
  async drain(quietMs = 300, limitMs = 30_000): Promise<string | null> {
    const start = Date.now();
    let last = start;
    for (;;) {
      // Looked at before the receive: every hop shows a frame until the next
      // one does (the switch and the receive queues publish before they
      // release), so with nothing in flight here, a receive that finds
      // nothing means every frame arrived.
      const settled = Date.now() - last >= quietMs && this.inFlight().length === 0;
      const moved = this.step(false);
      if (moved > 0) last = Date.now();
      else if (settled) return null;
      if (Date.now() - start > limitMs) return `net: not drained ${limitMs} ms after the traffic stopped (${this.inFlight().join('; ') || 'frames still arriving'})`;
      if (moved === 0) await this.idle(20);
    }
  }

  /** Where frames are in flight now, short of the drivers' used rings, described (empty: nowhere). */
  private inFlight(): string[] {
    const out: string[] = [];
    const ports = this.sw.stats().ports;
    for (const n of Object.values(this.nics)) {
      if (n.driver.pair.tx.pending > 0) out.push(`${n.name}: ${n.driver.pair.tx.pending} frames in its transmit ring`);
      const { toNic, fromNic } = this.sw.backlog(n.port);
      if (toNic > 0) out.push(`${n.name}: ${toNic} bytes in the switch's channels to it`);
      if (fromNic > 0) out.push(`${n.name}: ${fromNic} bytes in its channels to the switch`);
      if (ports[n.port].queuedFrames > 0) out.push(`${n.name}: ${ports[n.port].queuedFrames} frames in its port's delay line`);
    }
    return out;
  }

  /** Per flow: figures (after drain(): final) and the drop counters of its destination. */
  report(final: boolean): SoakFlowReport[] {
    const now = this.dropCounters();
    return FLOWS.map(([, , to], id) => {
      const f = this.flows[id].figures(final);
      const drops: Record<string, number> = {};
      for (const [k, v] of Object.entries(now[to])) drops[k] = v - (this.baseline[to]?.[k] ?? 0);
      const explained = Object.values(drops).reduce((x, y) => x + y, 0);
      return { ...f, drops, ok: f.duplicatesOrReordered === 0 && f.missingOutsideFaults === explained };
    });
  }

  async close(): Promise<void> {
    await this.sw.close();
    await Promise.all(Object.values(this.nics).map((n) => n.device.close()));
  }

  private async open(nic: Nic): Promise<NetDriver> {
    const d = new NetDriver(await setupNetDriver(nic.device, { features: this.features, interrupt: this.interrupt, queueSize: QUEUE_SIZE }));
    d.fillRx();
    return d;
  }

  private async fault(nic: Nic, act: () => Promise<string | null>): Promise<string | null> {
    nic.down = true;
    const touched = FLOWS.flatMap(([, from, to], id) => (from === nic.name || to === nic.name ? [this.flows[id]] : []));
    for (const f of touched) f.openFault();
    try {
      const problem = await act();
      nic.driver = await this.open(nic);
      return problem;
    } finally {
      for (const f of touched) f.closeFault();
      nic.down = false;
    }
  }

  private send(id: number, from: Nic, to: Nic): number {
    if (from.down) return 0;
    const d = from.driver;
    const flow = this.flows[id];
    let n = 0;
    for (;;) {
      const at = d.reserveTx();
      if (at < 0) break;
      this.writeFrame(d.u8, at, to.mac, from.mac, id, flow.sent);
      d.commitTx(64 + (flow.sent & 63));
      flow.sent++;
      n++;
    }
    d.flushTx();
    return n;
  }

  private writeFrame(u8: Uint8Array, at: number, dst: Uint8Array, src: Uint8Array, flow: number, seq: number): void {
    u8.set(dst, at);
    u8.set(src, at + 6);
    u8[at + 12] = ETHERTYPE[0];
    u8[at + 13] = ETHERTYPE[1];
    putU16le(u8, at + 14, flow);
    putU32le(u8, at + 16, seq);
  }

  private onFrame(u8: Uint8Array, at: number): void {
    const flow = getU16le(u8, at + 14);
    const seq = getU32le(u8, at + 16);
    if (flow < this.flows.length) this.flows[flow].onReceive(seq);
    else this.strays++;
  }

  /** Every NIC broadcasts a hello until the switch knows every MAC; then the counters' baseline. */
  private async warmUp(): Promise<void> {
    const broadcast = new Uint8Array(6).fill(0xff);
    while (this.sw.stats().macEntries < NICS.length) {
      for (const nic of Object.values(this.nics)) {
        const at = nic.driver.reserveTx();
        if (at >= 0) {
          this.writeFrame(nic.driver.u8, at, broadcast, nic.mac, HELLO_FLOW, 0);
          nic.driver.commitTx(64);
          nic.driver.flushTx();
        }
      }
      this.step(false);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await this.drain(100);
    this.baseline = this.dropCounters();
  }

  private dropCounters(): Record<NicName, Record<string, number>> {
    const ports = this.sw.stats().ports;
    const out = {} as Record<NicName, Record<string, number>>;
    for (const nic of Object.values(this.nics)) {
      // Drops on the way into this NIC: its switch port, its receive queue, the senders' transmit queues.
      const senders = FLOWS.filter(([, , to]) => to === nic.name).map(([, from]) => this.nics[from].device.netStats().pairs[0].tx);
      const rx = nic.device.netStats().pairs[0].rx;
      const deviceDrops = rx.dropsTooBig + rx.dropsFiltered + rx.dropsBadHeader + senders.reduce((n, t) => n + t.dropsTooBig + t.dropsMalformed + t.dropsBadHeader, 0);
      out[nic.name] = dropsOf(ports[nic.port], deviceDrops);
    }
    return out;
  }
}
