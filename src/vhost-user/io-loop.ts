import type { MessagePort } from 'node:worker_threads';
import type { IoCommand, IoEvent, IoWorkerData } from './io-messages.js';
import * as libc from '../os/libc.js';
import { PollSet } from './poll-set.js';
import { HEADER_SIZE, MAX_PAYLOAD, VhostUserProtocolError, checkHeader } from './protocol.js';

const MSG_CTRUNC = 0x8;
/** recv()'s result when the kernel dropped fds that did not fit the control buffer. */
const EMSGSIZE = 90;
/** A message left half-sent this long ends the connection. */
const STALL_MS = 5000;
/** After a failed accept(), the listening socket rests this long. */
const ACCEPT_RETRY_MS = 100;
/** An idle I/O thread returns to its event loop at least this often. */
const IDLE_POLL_MS = 1000;

// Layout of the scratch page that recvmsg reads into (LP64 Linux structs).
const MSGHDR = 0; // struct msghdr, 56 bytes
const IOVEC = 64; // struct iovec, 16 bytes
const CONTROL = 128; // cmsg buffer
const CONTROL_LEN = 256; // room for 8 fds and more: extra fds are closed
const DATA = 512; // header, then payload
const SCRATCH = DATA + HEADER_SIZE + MAX_PAYLOAD;

/** What MessageReader.read() found: a whole message, nothing yet, or why the connection is over. */
type ReadResult = IoEvent | null | string;

/**
 * Reads vhost-user messages, with their SCM_RIGHTS fds, off a stream socket
 * through recvmsg (Node's own sockets drop passed fds). Reads never block: a
 * message may arrive in pieces over several polls, and one left half-sent
 * longer than STALL_MS ends the connection (a front end that stops
 * mid-message must not hold the I/O thread, which reads every message). Every
 * fd received is either returned with its message or closed here.
 */
class MessageReader {
  private readonly base: bigint;
  private readonly u8: Uint8Array;
  private readonly dv: DataView;
  /** Bytes of the current message read so far (header, then payload). */
  private have = 0;
  /** Payload size once the header is in, else -1. */
  private size = -1;
  private fds: number[] = [];
  private startedAt = 0;

  constructor() {
    this.base = libc.mmapScratch(SCRATCH);
    this.u8 = new Uint8Array(libc.viewOf(this.base, SCRATCH));
    this.dv = new DataView(this.u8.buffer);
  }

  /** Read what the socket has; returns a whole message, null (not yet), or why the connection is over. */
  read(fd: number): ReadResult {
    if (this.have === 0) this.startedAt = performance.now();
    const want = this.size < 0 ? HEADER_SIZE : HEADER_SIZE + this.size;
    const n = this.recv(fd, DATA + this.have, want - this.have, this.fds);
    if (n === -libc.EAGAIN) return null;
    if (n === -EMSGSIZE) return this.fail('a message carried more file descriptors than any request takes');
    if (n <= 0) return this.fail(n === 0 ? (this.have === 0 ? 'front end closed the connection' : `connection closed inside a ${this.size < 0 ? 'header' : 'payload'}`) : `recvmsg: errno ${-n}`);
    this.have += n;
    if (this.have < want) return null;
    if (this.size < 0) {
      try {
        this.size = checkHeader(this.dv.getUint32(DATA, true), this.dv.getUint32(DATA + 4, true), this.dv.getUint32(DATA + 8, true));
      } catch (e) {
        return this.fail((e as VhostUserProtocolError).message);
      }
      if (this.size > 0) return this.read(fd);
    }
    const m: IoEvent = {
      type: 'message',
      request: this.dv.getUint32(DATA, true),
      flags: this.dv.getUint32(DATA + 4, true),
      payload: this.u8.slice(DATA + HEADER_SIZE, DATA + HEADER_SIZE + this.size),
      fds: this.fds,
    };
    this.reset();
    return m;
  }

  /** Why the connection must end when a message has been half-read for too long, else undefined. */
  stalled(now: number): string | undefined {
    return this.have > 0 && now - this.startedAt > STALL_MS ? this.fail(`front end stopped mid-message for ${STALL_MS} ms`) : undefined;
  }

  /** Forget a half-read message (closing its fds) and say why. */
  fail(reason: string): string {
    for (const f of this.fds) libc.close(f);
    this.reset();
    return reason;
  }

  private reset(): void {
    this.have = 0;
    this.size = -1;
    this.fds = [];
  }

