import { setImmediate as tick } from 'node:timers/promises';
import { DeviceNeedsResetError, VirtqueueError } from '../errors.js';
import type { VsockStack } from './stack/vsock-stack.js';

/** Longest sleep between two looks at an idle queue (a missed wake-up costs at most this). */
const IDLE_MS = 100;

/**
 * Runs one side of a vsock link on its thread's event loop: `round()` while
 * it finds work, yielding to the event loop between rounds (socket callbacks,
 * timers and user writes run there), and `sleep()` on the side's wake word
 * when a round found nothing.
 *
 * A round that throws ends the loop. A VirtqueueError (the other side broke
 * a ring rule) or a DeviceNeedsResetError (the device gave up on its queues)
 * is kept in `broken` and every connection of the stack is reset (its
 * sockets see ECONNRESET): the process lives on. Anything else
 * came from user code (a socket callback) and is what Node does with it: an
 * 'error' on the stack when someone listens, else an uncaught exception.
 */
export class ServiceLoop {
  /** The ring or device error that stopped the loop, or null. */
  broken: VirtqueueError | DeviceNeedsResetError | null = null;
  private running = false;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly round: () => number,
    /** Re-arm notifications, then wait (at most `ms`) unless work is already there. */
    private readonly sleep: (ms: number) => Promise<void>,
    /** Wake a sleeping loop (ring its word). */
    private readonly wake: () => void,
    private readonly stack: () => VsockStack,
  ) {}

  get isRunning(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.done = this.run();
  }

  /** End the loop; resolves once its last round is over. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.done;
  }

  private async run(): Promise<void> {
    try {
      while (this.running) {
        if (this.round() === 0) await this.sleep(IDLE_MS);
        else await tick();
      }
    } catch (e) {
      this.running = false;
      this.fail(e);
    }
  }

  private fail(e: unknown): void {
    const stack = this.stack();
    if (e instanceof VirtqueueError || e instanceof DeviceNeedsResetError) {
      this.broken = e;
      stack.transportReset();
    } else if (stack.listenerCount('error') > 0) stack.emit('error', e);
    else
      process.nextTick(() => {
        throw e;
      });
  }
}
