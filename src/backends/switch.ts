import { InvalidArgumentError } from '../errors.js';
import type { SharedArena } from '../memory/arena.js';
import type { WordRef } from '../notify/notify-area.js';
import { NET_MAX_TX_FRAME } from '../spec/net.js';
import { type PortChannelSpec, portChannelBacklog } from '../port/port-channel.js';
import { type CaptureOptions, DEFAULT_WIRE_MTU, checkCapturePath } from './capture.js';
import type { ImpairmentOptions } from './impairment.js';
import type { NetPort, PortAttachable } from '../net/net-port.js';
import { BackendWorkerHost } from './switch-host.js';
import type { MacEntry } from './switch-mac-table.js';
import { plugPort } from './switch-port.js';
import { CTL_WAKE, type SwitchStats, ctlBytes, readSwitchStats } from './switch-stats.js';
import type { BackendPortSpec, TapSpec } from './switch-worker-data.js';

/** Options of a learning switch. */
export interface NetSwitchOptions {
  /** Milliseconds after which an address not seen again is forgotten; default 300000 (802.1D's 300 s). */
  ageingMs?: number;
  /** Bytes of each port channel (a power of two); default 256 KiB. */
  capacity?: number;
  /** Largest frame carried; default a 64 KiB GSO frame (65550). */
  maxFrame?: number;
  /** Addresses the MAC table holds at most; default 4096. */
  macTableSize?: number;
  /** Microseconds the worker polls before it sleeps; default 20. */
  spinUs?: number;
}

/** Options of one switch port. */
export interface SwitchPortOptions {
  /** What happens to frames leaving the switch by this port (towards the NIC). */
  impairment?: ImpairmentOptions;
}

/** Options of a capture on a switch. */
export interface TapOptions extends CaptureOptions {
  /** Capture only the traffic in and out of this port; default every frame the switch forwards, once. */
  port?: number;
}

/**
 * A learning Ethernet switch on its own worker thread (802.1D-style
 * transparent bridging without spanning tree):
 * - it learns each frame's source MAC on the port it came from (a station
 *   seen on another port moves), and forgets addresses after `ageingMs`;
 * - known unicast goes to its port, never back out of the port it came in
 *   by; unknown unicast, broadcast and multicast are flooded to every other
 *   port;
 * - a unicast frame for a full port waits in its input channel (that source
 *   pauses, the others go on); a flood skips full ports and counts the drop;
 * - per port, an impairment (loss, delay, jitter, rate) on the way out;
 * - pcap taps of everything it forwards, or of one port, as wire frames.
 *
 * Connect NICs (anything PortAttachable) before start(). Frames travel in
 * port channels in `arena`, the buffer that also holds the guests' memory,
 * so each hop is one copyWithin.
 */
export class NetSwitch {
  private readonly ports: BackendPortSpec[] = [];
  private readonly taps: TapSpec[] = [];
  private readonly ctl: SharedArrayBuffer;
  private readonly wake: WordRef;
  private readonly ageingMs: number;
  private readonly capacity: number;
  private readonly maxFrame: number;
  private readonly macTableSize: number;
  private readonly spinUs: number;
  private host: BackendWorkerHost | undefined;
  private closed = false;

  constructor(
    private readonly arena: SharedArena,
    options: NetSwitchOptions = {},
  ) {
    this.ageingMs = options.ageingMs ?? 300_000;
    this.capacity = options.capacity ?? 1 << 18;
    this.maxFrame = options.maxFrame ?? NET_MAX_TX_FRAME;
    this.macTableSize = options.macTableSize ?? 4096;
    this.spinUs = options.spinUs ?? 20;
    if (!(this.ageingMs > 0)) throw new InvalidArgumentError(`ageingMs ${this.ageingMs} must be positive`);
    if (!Number.isInteger(this.maxFrame) || this.maxFrame < 14) throw new InvalidArgumentError(`maxFrame ${this.maxFrame} is not a frame size`);
    if (!Number.isInteger(this.macTableSize) || this.macTableSize < 1) throw new InvalidArgumentError(`macTableSize ${this.macTableSize} must be a positive integer`);
    // The control area (wake word, control word, counters) is sized when the worker starts; the wake word must exist now.
    this.ctl = new SharedArrayBuffer(ctlBytes(MAX_PORTS));
    this.wake = { buffer: this.ctl, index: CTL_WAKE };
  }

  /** Ports connected so far. */
  get portCount(): number {
    return this.ports.length;
  }

  /** True between start() and close(). */
  get running(): boolean {
    return this.host !== undefined && !this.closed;
  }

  /**
   * Plug a NIC into a new port (before start()); returns the port number.
   * One channel per NIC transmit queue comes in, one per receive queue goes
   * out (steered over the NIC's active queues).
   */
  connect(nic: PortAttachable, options: SwitchPortOptions = {}): number {
    if (this.host !== undefined || this.closed) throw new InvalidArgumentError('connect NICs to a switch before start()');
    if (this.ports.length >= MAX_PORTS) throw new InvalidArgumentError(`a switch has at most ${MAX_PORTS} ports`);
    this.ports.push(plugPort(this.arena, nic, this.wake, this.capacity, this.maxFrame, options.impairment));
    return this.ports.length - 1;
  }

