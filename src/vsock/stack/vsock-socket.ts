import { Duplex, type DuplexOptions } from 'node:stream';
import { InvalidArgumentError } from '../../errors.js';
import { copyBytes } from '../../memory/guest-memory.js';
import { VSOCK_SHUTDOWN_F_SEND } from '../../spec/vsock.js';
import { ConnState } from './connection-states.js';
import type { Connection } from './connection.js';
import type { Credit } from './credit.js';
import type { VsockPayloadParts } from './packet-port.js';
import { VSOCK_READABLE_HIGH_WATER_MARK } from './limits.js';
import { VsockError } from './vsock-error.js';
import { type VsockOnread, checkOnreadBuffer } from './vsock-onread.js';
import type { VsockServer } from './vsock-server.js';

const NO_BUFFER = Buffer.alloc(0);

/**
 * Copy len bytes at payload[off] (or every piece of a payload in parts)
 * into a new Buffer (the one copy a Node stream needs). The Buffer starts at
 * the same address modulo 8 as the source: V8 copies out of shared memory
 * word by word only between equally aligned addresses, byte by byte
 * otherwise (a vsock payload in a channel record or a receive buffer sits 4
 * bytes past an 8-byte boundary, after its 44-byte header).
 */
export function copyOut(payload: Uint8Array | VsockPayloadParts, off: number, len: number): Buffer {
  if (!(payload instanceof Uint8Array)) {
    const skew = payload.alignment();
    const buf = Buffer.allocUnsafe(len + skew).subarray(skew);
    payload.copyTo(buf, 0);
    return buf;
  }
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

/**
 * One vsock connection as a Node Duplex: the thin adapter between the
 * net.Socket-like API and the Connection it carries (connection.ts), which
 * owns the state, credit, send position, shutdown, RST and the close
 * handshake. The subclasses frame bytes (VsockSocket: a byte stream) or
 * messages (VsockSeqpacketSocket: EOM / EOR).
 *
 * Memory of one connection stays bounded: received bytes wait here (at most
 * buf_alloc, the credit we give) until the Readable takes them (its
 * highWaterMark, plus one packet or message), and fwd_cnt advances only as
 * the Readable takes them. Writes are handed to the port in packets of at
 * most port.maxPayload and never beyond the peer's credit; _write's callback
 * waits until the chunk is all out, so Node's writableHighWaterMark is the
 * sender's bound and write() returns false when it is reached.
 */
export abstract class VsockConnection extends Duplex {
  /** @internal The connection this socket carries. */
  readonly connection: Connection;

  // --- receive side of the Readable ---
  /** Received buffers the Readable has not taken yet (from rxHead on). */
  protected readonly rxQueue: Buffer[] = [];
  protected rxHead = 0;
  /** The Readable wants more (the last push returned true, or _read was called). */
  private rxWanted = true;
  private eofPushed = false;

  private idleTimer: NodeJS.Timeout | null = null;
  private idleMs = 0;
  /** _final's callback while still CONNECTING. */
  private finalCb: ((err?: Error | null) => void) | null = null;

  /** @internal Made by a subclass for a Connection of the stack; `options` is its own fresh literal, completed here. */
  protected constructor(connection: Connection, options: DuplexOptions) {
    // Set on that literal, not spread into a new one: Duplex built from a
    // spread options object took 5-10 us here against 0.3-0.5 us (Node 20,
    // measured in a loop of 100 k), and every connection makes two sockets.
    options.allowHalfOpen = true;
    options.emitClose = true;
    options.autoDestroy = true;
    super(options);
    this.connection = connection;
    connection.socket = this;
  }

  /** Our CID when the connection was made. */
  get localCid(): number {
    return this.connection.localCid;
  }

  get localPort(): number {
    return this.connection.localPort;
  }

  get remoteCid(): number {
    return this.connection.remoteCid;
  }

  get remotePort(): number {
    return this.connection.remotePort;
  }

  /** Payload bytes received. */
  get bytesRead(): number {
    return this.connection.bytesRead;
  }

  /** Payload bytes handed to the port. */
  get bytesWritten(): number {
    return this.connection.bytesWritten;
  }

  /** The server that accepted it (null for connect()). */
  get server(): VsockServer | null {
    return this.connection.server;
  }

  /** @internal VSOCK_TYPE_STREAM or VSOCK_TYPE_SEQPACKET. */
  get vsockType(): number {
    return this.connection.vsockType;
  }

  /** @internal */
  get connState(): ConnState {
    return this.connection.connState;
  }

  /** @internal */
  get credit(): Credit {
    return this.connection.credit;
  }

  /** @internal The peer's SHUTDOWN flags so far. */
  get peerShutdown(): number {
    return this.connection.peerShutdown;
  }

  /** True while the REQUEST waits for its RESPONSE (net.Socket.connecting). */
  get connecting(): boolean {
    return this.connection.connState === ConnState.CONNECTING;
  }

  /** True until the connection is established (net.Socket.pending). */
  get pending(): boolean {
    const st = this.connection.connState;
    return st === ConnState.CONNECTING || st === ConnState.ACCEPTING;
  }

  /** As net.Socket.readyState: 'opening' while connecting, 'open', 'closing' during the close handshake, else 'closed'. */
  get readyState(): string {
    switch (this.connection.connState) {
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
    this.stopIdleTimer();
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

  // ------------------------------------------------------------- calls from the connection (ConnectionSocket)

  /** @internal Data moved: restart the idle timer (no allocation). */
  touch(): void {
    if (this.idleTimer !== null) this.idleTimer.refresh();
  }

  /** @internal */
  stopIdleTimer(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  /** @internal */
  onConnected(): void {
    this.emit('connect');
    this.emit('ready');
  }

  /** @internal Subclass hook when the peer's buf_alloc is first known. */
  onEstablished(): void {}

  /** @internal */
  runPendingFinal(): void {
    const fcb = this.finalCb;
    if (fcb !== null) {
      this.finalCb = null;
      this._final(fcb);
    }
  }

  /** @internal */
  onAborted(err: Error | null): void {
    if (!this.destroyed) this.destroy(err ?? undefined);
  }

  /** @internal Subclass framing: an RW packet's payload (already counted in rx_cnt). */
  abstract rxData(payload: Uint8Array | VsockPayloadParts, off: number, len: number, flags: number): void;

  /** @internal */
  onPeerSendShutdown(): void {
    this.discardPartial();
    if (this.rxHead === this.rxQueue.length) this.rxDrained();
  }

  /** Seqpacket: drop a message that can no longer be completed. */
  protected discardPartial(): void {}

  // ------------------------------------------------------------- Duplex

  override _final(cb: (err?: Error | null) => void): void {
    const st = this.connection.connState;
    if (st === ConnState.CONNECTING || st === ConnState.ACCEPTING) {
      this.finalCb = cb;
      return;
    }
    // Every write's callback has run: all data is in the port before this SHUTDOWN.
    this.connection.shutdownSend(this.readableEnded);
    cb();
  }

  /** Hand one received buffer (a chunk, or a whole message) to the Readable, or queue it. */
  protected rxEnqueue(buf: Buffer): void {
    if (this.rxWanted && this.rxHead === this.rxQueue.length) {
      this.connection.credit.onConsumed(buf.length);
      this.rxWanted = this.push(buf);
      this.connection.afterConsume();
    } else {
      this.rxQueue.push(buf);
    }
  }

  override _read(): void {
    this.rxWanted = true;
    const q = this.rxQueue;
    const credit = this.connection.credit;
    let h = this.rxHead;
    let moved = false;
    while (h < q.length) {
      const b = q[h];
      q[h++] = NO_BUFFER;
      credit.onConsumed(b.length);
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
    if (h === 0 && (this.connection.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) this.rxDrained();
    if (moved) this.connection.afterConsume();
  }

  /** @internal Bytes waiting here for the Readable. */
  get rxQueuedBuffers(): number {
    return this.rxQueue.length - this.rxHead;
  }

  /** Everything received is with the Readable and the peer will send no more: EOF (the connection may then end). */
  protected rxDrained(): void {
    if (!this.eofPushed) {
      this.eofPushed = true;
      this.push(null);
    }
    this.connection.onDrained();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stopIdleTimer();
    const c = this.connection;
    // The error is made only for a callback still waiting: most sockets end
    // with none, and an Error (its stack captured) per close is what a
    // connection setup rate pays for.
    if (c.txCb !== null || this.finalCb !== null) {
      const gone = err ?? new VsockError('EPIPE', `${c.describe()} was destroyed`);
      if (c.txCb !== null) c.failTx(gone);
      if (this.finalCb !== null) {
        const f = this.finalCb;
        this.finalCb = null;
        f(gone);
      }
    }
    if (c.connState === ConnState.ESTABLISHED && err === null && this.readableEnded && this.writableFinished) {
      // Both directions shut down cleanly: the close handshake.
      c.closeGracefully(cb);
      return;
    }
    c.reset();
    cb(err);
  }

  /** "cid:port -> cid:port" for messages. */
  protected describe(): string {
    return this.connection.describe();
  }
}

/**
 * A vsock stream socket (SOCK_STREAM), used like a net.Socket: 'connect',
 * write() with backpressure, end() half-close (SHUTDOWN(SEND)), 'end' when
 * the peer ends, destroy() resets (RST), 'error' ECONNRESET / ECONNREFUSED /
 * ETIMEDOUT, setTimeout() idle timeout. With the `onread` option of
 * connect() / listen() (VsockOnread) it reads into its reader's own buffer
 * instead of emitting 'data' Buffers, as net.Socket does.
 */
export class VsockSocket extends VsockConnection {
  /** The reader's receive buffer (the onread option), or null: 'data' Buffers. */
  private readonly onread: VsockOnread | null;
  /** onread: the callback returned false (or pause()): no callback until resume() or read(). */
  private rxPaused = false;
  /** onread: bytes of rxQueue[rxHead] already handed to the callback. */
  private rxHeadOff = 0;
  /** onread: a drain of the queued bytes is scheduled (resume() hands them over on the next tick, as Node reads again). */
  private drainScheduled = false;

  /** @internal Made by VsockStack.connect() or a listener; `onread` already checked (checkOnread). */
  constructor(connection: Connection, onread?: VsockOnread) {
    super(connection, { decodeStrings: true, readableHighWaterMark: VSOCK_READABLE_HIGH_WATER_MARK });
    this.onread = onread ?? null;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) {
      cb();
      return;
    }
    this.connection.startTx(chunk, 0, cb);
  }

  /** @internal */
  rxData(payload: Uint8Array | VsockPayloadParts, off: number, len: number): void {
    if (len === 0) return;
    if (this.onread === null) {
      this.rxEnqueue(copyOut(payload, off, len));
      return;
    }
    if (this.rxPaused || this.rxHead !== this.rxQueue.length) {
      // Kept until resume(): a copy, made only while the reader is paused.
      this.rxQueue.push(copyOut(payload, off, len));
      return;
    }
    const at = payload instanceof Uint8Array ? off : 0; // parts: off is unused
    const done = this.toReader(payload, at, len);
    if (done < len && !this.destroyed) this.rxQueue.push(rest(payload, at + done, len - done));
    this.connection.afterConsume();
  }

  /**
   * onread: hand payload[off, off + len) to the callback, one buffer-full
   * at a time, fwd_cnt advancing by each. Returns the bytes handed over
   * (fewer than len when the callback paused the socket or destroyed it).
   */
  private toReader(payload: Uint8Array | VsockPayloadParts, off: number, len: number): number {
    const onread = this.onread as VsockOnread;
    const credit = this.connection.credit;
    let done = 0;
    while (done < len && !this.rxPaused && !this.destroyed) {
      const buf = this.readerBuffer(onread);
      if (buf === null) break;
      const n = Math.min(buf.length, len - done);
      if (payload instanceof Uint8Array) copyBytes(payload, off + done, buf, 0, n);
      else payload.copyRange(off + done, n, buf, 0);
      done += n;
      credit.onConsumed(n);
      if (onread.callback.call(this, n, buf) === false) this.rxPaused = true;
    }
    return done;
  }

  /** The buffer to fill next; null (the socket destroyed) when a buffer function gave no usable one. */
  private readerBuffer(onread: VsockOnread): Uint8Array | null {
    const b = onread.buffer;
    if (typeof b !== 'function') return b;
    try {
      return checkOnreadBuffer(`${this.describe()}: the onread.buffer function's result`, b());
    } catch (err) {
      this.destroy(err as Error);
      return null;
    }
  }

  /** onread: the queued bytes to the callback, until it pauses again; EOF once all are through after the peer's SHUTDOWN(SEND). */
  private drainOnread(): void {
    const q = this.rxQueue;
    let h = this.rxHead;
    let moved = false;
    while (h < q.length && !this.rxPaused && !this.destroyed) {
      const b = q[h];
      const n = this.toReader(b, this.rxHeadOff, b.length - this.rxHeadOff);
      moved ||= n > 0;
      this.rxHeadOff += n;
      if (this.rxHeadOff < b.length) break;
      q[h++] = NO_BUFFER;
      this.rxHeadOff = 0;
    }
    if (h === q.length) {
      q.length = 0;
      h = 0;
    }
    this.rxHead = h;
    if (this.destroyed) return;
    if (h === 0 && (this.connection.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) this.rxDrained();
    if (moved) this.connection.afterConsume();
  }

  /**
   * onread: read again; what waits (bytes, or the EOF held back while
   * paused) goes to the callback on the next tick, as net.Socket starts its
   * handle reading again.
   */
  private resumeReader(): void {
    if (!this.rxPaused) return;
    this.rxPaused = false;
    const waiting = this.rxHead !== this.rxQueue.length || (this.connection.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0;
    if (waiting && !this.drainScheduled) {
      this.drainScheduled = true;
      process.nextTick(() => {
        this.drainScheduled = false;
        this.drainOnread();
      });
    }
  }

  override _read(): void {
    if (this.onread === null) super._read();
    else this.resumeReader();
  }

  /** As net.Socket with onread: also stops the callbacks. */
  override pause(): this {
    if (this.onread !== null) this.rxPaused = true;
    return super.pause();
  }

  /** As net.Socket with onread: the callbacks start again (after one returned false, or pause()). */
  override resume(): this {
    if (this.onread !== null) this.resumeReader();
    return super.resume();
  }

  /** As net.Socket with onread: reading again resumes the callbacks. */
  override read(size?: number): unknown {
    if (this.onread !== null) this.resumeReader();
    return super.read(size);
  }

  protected override rxDrained(): void {
    // A paused reader sees EOF only when it reads again (resumeReader), as a stopped net.Socket does.
    if (this.onread !== null && this.rxPaused) return;
    super.rxDrained();
    // No consumer reads the Readable with onread: read(0) lets it see the end and emit 'end' (as net.Socket does).
    if (this.onread !== null) super.read(0);
  }
}

/** The part of a payload the paused reader has not had yet, copied. */
function rest(payload: Uint8Array | VsockPayloadParts, off: number, len: number): Buffer {
  if (payload instanceof Uint8Array) return copyOut(payload, off, len);
  const buf = Buffer.allocUnsafe(len);
  payload.copyRange(off, len, buf, 0);
  return buf;
}
