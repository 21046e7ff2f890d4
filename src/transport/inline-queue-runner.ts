import { QueueWorkerError, VirtqueueError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { type NotifyArea, type WordRef, ring, waitAsync } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { createQueueDevice } from '../ring/create-queue.js';
import type { VirtqDevice } from '../ring/virtqueue.js';
import { C_INTERRUPTS, C_SLEEPS, type StatsBlock } from '../stats/queue-stats.js';
import type { HandlerFactory, QueueHandler } from '../worker/queue-handler.js';
import type { QueueRunner } from './queue-runner.js';

/** An idle inline queue looks at its ring at least this often. */
const IDLE_TIMEOUT_MS = 1000;

/** What an inline runner reports to its device. */
export interface InlineQueueEvents {
  onQueueError(error: VirtqueueError): void;
  onDeath(error: QueueWorkerError): void;
}

/**
 * Runs a queue handler on the control plane's own thread, woken by the
 * queue's doorbell through Atomics.waitAsync (never blocking the event
 * loop). This is where a control virtqueue lives: as QEMU serves the
 * virtio-net ctrl vq while vhost moves the packets, commands that change
 * device state (config space, filters, active queue pairs) run next to that
 * state instead of crossing threads.
 */
export class InlineQueueRunner implements QueueRunner {
  /** An inline queue runs from construction. */
  readonly started: Promise<void> = Promise.resolve();
  private readonly device: VirtqDevice;
  private readonly handler: QueueHandler;
  private active = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly queue: number,
    memory: GuestMemory,
    private readonly state: QueueState,
    private readonly notify: NotifyArea,
    private readonly stats: StatsBlock,
    interrupt: WordRef | null,
    params: unknown,
    factory: HandlerFactory,
    private readonly events: InlineQueueEvents,
  ) {
    this.device = createQueueDevice(memory, state);
    const target = interrupt === null ? null : new Int32Array(interrupt.buffer);
    this.handler = factory({
      queue,
      memory,
      device: this.device,
      stats,
      params,
      interrupt: () => {
        if (target === null || interrupt === null) return;
        stats.f64[stats.base(queue) + C_INTERRUPTS]++;
        ring(target, interrupt.index);
      },
    });
    this.device.enableNotify();
    this.done = this.loop();
  }

  private async loop(): Promise<void> {
    const i32 = this.notify.i32;
    const doorbell = this.notify.doorbellWord(this.queue);
    try {
      while (this.active) {
        if (this.handler.poll() !== 0) continue;
        const seen = Atomics.load(i32, doorbell);
        if (this.handler.arm()) {
          this.handler.disarm();
          continue;
        }
        this.stats.f64[this.stats.base(this.queue) + C_SLEEPS]++;
        await waitAsync(i32, doorbell, seen, IDLE_TIMEOUT_MS);
        this.handler.disarm();
      }
    } catch (e) {
      this.active = false;
      if (e instanceof VirtqueueError) {
        this.stats.countError(this.queue, e.code);
        this.events.onQueueError(e);
      } else {
        this.events.onDeath(new QueueWorkerError(`queue ${this.queue} handler failed: ${e instanceof Error ? e.message : String(e)}`));
      }
    }
  }

  async stop(): Promise<QueueState> {
    await this.terminate();
    this.handler.quiesce();
    return this.device.state(this.state);
  }

  async terminate(): Promise<void> {
    this.active = false;
    ring(this.notify.i32, this.notify.doorbellWord(this.queue));
    await this.done;
  }

  async kill(): Promise<void> {
    await this.terminate();
    this.events.onDeath(new QueueWorkerError(`queue ${this.queue} inline runner killed`));
  }
}
