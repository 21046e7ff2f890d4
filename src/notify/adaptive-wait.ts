import { performance } from 'node:perf_hooks';

/** Empty spins in a row after which the spin budget halves. */
const EMPTY_SPINS_TO_SHRINK = 4;
/** The budget never shrinks below the full spin divided by this. */
const MIN_BUDGET_DIVISOR = 16;

/**
 * Poll-then-sleep on one shared word. A wake-up through Atomics.wait costs
 * ~50 us on this kind of machine; polling for a few tens of microseconds
 * first keeps a busy ring from ever sleeping (event idx alone fell to
 * 25 M items/s in a bare-ring test, 248 M/s with a spin). The clock is read
 * only while idle.
 *
 * The spin budget adapts: a spin that finds work restores the full budget;
 * `EMPTY_SPINS_TO_SHRINK` empty ones in a row halve it (down to a
 * sixteenth). A thread whose spins keep coming back empty is usually
 * sharing its core with the thread that would give it work (more busy
 * threads than cores), and every microsecond it spins is taken from that
 * thread; a thread that is fed while it spins keeps spinning.
 */
export class AdaptiveWait {
  private budgetUs: number;
  private emptySpins = 0;

  constructor(
    private readonly i32: Int32Array,
    /** The word slept on. */
    readonly index: number,
    /** The most it polls before sleeping, in microseconds. 0 sleeps at once. */
    readonly spinUs: number,
  ) {
    this.budgetUs = spinUs;
  }

  /** The spin budget now, in microseconds. */
  get budget(): number {
    return this.budgetUs;
  }

  /**
   * Call `poll` until it reports work (returns > 0) or the spin budget is
   * spent; returns what the last poll returned.
   */
  spin(poll: () => number): number {
    if (this.spinUs <= 0) return 0;
    const until = performance.now() + this.budgetUs / 1000;
    for (;;) {
      for (let k = 0; k < 32; k++) {
        const n = poll();
        if (n !== 0) {
          this.emptySpins = 0;
          this.budgetUs = this.spinUs;
          return n;
        }
      }
      if (performance.now() >= until) break;
    }
    if (++this.emptySpins >= EMPTY_SPINS_TO_SHRINK) {
      this.emptySpins = 0;
      this.budgetUs = Math.max(this.spinUs / MIN_BUDGET_DIVISOR, this.budgetUs / 2);
    }
    return 0;
  }

  /**
   * Work came some other way than a spin (a vhost-user ring thread's nap
   * found some): give the next spin the full budget again, as a spin that
   * finds work does.
   */
  refill(): void {
    this.emptySpins = 0;
    this.budgetUs = this.spinUs;
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
