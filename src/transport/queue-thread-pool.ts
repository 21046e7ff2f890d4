import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError } from '../errors.js';
import { POLL_SLEEPER, type WordRef } from '../notify/notify-area.js';
import * as libc from '../os/libc.js';
import type { QueueThreadWords, QueueWorkerData } from '../worker/queue-worker-data.js';
import { type QueueThreadPolling, closeKeptQueueThreads, keepQueueThread, takeQueueThread } from './kept-queue-threads.js';
import type { QueueRunner } from './queue-runner.js';
import { QueueThreadHandle, type QueueWorkerEvents } from './queue-thread-handle.js';
import { workerFile } from './worker-file.js';

/** Int32 words per cache line: each thread's wake and control words get a line each. */
const LINE = 16;

/** The most threads one pool may have. */
export const MAX_POOL_THREADS = 256;

/** The longest idlePollMs: a sleeping thread wakes this often anyway (its event loop's turn). */
const MAX_IDLE_POLL_MS = 1000;

/**
 * `ms` when it is a valid idlePollMs (0, or up to MAX_IDLE_POLL_MS).
 * @throws InvalidArgumentError naming `owner` ("lab", "queue thread pool") otherwise.
 */
export function checkIdlePollMs(ms: number, owner: string): number {
  if (!(ms >= 0 && ms <= MAX_IDLE_POLL_MS)) throw new InvalidArgumentError(`${owner} idlePollMs ${ms} must be 0 (off) or a number of milliseconds up to ${MAX_IDLE_POLL_MS}`);
  return ms;
}

/** Options of a QueueThreadPool. */
export interface QueueThreadPoolOptions {
  /** How many queue threads (default 1). */
  threads?: number;
  /** Microseconds a thread polls before it sleeps, at most (default 30; the budget adapts below it). */
  spinUs?: number;
  /**
   * For one second after it last had work, a sleeping thread wakes every
   * `idlePollMs` milliseconds for one look at its queues (and its task);
   * then it sleeps until a kick, as it always does with 0 (the default).
   * A number in [0, 1000]. After a few milliseconds asleep a frame's code
   * and data are out of the caches (a VM's host runs other work on the
   * core); the looks keep them in, so the first frame after a pause is
   * faster. On the 2-vCPU development VM, 1 ms took an idle -> first frame
   * from about 175 us to about 140 us, for 1000 wake-ups a second of each
   * thread in that second (see docs/benchmarks.md, "Idle polling"). A busy
   * thread never sleeps and never looks this way.
   */
  idlePollMs?: number;
  /**
   * Threads for vhost-user rings (default false): each sleeps in poll() on
   * the kick eventfds of the rings it serves and on a wake eventfd of its
   * own (made by the pool at the thread's first start, closed at close()), which ring() on its wake word
   * signals while it sleeps. Such a pool serves vhost-user back ends only.
   */
  vhostUser?: boolean;
  /**
   * Leave idle threads to the process at close() (default false), for the
   * next pool made with `keepThreads` and the same `spinUs` and `idlePollMs`: see
   * QueueThreadPool. A vsock device's own pool keeps them.
   */
  keepThreads?: boolean;
  /**
   * The worker entry point (a file of the library's `workers/`) its threads
   * run, default 'queue-worker'. The packet pump's 'guest' mapping uses
   * 'pump-queue-worker', whose threads also run a pump guest (runTask()).
   */
  entry?: string;
  /**
   * A module (a file URL, or a path) whose default export builds tasks from
   * runTask()'s data: a TaskFactory (`virtio-lab/ring`), such as the guest
   * side of a NIC whose queues the thread serves, which then runs to
   * completion beside them (a frame goes from a kick to the receiving
   * guest's callback without another thread waking). Each thread imports it
   * before it serves anything; a module that fails to load, or has no
   * default export that is a function, ends the thread (its queues die,
   * runTask() rejects with the reason). Not with `entry`, `vhostUser` or
   * `keepThreads`.
   */
  taskModule?: string | URL;
}

