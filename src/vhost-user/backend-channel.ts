import * as libc from '../os/libc.js';
import { encodeHostNotifier } from './protocol.js';
import { NOTIFY_PAGE_BYTES, type Vring } from './vring.js';

/** How long the back end waits for the front end's answers to its notify pages. */
const HOST_NOTIFIER_REPLY_MS = 5000;

/**
 * The back-end channel (SET_BACKEND_REQ_FD): our end of the front end's
 * socketpair, on which the back end sends requests. Used here to offer
 * rings' notify pages (host notifiers) and read the front end's answers.
 */
export class BackendChannel {
  private fd: number | undefined;
  /** Rings whose notify page awaits the front end's answer, in the order offered, and bytes of answers read so far. */
  private awaiting: number[] = [];
  private replyBytes = new Uint8Array(0);
  private replyTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly rings: readonly Vring[],
    private readonly log: (line: string) => void,
  ) {}

  /** Whether the front end gave the channel. */
  get open(): boolean {
    return this.fd !== undefined;
  }

  /** Take `fd` as the channel (closing one given before). */
  set(fd: number): void {
    // Our end of the front end's socketpair: its flags are ours, so a write never blocks.
    libc.setNonBlocking(fd, true);
    if (this.fd !== undefined) libc.close(this.fd);
    this.fd = fd;
  }

  /** Close the channel and stop waiting for answers. */
  close(): void {
    clearTimeout(this.replyTimer);
    if (this.fd !== undefined) libc.close(this.fd);
    this.fd = undefined;
  }

  /**
   * Offer ring q's notify page (BACKEND_VRING_HOST_NOTIFIER_MSG). The front
   * end answers only when asked (`needReply`, REPLY_ACK); the answer is read
   * without blocking, later, since the front end may be waiting for our
   * reply to the message that started the ring.
   */
  offerNotifyPage(q: number, needReply: boolean): void {
    const r = this.rings[q];
    const fd = this.fd;
    if (fd === undefined) return;
    try {
      libc.sendWithFds(fd, encodeHostNotifier(q, NOTIFY_PAGE_BYTES, 0, needReply), [r.page().fd]);
    } catch (e) {
      r.hostNotifier = `not sent: ${(e as Error).message}`;
      this.log(`ring ${q}: notify page ${r.hostNotifier}`);
      return;
    }
    r.hostNotifier = needReply ? 'offered, no answer' : 'offered (no answer asked)';
    if (!needReply) return;
    this.awaiting.push(q);
    const deadline = Date.now() + HOST_NOTIFIER_REPLY_MS;
    const readReplies = (): void => {
      this.replyTimer = undefined;
      if (!this.readReplies()) return;
      if (this.awaiting.length > 0 && Date.now() < deadline) this.replyTimer = setTimeout(readReplies, 10).unref();
    };
    this.replyTimer ??= setTimeout(readReplies, 10).unref();
  }

  /** Read what answers have come and record them on their rings; false once the channel is closed. */
  private readReplies(): boolean {
    if (this.fd === undefined) return false;
    const buf = new Uint8Array(256);
    const n = libc.read(this.fd, buf);
    if (n > 0) {
      const all = new Uint8Array(this.replyBytes.length + n);
      all.set(this.replyBytes);
      all.set(buf.subarray(0, n), this.replyBytes.length);
      this.replyBytes = all;
    }
    // Each answer: a 12-byte header (the request, the reply flag) and a u64, 0 when mapped.
    while (this.replyBytes.length >= 20 && this.awaiting.length > 0) {
      const v = new DataView(this.replyBytes.buffer, this.replyBytes.byteOffset);
      const ring = this.awaiting.shift()!;
      const value = v.getBigUint64(12, true);
      this.rings[ring].hostNotifier = value === 0n ? 'mapped by the front end' : `refused by the front end (answer ${value})`;
      this.log(`ring ${ring}: notify page ${this.rings[ring].hostNotifier}`);
      this.replyBytes = this.replyBytes.slice(20);
    }
    return true;
  }
}
