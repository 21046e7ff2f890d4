import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { InvalidArgumentError } from '../errors.js';
import { type WordRef, ring } from '../notify/notify-area.js';
import { workerFile } from '../transport/worker-file.js';
import { close as closeFd, eventfd, signalEventfd } from '../os/libc.js';
import { addNetns, configureInterface, deleteNetns, ipSync, isInterfaceName, isNetnsName, linkExists, netnsExists } from './netns.js';
import type { NetPort, PortAttachable } from '../net/net-port.js';
import { InterfaceNameInUseError, NetnsNotFoundError } from './tap-errors.js';
import { TAP_CTL_BYTES, TAP_STOP, TAP_WAKE_READER, TAP_WAKE_WRITER, type TapPortStats, type TapWorkerData, readTapStats } from './tap-runtime.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6, openTap, setTapOffload } from './tun.js';

/** An offload the kernel may hand a TAP port's reader (TUNSETOFFLOAD). */
export type TapOffload = 'csum' | 'tso4' | 'tso6' | 'tso-ecn' | 'uso4' | 'uso6';

const OFFLOAD_FLAGS: Record<TapOffload, number> = { csum: TUN_F_CSUM, tso4: TUN_F_TSO4, tso6: TUN_F_TSO6, 'tso-ecn': TUN_F_TSO_ECN, uso4: TUN_F_USO4, uso6: TUN_F_USO6 };
const ALL_OFFLOADS = Object.keys(OFFLOAD_FLAGS) as TapOffload[];

/** Options of a TAP port. */
export interface TapPortOptions {
  /**
   * Name of the interface (1 to 15 of letters, digits, `_ . -`). With
   * `netns` it is the name inside that namespace, and the interface is
   * created under a temporary name unique to this process first.
   */
  name: string;
  /** Network namespace to move the interface into; default: it stays in the caller's. */
  netns?: string;
  /** Create `netns` when it does not exist (and delete it at close()); default true. False: a missing one is a NetnsNotFoundError. */
  createNetns?: boolean;
  /** MTU of the interface; default the kernel's (1500). */
  mtu?: number;
  /** Addresses with prefix length, e.g. "10.0.0.1/24". */
  addresses?: string[];
  /**
   * What the kernel may hand the lab (TUNSETOFFLOAD): partial checksums and
   * GSO frames up to 64 KiB. Default all of them: a NIC whose driver
   * negotiated GUEST_TSO4 (and the rest) gets them whole, the receive queue
   * of one that did not completes checksums and cuts segments itself. [] makes
   * the kernel send wire frames only.
   */
  offloads?: TapOffload[];
  /** Microseconds the writer thread polls the lab's channels before it sleeps; default 20. */
  spinUs?: number;
}

/** Where a TAP port is, and the offloads the kernel agreed to. */
export interface TapPortInfo {
  name: string;
  netns: string | null;
  /** TUN_F_* flags in force. */
  offloadFlags: number;
}

/** How long close() waits for a worker thread to see the stop word before terminating it. */
const STOP_TIMEOUT_MS = 5000;

let temporaryNames = 0;
/** Namespaces created by open ports: deleted at process exit if close() never ran (a crash, process.exit()). */
const createdNamespaces = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const ns of createdNamespaces) {
      try {
        ipSync(['netns', 'del', ns]);
      } catch {
        // Nothing more can be done while exiting.
      }
    }
  });
}

function flagsOf(offloads: readonly TapOffload[]): number {
  let flags = 0;
  for (const o of offloads) {
    if (!(o in OFFLOAD_FLAGS)) throw new InvalidArgumentError(`TAP offload "${String(o)}" is not one of ${ALL_OFFLOADS.join(', ')}`);
    flags |= OFFLOAD_FLAGS[o];
  }
  if (flags !== 0 && (flags & TUN_F_CSUM) === 0) throw new InvalidArgumentError(`TAP offloads ${offloads.join(', ')} need "csum" too (a GSO frame leaves its checksum partial)`);
  return flags;
}

/**
 * A lab port that is a Linux TAP interface, optionally in a network
 * namespace of its own: real Linux tools (ping, iperf3, tcpdump) on one
 * side, the lab's switches and NICs on the other. A PortAttachable with one
 * queue pair: plug it into a switch (connect()) or link it to a NIC or
 * another TAP port (connectNics()).
 *
 * Frames cross with their 12-byte virtio_net_hdr (IFF_VNET_HDR), so offloads
 * pass both ways as the kernel defines them: a GSO frame written by a NIC
 * with HOST_TSO4 reaches the namespace's stack whole, and one the stack
 * sends reaches a NIC with GUEST_TSO4 whole. Two worker threads move them
 * (reader: tap fd -> lab, writer: lab -> tap fd), each with one system call
 * per frame and no allocation.
 *
 * close() stops both threads, closes the fd (which removes the interface)
 * and deletes the namespace when this port created it. The namespace is
 * also deleted at process exit when close() never ran; a process killed by
 * a signal it does not handle cannot clean up (the CLI handles SIGINT and
 * SIGTERM).
 */
export class TapPort implements PortAttachable {
  readonly queuePairs = 1;
  readonly wakeWords: { rx: WordRef[]; tx: WordRef[] };
  readonly activePairs: WordRef;
  private readonly ctl = new SharedArrayBuffer(TAP_CTL_BYTES);
  private readonly i32 = new Int32Array(this.ctl);
  private readonly workers: Worker[] = [];
  private readonly exits: Promise<void>[] = [];
  private fd = -1;
  private stopFd = -1;
  private createdNetns: string | null = null;
  private offloadFlags = 0;
  private closing: Promise<void> | undefined;
  /** Why a worker thread died, if one did. */
  error: Error | undefined;

