import { parentPort } from 'node:worker_threads';
import { expose } from 'comlink';
import { InvalidArgumentError, VirtqueueError } from '../errors.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { AdaptiveWait } from '../notify/adaptive-wait.js';
import { NotifyArea, ring } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { createQueueDevice } from '../ring/create-queue.js';
import type { VirtqDevice } from '../ring/virtqueue.js';
import { C_IDLE_LOOKS, C_INTERRUPTS, C_SLEEPS, StatsBlock } from '../stats/queue-stats.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../spec/status.js';
import { PortEndpoint } from './port-endpoint.js';
import type { HandlerFactory, QueueHandler } from './queue-handler.js';
import type { QueueErrorMessage, QueueThreadApi, QueueThreadData, QueueWorkerData, TaskDoneMessage } from './queue-worker-data.js';

/**
 * Where a queue's memory and interrupts are when they are not the defaults
 * (the SharedArrayBuffer regions of `data.memory`, and `data.interrupt`'s
 * word): a vhost-user queue views memory mapped from the front end and
 * signals its call eventfd.
 */
export interface QueueEnvironment {
  memory: GuestMemory;
  /** Send the driver this queue's interrupt. */
  raise(): void;
  /** Where the driver kicks this queue besides the wake word (vhost-user), for the thread's sleeper to wait on. */
  kick?: QueueKick;
}

/** A vhost-user ring's kick: its eventfd, and its notify page when the front end was offered one (host notifier). */
export interface QueueKick {
  fd: number;
  page?: {
    /** The page's first u16: 0xffff while no notify write came. */
    words: Uint16Array;
    /** Where notify writes found on the page are counted (Int32 at `at`). */
    kicks: Int32Array;
    at: number;
  };
}

/**
 * How a queue thread sleeps once every queue is idle. The default
 * (AdaptiveWait) is Atomics.wait on the wake word; a vhost-user ring's
 * thread polls its kick eventfds too (KickPollWait).
 */
export interface ThreadSleeper {
  /** Read the wake word before the last look at the queues (and drain anything the sleep would wait on). */
  snapshot(): number;
  /** Sleep until the word moves from `seen` (or another source fires); true when the timeout passed instead. */
  sleep(seen: number, timeoutMs: number): boolean;
  /** The kicks of the queues served now. */
  watch?(kicks: readonly QueueKick[]): void;
  /**
   * Nap up to `timeoutMs` with notifications still suppressed (queues not
   * armed), woken early by a ring of the wake word only: offered by sleepers
   * whose drivers pay for a kick (see NAP_MS).
   */
  nap?(seen: number, timeoutMs: number): void;
}

/**
 * Work a queue thread runs beside its queues, polled in the same rounds: the
 * guest side of a stream whose device queues this thread serves, so a frame
 * goes from the guest's tx ring through the device to the receiving guest
 * without leaving the thread (run to completion, as one DPDK lcore drives
 * both a virtio-user port and a vhost port). A task whose poll(),
 * sleepMs() or report() throws is ended with that error (its runTask()
 * rejects); the thread and its queues go on.
 */
export interface ThreadTask {
  /** One pass: what moved (0: nothing to do now). */
  poll(): number;
  /** True once the task is done (the thread then posts its report). */
  readonly finished: boolean;
  /** At most how long the thread may sleep while the task waits (a paced sender's next frame), in milliseconds. */
  sleepMs(): number;
  /** What the task posts when it finishes (structured-cloneable). */
  report(): unknown;
}

/** Builds a task from the data of a startTask() call: the thread's entry point gives it (the pump's, or the default export of QueueThreadPoolOptions.taskModule). */
export type TaskFactory = (data: unknown) => ThreadTask;

/** Builds a started queue's environment from its data (default: shared memory, interrupt word). */
export type EnvironmentFactory = (data: QueueWorkerData) => QueueEnvironment;

/** A sleeping thread wakes at least this often to serve its event loop. */
const IDLE_TIMEOUT_MS = 1000;
/** With idlePollMs, how long after its last work a thread keeps looking at its queues while it sleeps; then it sleeps until woken. */
const IDLE_POLL_WINDOW_MS = 1000;
/**
 * A nap between the spin and the sleep, for sleepers that offer one
 * (vhost-user ring threads): the thread gives its core up for this long
 * (a ring thread sets its timer slack to 1 us: the default 50 would more
 * than triple it) but leaves its queues
 * unarmed, so a front end such as DPDK's virtio-user goes on posting
 * without kicking, and the next look finds a batch. A kick is an eventfd
 * write that wakes a thread on another core: on a 2-vCPU VM it held
 * testpmd's forwarding loop to one 32-frame burst per wake-up (0.75 Mpps
 * through the back end; about 1.0 with naps, same machine, back to back).
 */
