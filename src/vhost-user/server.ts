import { EventEmitter } from 'node:events';
import { lstatSync, rmSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { InvalidArgumentError, VirtioLabError } from '../errors.js';
import { GuestMemory } from '../memory/guest-memory.js';
import type { FeatureSet } from '../spec/features.js';
import type { QueueThreadPolling } from '../transport/kept-queue-threads.js';
import { type QueueThreads, type ThreadMapping, defaultThreadMapping, mapQueueThreads } from '../transport/thread-mapping.js';
import type { QueueLauncher, VirtioDevice } from '../transport/virtio-device.js';
import { workerFile } from '../transport/worker-file.js';
import type { IoCommand, IoEvent, IoWorkerData } from './io-messages.js';
import * as libc from '../os/libc.js';
import { ProtocolFeature } from './protocol.js';
import { type SessionSummary, VhostUserSession } from './session.js';
import type { VhostQueueWorkerData } from './vhost-queue-data.js';
import type { QueueWorkerData } from '../worker/queue-worker-data.js';

/** Protocol features always served; MQ and CONFIG where the device asks for them (see the options). */
const BASE_PROTOCOL_FEATURES = [ProtocolFeature.REPLY_ACK, ProtocolFeature.STATUS, ProtocolFeature.RESET_DEVICE];

/** How long the I/O thread may take to leave after it is told to. */
const IO_EXIT_MS = 2000;

/** What the device factory of a server gets: the device must use both. */
export interface VhostUserDeviceBase {
  /** Placeholder guest memory until a front end sends its memory table. */
  memory: GuestMemory;
  /** Starts queues on the server's ring threads; pass it as the device's `queueLauncher` option. */
  queueLauncher: QueueLauncher;
  /** Microseconds a ring thread polls before it sleeps, at most; pass it as the device's `spinUs`. */
  spinUs: number;
}

/** Options of a vhost-user server. */
export interface VhostUserServerOptions<D extends VirtioDevice> {
  /** Unix socket path to listen on. A stale socket there (nobody accepts on it) is replaced; a live one or any other file is an error. */
  path: string;
  /** Build the device from `base` (its memory and queueLauncher must be used). */
  device(base: VhostUserDeviceBase): D;
  /** Rings the front end drives: the device's data queues, 0..rings-1. */
  rings: number;
  /** Virtio features offered: default the device's own. */
  features?: FeatureSet;
  /** Whether to offer VHOST_USER_PROTOCOL_F_MQ, and what GET_QUEUE_NUM answers. */
  queueNum?: number;
  /**
   * Offer VHOST_USER_PROTOCOL_F_CONFIG: the front end reads config space with
   * GET_CONFIG (vhost-user-vsock reads guest_cid so). Net front ends keep
   * config themselves (QEMU warns when it is offered).
   */
  configSpace?: boolean;
  /** Called after every SET_VRING_ENABLE with the enable state of every ring of the session. */
  onRingEnable?(device: D, enabled: readonly boolean[]): void;
  /** See {@link VhostUserTrustOptions.allowUnsealedMemory}. */
  allowUnsealedMemory?: boolean;
  /** See {@link VhostUserNotifyOptions.hostNotifiers}. */
  hostNotifiers?: boolean;
  /** See {@link VhostUserThreadOptions.threads}. */
  threads?: ThreadMapping;
  /** See {@link VhostUserThreadOptions.spinUs}. */
  spinUs?: number;
  /** See {@link VhostUserThreadOptions.idlePollMs}. */
  idlePollMs?: number;
}

/** Which threads run a vhost-user back end's rings (docs/vhost-user.md, "Threads and the path of a frame"). */
export interface VhostUserThreadOptions {
  /**
   * How the rings map onto ring threads, as for in-process devices
   * (ThreadMapping; default VIRTIO_LAB_THREADS, else 'auto': a thread per
   * ring where the cores allow it, else one thread for every ring). The
   * threads are the server's: they serve one front end after another and
   * end when the server closes. A shared `{ pool }` must be made with
   * `vhostUser: true`; it may serve the rings of several servers.
   */
  threads?: ThreadMapping;
  /** Microseconds a ring thread polls before it sleeps, at most (default 30; the budget adapts below it). */
  spinUs?: number;
  /** How often a sleeping ring thread looks at its rings, for a second after its last work, in milliseconds (default 0: never; QueueThreadPoolOptions.idlePollMs). */
  idlePollMs?: number;
}

/** How a vhost-user back end's rings are kicked (docs/vhost-user.md, "Host notifiers"). */
export interface VhostUserNotifyOptions {
  /**
   * Offer host notifiers (VHOST_USER_PROTOCOL_F_HOST_NOTIFIER, with
   * BACKEND_REQ and BACKEND_SEND_FD): each started ring's notify page, a
   * memory page of ours, is offered to the front end to map as the ring's
   * notify area, so the driver's notify writes land in memory the ring's
   * thread watches instead of going through a kick eventfd. The kick eventfd
   * stays watched too (a front end that does not map the page kicks there).
   * While it sleeps the thread looks at the page every millisecond. Default false.
   */
  hostNotifiers?: boolean;
}

/** How far a vhost-user back end trusts its front end (docs/vhost-user.md, "Trust"). */
export interface VhostUserTrustOptions {
  /**
   * Map memory fds that are not sealed against shrinking (F_SEAL_SHRINK):
   * memfds made without sealing (DPDK's `--no-huge` memory), plain files,
   * hugetlbfs files. Default false: such a region is refused and the front
   * end dropped, because a front end that truncates the file under the
   * mapping makes the back end's next access to it raise SIGBUS, which kills
   * this whole process. With true the front end is trusted not to.
   */
  allowUnsealedMemory?: boolean;
}

/** What `VhostUserServer.ringThreads()` reports. */
export interface RingThreads {
  /** The mapping in words ('per-device', 'per-queue', 'shared pool of 2', ...). */
  mapping: string;
  /** The pool thread of each of the device's queues. */
  threadOf: number[];
  /** Threads started so far (of the pool: with a shared pool, by every server on it). */
  spawned: number;
  /** Per pool thread, the rings it serves now, or undefined when it is not running. */
  load: Array<number | undefined>;
}

/** Events: 'connected', 'disconnected' ({ reason, summary }), 'log' (a line). */
export interface VhostUserDisconnect {
  reason: string;
  summary: SessionSummary;
}

/**
 * A vhost-user back end (the device side of QEMU's and DPDK's vhost-user):
 * listens on a Unix socket, serves one front end at a time, and drives a
 * VirtioDevice's control plane with its messages, while the device's queue
 * workers move the data in the front end's memory (mapped into this
 * process) and kicks and interrupts travel over eventfds.
 *
 * Threads: the control plane (this one) handles messages in order; an I/O
 * thread polls the socket; ring threads (see VhostUserThreadOptions), kept
 * from one front end to the next, poll the kick eventfds of their rings
 * themselves. A malformed message drops the connection with a logged reason,
 * every fd is closed, and the next front end may connect.
 */
export class VhostUserServer<D extends VirtioDevice = VirtioDevice> extends EventEmitter {
  readonly device: D;
  readonly path: string;
  private readonly listenFd: number;
  private readonly wakeFd!: number;
  private readonly io: Worker;
  private readonly ioExited: Promise<void>;
  private session: VhostUserSession | undefined;
  private last: SessionSummary | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private readonly noMemory = new GuestMemory([{ gpa: 0, size: 8, buffer: new SharedArrayBuffer(8), byteOffset: 0 }]);
  private readonly offered: FeatureSet;
  private readonly protocolFeatures: bigint;
  private readonly rings: number;
  private readonly queueNum: number;
  private readonly onRingEnable: VhostUserServerOptions<D>['onRingEnable'];
  private readonly allowUnsealedMemory: boolean;
  /** The ring threads (set when the device is made). */
  private threads: QueueThreads | undefined;
  /** The session's deferred task (VhostUserSession's host.later) and its timer. */
  private deferred: NodeJS.Timeout | undefined;

  constructor(options: VhostUserServerOptions<D>) {
    super();
    const { path, rings } = options;
    if (!Number.isInteger(rings) || rings < 1 || rings > 256) throw new InvalidArgumentError(`rings ${rings} must be an integer in [1, 256]`);
    this.path = path;
    this.rings = rings;
    this.queueNum = options.queueNum ?? 1;
    this.onRingEnable = options.onRingEnable;
    this.allowUnsealedMemory = options.allowUnsealedMemory ?? false;
    const spinUs = options.spinUs ?? 30;
    const mapping = options.threads ?? defaultThreadMapping();
    const polling = { spinUs, idlePollMs: options.idlePollMs ?? 0 };
    const queueLauncher: QueueLauncher = { threads: (numQueues) => (this.threads = ringThreads(mapping, rings, numQueues, polling)), prepare: this.prepare };
    this.device = options.device({ memory: this.noMemory, queueLauncher, spinUs });
    if (this.device.numQueues < rings) throw new InvalidArgumentError(`device has ${this.device.numQueues} queues, fewer than ${rings} rings`);
    this.offered = options.features ?? this.device.deviceFeatures;
    const protocol: number[] = [...BASE_PROTOCOL_FEATURES];
    if (options.queueNum !== undefined) protocol.push(ProtocolFeature.MQ);
    if (options.configSpace === true) protocol.push(ProtocolFeature.CONFIG);
    if (options.hostNotifiers === true) protocol.push(ProtocolFeature.BACKEND_REQ, ProtocolFeature.BACKEND_SEND_FD, ProtocolFeature.HOST_NOTIFIER);
    this.protocolFeatures = protocol.reduce((p, bit) => p | (1n << BigInt(bit)), 0n);
    replaceStaleSocket(path);
    this.listenFd = libc.listenUnix(path);
    try {
      this.wakeFd = libc.eventfd(true);
      const data: IoWorkerData = { listenFd: this.listenFd, wakeFd: this.wakeFd };
      this.io = new Worker(workerFile('vhost-user-io'), { workerData: data });
    } catch (e) {
      libc.close(this.listenFd);
      if (this.wakeFd !== undefined) libc.close(this.wakeFd);
      rmSync(path, { force: true });
      throw e;
    }
    this.io.on('message', (e: IoEvent) => {
      this.chain = this.chain.then(() => this.event(e));
    });
    this.io.on('error', (e) => this.log(`I/O thread failed: ${e.message}`));
    this.ioExited = new Promise((resolve) => this.io.once('exit', () => resolve()));
  }

  /** True while a front end is connected. */
  get connected(): boolean {
    return this.session !== undefined;
  }

  /**
   * The ring threads: how rings map onto them, how many were started over
   * the server's life (a thread replaced after a death counts again; front
   * ends coming and going do not), and the rings each serves now
   * (undefined: not running).
   */
  ringThreads(): RingThreads {
    const t = this.threads!;
    return { mapping: t.name, threadOf: [...t.threadOf], spawned: t.pool.spawned, load: t.pool.load };
  }

  /** What the current (or else the last) front end negotiated. */
  summary(): SessionSummary | undefined {
    return this.session?.summary() ?? this.last;
  }

  /** Drop the front end (if any), stop every queue, close the socket and every fd. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // The I/O thread goes first: once it has exited nothing polls or reads the
    // connection's fd, so closing it cannot hand a reused fd number to a reader.
    this.command({ type: 'quit' });
    const timer = setTimeout(() => void this.io.terminate(), IO_EXIT_MS);
    await this.ioExited;
    clearTimeout(timer);
    await this.chain;
    if (this.session !== undefined) await this.endSession(this.session, 'server closed');
    libc.close(this.listenFd);
    libc.close(this.wakeFd);
    rmSync(this.path, { force: true });
    await this.device.close();
  }

  /** A ring's data for its thread: the current session's memory and the ring's fds. */
  private readonly prepare = (data: QueueWorkerData): VhostQueueWorkerData => {
    const session = this.session;
    const memory = session?.frontEndMemory;
    if (session === undefined || memory === undefined) throw new VirtioLabError('VHOST_USER_NO_MEMORY', `ring ${data.queue} started without a front-end memory table`);
    const vring = session.vring(data.queue);
    return {
      ...data,
      // The regions' buffers are views of mapped memory, which posting would copy: the thread views them by address.
      memory: [],
      interrupt: null,
      configInterrupt: null,
      mapped: memory.specs,
      callFd: vring.callFd,
      kickFd: vring.kickFd,
      notifyPage: vring.notifyPage?.address ?? null,
      pageKicks: session.pageKicks,
      callDrops: session.callDrops,
    };
  };

  private command(c: IoCommand): void {
    this.io.postMessage(c);
    libc.signalEventfd(this.wakeFd);
  }

  private log(line: string): void {
    this.emit('log', line);
  }

  private async event(e: IoEvent): Promise<void> {
    try {
      if (e.type === 'connected') {
        this.session = new VhostUserSession(
          {
            device: this.device,
            rings: this.rings,
            features: this.offered,
            protocolFeatures: this.protocolFeatures,
            queueNum: this.queueNum,
            noMemory: this.noMemory,
            ringsEnabled: (enabled) => this.onRingEnable?.(this.device, enabled),
            log: (line) => this.log(line),
            later: (task, delayMs) => this.later(task, delayMs),
            allowUnsealedMemory: this.allowUnsealedMemory,
          },
          e.fd,
        );
        this.emit('connected');
      } else if (e.type === 'message') {
        await this.message(e);
      } else {
        const s = this.session;
        if (s !== undefined && s.fd === e.fd) await this.endSession(s, e.reason);
        else if (s === undefined) {
          // A connection whose session was never made ('connected' failed): nothing else closes it.
          libc.close(e.fd);
          this.command({ type: 'listen' });
        }
      }
    } catch (err) {
      // A bug here must not take the process down: log it and drop the front end.
      const why = `internal error on ${e.type}: ${(err as Error).stack ?? err}`;
      if (this.session !== undefined) this.drop(this.session, why);
      else this.log(why);
      // No session for this connection: hang up, and its 'closed' closes the fd.
      if (e.type === 'connected' && this.session === undefined) libc.shutdown(e.fd);
    }
  }

  /** Run `task` for the current session on the chain in `delayMs` (replacing one not run yet); its errors drop the front end. */
  private later(task: () => Promise<void>, delayMs: number): void {
    const s = this.session;
    clearTimeout(this.deferred);
    this.deferred = setTimeout(() => {
      this.deferred = undefined;
      this.chain = this.chain.then(async () => {
        if (this.session !== s || s === undefined || s.dropReason !== undefined) return;
        try {
          await task();
        } catch (err) {
          this.drop(s, err instanceof VirtioLabError ? err.message : `internal error: ${(err as Error).stack ?? err}`);
        }
      });
    }, delayMs);
  }

  private async message(m: Extract<IoEvent, { type: 'message' }>): Promise<void> {
    const s = this.session;
    // Messages already queued behind the one that dropped the front end are not served.
    if (s === undefined || s.dropReason !== undefined) {
      for (const fd of m.fds) libc.close(fd);
      return;
    }
    try {
      await s.handle(m);
    } catch (err) {
      if (!(err instanceof VirtioLabError)) throw err;
      this.drop(s, err.message);
    }
  }

  /**
   * Drop a front end that broke the protocol: the I/O thread sees the hang-up
   * and reports 'closed', which tears the session down.
   */
  private drop(s: VhostUserSession, reason: string): void {
    s.dropReason = reason;
    this.log(`dropping the front end: ${reason}`);
    libc.shutdown(s.fd);
  }

  private async endSession(s: VhostUserSession, hangUp: string): Promise<void> {
    const reason = s.dropReason ?? hangUp;
    this.session = undefined;
    clearTimeout(this.deferred);
    this.deferred = undefined;
    this.last = s.summary();
    try {
      await s.close();
    } finally {
      // Whatever went wrong above, the connection's fd is closed and the next front end is accepted.
      libc.close(s.fd);
      this.command({ type: 'listen' });
    }
    this.log(`front end disconnected: ${reason}`);
    this.emit('disconnected', { reason, summary: this.last } satisfies VhostUserDisconnect);
  }
}

/**
 * The ring threads of a device with `numQueues` queues of which the front
 * end drives `rings`: the mapping is of the rings alone ('auto' counts
 * them). The other queues (a net controlq, vsock's event queue) stay with
 * the front end and never start here; they are listed on thread 0 only so
 * that every queue has a thread.
 */
function ringThreads(mapping: ThreadMapping, rings: number, numQueues: number, polling: QueueThreadPolling): QueueThreads {
  const threads = mapQueueThreads(mapping, rings, { ...polling, vhostUser: true });
  while (threads.threadOf.length < numQueues) threads.threadOf.push(threads.threadOf[0]);
  return threads;
}

const ECONNREFUSED = 111;
const ENOENT = 2;

/**
 * What is at `path` may be replaced: nothing, or a socket nobody accepts on
 * (the rule VsockUnixMuxer follows: a live server's socket is never taken).
 * Synchronous, so the server's constructor can use it: a blocking connect to
 * a Unix socket answers at once.
 */
function replaceStaleSocket(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new InvalidArgumentError(`${path} exists and is not a socket: it is not replaced`);
  let probe: number;
  try {
    probe = libc.connectUnix(path);
  } catch (e) {
    const errno = e instanceof libc.SystemCallError ? e.errno : -1;
    if (errno !== ECONNREFUSED && errno !== ENOENT) throw e;
    rmSync(path, { force: true });
    return;
  }
  libc.close(probe);
  throw new VirtioLabError('EADDRINUSE', `${path} is in use (something accepts connections on it): not replaced`);
}