  private constructor(private readonly options: TapPortOptions) {
    this.wakeWords = { rx: [{ buffer: this.ctl, index: TAP_WAKE_WRITER }], tx: [{ buffer: this.ctl, index: TAP_WAKE_READER }] };
    const active = new Int32Array(new SharedArrayBuffer(4));
    active[0] = 1;
    this.activePairs = { buffer: active.buffer as SharedArrayBuffer, index: 0 };
  }

  /**
   * Create the interface (and the namespace, when asked), move it, set its
   * MTU and addresses and bring it up. On failure nothing it made is left.
   */
  static async open(options: TapPortOptions): Promise<TapPort> {
    const { name, netns } = options;
    if (!isInterfaceName(name)) throw new InvalidArgumentError(`TAP port name ${JSON.stringify(name)} is not an interface name (1 to 15 of letters, digits, _ . -)`);
    if (netns !== undefined && !isNetnsName(netns)) throw new InvalidArgumentError(`network namespace name ${JSON.stringify(netns)} is not one ip netns takes (1 to 64 of letters, digits, _ . -)`);
    const mtu = options.mtu;
    if (mtu !== undefined && !(Number.isInteger(mtu) && mtu >= 68 && mtu <= 65521)) throw new InvalidArgumentError(`TAP port MTU ${mtu} must be an integer in [68, 65521]`);
    const flags = flagsOf(options.offloads ?? ALL_OFFLOADS);
    const port = new TapPort(options);
    try {
      await port.create(flags);
    } catch (e) {
      await port.close().catch(() => undefined);
      throw e;
    }
    return port;
  }

  /** The interface's name, its namespace (null: the caller's) and the offloads in force. */
  info(): TapPortInfo {
    return { name: this.options.name, netns: this.options.netns ?? null, offloadFlags: this.offloadFlags };
  }

  /** Counters, from shared memory. */
  stats(): TapPortStats {
    return readTapStats(this.ctl);
  }

  /** True once both threads have started (gone idle or moved a frame). */
  get running(): boolean {
    const s = this.stats();
    return this.workers.length === 2 && (s.readerSleeps > 0 || s.readFrames > 0) && (s.writerSleeps > 0 || s.writtenFrames > 0);
  }

  attach(port: NetPort): void {
    if (port.outputs.length !== 1 || port.inputs.length !== 1) throw new InvalidArgumentError(`a TAP port has one queue pair, the port has ${port.outputs.length}`);
    if (this.workers.length !== 0) throw new InvalidArgumentError(`TAP port "${this.options.name}" is already plugged in`);
    if (this.closing !== undefined) throw new InvalidArgumentError(`TAP port "${this.options.name}" is closed`);
    const channels = port.outputs[0].channels;
    const inputs = port.inputs[0];
    // The threads address every channel from one base address: they must share the arena's buffer.
    if ([...channels, ...inputs].some((c) => c.buffer !== channels[0].buffer)) throw new InvalidArgumentError('a TAP port\'s channels must all live in one SharedArena');
    const maxFrame = channels[0].maxFrame;
    const common = { fd: this.fd, stopFd: this.stopFd, ctl: this.ctl, maxFrame, spinUs: this.options.spinUs ?? 20 };
    this.spawn({ ...common, role: 'reader', channels });
    this.spawn({ ...common, role: 'writer', channels: inputs });
  }

  /** Stop both threads, close the fd (the interface goes with it), delete a namespace this port created. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      Atomics.store(this.i32, TAP_STOP, 1);
      ring(this.i32, TAP_WAKE_READER);
      ring(this.i32, TAP_WAKE_WRITER);
      if (this.stopFd >= 0) signalEventfd(this.stopFd);
      const timer = setTimeout(() => {
        for (const w of this.workers) void w.terminate();
      }, STOP_TIMEOUT_MS);
      await Promise.all(this.exits);
      clearTimeout(timer);
      if (this.fd >= 0) closeFd(this.fd);
      if (this.stopFd >= 0) closeFd(this.stopFd);
      this.fd = -1;
      this.stopFd = -1;
      const ns = this.createdNetns;
      if (ns !== null) {
        await deleteNetns(ns);
        createdNamespaces.delete(ns);
      }
    })();
    return this.closing;
  }

  private async create(flags: number): Promise<void> {
    const { name, netns } = this.options;
    const target = netns ?? null;
    if (target !== null && !netnsExists(target)) {
      if (this.options.createNetns === false) throw new NetnsNotFoundError(target);
    } else if (await linkExists(name, target)) {
      throw new InterfaceNameInUseError(name, target === null ? 'in this namespace' : `in namespace "${target}"`);
    }
    // In a namespace, the interface is born under a name unique to this process, then renamed there.
    const born = target === null ? name : `vl${process.pid.toString(36)}t${(temporaryNames++).toString(36)}`.slice(0, 15);
    if (target !== null && existsSync(`/sys/class/net/${born}`)) throw new InterfaceNameInUseError(born, 'in this namespace');
    this.fd = openTap(born);
    this.offloadFlags = setTapOffload(this.fd, flags);
    this.stopFd = eventfd(true);
    if (target !== null && !netnsExists(target)) {
      installExitHook();
      createdNamespaces.add(target);
      this.createdNetns = target;
      await addNetns(target);
    }
    await configureInterface(born, target, name, { mtu: this.options.mtu, addresses: this.options.addresses });
  }

  private spawn(data: TapWorkerData): void {
    const w = new Worker(workerFile('tap-worker'), { workerData: data });
    w.on('error', (e) => (this.error ??= e));
    this.workers.push(w);
    this.exits.push(new Promise((resolve) => w.once('exit', () => resolve())));
  }
}
