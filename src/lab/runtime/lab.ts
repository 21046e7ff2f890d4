import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { LinkOptions } from '../../backends/link.js';
import type { SocketLink, SocketLinkOptions } from '../../backends/socket-link.js';
import type { NetSwitch, NetSwitchOptions, SwitchPortOptions } from '../../backends/switch.js';
import type { VxlanUplinkOptions } from '../../backends/vxlan-options.js';
import type { VxlanUplink } from '../../backends/vxlan-uplink.js';
import { InvalidArgumentError } from '../../errors.js';
import { SharedArena } from '../../memory/arena.js';
import type { VirtioNetDevice } from '../../net/net-device.js';
import { type NetDriver, newInterruptWord } from '../../net/net-driver.js';
import { type WordRef, waitAsync } from '../../notify/notify-area.js';
import type { VhostUserServer } from '../../vhost-user/server.js';
import { bringUp, plannedArenaBytes, shutdown } from './lab-bring-up.js';
import { LabEntries, portNames } from './lab-entries.js';
import { type LabConfig, checkLabOptions, checkNetnsEntry, checkNicEntry, checkSocketEntry, checkSwitchEntry, checkVhostUserEntry, checkVxlanEntry } from './lab-entry-checks.js';
import { LabChildren, type LabExecOptions, type LabExecResult, type LabNetnsOptions, execInNetns } from './lab-netns.js';
import { labStats, maxImpairmentDelayMs } from './lab-stats.js';
import type { LabEvents, LabMacEntry, LabNicOptions, LabOptions, LabStartOptions, LabState, LabStats, LabTapOptions, LabVhostUserOptions } from './lab-types.js';

// Node 20.0-20.3 predate Symbol.asyncDispose; 20.4-22 define it as this registered symbol, and
// Node 24's V8 has it built in (then this line does nothing).
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

/**
 * A network lab: virtio-net NICs, learning switches, cables (plain, impaired
 * or captured), pcap taps, socket links to other processes and VXLAN
 * uplinks to other labs or Linux VTEPs, built by name and run as one unit.
 *
 * Build first, then start: nic(), switch(), link(), connect(), tap(),
 * socketLink() and vxlan() only record what is asked (and check it). start()
 * sizes one SharedArena for every guest memory and channel of the lab
 * (allocated once, when the whole topology is known: see lab-sizing.ts),
 * creates the devices, opens the socket links, binds the VXLAN uplinks,
 * plugs everything in, starts the switch workers, and
 * brings every NIC up with setupNetDriver() and a NetDriver on the calling
 * thread (receive buffers posted); it resolves once every worker thread runs.
 * All drivers route their interrupts to one word, so waitForInterrupt()
 * wakes on any NIC (and a NetDriver's own waitForInterrupt() may wake for
 * another NIC: loop on receive()).
 *
 * close() ends everything the lab created: switch workers, relay workers,
 * sockets (socket links, VXLAN uplinks), then the devices' queue workers. A started lab keeps the process
 * alive (its worker threads run until closed): close it, abort the signal
 * given to start(), or hold it with `await using lab = new Lab()`, which
 * closes it when the scope ends (Symbol.asyncDispose). Events: `running`
 * once start() is done, `closed` once close() is. Misuse (an unknown name,
 * a second attachment of a NIC, building after start) throws
 * InvalidArgumentError saying what was wrong.
 */
export class Lab extends EventEmitter<LabEvents> {
  /** What was built, by name (lab-entries.ts); start() fills in the live objects (lab-bring-up.ts). */
  private readonly entries = new LabEntries();
  private readonly children = new LabChildren();
  private readonly config: LabConfig;
  private readonly interrupt: WordRef = newInterruptWord();
  private readonly irqI32 = new Int32Array(this.interrupt.buffer);
  private state: LabState = 'building';
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private arena: SharedArena | undefined;

  constructor(options: LabOptions = {}) {
    super();
    this.config = checkLabOptions(options);
  }

  // ---- building ------------------------------------------------------------