const NAP_MS = 0.02;
/** Naps in a row that find nothing before the thread arms its queues and sleeps (an idle ring costs no core). */
const NAP_TRIES = 8;

/** One queue a thread serves. */
interface ServedQueue {
  slot: number;
  data: QueueWorkerData;
  device: VirtqDevice;
  handler: QueueHandler;
  stats: StatsBlock;
  /** The queue's device's notify area (its status word takes DEVICE_NEEDS_RESET). */
  notify: NotifyArea;
  /** This queue's first counter in `stats` (its sleeps and idle looks are counted there). */
  statBase: number;
  kick: QueueKick | undefined;
}

/**
 * The loop of one queue thread: it serves every queue the control plane
 * mapped to it (one queue, a pair, a whole device, or queues of several
 * devices, as Linux vhost's worker and rust-vmm's queues-per-thread do).
 * Each round polls every queue once, a batch each; when none moved it polls
 * for the adaptive spin budget, then arms notifications on every queue,
 * looks once more and sleeps on the thread's one wake word, which all of
 * them ring. The control word is checked once per round (one Atomics.load):
 * when set, the loop drains the comlink port synchronously (as piscina
 * does) and returns to the event loop once so the replies go out.
 *
 * The thread lives as long as its pool: a device reset, a queue stop or a
 * restart changes which queues it serves, never the thread.
 */
export class QueueThread implements QueueThreadApi {
  private readonly words: Int32Array;
  private readonly wakeIndex: number;
  private readonly controlIndex: number;
  private readonly endpoint: PortEndpoint;
  private readonly wait: AdaptiveWait;
  private readonly sleeper: ThreadSleeper;
  private readonly queues: ServedQueue[] = [];
  /** States of queues that failed (kept so stop() can still answer for them). */
  private readonly failed = new Map<number, QueueState>();
  private scheduled = false;
  /** Naps before a real sleep: NAP_TRIES where the sleeper offers naps, else 0 (in-process queues spin and sleep as before). */
  private readonly napTries: number;
  /** Naps left before a real sleep: refilled whenever a look finds work. */
  private napsLeft = 0;
  private readonly pollAll = (): number => this.pollRound();
  /** The task running beside the queues, if any (startTask()). */
  private task: ThreadTask | undefined;
  /** QueueThreadData.idlePollMs. */
  private readonly idlePollMs: number;
  /** Idle looks in one idle spell (IDLE_POLL_WINDOW_MS of them), and how many are left in this one: refilled whenever work is found. */
  private readonly idleLooksMax: number;
  private idleLooksLeft = 0;

  constructor(
    data: QueueThreadData,
    private readonly handlers: (kind: string) => HandlerFactory,
    private readonly environment?: EnvironmentFactory,
    sleeper?: ThreadSleeper,
    private readonly tasks?: TaskFactory,
  ) {
    this.words = new Int32Array(data.words.buffer);
    this.wakeIndex = data.words.wake;
    this.controlIndex = data.words.control;
    this.wait = new AdaptiveWait(this.words, this.wakeIndex, data.spinUs);
    this.sleeper = sleeper ?? this.wait;
    this.napTries = this.sleeper.nap === undefined ? 0 : NAP_TRIES;
    this.idlePollMs = data.idlePollMs;
    this.idleLooksMax = data.idlePollMs > 0 ? Math.ceil(IDLE_POLL_WINDOW_MS / data.idlePollMs) : 0;
    this.endpoint = new PortEndpoint(data.control);
    expose(this, this.endpoint);
  }

