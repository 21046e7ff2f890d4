import { POLL_SLEEPER, pollWakeFdWord } from '../notify/notify-area.js';
import type { QueueKick, ThreadSleeper } from '../worker/queue-thread.js';
import * as libc from '../os/libc.js';
import { PollSet } from './poll-set.js';
import { NOTIFY_PAGE_IDLE } from './vring.js';

/** How often a sleeping thread looks at its notify page (a memory write wakes nobody). */
const PAGE_LOOK_MS = 1;

/**
 * How a vhost-user ring thread sleeps: in one poll() over the kick
 * eventfds of the rings it serves (one ring, a pair, every ring of a
 * session) and its own wake eventfd, so a front
 * end's kick wakes it directly (one hop, no relay through the I/O thread).
 * In-process wakers (a lab peer's channel, the control plane) ring the
 * thread's wake word as for any queue thread; the POLL_SLEEPER bit set on
 * that word while it sleeps makes ring() signal the wake eventfd too.
 *
 * A kick counter is read only when poll() finds its fd readable, right
 * after the sleep, before the thread looks at its rings again: not per
 * round (while the thread is busy the rings are polled anyway and the
 * driver is asked not to kick), nor for every ring on the way to sleep. A
 * kick that came while the thread was busy leaves its fd readable, so the
 * next poll() returns at once and reads it (one look at the rings more,
 * never a lost kick). Reads use readEventfd (RWF_NOWAIT): the kick fds are
 * the front end's files and may have been made blocking.
 */
export class KickPollWait implements ThreadSleeper {
  private readonly polls = new PollSet();
  private kickFds: number[] = [];
  /** The notify pages (host notifiers) of the rings served now that have one. */
  private pages: NonNullable<QueueKick['page']>[] = [];
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

  /** Poll the kick eventfds of `kicks` (and watch their notify pages) from now on. */
  watch(kicks: readonly QueueKick[]): void {
    this.kickFds = kicks.map((k) => k.fd);
    this.pages = kicks.flatMap((k) => (k.page === undefined ? [] : [k.page]));
    this.polls.set([this.wakeFd, ...this.kickFds]);
  }

  /** Whether a notify write landed on a page since the last look (taken: the page is idle again). */
  private pageKicked(): boolean {
    const pages = this.pages;
    let kicked = false;
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i];
      if (Atomics.load(p.words, 0) === NOTIFY_PAGE_IDLE) continue;
      Atomics.store(p.words, 0, NOTIFY_PAGE_IDLE);
      Atomics.add(p.kicks, p.at, 1);
      kicked = true;
    }
    return kicked;
  }

  /** Take a notify page write (the caller looks at every ring after this), then read the wake word. */
  snapshot(): number {
    this.pageKicked();
    return Atomics.load(this.i32, this.wake);
  }

  /** Nap with the rings unarmed: their drivers do not kick; an in-process ring() ends it early (Atomics.notify). */
  nap(seen: number, timeoutMs: number): void {
    Atomics.wait(this.i32, this.wake, seen, timeoutMs);
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
    // poll() takes whole milliseconds: a shorter timeout (an idle look every 0.5 ms) must not become 0, a busy loop.
    if (this.pages.length === 0) {
      n = this.polls.poll(Math.ceil(timeoutMs));
      timedOut = n === 0;
    } else {
      // A notify write to a page wakes nobody: look at the pages between short polls.
      let left = timeoutMs;
      do {
        n = this.polls.poll(Math.ceil(Math.min(PAGE_LOOK_MS, left)));
        left -= PAGE_LOOK_MS;
      } while (n === 0 && left > 0 && !this.pageKicked());
      timedOut = n === 0 && left <= 0;
    }
    Atomics.and(this.i32, this.wake, ~POLL_SLEEPER);
    if (n > 0) this.drainReady();
    return timedOut;
  }

  /**
   * Read the counters of the fds poll() found readable (the wake eventfd, the
   * kicks that woke us): the caller looks at every ring next, so a kick read
   * here is never lost, and one that comes later leaves its fd readable for
   * the next poll().
   */
  private drainReady(): void {
    const polls = this.polls;
    if (polls.revents(0) !== 0) libc.read(this.wakeFd, this.drain);
    const kicks = this.kickFds;
    for (let i = 0; i < kicks.length; i++) if (polls.revents(i + 1) !== 0) libc.readEventfd(kicks[i], this.drain);
  }
}
