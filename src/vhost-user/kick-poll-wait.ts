import { POLL_SLEEPER, pollWakeFdWord } from '../notify/notify-area.js';
import type { ThreadSleeper } from '../worker/queue-thread.js';
import * as libc from '../os/libc.js';
import { PollSet } from './poll-set.js';
import { NOTIFY_PAGE_IDLE } from './vring.js';

/** How often a sleeping thread looks at its notify page (a memory write wakes nobody). */
const PAGE_LOOK_MS = 1;

/**
 * How a vhost-user ring's thread sleeps: in one poll() over the kick
 * eventfds of the rings it serves and its own wake eventfd, so a front
 * end's kick wakes it directly (one hop, no relay through the I/O thread).
 * In-process wakers (a lab peer's channel, the control plane) ring the
 * thread's wake word as for any queue thread; the POLL_SLEEPER bit set on
 * that word while it sleeps makes ring() signal the wake eventfd too.
 *
 * Kick counters are drained only on the way to sleep (snapshot), not per
 * round: while the thread is busy the ring is polled anyway and the driver
 * is asked not to kick (notifications disarmed), so a read per round would
 * be a system call for nothing. Reads use readEventfd (RWF_NOWAIT): the kick
 * fds are the front end's files and may have been made blocking.
 */
export class KickPollWait implements ThreadSleeper {
  private readonly polls = new PollSet();
  private kicks: readonly number[] = [];
  private readonly drain = new Uint8Array(8);
  /** The ring's notify page (host notifier) and where its notify writes are counted, when the front end was offered one. */
  private page: Uint16Array | undefined;
  private pageKicks: Int32Array | undefined;
  private pageKickAt = 0;

  constructor(
    private readonly i32: Int32Array,
    private readonly wake: number,
    /** This thread's wake eventfd (ours, non-blocking), signalled by ring() while the thread sleeps. */
    private readonly wakeFd: number,
  ) {
    Atomics.store(i32, pollWakeFdWord(wake), wakeFd);
    this.polls.set([wakeFd]);
  }

  watch(kickFds: readonly number[]): void {
    this.kicks = kickFds;
    this.polls.set([this.wakeFd, ...kickFds]);
  }

  /**
   * Watch a notify page too: the driver's notify writes land there once the
   * front end maps it (host notifier). Found writes are counted in
   * `kicks[at]`.
   */
  watchPage(page: Uint16Array, kicks: Int32Array, at: number): void {
    this.page = page;
    this.pageKicks = kicks;
    this.pageKickAt = at;
  }

  /** Whether a notify write landed on the page since the last look (taken: the page is idle again). */
  private pageKicked(): boolean {
    const page = this.page;
    if (page === undefined || Atomics.load(page, 0) === NOTIFY_PAGE_IDLE) return false;
    Atomics.store(page, 0, NOTIFY_PAGE_IDLE);
    Atomics.add(this.pageKicks!, this.pageKickAt, 1);
    return true;
  }

  /** Drain the kicks (the caller looks at every ring after this), then read the wake word. */
  snapshot(): number {
    const kicks = this.kicks;
    for (let i = 0; i < kicks.length; i++) libc.readEventfd(kicks[i], this.drain);
    this.pageKicked();
    return Atomics.load(this.i32, this.wake);
  }

  sleep(seen: number, timeoutMs: number): boolean {
    // Setting the bit and checking the word is one step: a ring after it sees
    // the bit and signals wakeFd; one before it changed the word.
    if (Atomics.or(this.i32, this.wake, POLL_SLEEPER) !== seen) {
      Atomics.and(this.i32, this.wake, ~POLL_SLEEPER);
      return false;
    }
    let n: number;
    let timedOut: boolean;
    if (this.page === undefined) {
      n = this.polls.poll(timeoutMs);
      timedOut = n === 0;
    } else {
      // A notify write to the page wakes nobody: look at it between short polls.
      let left = timeoutMs;
      do {
        n = this.polls.poll(Math.min(PAGE_LOOK_MS, left));
        left -= PAGE_LOOK_MS;
      } while (n === 0 && left > 0 && !this.pageKicked());
      timedOut = n === 0 && left <= 0;
    }
    Atomics.and(this.i32, this.wake, ~POLL_SLEEPER);
    if (n > 0 && this.polls.revents(0) !== 0) libc.read(this.wakeFd, this.drain);
    return timedOut;
  }
}