  start(slot: number, data: QueueWorkerData): void {
    const env = this.environment?.(data);
    const memory = env?.memory ?? new GuestMemory(data.memory);
    const device = createQueueDevice(memory, data.state);
    const stats = new StatsBlock(data.stats, data.counters);
    const interruptAt = stats.base(data.queue) + C_INTERRUPTS;
    const target = data.interrupt === null ? null : new Int32Array(data.interrupt.buffer);
    const targetIndex = data.interrupt?.index ?? 0;
    const raise = env?.raise;
    const handler = this.handlers(data.kind)({
      queue: data.queue,
      memory,
      device,
      stats,
      params: data.params,
      sharedLoop: true,
      interrupt: () => {
        if (raise !== undefined) {
          stats.f64[interruptAt]++;
          raise();
        } else if (target !== null) {
          stats.f64[interruptAt]++;
          ring(target, targetIndex);
        }
      },
    });
    // A restarted queue rewrites its event word so a stale avail_event from
    // before the stop cannot suppress the next kick (Firecracker #5969); the
    // next round then looks at the ring before any sleep.
    device.enableNotify();
    const notify = new NotifyArea(data.notify);
    this.queues.push({ slot, data, device, handler, stats, notify, statBase: stats.base(data.queue), kick: env?.kick });
    this.watchKicks();
    this.schedule();
  }

  stop(slot: number): QueueState | undefined {
    const q = this.take(slot);
    if (q === undefined) {
      const state = this.failed.get(slot);
      this.failed.delete(slot);
      return state;
    }
    q.handler.quiesce();
    return q.device.state(q.data.state);
  }

  remove(slot: number): void {
    this.take(slot)?.handler.quiesce();
    this.failed.delete(slot);
  }

  private take(slot: number): ServedQueue | undefined {
    const i = this.queues.findIndex((q) => q.slot === slot);
    if (i < 0) return undefined;
    const [q] = this.queues.splice(i, 1);
    q.handler.detach?.();
    this.watchKicks();
    return q;
  }

  startTask(data: unknown): void {
    if (this.tasks === undefined) throw new InvalidArgumentError('this queue thread runs no tasks (its entry point gave no task factory)');
    if (this.task !== undefined) throw new InvalidArgumentError('this queue thread already runs a task');
    this.task = this.tasks(data);
    this.schedule();
  }

  private watchKicks(): void {
    this.sleeper.watch?.(this.queues.flatMap((q) => (q.kick === undefined ? [] : [q.kick])));
  }

  /** One loop chain at most: the loop reschedules itself while it serves queues or runs a task. */
  private schedule(): void {
    if (this.scheduled || (this.queues.length === 0 && this.task === undefined)) return;
    this.scheduled = true;
    setImmediate(this.loop);
  }

  private readonly loop = (): void => {
    this.scheduled = false;
    const words = this.words;
    const cw = this.controlIndex;
    const queues = this.queues;
    while (queues.length !== 0 || this.task !== undefined) {
      if (Atomics.load(words, cw) !== 0) {
        Atomics.store(words, cw, 0);
        this.endpoint.drain();
        break; // return once so comlink's replies are posted
      }
      if (this.pollRound() !== 0) {
        // Work after a nap: the driver turns batches around faster than the
        // thread gave up spinning; the full spin may catch the next one
        // without a nap (then the thread never stops polling).
        if (this.napsLeft < this.napTries) this.wait.refill();
        this.napsLeft = this.napTries;
        this.idleLooksLeft = this.idleLooksMax;
        continue;
      }
      if (this.wait.spin(this.pollAll) !== 0) {
        this.napsLeft = this.napTries;
        this.idleLooksLeft = this.idleLooksMax;
        continue;
      }
      if (queues.length === 0 && this.task === undefined) break; // the last queue failed while polling
      const seen = this.sleeper.snapshot();
      if (Atomics.load(words, cw) !== 0) continue;
      if (this.napsLeft > 0) {
        this.napsLeft--;
        this.sleeper.nap!(seen, NAP_MS);
        continue;
      }
      if (this.armAll()) continue;
      for (let i = 0; i < queues.length; i++) queues[i].stats.f64[queues[i].statBase + C_SLEEPS]++;
      const timedOut = this.idleSleep(seen);
      for (let i = 0; i < queues.length; i++) queues[i].handler.disarm();
      if (timedOut) break; // let the event loop breathe while idle
    }
    this.schedule();
  };

