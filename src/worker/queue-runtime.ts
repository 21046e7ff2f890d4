import { parentPort } from 'node:worker_threads';
import { expose } from 'comlink';
import { VirtqueueError } from '../errors.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { AdaptiveWait } from '../notify/adaptive-wait.js';
import { NotifyArea, ring } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { createQueueDevice } from '../ring/create-queue.js';
import type { VirtqDevice } from '../ring/virtqueue.js';
import { C_INTERRUPTS, C_SLEEPS, StatsBlock } from '../stats/queue-stats.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../spec/status.js';
import { PortEndpoint } from './port-endpoint.js';
import type { HandlerFactory, QueueHandler } from './queue-handler.js';
import type { QueueErrorMessage, QueueWorkerApi, QueueWorkerData } from './queue-worker-data.js';

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
}

/** A sleeping worker wakes at least this often to serve its event loop. */
const IDLE_TIMEOUT_MS = 1000;

/**
 * The loop of one queue worker. It runs the handler synchronously, batch
 * after batch, and checks the queue's control word once per batch (one
 * Atomics.load). When idle it polls for `spinUs`, then arms notifications,
 * looks once more, and sleeps on the queue's doorbell. A control request sets
 * the control word and rings the doorbell, so even a sleeping worker answers
 * at once: the loop drains the comlink port synchronously and returns to the
 * event loop once so the replies go out.
 */
export class QueueRuntime implements QueueWorkerApi {
  private readonly memory: GuestMemory;
  private readonly notify: NotifyArea;
  private readonly stats: StatsBlock;
  private readonly endpoint: PortEndpoint;
  private readonly wait: AdaptiveWait;
  private readonly controlWord: number;
  private state: QueueState;
  private device!: VirtqDevice;
  private handler!: QueueHandler;
  private active = false;
  private readonly pollOnce = (): number => this.handler.poll();

  constructor(
    private readonly data: QueueWorkerData,
    private readonly factory: HandlerFactory,
    private readonly env?: QueueEnvironment,
  ) {
    this.memory = env?.memory ?? new GuestMemory(data.memory);
    this.notify = new NotifyArea(data.notify);
    this.stats = new StatsBlock(data.stats);
    this.controlWord = this.notify.controlWord(data.queue);
    this.wait = new AdaptiveWait(this.notify.i32, this.notify.doorbellWord(data.queue), data.spinUs);
    this.endpoint = new PortEndpoint(data.control);
    this.state = data.state;
    expose(this, this.endpoint);
  }

  /** Start the loop from the state the worker was created with. */
  start(): void {
    if (this.active) return;
    this.device = createQueueDevice(this.memory, this.state);
    const { queue, interrupt } = this.data;
    const stats = this.stats;
    const target = interrupt === null ? null : new Int32Array(interrupt.buffer);
    const targetIndex = interrupt === null ? 0 : interrupt.index;
    const interruptAt = stats.base(queue) + C_INTERRUPTS;
    const raise = this.env?.raise;
    this.handler = this.factory({
      queue,
      memory: this.memory,
      device: this.device,
      stats,
      params: this.data.params,
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
    // first pass of the loop then looks at the ring before any sleep.
    this.device.enableNotify();
    this.active = true;
    setImmediate(this.loop);
  }

  stop(): QueueState {
    if (this.active) {
      this.active = false;
      this.handler.quiesce();
      this.state = this.device.state(this.state);
    }
    return this.state;
  }

  private readonly loop = (): void => {
    const i32 = this.notify.i32;
    const cw = this.controlWord;
    const sleepsAt = this.stats.base(this.data.queue) + C_SLEEPS;
    while (this.active) {
      if (Atomics.load(i32, cw) !== 0) {
        Atomics.store(i32, cw, 0);
        this.endpoint.drain();
        break; // return once so comlink's replies are posted
      }
      try {
        if (this.handler.poll() !== 0 || this.wait.spin(this.pollOnce) !== 0) continue;
        const seen = this.wait.snapshot();
        if (Atomics.load(i32, cw) !== 0) continue;
        if (this.handler.arm()) {
          this.handler.disarm();
          continue;
        }
        this.stats.f64[sleepsAt]++;
        const timedOut = this.wait.sleep(seen, IDLE_TIMEOUT_MS);
        this.handler.disarm();
        if (timedOut) break; // let the event loop breathe while idle
      } catch (e) {
        this.fail(e);
        return;
      }
    }
    if (this.active) setImmediate(this.loop);
  };

  /**
   * Bad guest data: count it, set DEVICE_NEEDS_RESET, raise the config
   * interrupt (2.1.2: required once DRIVER_OK is set), report, and stop this
   * queue. The process and the other queues go on.
   */
  private fail(e: unknown): void {
    // Anything else is a bug in this library: let the worker die; the control
    // plane sees the exit and marks the device DEVICE_NEEDS_RESET.
    if (!(e instanceof VirtqueueError)) throw e;
    const { queue, configInterrupt } = this.data;
    this.active = false;
    this.stats.countError(queue, e.code);
    Atomics.or(this.notify.i32, this.notify.statusWord, STATUS_DEVICE_NEEDS_RESET);
    if (configInterrupt !== null) ring(new Int32Array(configInterrupt.buffer), configInterrupt.index);
    const msg: QueueErrorMessage = { type: 'queue-error', queue, code: e.code, message: e.message, value: e.value };
    parentPort?.postMessage(msg);
  }
}
