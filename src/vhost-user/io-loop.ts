import type { MessagePort } from 'node:worker_threads';
import { ring } from '../notify/notify-area.js';
import type { IoCommand, IoEvent, IoWorkerData } from './io-messages.js';
import * as libc from './libc.js';
import { HEADER_SIZE, MAX_PAYLOAD, VhostUserProtocolError, checkHeader } from './protocol.js';

const MSG_WAITALL = 0x100;
const MSG_CTRUNC = 0x8;
/** An idle I/O thread returns to its event loop at least this often. */
const IDLE_POLL_MS = 1000;

// Layout of the scratch page that recvmsg reads into (LP64 Linux structs).
const MSGHDR = 0; // struct msghdr, 56 bytes
const IOVEC = 64; // struct iovec, 16 bytes
const CONTROL = 128; // cmsg buffer
const CONTROL_LEN = 256; // room for 8 fds and more: extra fds are closed
const DATA = 512; // header, then payload
const SCRATCH = DATA + HEADER_SIZE + MAX_PAYLOAD;

/**
 * Reads whole vhost-user messages, with their SCM_RIGHTS fds, off a blocking
 * stream socket through recvmsg (Node's own sockets drop passed fds). Every
 * fd received is either returned with its message or closed here.
 */
class MessageReader {
  private readonly base: bigint;
  private readonly u8: Uint8Array;
  private readonly dv: DataView;

  constructor() {
    this.base = libc.mmapScratch(SCRATCH);
    this.u8 = new Uint8Array(libc.viewOf(this.base, SCRATCH));
    this.dv = new DataView(this.u8.buffer);
  }

  /** The next message, or a string saying why the connection is over. */
  read(fd: number): IoEvent | string {
    const fds: number[] = [];
    let n = this.recv(fd, DATA, HEADER_SIZE, fds);
    if (n !== HEADER_SIZE) return this.failed(fds, n === 0 ? 'front end closed the connection' : n < 0 ? `recvmsg: errno ${-n}` : 'connection closed inside a header');
    const request = this.dv.getUint32(DATA, true);
    const flags = this.dv.getUint32(DATA + 4, true);
    let size: number;
    try {
      size = checkHeader(request, flags, this.dv.getUint32(DATA + 8, true));
    } catch (e) {
      return this.failed(fds, (e as VhostUserProtocolError).message);
    }
    if (size > 0) {
      n = this.recv(fd, DATA + HEADER_SIZE, size, fds);
      if (n !== size) return this.failed(fds, n < 0 ? `recvmsg: errno ${-n}` : 'connection closed inside a payload');
    }
    return { type: 'message', request, flags, payload: this.u8.slice(DATA + HEADER_SIZE, DATA + HEADER_SIZE + size), fds };
  }

  private failed(fds: number[], reason: string): string {
    for (const f of fds) libc.close(f);
    return reason;
  }

  /** recvmsg `len` bytes (all of them) into the scratch at `at`; fds found are pushed to `fds`. */
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
    do n = libc.recvmsg(fd, this.u8.subarray(MSGHDR), MSG_WAITALL);
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
    if ((dv.getInt32(MSGHDR + 48, true) & MSG_CTRUNC) !== 0) return -libc.EAGAIN;
    return n;
  }
}

/** A fixed set of struct pollfd entries, rebuilt only when the watched fds change. */
class PollSet {
  readonly u8 = new Uint8Array(8 * 64);
  private readonly dv = new DataView(this.u8.buffer);
  count = 0;

  set(fds: number[]): void {
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
}

/**
 * The loop of the vhost-user I/O thread: one poll() over the wake eventfd,
 * the listening socket or the connection, and every ring's kick eventfd.
 * Kicks become doorbell rings (Atomics.notify) for the queue workers, which
 * sleep on those words because peers on the lab side wake them there too; a
 * message goes to the control plane whole, fds included. After every pass
 * the loop returns to the event loop so commands from the control plane are
 * taken in.
 */
export class IoLoop {
  private readonly reader = new MessageReader();
  private readonly polls = new PollSet();
  private readonly doorbellI32: Int32Array;
  private readonly kicks: (number | null)[];
  private readonly drain = new Uint8Array(8);
  private conn = -1;
  private accepting = true;
  private running = true;
  /** Ring of each poll entry after the first two (-1 for those two). */
  private pollRings: number[] = [];

  constructor(
    private readonly data: IoWorkerData,
    private readonly port: MessagePort,
  ) {
    this.doorbellI32 = new Int32Array(data.notify);
    this.kicks = data.doorbells.map(() => null);
    port.on('message', (c: IoCommand) => this.command(c));
    this.rebuild();
  }

  start(): void {
    setImmediate(this.loop);
  }

  private command(c: IoCommand): void {
    if (c.type === 'kick') {
      const old = this.kicks[c.ring];
      if (old !== null && old !== undefined) libc.close(old);
      this.kicks[c.ring] = c.fd;
    } else if (c.type === 'listen') {
      this.accepting = true;
    } else {
      this.running = false;
      this.closeKicks();
      this.port.close();
    }
    this.rebuild();
  }

  private rebuild(): void {
    const fds = [this.data.wakeFd, this.conn >= 0 ? this.conn : this.accepting ? this.data.listenFd : -1];
    this.pollRings = [-1, -1];
    this.kicks.forEach((fd, q) => {
      if (fd === null) return;
      fds.push(fd);
      this.pollRings.push(q);
    });
    this.polls.set(fds);
  }

  private closeKicks(): void {
    this.kicks.forEach((fd, q) => {
      if (fd !== null) libc.close(fd);
      this.kicks[q] = null;
    });
  }

  private post(e: IoEvent): void {
    this.port.postMessage(e);
  }

  private readonly loop = (): void => {
    if (!this.running) return;
    const n = libc.poll(this.polls.u8, this.polls.count, IDLE_POLL_MS);
    if (n > 0) {
      if (this.polls.revents(0) !== 0) libc.read(this.data.wakeFd, this.drain);
      for (let i = 2; i < this.polls.count; i++) {
        if (this.polls.revents(i) === 0) continue;
        const q = this.pollRings[i];
        const fd = this.kicks[q];
        if (fd !== null && libc.read(fd, this.drain) === 8) ring(this.doorbellI32, this.data.doorbells[q]);
      }
      if (this.polls.revents(1) !== 0) this.socketReady();
    }
    setImmediate(this.loop);
  };

  private socketReady(): void {
    if (this.conn < 0) {
      this.conn = libc.accept(this.data.listenFd);
      this.accepting = false;
      this.post({ type: 'connected', fd: this.conn });
      this.rebuild();
      return;
    }
    const m = this.reader.read(this.conn);
    if (typeof m !== 'string') {
      this.post(m);
      return;
    }
    // Kicks of the old session are meaningless now: the control plane tears it down.
    this.closeKicks();
    this.post({ type: 'closed', fd: this.conn, reason: m });
    this.conn = -1;
    this.rebuild();
  }
}
