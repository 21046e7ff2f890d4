import { Duplex, type DuplexOptions } from 'node:stream';
import { VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_F_RECEIVE, VSOCK_SHUTDOWN_F_SEND, VSOCK_TYPE_STREAM } from '../../spec/vsock.js';
import { InvalidArgumentError } from '../../errors.js';
import { ConnState } from './connection-states.js';
import { Credit } from './credit.js';
import { VsockError } from './vsock-error.js';
import type { VsockServer } from './vsock-server.js';
import type { VsockStack } from './vsock-stack.js';

const SHUTDOWN_BOTH = VSOCK_SHUTDOWN_F_RECEIVE | VSOCK_SHUTDOWN_F_SEND;
const NO_BUFFER = Buffer.alloc(0);

/**
 * Bytes a stream socket's Readable holds before fwd_cnt stops advancing:
 * one maximum packet, set here because Node's default moved from 16 KiB
 * (Node 20) to 64 KiB (Node 22), and credit must not depend on the runtime.
 */
export const VSOCK_READABLE_HIGH_WATER_MARK = 64 * 1024;

/**
 * Copy len bytes at payload[off] into a new Buffer (the one copy a Node
 * stream needs). The Buffer starts at the same address modulo 8 as the
 * source: V8 copies out of shared memory word by word only between equally
 * aligned addresses, byte by byte otherwise (a vsock payload in a channel
 * record sits 4 bytes past an 8-byte boundary, after its 44-byte header).
 */
export function copyOut(payload: Uint8Array, off: number, len: number): Buffer {
  if (len <= 32) {
    const buf = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i++) buf[i] = payload[off + i];
    return buf;
  }
  const skew = (payload.byteOffset + off) & 7;
  const buf = Buffer.allocUnsafe(len + skew).subarray(skew);
  buf.set(payload.subarray(off, off + len));
  return buf;
}

/** What a stack gives a socket it creates. */
export interface VsockConnectionInit {
  stack: VsockStack;
  /** VSOCK_TYPE_STREAM or VSOCK_TYPE_SEQPACKET. */
  vsockType: number;
  localPort: number;
  remoteCid: number;
  remotePort: number;
  /** Our buf_alloc for this connection. */
  bufAlloc: number;
  state: ConnState;
}

/**
 * One vsock connection as a Node Duplex: the connection logic both socket
 * types share (state, credit, the send position, shutdown, RST, close
 * handshake, timeouts). The stack moves the packets; the subclasses only
 * frame bytes (VsockSocket: a byte stream) or messages
 * (VsockSeqpacketSocket: EOM / EOR).
 *
 * Memory of one connection stays bounded: received bytes wait here (at most
 * buf_alloc, the credit we give) until the Readable takes them (its
 * highWaterMark, plus one packet or message), and fwd_cnt advances only as
 * the Readable takes them. Writes are handed to the port in packets of at
 * most port.maxPayload and never beyond the peer's credit; _write's callback
 * waits until the chunk is all out, so Node's writableHighWaterMark is the
 * sender's bound and write() returns false when it is reached.
 *
 * Fields marked internal are the stack's (one thread owns both).
 */
export abstract class VsockConnection extends Duplex {
  /** Our CID when the connection was made. */
  readonly localCid: number;
  readonly localPort: number;
  readonly remoteCid: number;
  readonly remotePort: number;
  /** Payload bytes received. */
  bytesRead = 0;
  /** Payload bytes handed to the port. */
  bytesWritten = 0;
  /** The server that accepted it (null for connect()). */
  server: VsockServer | null = null;

  /** @internal VSOCK_TYPE_STREAM or VSOCK_TYPE_SEQPACKET. */
  readonly vsockType: number;
  /** @internal */
  readonly stack: VsockStack;
  /** @internal */
  connState: ConnState;
  /** @internal */
  readonly credit: Credit;
  /** @internal The peer's SHUTDOWN flags so far. */
  peerShutdown = 0;

  // --- connection table (VsockStack): a chain of connections sharing a key ---
  /** @internal */
  tableKey = 0;
  /** @internal */
  bucketNext: VsockConnection | null = null;