  /** Add a virtio-net NIC named `name`. */
  nic(name: string, options: LabNicOptions = {}): this {
    this.newEntry(`nic("${name}")`, name);
    this.entries.add(checkNicEntry(this.entries, name, options, this.config));
    return this;
  }

  /**
   * Add a vhost-user port named `name`: a virtio-net device served on a Unix
   * socket (its server starts listening at start()), whose driver is a front
   * end in another process (QEMU's guest, DPDK's virtio-user). Plug it into a
   * switch or link it like a NIC; its queues run when the front end starts
   * its rings.
   */
  vhostUser(name: string, options: LabVhostUserOptions): this {
    this.newEntry(`vhostUser("${name}")`, name);
    this.entries.add(checkVhostUserEntry(this.entries, name, options));
    return this;
  }

  /** The vhost-user server behind a port name (after start()): its device, events and negotiation summary. */
  vhostUserServer(name: string): VhostUserServer<VirtioNetDevice> {
    const e = this.entries.entryOf(name, 'vhost-user', 'vhostUserServer', 'ports');
    if (e.server === undefined) throw new InvalidArgumentError(`vhostUserServer("${name}"): start() the lab first`);
    return e.server;
  }

  /** Add a learning switch named `name` (its worker starts at start()). */
  switch(name: string, options: NetSwitchOptions = {}): this {
    this.newEntry(`switch("${name}")`, name);
    this.entries.add(checkSwitchEntry(name, options));
    return this;
  }

  /**
   * Add a link to another process (QEMU `-netdev stream` / `dgram`, a test
   * peer): it plugs into a switch (connect()) or a NIC (link()) as a NIC
   * does. Its socket opens at start(); socket(name) gives its handle then.
   */
  socketLink(name: string, options: SocketLinkOptions): this {
    this.newEntry(`socketLink("${name}")`, name);
    this.entries.add(checkSocketEntry(name, options));
    return this;
  }

  /**
   * Add a VXLAN uplink (RFC 7348): a port that carries frames to and from
   * remote VTEPs over UDP (another lab, a Linux `vxlan` device, Open
   * vSwitch), so labs on several machines share one layer 2. Plug it into a
   * switch with connect() (or link() it to a NIC). Its socket is bound at
   * start(); vxlanUplink(name) gives its handle then.
   * @throws InvalidArgumentError for a bad option (VNI beyond 24 bits, an address that is not IPv4).
   */
  vxlan(name: string, options: VxlanUplinkOptions): this {
    this.newEntry(`vxlan("${name}")`, name);
    this.entries.add(checkVxlanEntry(name, options));
    return this;
  }

  /**
   * Add a Linux network namespace named `name` as a host of the lab: at
   * start() the namespace is created with a TAP interface (`ifname`, default
   * eth0) holding `address`, and that interface is the lab's port: plug it
   * into a switch (connect()) or link it to a NIC, or to another namespace,
   * like a NIC. exec() and spawn() run programs inside it (ping, iperf3).
   * close() deletes the interface and the namespace. Needs root or
   * CAP_NET_ADMIN, /dev/net/tun and iproute2's `ip` (see TapPort).
   */
  netns(name: string, options: LabNetnsOptions = {}): this {
    this.newEntry(`netns("${name}")`, name);
    this.entries.add(checkNetnsEntry(name, options));
    return this;
  }

  /**
   * A cable between two NICs (or a NIC and a socket link), or between two
   * switches (a new port on each, numbered after its connect()ed ones). With
   * an impairment or a capture a relay worker sits in the middle, and
   * stats().links counts what its impairment dropped; without, the two ends
   * share the channels directly.
   */
  link(a: string, b: string, options: LinkOptions = {}): this {
    this.building(`link("${a}", "${b}")`);
    this.entries.addLink(a, b, options);
    return this;
  }

  /** Plug a NIC (or a socket link) into a new port of a switch; the impairment applies to frames leaving the switch towards it. */
  connect(endpoint: string, switchName: string, options: SwitchPortOptions = {}): this {
    this.building(`connect("${endpoint}", "${switchName}")`);
    this.entries.addPort(endpoint, switchName, options);
    return this;
  }

