import { MessageChannel, Worker } from 'node:worker_threads';
import { type Remote, releaseProxy, wrap } from 'comlink';
import { QueueWorkerError } from '../errors.js';
import { type NotifyArea, ring } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { PortEndpoint } from '../worker/port-endpoint.js';
import type { QueueErrorMessage, QueueWorkerApi, QueueWorkerData } from '../worker/queue-worker-data.js';

/** How long a worker may take to answer a control call before it counts as dead. */
const CONTROL_TIMEOUT_MS = 5000;

/** What the control plane hears from a queue worker. */
export interface QueueWorkerEvents {
  /** The worker exited without being asked to (crash, terminate from outside). */
  onDeath(error: QueueWorkerError): void;
  /** The worker found bad guest data, stopped its queue and set DEVICE_NEEDS_RESET. */
  onQueueError(message: QueueErrorMessage): void;
}

/**
 * The main-thread handle of one queue worker: spawns it, talks to it through
 * comlink, and notices when it dies. Control calls first set the queue's
 * control word and ring its doorbell, so a busy or sleeping worker answers
 * within one batch.
 */
export class QueueWorkerHandle {
  private readonly worker: Worker;
  private readonly api: Remote<QueueWorkerApi>;
  private readonly endpoint: PortEndpoint;
  private readonly queue: number;
  private exiting = false;
  /** Resolves when the worker thread has exited. */
  readonly exited: Promise<number>;

  constructor(
    file: URL,
    data: Omit<QueueWorkerData, 'control'>,
    private readonly notify: NotifyArea,
    events: QueueWorkerEvents,
  ) {
    const { port1, port2 } = new MessageChannel();
    this.worker = new Worker(file, { workerData: { ...data, control: port2 }, transferList: [port2] });
    this.endpoint = new PortEndpoint(port1);
    this.api = wrap<QueueWorkerApi>(this.endpoint);
    const queue = (this.queue = data.queue);
    this.worker.on('message', (m: QueueErrorMessage) => {
      if (m?.type === 'queue-error') events.onQueueError(m);
    });
    let failure: Error | undefined;
    this.worker.on('error', (e) => (failure = e));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.endpoint.close();
        if (!this.exiting) {
          const why = failure ? `: ${failure.message}` : ` with code ${code}`;
          events.onDeath(new QueueWorkerError(`queue ${queue} worker exited unexpectedly${why}`));
        }
        resolve(code);
      });
    });
  }

  /** Stop the queue after its current batch; resolves with its state (the vring base). */
  stop(): Promise<QueueState> {
    return this.call(() => this.api.stop());
  }

  /** End the worker thread (state not saved: stop() first to keep it). */
  async terminate(): Promise<void> {
    this.exiting = true;
    this.api[releaseProxy]();
    await this.worker.terminate();
    await this.exited;
  }

  /**
   * Fault injection: end the thread the way a crash would (no stop, no state
   * saved). The exit is reported through onDeath like any unexpected death.
   */
  async kill(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    const q = this.queue;
    // Post the request first (comlink posts synchronously), then raise the
    // control word: a worker that sees the word must find the message queued.
    const reply = fn();
    Atomics.store(this.notify.i32, this.notify.controlWord(q), 1);
    ring(this.notify.i32, this.notify.doorbellWord(q));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new QueueWorkerError(`queue ${q} worker did not answer within ${CONTROL_TIMEOUT_MS} ms`)), CONTROL_TIMEOUT_MS);
    });
    try {
      return await Promise.race([reply, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