/**
 * A fixed set of queue threads that serve the virtqueues mapped onto them,
 * possibly of several devices (the vhost worker model). Thread `i` sleeps
 * on wake word `i`; whatever must wake a queue served by thread `i` (a kick,
 * a peer channel, the control plane) rings that word, which
 * `VirtioDevice.doorbell(q)` hands out.
 *
 * Threads start when their first queue starts and live until `close()`,
 * across device resets and queue restarts; one that dies (crash, fault
 * injection) is replaced by a new thread on the same words the next time a
 * queue starts on it. Idle threads do not keep the process alive.
 *
 * With `keepThreads`, threads outlive their pool too: `close()` hands the
 * threads that serve no queue to the process (at most KEPT_QUEUE_THREADS),
 * and a later pool with `keepThreads` that polls the same way takes one, with
 * its words, for a thread index the first time it needs it (a device's
 * doorbell, a queue start) instead of booting a new thread, whose code
 * would start cold.
 */
export class QueueThreadPool {
  /** How many threads the pool has. */
  readonly size: number;
  readonly spinUs: number;
  /** QueueThreadPoolOptions.idlePollMs (0: off). */
  readonly idlePollMs: number;
  /** Whether the threads are vhost-user ring threads (see QueueThreadPoolOptions.vhostUser). */
  readonly vhostUser: boolean;
  /** Whether idle threads are kept across pools (see QueueThreadPoolOptions.keepThreads). */
  readonly keepThreads: boolean;
  /** The worker entry point of its threads (QueueThreadPoolOptions.entry). */
  private readonly entry: string;
  /** QueueThreadPoolOptions.taskModule as an href, or undefined. */
  private readonly taskModule: string | undefined;
  /** Each thread's wake eventfd (vhost-user pools; -1 until its first start), kept across the thread's replacements. */
  private readonly wakeFds: number[];
  /** Each thread's wake and control words (fixed once given: doorbells handed out keep working across replacements). */
  private readonly words: Array<QueueThreadWords | undefined>;
  /** The words of threads this pool boots: a cache line each. */
  private readonly buffer: SharedArrayBuffer;
  private readonly threads: Array<QueueThreadHandle | undefined>;
  private next = 0;
  private closed = false;
  private started = 0;

  constructor(options: QueueThreadPoolOptions = {}) {
    const size = options.threads ?? 1;
    if (!Number.isInteger(size) || size < 1 || size > MAX_POOL_THREADS) throw new InvalidArgumentError(`a queue thread pool needs 1 to ${MAX_POOL_THREADS} threads (got ${size})`);
    const spinUs = options.spinUs ?? 30;
    if (!(Number.isFinite(spinUs) && spinUs >= 0)) throw new InvalidArgumentError(`queue thread pool spinUs ${spinUs} must be a number >= 0`);
    const idlePollMs = checkIdlePollMs(options.idlePollMs ?? 0, 'queue thread pool');
    this.size = size;
    this.spinUs = spinUs;
    this.idlePollMs = idlePollMs;
    this.words = new Array(size).fill(undefined);
    this.buffer = new SharedArrayBuffer(4 * LINE * 2 * size);
    this.threads = new Array(size).fill(undefined);
    this.vhostUser = options.vhostUser ?? false;
    this.keepThreads = options.keepThreads ?? false;
    this.taskModule = options.taskModule === undefined ? undefined : taskModuleHref(options);
    this.entry = this.taskModule === undefined ? (options.entry ?? 'queue-worker') : 'task-queue-worker';
    if (this.entry !== 'queue-worker' && (this.vhostUser || this.keepThreads)) {
      throw new InvalidArgumentError(`a queue thread pool with entry ${this.entry} cannot serve vhost-user rings or keep threads (vhostUser, keepThreads)`);
    }
    if (this.vhostUser && this.keepThreads) throw new InvalidArgumentError('a queue thread pool cannot keep vhost-user threads (keepThreads with vhostUser): they sleep on eventfds of their own');
    this.wakeFds = new Array(size).fill(-1);
  }

  /** The word that wakes thread `i`. */
  wakeWord(i: number): WordRef {
    const w = this.wordsOf(i);
    return { buffer: w.buffer, index: w.wake };
  }

  /**
   * Run a task on thread `i` beside its queues (the pool's threads must run
   * tasks: see QueueThreadPoolOptions.taskModule); resolves with the task's
   * report. Starts the thread if it has not started yet.
   * @throws QueueWorkerError when the thread refuses the task, the task throws (the thread and its queues go on), or the thread exits before the task finishes.
   */
  runTask(i: number, data: unknown): Promise<unknown> {
    return this.thread(i).runTask(data);
  }