  /**
   * Capture a switch's traffic to a pcap file: every frame it forwards, or
   * with `port` the traffic in and out of one port (its number, or the name
   * of the NIC or switch on it: connect or link it first). The file is
   * created at start() and complete after close().
   */
  tap(switchName: string, path: string, options: LabTapOptions = {}): this {
    this.building(`tap("${switchName}", "${path}")`);
    this.entries.addTap(switchName, path, options);
    return this;
  }

  // ---- running -------------------------------------------------------------

  /** 'building' until start(), 'running' after it, 'closed' after close() (or a failed start). */
  get status(): LabState {
    return this.state;
  }

  /** Names of the NICs, in the order they were added. */
  get nicNames(): string[] {
    return this.entries.nics.map((n) => n.name);
  }

  /** Names of the switches. */
  get switchNames(): string[] {
    return this.entries.switches.map((s) => s.name);
  }

  /** Names of the network namespaces, in the order they were added. */
  get netnsNames(): string[] {
    return this.entries.netns.map((n) => n.name);
  }

  /** The arena's size in bytes (0 before start()). */
  get arenaBytes(): number {
    return this.arena?.buffer.byteLength ?? 0;
  }

  /** The longest delay plus jitter any link or port of the lab adds, in ms (how long a frame may stay in flight). */
  get maxImpairmentDelayMs(): number {
    return maxImpairmentDelayMs(this.entries);
  }

  /** The MAC address of a NIC. */
  mac(nic: string): string {
    return this.entries.nicEntry(nic).mac;
  }

  /** The MTU of a NIC. */
  mtu(nic: string): number {
    return this.entries.nicEntry(nic).mtu;
  }