  /**
   * Sleep on the armed queues until woken (false) or the idle timeout
   * (true). With idlePollMs, for the first IDLE_POLL_WINDOW_MS of an idle
   * spell, the sleep is cut into waits of that length, each followed by one
   * look at the queues and the task; work found ends it (false). After a few
   * milliseconds asleep the first frame's code and data are out of the
   * caches and cost 20x a warm pass on a VM; a look every millisecond keeps
   * them in and takes about 30 us off the first frame after a pause, for
   * that many wake-ups a second while the window lasts (see
   * docs/benchmarks.md, "Idle polling").
   */
  private idleSleep(seen: number): boolean {
    const limit = this.taskSleepMs();
    const every = this.idlePollMs;
    const queues = this.queues;
    let slept = 0;
    // Without idlePollMs no look is ever left (idleLooksMax is 0).
    for (; this.idleLooksLeft > 0 && slept + every < limit; slept += every) {
      if (!this.sleeper.sleep(seen, every)) return false;
      this.idleLooksLeft--;
      for (let i = 0; i < queues.length; i++) queues[i].stats.f64[queues[i].statBase + C_IDLE_LOOKS]++;
      if (this.pollRound() !== 0) {
        this.idleLooksLeft = this.idleLooksMax;
        return false;
      }
      if (queues.length === 0 && this.task === undefined) return true; // the look failed the last queue
    }
    return this.sleeper.sleep(seen, limit - slept);
  }

  /** Poll every queue once (and the task); a queue that finds bad guest data is failed, the others go on. */
  private pollRound(): number {
    const queues = this.queues;
    let moved = this.task === undefined ? 0 : this.pollTask(this.task);
    for (let i = 0; i < queues.length; i++) {
      try {
        moved += queues[i].handler.poll();
      } catch (e) {
        this.fail(queues[i], e);
        i--;
      }
    }
    return moved;
  }

  /** One pass of the task; a finished task posts its report and leaves the thread to its queues. */
  private pollTask(task: ThreadTask): number {
    try {
      const moved = task.poll();
      if (task.finished) this.endTask({ type: 'task-done', report: task.report() });
      return moved;
    } catch (e) {
      this.taskFailed(e);
      return 0;
    }
  }

  /** How long the task lets the thread sleep (IDLE_TIMEOUT_MS without one, or once it failed). */
  private taskSleepMs(): number {
    const task = this.task;
    if (task === undefined) return IDLE_TIMEOUT_MS;
    try {
      return Math.min(IDLE_TIMEOUT_MS, task.sleepMs());
    } catch (e) {
      this.taskFailed(e);
      return IDLE_TIMEOUT_MS;
    }
  }

  /**
   * The task threw (its poll, sleepMs or report, or a report that cannot be
   * posted): the task ends with the error and the thread goes on serving its
   * queues. A bug in guest code of the user's own fails that task's
   * runTask(), not every device whose queues share the thread.
   */
  private taskFailed(e: unknown): void {
    this.endTask({ type: 'task-done', report: undefined, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }

  private endTask(msg: TaskDoneMessage): void {
    this.task = undefined;
    parentPort?.postMessage(msg);
  }

  /**
   * Arm every queue; true (all disarmed again) when one already has work,
   * or when arming found bad guest data (arm() looks at the ring: an avail
   * index that jumped throws here as in poll) and that queue was failed.
   */
  private armAll(): boolean {
    const queues = this.queues;
    for (let i = 0; i < queues.length; i++) {
      let ready: boolean;
      try {
        ready = queues[i].handler.arm();
      } catch (e) {
        for (let k = 0; k < i; k++) queues[k].handler.disarm();
        this.fail(queues[i], e);
        return true;
      }
      if (ready) {
        for (let k = 0; k <= i; k++) queues[k].handler.disarm();
        return true;
      }
    }
    return false;
  }

  /**
   * Bad guest data: count it, set DEVICE_NEEDS_RESET on the queue's device,
   * raise its config interrupt (2.1.2: required once DRIVER_OK is set),
   * report, and stop serving that queue. The thread and its other queues go on.
   */
  private fail(q: ServedQueue, e: unknown): void {
    // Anything else is a bug in this library: let the thread die; the control
    // plane sees the exit and marks every device it served DEVICE_NEEDS_RESET.
    if (!(e instanceof VirtqueueError)) throw e;
    const { queue, configInterrupt } = q.data;
    this.take(q.slot);
    this.failed.set(q.slot, q.data.state);
    q.stats.countError(queue, e.code);
    Atomics.or(q.notify.i32, q.notify.statusWord, STATUS_DEVICE_NEEDS_RESET);
    if (configInterrupt !== null) ring(new Int32Array(configInterrupt.buffer), configInterrupt.index);
    const msg: QueueErrorMessage = { type: 'queue-error', slot: q.slot, queue, code: e.code, message: e.message, value: e.value };
    parentPort?.postMessage(msg);
  }
}