  /** End the idle threads closed pools left to the process (a pool made later then starts its threads afresh). */
  static closeKept(): Promise<void> {
    return closeKeptQueueThreads();
  }

  /** The next thread in round-robin order (for mapping queues onto the pool). */
  nextThread(): number {
    const i = this.next;
    this.next = (i + 1) % this.size;
    return i;
  }

  /** Start serving a queue on thread `i` (spawning the thread if it is not running). */
  start(i: number, data: QueueWorkerData, events: QueueWorkerEvents): QueueRunner {
    return this.thread(i).start(data, events);
  }

  /** Threads running now and the queues each serves (undefined: not started, or dead). */
  get load(): Array<number | undefined> {
    return this.threads.map((t) => (t?.alive ? t.queueCount : undefined));
  }

  /** Threads started over the pool's life: a thread replaced after a death counts again; resets and restarts do not, nor does a kept thread taken over from a closed pool. */
  get spawned(): number {
    return this.started;
  }

  /**
   * End every thread (with `keepThreads`, one that serves no queue is left
   * to the process instead while fewer than KEPT_QUEUE_THREADS are kept).
   * Stop or remove their queues first (a device's close() does).
   */
  async close(): Promise<void> {
    this.closed = true;
    const ending: QueueThreadHandle[] = [];
    for (const [i, t] of this.threads.entries()) {
      const words = this.words[i];
      if (t === undefined || words === undefined) continue;
      if (!this.keepThreads || !keepQueueThread({ handle: t, words, polling: this.polling })) ending.push(t);
    }
    this.threads.fill(undefined);
    await Promise.all(ending.map((t) => t.close()));
    // Every thread has exited: nothing polls or signals the wake eventfds now.
    for (const fd of this.wakeFds) if (fd >= 0) libc.close(fd);
    this.wakeFds.fill(-1);
  }

  /** How this pool's threads poll and sleep. */
  private get polling(): QueueThreadPolling {
    return { spinUs: this.spinUs, idlePollMs: this.idlePollMs };
  }

  private thread(i: number): QueueThreadHandle {
    if (this.closed) throw new InvalidArgumentError('queue thread pool is closed');
    const layout = this.wordsOf(i);
    let t = this.threads[i];
    if (t === undefined || !t.alive) {
      // A thread that died asleep in poll() left POLL_SLEEPER set: its successor starts clean.
      Atomics.and(new Int32Array(layout.buffer), layout.wake, ~POLL_SLEEPER);
      if (this.vhostUser && this.wakeFds[i] < 0) this.wakeFds[i] = libc.eventfd(true);
      t = this.vhostUser
        ? new QueueThreadHandle(workerFile('vhost-queue-worker'), layout, { ...this.polling, wakeFd: this.wakeFds[i] })
        : new QueueThreadHandle(workerFile(this.entry), layout, { ...this.polling, taskModule: this.taskModule });
      this.threads[i] = t;
      this.started++;
    }
    return t;
  }

  /** Thread `i`'s words, fixed the first time: a kept thread's (the thread comes with them), else the pool's line pair `i`. */
  private wordsOf(i: number): QueueThreadWords {
    this.check(i);
    let w = this.words[i];
    if (w === undefined) {
      const kept = this.keepThreads && !this.closed ? takeQueueThread(this.polling) : undefined;
      if (kept !== undefined) this.threads[i] = kept.handle;
      w = kept?.words ?? { buffer: this.buffer, wake: LINE * 2 * i, control: LINE * 2 * i + LINE };
      this.words[i] = w;
    }
    return w;
  }

  private check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new InvalidArgumentError(`queue thread ${i} out of range (pool has ${this.size})`);
  }
}

/** The task module of `options` as an href (a path is taken from the working directory); refused with another entry point. */
function taskModuleHref(options: QueueThreadPoolOptions): string {
  const m = options.taskModule!;
  if (options.entry !== undefined) throw new InvalidArgumentError(`a queue thread pool takes a taskModule or an entry, not both (entry ${options.entry})`);
  if (m instanceof URL) return m.href;
  if (typeof m !== 'string' || m === '') throw new InvalidArgumentError(`queue thread pool taskModule must be a file URL or a path (got ${String(m)})`);
  return m.startsWith('file:') ? m : pathToFileURL(resolve(m)).href;
}
