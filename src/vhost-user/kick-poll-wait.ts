import { POLL_SLEEPER, pollWakeFdWord } from '../notify/notify-area.js';
import type { ThreadSleeper } from '../worker/queue-thread.js';
import * as libc from './libc.js';
import { PollSet } from './poll-set.js';

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

  /** Drain the kicks (the caller looks at every ring after this), then read the wake word. */
  snapshot(): number {
    const kicks = this.kicks;
    for (let i = 0; i < kicks.length; i++) libc.readEventfd(kicks[i], this.drain);
    return Atomics.load(this.i32, this.wake);
  }

  sleep(seen: number, timeoutMs: number): boolean {
    // Setting the bit and checking the word is one step: a ring after it sees
    // the bit and signals wakeFd; one before it changed the word.
    if (Atomics.or(this.i32, this.wake, POLL_SLEEPER) !== seen) {
      Atomics.and(this.i32, this.wake, ~POLL_SLEEPER);
      return false;
    }
    const n = this.polls.poll(timeoutMs);
    Atomics.and(this.i32, this.wake, ~POLL_SLEEPER);
    if (n > 0 && this.polls.revents(0) !== 0) libc.read(this.wakeFd, this.drain);
    return n === 0;
  }
}
