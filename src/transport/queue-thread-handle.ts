import { MessageChannel, Worker } from 'node:worker_threads';
import { type Remote, releaseProxy, wrap } from 'comlink';
import { QueueWorkerError } from '../errors.js';
import { ring } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { PortEndpoint } from '../worker/port-endpoint.js';
import type { QueueErrorMessage, QueueThreadApi, QueueThreadData, QueueThreadWords, QueueWorkerData, TaskDoneMessage } from '../worker/queue-worker-data.js';
import type { QueueRunner } from './queue-runner.js';

/** How long a thread may take to answer a control call before it counts as dead. */
const CONTROL_TIMEOUT_MS = 5000;

/** What a queue thread starts from besides its words and control port (see QueueThreadData). */
export type QueueThreadSettings = Omit<QueueThreadData, 'words' | 'control'>;

/** What the control plane hears about one queue it started on a thread. */
export interface QueueWorkerEvents {
  /** The thread serving the queue exited without being asked to (crash, terminate from outside). */
  onDeath(error: QueueWorkerError): void;
  /** The queue found bad guest data: its thread stopped serving it and set DEVICE_NEEDS_RESET. */
  onQueueError(message: QueueErrorMessage): void;
}

/**
 * The main-thread handle of one queue thread: spawns it, starts and stops
 * queues on it through comlink, and notices when it dies (every queue it
 * served is then reported dead). Control calls first set the thread's
 * control word and ring its wake word, so a busy or sleeping thread answers
 * within one round.
 *
 * While it serves no queue the thread and its port are unref'd, so an idle
 * pool never keeps the process alive.
 */
export class QueueThreadHandle {
  private readonly worker: Worker;
  private readonly api: Remote<QueueThreadApi>;
  private readonly endpoint: PortEndpoint;
  private readonly words: Int32Array;
  /** The queues this thread serves, by slot. */
  private readonly served = new Map<number, QueueWorkerEvents>();
  private nextSlot = 1;
  private closing = false;
  private dead = false;
  /** The running task's settle functions (runTask()), until its report comes or the thread exits. */
  private task: { resolve(report: unknown): void; reject(e: Error): void } | undefined;
  /** Resolves when the thread has exited. */
  readonly exited: Promise<number>;

  constructor(
    file: URL,
    private readonly layout: QueueThreadWords,
    /** How the thread polls and sleeps, and what it loads (a wakeFd stays the caller's to close). */
    settings: QueueThreadSettings,
  ) {
    const { port1, port2 } = new MessageChannel();
    const data: QueueThreadData = { ...settings, words: layout, control: port2 };
    this.worker = new Worker(file, { workerData: data, transferList: [port2] });
    this.endpoint = new PortEndpoint(port1);
    this.api = wrap<QueueThreadApi>(this.endpoint);
    this.words = new Int32Array(layout.buffer);
    this.worker.on('message', (m: QueueErrorMessage | TaskDoneMessage) => {
      if (m?.type === 'queue-error') this.served.get(m.slot)?.onQueueError(m);
      else if (m?.type === 'task-done') this.settleTask(m.error === undefined ? undefined : new QueueWorkerError(`the task on this queue thread threw (the thread goes on): ${m.error}`), m.report);
    });
    let failure: Error | undefined;
    this.worker.on('error', (e) => (failure = e));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.dead = true;
        this.endpoint.close();
        this.settleTask(new QueueWorkerError(`queue thread exited before its task finished${failure ? `: ${failure.message}` : ` (code ${code})`}`));
        if (!this.closing) {
          const why = failure ? `: ${failure.message}` : ` with code ${code}`;
          const served = [...this.served.values()];
          this.served.clear();
          for (const events of served) events.onDeath(new QueueWorkerError(`queue thread exited unexpectedly${why}`));
        }
        resolve(code);
      });
    });
    this.refresh();
  }

  /** False once the thread has exited (a pool then starts a new one in its place). */
  get alive(): boolean {
    return !this.dead;
  }

  /** How many queues the thread serves now. */
  get queueCount(): number {
    return this.served.size;
  }

  /**
   * Serve one more queue on this thread. The returned runner stops it
   * (state kept), removes it (terminate) or kills the whole thread (kill,
   * fault injection: every queue on the thread dies).
   */
  start(data: QueueWorkerData, events: QueueWorkerEvents): QueueRunner {
    const slot = this.nextSlot++;
    this.served.set(slot, events);
    this.refresh();
    // A thread that dies before it answers is reported through the exit.
    const started = this.call(() => this.api.start(slot, data)).catch(() => undefined);
    return {
      started,
      stop: () => this.stopQueue(slot),
      terminate: () => this.removeQueue(slot),
      kill: () => this.kill(),
    };
  }

  /**
   * Run a task on the thread beside its queues (QueueThread.startTask: the
   * thread's entry point must give it a task factory); resolves with the
   * task's report when it finishes.
   * @throws QueueWorkerError when the thread refuses the task, the task throws (the thread goes on) or the thread exits first.
   */
  runTask(data: unknown): Promise<unknown> {
    if (this.task !== undefined) return Promise.reject(new QueueWorkerError('this queue thread already runs a task'));
    const done = new Promise<unknown>((resolve, reject) => {
      this.task = { resolve, reject };
    });
    this.refresh();
    this.call(() => this.api.startTask(data)).catch((e: unknown) => this.settleTask(e instanceof Error ? e : new QueueWorkerError(String(e))));
    return done;
  }

  private settleTask(error: Error | undefined, report?: unknown): void {
    const t = this.task;
    if (t === undefined) return;
    this.task = undefined;
    this.refresh();
    if (error !== undefined) t.reject(error);
    else t.resolve(report);
  }

  /** End the thread (the queues it served are not reported: stop or remove them first). */
  async close(): Promise<void> {
    this.closing = true;
    this.api[releaseProxy]();
    await this.worker.terminate();
    await this.exited;
  }

  /**
   * Fault injection: end the thread the way a crash would (nothing stopped,
   * no state saved). Every queue it served is reported through onDeath.
   */
  async kill(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }

  private async stopQueue(slot: number): Promise<QueueState> {
    if (!this.served.has(slot)) throw new QueueWorkerError(`queue slot ${slot} is not served by this thread (it died or was removed)`);
    const state = await this.call(() => this.api.stop(slot));
    this.forget(slot);
    if (state === undefined) throw new QueueWorkerError(`queue slot ${slot} was not running on its thread`);
    return state;
  }

  private async removeQueue(slot: number): Promise<void> {
    if (!this.served.has(slot)) return;
    if (!this.dead) await this.call(() => this.api.remove(slot));
    this.forget(slot);
  }

  private forget(slot: number): void {
    this.served.delete(slot);
    this.refresh();
  }

  /** Keep the process alive only while the thread serves queues or runs a task. */
  private refresh(): void {
    if (this.dead) return;
    if (this.served.size > 0 || this.task !== undefined) {
      this.worker.ref();
      this.endpoint.ref();
    } else {
      this.worker.unref();
      this.endpoint.unref();
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.dead) throw new QueueWorkerError('queue thread has exited');
    // Post the request first (comlink posts synchronously), then raise the
    // control word: a thread that sees the word must find the message queued.
    const reply = fn();
    Atomics.store(this.words, this.layout.control, 1);
    ring(this.words, this.layout.wake);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new QueueWorkerError(`queue thread did not answer within ${CONTROL_TIMEOUT_MS} ms`)), CONTROL_TIMEOUT_MS);
    });
    try {
      return await Promise.race([reply, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
