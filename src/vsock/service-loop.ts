import { setImmediate as tick } from 'node:timers/promises';

/** Longest sleep between two looks at an idle queue (a missed wake-up costs at most this). */
const IDLE_MS = 100;

/**
 * Runs one side of a vsock link on its thread's event loop: `round()` while
 * it finds work, yielding to the event loop between rounds (socket callbacks,
 * timers and user writes run there), and `sleep()` on the side's wake word
 * when a round found nothing. An error thrown by a round ends the loop and
 * goes to `onError`.
 */
export class ServiceLoop {
  private running = false;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly round: () => number,
    /** Re-arm notifications, then wait (at most `ms`) unless work is already there. */
    private readonly sleep: (ms: number) => Promise<void>,
    /** Wake a sleeping loop (ring its word). */
    private readonly wake: () => void,
    private readonly onError: (e: unknown) => void,
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
      this.onError(e);
    }
  }
}
