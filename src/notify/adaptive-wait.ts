import { performance } from 'node:perf_hooks';

/**
 * Poll-then-sleep on one shared word. A wake-up through Atomics.wait costs
 * ~50 us on this kind of machine; polling for a few tens of microseconds
 * first keeps a busy ring from ever sleeping (PERFORMANCE.md: 25 M items/s
 * without the spin, 248 M/s with it). The clock is read only while idle.
 */
export class AdaptiveWait {
  constructor(
    private readonly i32: Int32Array,
    /** The word slept on. */
    readonly index: number,
    /** How long to poll before sleeping, in microseconds. 0 sleeps at once. */
    readonly spinUs: number,
  ) {}

  /**
   * Call `poll` until it reports work (returns > 0) or the spin budget is
   * spent; returns what the last poll returned.
   */
  spin(poll: () => number): number {
    if (this.spinUs <= 0) return 0;
    const until = performance.now() + this.spinUs / 1000;
    for (;;) {
      for (let k = 0; k < 32; k++) {
        const n = poll();
        if (n !== 0) return n;
      }
      if (performance.now() >= until) return 0;
    }
  }

  /** The word's value now: read it before the last check, sleep on it after. */
  snapshot(): number {
    return Atomics.load(this.i32, this.index);
  }

  /** Sleep until the word moves from `seen`; returns true when the timeout passed instead. */
  sleep(seen: number, timeoutMs: number): boolean {
    return Atomics.wait(this.i32, this.index, seen, timeoutMs) === 'timed-out';
  }
}