  /**
   * A new port of this switch as the end of a cable: hand it to
   * connectNics() (with an impairment or capture, a relay sits on the cable),
   * to a Relay, or to another switch's connect(), to join two switches. It
   * looks like a one-pair NIC whose rx and tx words are this switch's wake
   * word; the port is numbered when the cable attaches (before start()).
   * Frames between switches are forwarded like any others: learned, flooded,
   * never sent back out of the port they came in by (there is no spanning
   * tree: a loop of switches floods forever).
   */
  uplink(): PortAttachable {
    if (this.host !== undefined || this.closed) throw new InvalidArgumentError('add uplinks to a switch before start()');
    const active = new Int32Array(new SharedArrayBuffer(4));
    active[0] = 1;
    return {
      queuePairs: 1,
      wakeWords: { rx: [this.wake], tx: [this.wake] },
      activePairs: { buffer: active.buffer as SharedArrayBuffer, index: 0 },
      attach: (port: NetPort): void => {
        if (this.host !== undefined || this.closed) throw new InvalidArgumentError('attach an uplink before the switch starts');
        if (this.ports.length >= MAX_PORTS) throw new InvalidArgumentError(`a switch has at most ${MAX_PORTS} ports`);
        // The cable's far end steers over our one "receive queue"; its impairment, if any, lives on the cable.
        this.ports.push({ inputs: port.inputs[0], output: port.outputs[0], impairment: null });
      },
    };
  }

  /**
   * Capture to a pcap file: every frame the switch forwards (once, as it came
   * in) or, with `port`, every frame in and out of that port. GSO frames and
   * partial checksums are resolved first, so the file holds wire frames (cut
   * to `mtu`, default 1500). Before start() the file is created now and
   * written by the worker once it runs; on a running switch it opens at once.
   */
  async tap(path: string, options: TapOptions = {}): Promise<void> {
    if (this.closed) throw new InvalidArgumentError('the switch is closed');
    const port = options.port ?? null;
    if (port !== null && !(Number.isInteger(port) && port >= 0 && port < this.ports.length)) {
      throw new InvalidArgumentError(`port ${port} is not a port of this switch (it has ${this.ports.length})`);
    }
    checkCapturePath(path, options);
    const spec: TapSpec = { path, port, mtu: options.mtu ?? DEFAULT_WIRE_MTU, snaplen: options.snaplen };
    if (this.host === undefined) this.taps.push(spec);
    else await this.host.call((api) => api.tap(spec));
  }

  /** Start forwarding on the switch's worker thread. */
  start(): void {
    if (this.closed) throw new InvalidArgumentError('the switch is closed');
    if (this.host !== undefined) return;
    this.host = new BackendWorkerHost(
      {
        mode: 'switch',
        ports: this.ports,
        ctl: this.ctl,
        ageingMs: this.ageingMs,
        macTableSize: this.macTableSize,
        maxFrame: this.maxFrame,
        spinUs: this.spinUs,
        taps: this.taps,
      },
      this.ports.length,
    );
  }

  /** Counters by port and for the whole switch (from shared memory: no call into the worker). */
  stats(): SwitchStats {
    return readSwitchStats(this.ctl, this.ports.length);
  }

  /**
   * Bytes waiting in port `port`'s channels now (records, headers included):
   * `toNic`, forwarded by the switch and not yet taken by the NIC's receive
   * queues; `fromNic`, sent by the NIC and not yet forwarded. Frames in the
   * port's impairment queue are counted apart (queuedFrames in stats()).
   * Both 0: none of this port's frames is in flight in the switch.
   */
  backlog(port: number): { toNic: number; fromNic: number } {
    const spec = this.ports[port];
    if (spec === undefined) throw new InvalidArgumentError(`port ${port} is not a port of this switch (it has ${this.ports.length})`);
    const sum = (channels: readonly PortChannelSpec[]): number => channels.reduce((n, c) => n + portChannelBacklog(c), 0);
    return { toNic: sum(spec.output.channels), fromNic: sum(spec.inputs) };
  }

  /** The learned addresses now (expired ones removed first). */
  async macTable(): Promise<MacEntry[]> {
    if (this.host === undefined) return [];
    return this.host.call((api) => api.macTable());
  }

  /** Why the worker died, if it did. */
  get error(): Error | undefined {
    return this.host?.failure;
  }

  /**
   * Stop forwarding, flush and close the captures, end the worker. Later
   * calls return the same promise. Rejects when the worker had died.
   */
  close(): Promise<void> {
    this.closed = true;
    return this.host?.close() ?? Promise.resolve();
  }
}

/** Ports a switch has at most (its control area is sized for them). */
export const MAX_PORTS = 256;