  /** recvmsg up to `len` bytes into the scratch at `at` without blocking; fds found are pushed to `fds`. */
  private recv(fd: number, at: number, len: number, fds: number[]): number {
    const dv = this.dv;
    this.u8.fill(0, MSGHDR, CONTROL + CONTROL_LEN);
    dv.setBigUint64(IOVEC, this.base + BigInt(at), true);
    dv.setBigUint64(IOVEC + 8, BigInt(len), true);
    dv.setBigUint64(MSGHDR + 16, this.base + BigInt(IOVEC), true); // msg_iov
    dv.setBigUint64(MSGHDR + 24, 1n, true); // msg_iovlen
    dv.setBigUint64(MSGHDR + 32, this.base + BigInt(CONTROL), true); // msg_control
    dv.setBigUint64(MSGHDR + 40, BigInt(CONTROL_LEN), true); // msg_controllen
    let n: number;
    do n = libc.recvmsg(fd, this.u8.subarray(MSGHDR), libc.MSG_DONTWAIT);
    while (n === -libc.EINTR);
    if (n < 0) return n;
    const controlLen = Number(dv.getBigUint64(MSGHDR + 40, true));
    for (let off = 0; off + 16 <= controlLen; ) {
      const cmsgLen = Number(dv.getBigUint64(CONTROL + off, true));
      if (cmsgLen < 16 || off + cmsgLen > controlLen) break;
      if (dv.getInt32(CONTROL + off + 8, true) === libc.SOL_SOCKET && dv.getInt32(CONTROL + off + 12, true) === libc.SCM_RIGHTS) {
        for (let p = 16; p + 4 <= cmsgLen; p += 4) fds.push(dv.getInt32(CONTROL + off + p, true));
      }
      off += (cmsgLen + 7) & ~7;
    }
    // Fds beyond the control buffer were dropped by the kernel; the message is unusable.
    if ((dv.getInt32(MSGHDR + 48, true) & MSG_CTRUNC) !== 0) return -EMSGSIZE;
    return n;
  }
}

/**
 * The loop of the vhost-user I/O thread: one poll() over the wake eventfd
 * and the listening socket or the connection. A message goes to the control
 * plane whole, fds included. Kicks do not pass here: each ring's thread
 * polls its kick eventfd itself (one wake-up hop). After every pass the loop
 * returns to the event loop so commands from the control plane are taken in.
 */
export class IoLoop {
  private readonly reader = new MessageReader();
  private readonly polls = new PollSet();
  private readonly drain = new Uint8Array(8);
  private conn = -1;
  private accepting = true;
  /** When a failed accept() may be tried again (0: not waiting). */
  private acceptRetryAt = 0;
  private running = true;

  constructor(
    private readonly data: IoWorkerData,
    private readonly port: MessagePort,
  ) {
    port.on('message', (c: IoCommand) => this.command(c));
    this.rebuild();
  }

  start(): void {
    setImmediate(this.loop);
  }

  private command(c: IoCommand): void {
    if (c.type === 'listen') {
      this.accepting = true;
    } else {
      this.running = false;
      this.port.close();
    }
    this.rebuild();
  }

  private rebuild(): void {
    this.polls.set([this.data.wakeFd, this.conn >= 0 ? this.conn : this.accepting ? this.data.listenFd : -1]);
  }

  private post(e: IoEvent): void {
    this.port.postMessage(e);
  }

  private readonly loop = (): void => {
    if (!this.running) return;
    const n = this.polls.poll(IDLE_POLL_MS);
    if (n > 0) {
      if (this.polls.revents(0) !== 0) libc.read(this.data.wakeFd, this.drain);
      if (this.polls.revents(1) !== 0) this.socketReady();
    }
    const now = performance.now();
    if (this.acceptRetryAt !== 0 && now >= this.acceptRetryAt) {
      this.acceptRetryAt = 0;
      this.accepting = true;
      this.rebuild();
    }
    const stall = this.conn < 0 ? undefined : this.reader.stalled(now);
    if (stall !== undefined) this.closed(stall);
    setImmediate(this.loop);
  };

  private socketReady(): void {
    if (this.conn < 0) {
      try {
        this.conn = libc.accept(this.data.listenFd);
      } catch {
        // The front end went away before we took it (ECONNABORTED), or fds ran out
        // (EMFILE): no connection this time; pause so a lasting error cannot spin.
        this.acceptRetryAt = performance.now() + ACCEPT_RETRY_MS;
        this.accepting = false;
        this.rebuild();
        return;
      }
      this.accepting = false;
      this.post({ type: 'connected', fd: this.conn });
      this.rebuild();
      return;
    }
    const m = this.reader.read(this.conn);
    if (m === null) return;
    if (typeof m === 'string') this.closed(m);
    else this.post(m);
  }

  /** The connection is over: stop reading it; the control plane tears the session down and closes the fd. */
  private closed(reason: string): void {
    this.post({ type: 'closed', fd: this.conn, reason });
    this.conn = -1;
    this.rebuild();
  }
}
