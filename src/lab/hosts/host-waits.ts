/** A pending wait (ARP reply, echo reply): woken by any event, by its timer, or by close. */
interface Waiter {
  wake: () => void;
  timer: NodeJS.Timeout;
}

/**
 * The waits of an IpHost's callers (ARP resolution, ping): each sleeps
 * until the next event of the host (wakeAll()) or its deadline, then
 * checks its condition again.
 */
export class HostWaits {
  private readonly waiters = new Set<Waiter>();

  /** Wait until `done()` holds (checked at each event) or `ms` pass, or `stopped()` holds; true when `done()` held. */
  async waitFor(done: () => boolean, ms: number, stopped: () => boolean): Promise<boolean> {
    const end = performance.now() + ms;
    while (!done() && !stopped()) {
      const left = end - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const w: Waiter = {
          wake: () => {
            clearTimeout(w.timer);
            this.waiters.delete(w);
            resolve();
          },
          timer: setTimeout(() => w.wake(), left),
        };
        this.waiters.add(w);
      });
    }
    return done();
  }

  /** An event happened (an address learned, an echo reply, close): every waiter checks again. */
  wakeAll(): void {
    for (const w of [...this.waiters]) w.wake();
  }
}
