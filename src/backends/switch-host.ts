import { MessageChannel, Worker } from 'node:worker_threads';
import { type Remote, releaseProxy, wrap } from 'comlink';
import { VirtioLabError } from '../errors.js';
import { ring } from '../notify/notify-area.js';
import { workerFile } from '../transport/worker-file.js';
import { PortEndpoint } from '../worker/port-endpoint.js';
import { CTL_CONTROL, CTL_WAKE, type SwitchStats, readSwitchStats } from './switch-stats.js';
import type { BackendWorkerApi, BackendWorkerData } from './switch-worker-data.js';

/** A switch or relay worker died, or did not answer a control call. */
export class BackendWorkerError extends VirtioLabError {
  constructor(message: string) {
    super('BACKEND_WORKER_FAILED', message);
  }
}

/** How long the worker may take to answer a control call. */
const CONTROL_TIMEOUT_MS = 5000;

/**
 * The main-thread handle of one backend worker (a switch or a relay): spawns
 * it, reads its counters from shared memory, talks to it through comlink,
 * and ends it. Control calls post the request, then raise the control word
 * and ring the wake word, so a busy or sleeping worker answers within a batch.
 */
export class BackendWorkerHost {
  private readonly worker: Worker;
  private readonly api: Remote<BackendWorkerApi>;
  private readonly endpoint: PortEndpoint;
  private readonly i32: Int32Array;
  private exiting = false;
  private closing: Promise<void> | undefined;
  /** Why the worker died, when it died without being asked to. */
  failure: Error | undefined;
  /** Resolves when the worker thread has exited. */
  readonly exited: Promise<number>;

  constructor(
    data: Omit<BackendWorkerData, 'control'>,
    private readonly ports: number,
  ) {
    this.i32 = new Int32Array(data.ctl);
    const { port1, port2 } = new MessageChannel();
    this.worker = new Worker(workerFile('backend-worker'), { workerData: { ...data, control: port2 }, transferList: [port2] });
    this.endpoint = new PortEndpoint(port1);
    this.api = wrap<BackendWorkerApi>(this.endpoint);
    this.worker.on('error', (e) => (this.failure ??= e));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.endpoint.close();
        if (!this.exiting) this.failure ??= new BackendWorkerError(`${data.mode} worker exited unexpectedly with code ${code}`);
        resolve(code);
      });
    });
  }

  stats(): SwitchStats {
    return readSwitchStats(this.i32.buffer as SharedArrayBuffer, this.ports);
  }

  /** Send a control call and wake the worker to serve it. */
  call<T>(fn: (api: Remote<BackendWorkerApi>) => Promise<T>): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing !== undefined) return Promise.reject(new BackendWorkerError('the worker is closed'));
    return this.send(fn);
  }

  /**
   * Stop the worker (flushing its captures) and end its thread; later calls
   * return the same promise. Rejects with the worker's failure when it died
   * on its own, or when its captures could not be flushed.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      let failure = this.failure;
      if (failure === undefined) {
        try {
          await this.send((api) => api.stop());
        } catch (e) {
          failure = e instanceof Error ? e : new Error(String(e));
        }
      }
      this.exiting = true;
      this.api[releaseProxy]();
      await this.worker.terminate();
      await this.exited;
      if (failure !== undefined) throw failure;
    })();
    return this.closing;
  }

  private async send<T>(fn: (api: Remote<BackendWorkerApi>) => Promise<T>): Promise<T> {
    // Post the request first (comlink posts synchronously), then raise the
    // control word: a worker that sees the word must find the message queued.
    const reply = fn(this.api);
    Atomics.store(this.i32, CTL_CONTROL, 1);
    ring(this.i32, CTL_WAKE);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BackendWorkerError(`backend worker did not answer within ${CONTROL_TIMEOUT_MS} ms`)), CONTROL_TIMEOUT_MS);
    });
    const died = this.exited.then(() => {
      throw this.failure ?? new BackendWorkerError('backend worker exited');
    });
    try {
      return await Promise.race([reply, timeout, died]);
    } finally {
      clearTimeout(timer);
    }
  }
}