  /**
   * Create everything and bring it up (see the class comment). Rejects, with
   * everything created so far closed again, when a piece cannot be made
   * (a socket that cannot listen, a capture file that cannot be created).
   */
  start(options: LabStartOptions = {}): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new InvalidArgumentError('start(): the lab is closed'));
    if (this.state !== 'building') return Promise.reject(new InvalidArgumentError('start(): the lab is already started'));
    const signal = options.signal;
    if (signal?.aborted === true) {
      void this.close();
      return Promise.reject(signal.reason);
    }
    this.state = 'starting';
    const onAbort = (): void => void this.close().catch(() => undefined);
    const detach = (): void => signal?.removeEventListener('abort', onAbort);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.once('closed', detach);
    this.starting = this.bringUp().then(
      () => {
        if (this.state !== 'starting') return;
        this.state = 'running';
        this.emit('running');
      },
      async (e: unknown) => {
        detach();
        this.state = 'closed';
        await shutdown(this.entries, this.children).catch(() => undefined);
        throw signal?.aborted === true ? signal.reason : e;
      },
    );
    return this.starting;
  }

  /** The driver of a NIC (after start()): send, receive, ctrl, stats. */
  driver(nic: string): NetDriver {
    const e = this.entries.nicEntry(nic);
    this.running(`driver("${nic}")`);
    return e.driver!;
  }

  /** The device of a NIC (after start()): queue stats, link state, announce, reset. */
  device(nic: string): VirtioNetDevice {
    const e = this.entries.nicEntry(nic);
    if (e.device === undefined) throw new InvalidArgumentError(`device("${nic}"): start() the lab first`);
    return e.device;
  }

  /** The NetSwitch behind a switch name (after start()). */
  netSwitch(name: string): NetSwitch {
    const s = this.entries.switchEntry(name);
    if (s.sw === undefined) throw new InvalidArgumentError(`netSwitch("${name}"): start() the lab first`);
    return s.sw;
  }

  /** The SocketLink behind a socket link name (after start()): its address, events, counters. */
  socket(name: string): SocketLink {
    const e = this.entries.entryOf(name, 'socket', 'socket', 'socket links');
    if (e.link === undefined) throw new InvalidArgumentError(`socket("${name}"): start() the lab first`);
    return e.link;
  }

  /** The VxlanUplink behind an uplink name (after start()): its address, learned MACs, counters. */
  vxlanUplink(name: string): VxlanUplink {
    const e = this.entries.entryOf(name, 'vxlan', 'vxlanUplink', 'uplinks');
    if (e.uplink === undefined) throw new InvalidArgumentError(`vxlanUplink("${name}"): start() the lab first`);
    return e.uplink;
  }

  /** The addresses a switch has learned, each with the name of what is on its port. */
  async macTable(switchName: string): Promise<LabMacEntry[]> {
    const s = this.entries.switchEntry(switchName);
    this.running(`macTable("${switchName}")`);
    const table = await s.sw!.macTable();
    const names = portNames(s);
    return table.map((e) => ({ ...e, portName: names[e.port] ?? `port ${e.port}` }));
  }

  /**
   * Wait (without blocking the event loop) until any NIC's driver gets an
   * interrupt, or `timeoutMs` passes. Re-enables interrupts on every queue
   * first and resolves at once when work is already waiting. True when woken.
   */
  async waitForInterrupt(timeoutMs: number): Promise<boolean> {
    this.running('waitForInterrupt()');
    const drivers = this.entries.nics.map((n) => n.driver!);
    const seen = Atomics.load(this.irqI32, this.interrupt.index);
    let ready = false;
    for (const d of drivers) if (d.enableInterrupts()) ready = true;
    const woken = ready || (await waitAsync(this.irqI32, this.interrupt.index, seen, timeoutMs));
    for (const d of drivers) d.disableInterrupts();
    return woken;
  }

  /**
   * Run a program inside one of the lab's namespaces (`ip netns exec`) to
   * completion; resolves with its exit status and output (a non-zero exit
   * is a result, not a rejection).
   */
  exec(netns: string, argv: readonly string[], options: LabExecOptions = {}): Promise<LabExecResult> {
    this.running(`exec("${netns}")`);
    this.entries.netnsEntry(netns);
    return execInNetns(netns, argv, options);
  }

  /**
   * Start a program inside one of the lab's namespaces and return it (a
   * server: `iperf3 -s`); close() ends it if it still runs.
   */
  spawn(netns: string, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    this.running(`spawn("${netns}")`);
    this.entries.netnsEntry(netns);
    return this.children.spawn(netns, argv, options);
  }

  /** Every counter of the lab (after start(); still readable after close()). */
  stats(): LabStats {
    if (this.arena === undefined) throw new InvalidArgumentError('stats(): start() the lab first');
    return labStats(this.entries);
  }

  /**
   * End everything the lab created, in order: switch workers (flushing their
   * captures), relay workers, sockets, then the NICs' queue workers. Every
   * piece is closed even when one fails; the first failure is thrown after.
   * Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const wasStarting = this.starting;
      this.state = 'closed';
      if (wasStarting !== undefined) await wasStarting.catch(() => undefined);
      try {
        await shutdown(this.entries, this.children);
      } catch (e) {
        this.emit('closed', e);
        throw e;
      }
      this.emit('closed', undefined);
    })();
    return this.closing;
  }

  /** close(), for `await using lab = new Lab()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- internals -------------------------------------------------------------

  private async bringUp(): Promise<void> {
    this.arena = new SharedArena(plannedArenaBytes(this.entries));
    const abortIfClosed = (): void => this.abortIfClosed();
    await bringUp(this.entries, this.arena, { ...this.config, interrupt: this.interrupt, abortIfClosed });
  }

  /** close() while start() was under way: stop building (shutdown() ends what exists). */
  private abortIfClosed(): void {
    if (this.state === 'closed') throw new InvalidArgumentError('the lab was closed while it started');
  }

  /** A building method's checks: still building, and `name` is new. */
  private newEntry(what: string, name: string): void {
    this.building(what);
    this.entries.checkNewName(name);
  }

  private building(what: string): void {
    if (this.state === 'closed') throw new InvalidArgumentError(`${what}: the lab is closed`);
    if (this.state !== 'building') throw new InvalidArgumentError(`${what} after start(): build the whole topology before starting the lab`);
  }

  private running(what: string): void {
    if (this.state === 'building' || this.state === 'starting') throw new InvalidArgumentError(`${what}: start() the lab first`);
    if (this.state === 'closed') throw new InvalidArgumentError(`${what}: the lab is closed`);
  }
}