  // --- send state, driven by the stack's round-robin pump ---
  /** @internal The chunk (stream) or message (seqpacket) being sent. */
  txBuf: Uint8Array | null = null;
  /** @internal */
  txOff = 0;
  /** @internal */
  txEnd = 0;
  /** @internal Flags for the last packet of txBuf (EOM / EOR for seqpacket, 0 for stream). */
  txFlags = 0;
  /** @internal _write's callback for txBuf. */
  txCb: ((err?: Error | null) => void) | null = null;
  /** @internal In the stack's ring of connections with data to send. */
  inSendRing = false;
  /** @internal */
  sendNext: VsockConnection | null = null;
  /** @internal Done chunks whose callbacks run after the pump. */
  doneNext: VsockConnection | null = null;
  /** @internal */
  doneCb: ((err?: Error | null) => void) | null = null;
  /** @internal Waiting for credit (peer_free was 0 with data pending). */
  creditBlocked = false;
  /** @internal A CREDIT_REQUEST went out for the current stall. */
  creditRequested = false;
  /** @internal A CREDIT_UPDATE sits in the stack's control queue. */
  creditUpdateQueued = false;
  /** @internal A CREDIT_REQUEST sits in the stack's control queue. */
  creditRequestQueued = false;

  // --- receive state ---
  /** Received buffers the Readable has not taken yet (from rxHead on). */
  private readonly rxQueue: Buffer[] = [];
  private rxHead = 0;
  /** The Readable wants more (the last push returned true, or _read was called). */
  private rxWanted = true;
  private eofPushed = false;

  // --- timers and pending callbacks ---
  private connectTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private idleMs = 0;
  /** _destroy's callback while CLOSING (the close handshake). */
  private closeCb: ((err?: Error | null) => void) | null = null;
  /** _final's callback while still CONNECTING. */
  private finalCb: ((err?: Error | null) => void) | null = null;

  protected constructor(init: VsockConnectionInit, options: DuplexOptions) {
    super({ ...options, allowHalfOpen: true, emitClose: true, autoDestroy: true });
    this.stack = init.stack;
    this.vsockType = init.vsockType;
    this.localCid = init.stack.localCid;
    this.localPort = init.localPort;
    this.remoteCid = init.remoteCid;
    this.remotePort = init.remotePort;
    this.connState = init.state;
    this.credit = new Credit(init.bufAlloc);
  }

  /** True while the REQUEST waits for its RESPONSE (net.Socket.connecting). */
  get connecting(): boolean {
    return this.connState === ConnState.CONNECTING;
  }

  /** True until the connection is established (net.Socket.pending). */
  get pending(): boolean {
    return this.connState === ConnState.CONNECTING || this.connState === ConnState.ACCEPTING;
  }

  /** As net.Socket.readyState: 'opening' while connecting, 'open', 'closing' during the close handshake, else 'closed'. */
  get readyState(): string {
    switch (this.connState) {
      case ConnState.CONNECTING:
        return 'opening';
      case ConnState.ESTABLISHED:
        return 'open';
      case ConnState.CLOSING:
        return 'closing';
      default:
        return 'closed';
    }
  }

  /** The idle timeout set by setTimeout() (undefined when none). */
  get timeout(): number | undefined {
    return this.idleMs > 0 ? this.idleMs : undefined;
  }

  /** Our address, as net.Socket.address() gives it. */
  address(): { cid: number; port: number } {
    return { cid: this.localCid, port: this.localPort };
  }

