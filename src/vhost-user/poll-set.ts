import * as libc from '../os/libc.js';

/** A set of struct pollfd entries (POLLIN), rebuilt only when the watched fds change. */
export class PollSet {
  u8 = new Uint8Array(8 * 8);
  private dv = new DataView(this.u8.buffer);
  count = 0;

  set(fds: readonly number[]): void {
    if (8 * fds.length > this.u8.length) {
      // A thread serving many rings (a shared pool): grow, never per poll.
      this.u8 = new Uint8Array(8 * fds.length);
      this.dv = new DataView(this.u8.buffer);
    }
    this.count = fds.length;
    for (let i = 0; i < fds.length; i++) {
      this.dv.setInt32(8 * i, fds[i], true);
      this.dv.setInt16(8 * i + 4, libc.POLLIN, true);
      this.dv.setInt16(8 * i + 6, 0, true);
    }
  }

  revents(i: number): number {
    return this.dv.getInt16(8 * i + 6, true);
  }

  /** poll(2) on the set; ready count, 0 on timeout, -errno. */
  poll(timeoutMs: number): number {
    return libc.poll(this.u8, this.count, timeoutMs);
  }
}