  /**
   * Idle timeout as net.Socket.setTimeout: after `ms` without a packet of
   * data in either direction, 'timeout' is emitted (the socket stays open).
   * 0 disables it; `callback` is added as a once('timeout') listener (removed
   * with 0).
   */
  setTimeout(ms: number, callback?: () => void): this {
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError(`setTimeout: ${ms} is not a number of milliseconds >= 0`);
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    this.idleMs = ms;
    if (ms > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => this.emit('timeout'), ms);
      this.idleTimer.unref();
    }
    if (callback !== undefined) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    return this;
  }

  /** @internal Data moved: restart the idle timer (no allocation). */
  touch(): void {
    if (this.idleTimer !== null) this.idleTimer.refresh();
  }

  // ------------------------------------------------------------- writing

  /** @internal Subclass _write: hand one chunk / message to the send loop. */
  protected startTx(data: Uint8Array, lastFlags: number, cb: (err?: Error | null) => void): void {
    if (this.connState === ConnState.CLOSED || this.connState === ConnState.CLOSING || (this.peerShutdown & VSOCK_SHUTDOWN_F_RECEIVE) !== 0) {
      cb(new VsockError('EPIPE', `write to ${this.describe()}: the peer will not receive any more`));
      return;
    }
    this.txBuf = data;
    this.txOff = 0;
    this.txEnd = data.length;
    this.txFlags = lastFlags;
    this.txCb = cb;
    this.stack.kickSend(this);
  }

  /** @internal Fail the chunk being sent (its callback gets err). */
  failTx(err: Error): void {
    const cb = this.txCb;
    this.txBuf = null;
    this.txCb = null;
    if (cb !== null) cb(err);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.connState === ConnState.CONNECTING || this.connState === ConnState.ACCEPTING) {
      this.finalCb = cb;
      return;
    }
    if (this.connState === ConnState.ESTABLISHED) {
      // Every write's callback has run: all data is in the port before this SHUTDOWN.
      this.stack.sendControl(this, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_F_SEND);
    }
    cb();
  }

  // ------------------------------------------------------------- reading

  /** @internal Subclass framing: an RW packet's payload (already counted in rx_cnt). */
  abstract rxData(payload: Uint8Array, off: number, len: number, flags: number): void;

  /** Hand one received buffer (a chunk, or a whole message) to the Readable, or queue it. */
  protected rxEnqueue(buf: Buffer): void {
    if (this.rxWanted && this.rxHead === this.rxQueue.length) {
      this.credit.onConsumed(buf.length);
      this.rxWanted = this.push(buf);
      this.stack.afterConsume(this);
    } else {
      this.rxQueue.push(buf);
    }
  }

  override _read(): void {
    this.rxWanted = true;
    const q = this.rxQueue;
    let h = this.rxHead;
    let moved = false;
    while (h < q.length) {
      const b = q[h];
      q[h++] = NO_BUFFER;
      this.credit.onConsumed(b.length);
      moved = true;
      if (!this.push(b)) {
        this.rxWanted = false;
        break;
      }
    }
    if (h === q.length) {
      q.length = 0;
      h = 0;
    }
    this.rxHead = h;
    if (h === 0 && (this.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) this.rxDrained();
    if (moved) this.stack.afterConsume(this);
  }

  /** @internal Bytes waiting here for the Readable. */
  get rxQueuedBuffers(): number {
    return this.rxQueue.length - this.rxHead;
  }

  /** Everything received is with the Readable and the peer will send no more: EOF; RST once it shut both. */
  private rxDrained(): void {
    if (!this.eofPushed) {
      this.eofPushed = true;
      this.push(null);
    }
    if (this.peerShutdown === SHUTDOWN_BOTH && this.connState === ConnState.ESTABLISHED) {
      // Linux virtio_transport_recv_connected: peer_shutdown == SHUTDOWN_MASK and
      // no data left -> reset; the connection leaves the table, the socket lives
      // on until its user is done with it.
      this.stack.sendRst(this);
      this.stack.detach(this);
    }
  }

  /** @internal SHUTDOWN from the peer (5.10.6.4: flags are hints, RCV | SEND). */
  onPeerShutdown(flags: number): void {
    const added = flags & SHUTDOWN_BOTH & ~this.peerShutdown;
    this.peerShutdown |= flags & SHUTDOWN_BOTH;
    if ((added & VSOCK_SHUTDOWN_F_RECEIVE) !== 0 && this.txBuf !== null) {
      this.failTx(new VsockError('EPIPE', `${this.describe()}: the peer shut down its receive side`));
    }
    if ((this.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) {
      this.discardPartial();
      if (this.rxHead === this.rxQueue.length) this.rxDrained();
    }
  }

  /** Seqpacket: drop a message that can no longer be completed. */
  protected discardPartial(): void {}

  // ------------------------------------------------------------- state changes

  /** @internal CONNECTING: start the connect timer. */
  startConnectTimer(ms: number): void {
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (this.connState !== ConnState.CONNECTING) return;
      this.stack.stats.connectTimeouts++;
      this.abort(true, new VsockError('ETIMEDOUT', `connect to ${this.describe()}: no RESPONSE within ${ms} ms`));
    }, ms);
  }

  /** @internal RESPONSE arrived (or accept() said yes): connected. */
  establish(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
    this.connState = ConnState.ESTABLISHED;
    this.onEstablished();
    if (this.txBuf !== null) this.stack.kickSend(this);
    const fcb = this.finalCb;
    if (fcb !== null) {
      this.finalCb = null;
      this._final(fcb);
    }
  }

  /** Subclass hook when the peer's buf_alloc is first known. */
  protected onEstablished(): void {}

  /**
   * @internal End the connection now: RST to the peer when `sendRst`, out of
   * the table, and the socket destroyed with `err` (or closed quietly when
   * null). A socket that was CLOSING finishes its close instead.
   */
  abort(sendRst: boolean, err: Error | null): void {
    const was = this.connState;
    if (was === ConnState.CLOSED) return;
    if (sendRst) this.stack.sendRst(this);
    this.stack.detach(this);
    this.clearTimers();
    if (was === ConnState.CLOSING) {
      this.finishClose();
      return;
    }
    if (was === ConnState.ACCEPTING) return; // never given to anyone
    if (!this.destroyed) this.destroy(err ?? undefined);
  }

  /** @internal RST while established. */
  onPeerReset(): void {
    if (this.peerShutdown === SHUTDOWN_BOTH) {
      // The peer closed after shutting both directions: not an error. What is
      // queued stays readable; EOF follows it.
      this.stack.detach(this);
      this.clearTimers();
      return;
    }
    this.abort(false, new VsockError('ECONNRESET', `${this.describe()} was reset by the peer`));
  }

  /** @internal SHUTDOWN while CLOSING: once the peer shut both, answer RST and finish. */
  onClosingShutdown(flags: number): void {
    this.peerShutdown |= flags & SHUTDOWN_BOTH;
    if (this.peerShutdown === SHUTDOWN_BOTH) this.abort(true, null);
  }

  private finishClose(): void {
    const cb = this.closeCb;
    this.closeCb = null;
    if (cb !== null) cb();
  }

  private clearTimers(): void {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.connectTimer = null;
    this.closeTimer = null;
    this.idleTimer = null;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    const gone = err ?? new VsockError('EPIPE', `${this.describe()} was destroyed`);
    if (this.txCb !== null) this.failTx(gone);
    if (this.finalCb !== null) {
      const f = this.finalCb;
      this.finalCb = null;
      f(gone);
    }
    const st = this.connState;
    if (st === ConnState.ESTABLISHED && err === null && this.readableEnded && this.writableFinished) {
      // Both directions shut down cleanly: the close handshake (as Linux
      // virtio_transport_close): RST at once if the peer already shut both,
      // else SHUTDOWN(RCV|SEND) and wait for its RST, or the close timeout.
      if (this.peerShutdown === SHUTDOWN_BOTH) {
        this.abort(true, null);
        cb();
        return;
      }
      this.connState = ConnState.CLOSING;
      this.closeCb = cb;
      this.stack.sendControl(this, VSOCK_OP_SHUTDOWN, SHUTDOWN_BOTH);
      const ms = this.stack.closeTimeoutMs;
      this.closeTimer = setTimeout(() => {
        this.closeTimer = null;
        if (this.connState !== ConnState.CLOSING) return;
        this.stack.stats.closeTimeouts++;
        this.abort(true, null);
      }, ms);
      this.closeTimer.unref();
      return;
    }
    if (st !== ConnState.CLOSED) {
      // destroy() by the user, or an error: RST (5.10.6.4 a reset ends it at once).
      this.stack.sendRst(this);
      this.stack.detach(this);
      this.clearTimers();
    }
    cb(err);
  }

  /** "cid:port -> cid:port" for messages. */
  protected describe(): string {
    return `vsock ${this.localCid}:${this.localPort} -> ${this.remoteCid}:${this.remotePort}`;
  }
}

/**
 * A vsock stream socket (SOCK_STREAM), used like a net.Socket: 'connect',
 * write() with backpressure, end() half-close (SHUTDOWN(SEND)), 'end' when
 * the peer ends, destroy() resets (RST), 'error' ECONNRESET / ECONNREFUSED /
 * ETIMEDOUT, setTimeout() idle timeout.
 */
export class VsockSocket extends VsockConnection {
  /** @internal Made by VsockStack.connect() or a listener. */
  constructor(init: VsockConnectionInit) {
    super({ ...init, vsockType: VSOCK_TYPE_STREAM }, { decodeStrings: true, readableHighWaterMark: VSOCK_READABLE_HIGH_WATER_MARK });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) {
      cb();
      return;
    }
    this.startTx(chunk, 0, cb);
  }

  /** @internal */
  rxData(payload: Uint8Array, off: number, len: number): void {
    if (len === 0) return;
    this.rxEnqueue(copyOut(payload, off, len));
  }
}
