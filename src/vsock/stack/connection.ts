import {
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_SHUTDOWN_F_RECEIVE,
  VSOCK_SHUTDOWN_F_SEND,
} from '../../spec/vsock.js';
import type { VsockHeader } from '../vsock-header.js';
import { ConnState } from './connection-states.js';
import { Credit } from './credit.js';
import type { VsockPayloadParts } from './packet-port.js';
import { StackLinks } from './stack-links.js';
import type { VsockStackStats } from './stack-stats.js';
import { VsockError } from './vsock-error.js';
import type { VsockServer } from './vsock-server.js';

const SHUTDOWN_BOTH = VSOCK_SHUTDOWN_F_RECEIVE | VSOCK_SHUTDOWN_F_SEND;

/** What a connection needs from its stack: the send scheduler, the table, the counters. */
export interface ConnectionOwner {
  readonly closeTimeoutMs: number;
  /** How long a credit stall lasts before we ask for credit (limits.ts). */
  readonly creditRequestDelayMs: number;
  readonly stats: VsockStackStats;
  /** Send (or queue, in order) one control packet of c. */
  sendControl(c: Connection, op: number, flags: number): void;
  /** c has data to send (or credit again). */
  kickSend(c: Connection): void;
  /** Out of the table (state CLOSED). */
  detach(c: Connection): void;
}

/** What a connection tells the socket that carries it (the Duplex adapter). */
export interface ConnectionSocket {
  /** Frame an RW payload for the reader (valid only during the call: what is kept is copied). */
  rxData(payload: Uint8Array | VsockPayloadParts, off: number, len: number, flags: number): void;
  /** The peer will send no more (SHUTDOWN SEND): drop a partial message, EOF once the reader has everything. */
  onPeerSendShutdown(): void;
  /** ESTABLISHED now: check the chunk waiting to go out (seqpacket: its size against the peer's buf_alloc). */
  onEstablished(): void;
  /** ESTABLISHED now and the queued chunk kicked: run an end() that waited for the connection. */
  runPendingFinal(): void;
  /** The peer accepted our REQUEST: 'connect' and 'ready'. */
  onConnected(): void;
  /** The connection ended under the socket (reset, refused, timed out): destroy it with err (quietly when null). */
  onAborted(err: Error | null): void;
  /** Data moved: restart the idle timer. */
  touch(): void;
  /** The connection left the table: stop the idle timer. */
  stopIdleTimer(): void;
}

/** What a stack gives a connection it creates. */
export interface ConnectionInit {
  owner: ConnectionOwner;
  /** Our CID when the connection is made. */
  localCid: number;
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
 * One vsock connection (virtio 1.2 section 5.10.6), as Firecracker's
 * VsockConnection is one: its state, credit (credit.ts), the send position
 * of the chunk going out, the peer's SHUTDOWN flags, the connect and close
 * timers, and the transitions the state table's actions make
 * (connection-actions.ts runs them): establish, the close handshake, reset,
 * abort. The stack looks it up and schedules its packets; the socket it carries
 * (ConnectionSocket) frames bytes for the user. What the stack's table and
 * scheduler keep on it are StackLinks (one thread owns both).
 */
export class Connection extends StackLinks<Connection> {
  readonly localCid: number;
  readonly localPort: number;
  readonly remoteCid: number;
  readonly remotePort: number;
  /** VSOCK_TYPE_STREAM or VSOCK_TYPE_SEQPACKET. */
  readonly vsockType: number;
  connState: ConnState;
  readonly credit: Credit;
  /** The peer's SHUTDOWN flags so far. */
  peerShutdown = 0;
  /** Our SHUTDOWN flags so far. */
  ourShutdown = 0;
  /** Payload bytes received. */
  bytesRead = 0;
  /** Payload bytes handed to the port. */
  bytesWritten = 0;
  /** The server that accepted it (null for connect()). */
  server: VsockServer | null = null;
  /** The socket this connection carries; set right after construction. */
  socket!: ConnectionSocket;

  // --- send state ---
  /** The chunk (stream) or message (seqpacket) being sent. */
  txBuf: Uint8Array | null = null;
  txOff = 0;
  txEnd = 0;
  /** Flags for the last packet of txBuf (EOM / EOR for seqpacket, 0 for stream). */
  txFlags = 0;
  /** _write's callback for txBuf. */
  txCb: ((err?: Error | null) => void) | null = null;
  /** Waiting for credit (peer_free was 0 with data pending). */
  creditBlocked = false;
  /** A CREDIT_REQUEST went out for the current stall. */
  creditRequested = false;
  /** Fires creditRequestDelayMs after the latest stall began (made at the first stall, refreshed at each). */
  private creditTimer: NodeJS.Timeout | null = null;

  /** @internal */
  readonly owner: ConnectionOwner;
  /** The connect timer while CONNECTING, the close timer while CLOSING. */
  private timer: NodeJS.Timeout | null = null;
  /** The socket's _destroy callback while CLOSING (the close handshake). */
  private closeCb: (() => void) | null = null;

  constructor(init: ConnectionInit) {
    super();
    this.owner = init.owner;
    this.localCid = init.localCid;
    this.vsockType = init.vsockType;
    this.localPort = init.localPort;
    this.remoteCid = init.remoteCid;
    this.remotePort = init.remotePort;
    this.connState = init.state;
    this.credit = new Credit(init.bufAlloc);
  }

  /** "cid:port -> cid:port" for messages. */
  describe(): string {
    return `vsock ${this.localCid}:${this.localPort} -> ${this.remoteCid}:${this.remotePort}`;
  }

  // ------------------------------------------------------------- sending

  /** Hand one chunk / message to the send scheduler; `cb` runs once it is all out (or failed). */
  startTx(data: Uint8Array, lastFlags: number, cb: (err?: Error | null) => void): void {
    const st = this.connState;
    if (st === ConnState.CLOSED || st === ConnState.CLOSING || (this.peerShutdown & VSOCK_SHUTDOWN_F_RECEIVE) !== 0) {
      cb(new VsockError('EPIPE', `write to ${this.describe()}: the peer will not receive any more`));
      return;
    }
    this.txBuf = data;
    this.txOff = 0;
    this.txEnd = data.length;
    this.txFlags = lastFlags;
    this.txCb = cb;
    this.owner.kickSend(this);
  }

  /** Fail the chunk being sent (its callback gets err). */
  failTx(err: Error): void {
    const cb = this.txCb;
    this.txBuf = null;
    this.txCb = null;
    if (cb !== null) cb(err);
  }

  /** Fill `h` for a control packet of this connection (len 0, our credit). */
  fillControl(h: VsockHeader, srcCid: number, op: number, flags: number): void {
    this.fillHeader(h, srcCid, 0, op, flags);
  }

  /**
   * Fill `h` for the next data packet of txBuf: at most maxPayload bytes and
   * at most the peer's credit (5.10.6.3). Returns its payload length, or -1
   * when nothing may go now (no chunk, not established, or no credit: then
   * at most one CREDIT_REQUEST per stall, sent only if the stall outlasts
   * creditRequestDelayMs).
   */
  nextData(h: VsockHeader, srcCid: number, maxPayload: number): number {
    if (this.txBuf === null || this.connState !== ConnState.ESTABLISHED) return -1;
    let n = this.txEnd - this.txOff;
    if (n > 0) {
      const free = this.credit.peerFree();
      if (free === 0) {
        if (!this.creditBlocked) {
          this.creditBlocked = true;
          this.owner.stats.creditStalls++;
          this.armCreditRequest();
        }
        return -1;
      }
      if (n > free) n = free;
      if (n > maxPayload) n = maxPayload;
    } // else: a zero-length seqpacket message, one header-only packet
    this.fillHeader(h, srcCid, n, VSOCK_OP_RW, this.txOff + n === this.txEnd ? this.txFlags : 0);
    return n;
  }

  /**
   * The packet nextData() filled went out with `n` payload bytes. Returns
   * true when that finished the chunk: its callback is then `doneCb`, for the
   * scheduler to run after its pump.
   */
  dataSent(n: number): boolean {
    this.credit.onSent(n);
    this.txOff += n;
    this.bytesWritten += n;
    this.owner.stats.bytesOut += n;
    this.socket.touch();
    if (this.txOff !== this.txEnd) return false;
    this.doneCb = this.txCb;
    this.txCb = null;
    this.txBuf = null;
    return true;
  }

  /**
   * A stall began. 5.10.6.3: a CREDIT_UPDATE is sent when the peer's view of
   * our free space may be stale, a CREDIT_REQUEST when ours may be. Right at
   * the stall ours is not: the peer has not yet seen the packets that used
   * the credit up, and a peer that follows the update rule (credit.ts)
   * answers them with an update of its own once its reader frees space. Only
   * a stall that lasts a round trip and more (creditRequestDelayMs) means the
   * peer waits to be asked. One timer per connection, re-armed per stall.
   */
  private armCreditRequest(): void {
    if (this.creditTimer === null) {
      this.creditTimer = setTimeout(requestCreditIfStalled, this.owner.creditRequestDelayMs, this);
      this.creditTimer.unref();
    } else {
      this.creditTimer.refresh();
    }
  }

  /** The credit timer fired: ask once, if the stall it was armed for still lasts (a new stall re-arms it). */
  requestCredit(): void {
    if (!this.creditBlocked || this.creditRequested || this.connState !== ConnState.ESTABLISHED) return;
    this.creditRequested = true;
    this.owner.sendControl(this, VSOCK_OP_CREDIT_REQUEST, 0);
  }

  private fillHeader(h: VsockHeader, srcCid: number, len: number, op: number, flags: number): void {
    h.srcCid = srcCid;
    h.dstCid = this.remoteCid;
    h.srcPort = this.localPort;
    h.dstPort = this.remotePort;
    h.len = len;
    h.type = this.vsockType;
    h.op = op;
    h.flags = flags;
    this.credit.fill(h);
  }

  // ------------------------------------------------------------- receiving

  /** Every packet of the connection but a type mismatch: the peer's credit numbers (5.10.6.3). */
  onPeerCredit(bufAlloc: number, fwdCnt: number): void {
    this.credit.onPeerHeader(bufAlloc, fwdCnt);
  }

  /** After any packet: resume a sender that waited for credit the packet brought. */
  resumeIfCredit(): void {
    if (this.creditBlocked && this.connState === ConnState.ESTABLISHED && this.credit.peerFree() > 0) {
      this.creditBlocked = false;
      this.creditRequested = false;
      this.owner.kickSend(this);
    }
  }

  /** The reader took bytes: CREDIT_UPDATE when the peer needs to hear of it (credit.ts). */
  afterConsume(): void {
    if (this.connState === ConnState.ESTABLISHED && this.credit.needsUpdate()) this.owner.sendControl(this, VSOCK_OP_CREDIT_UPDATE, 0);
  }

  /**
   * The reader has every byte received and the peer will send no more: once
   * it shut both directions, answer RST and leave the table; the socket lives
   * on until its user is done with it (Linux virtio_transport_recv_connected:
   * peer_shutdown == SHUTDOWN_MASK and no data left -> reset).
   */
  onDrained(): void {
    if (this.peerShutdown === SHUTDOWN_BOTH && this.connState === ConnState.ESTABLISHED) {
      this.owner.sendControl(this, VSOCK_OP_RST, 0);
      this.owner.detach(this);
    }
  }

  // ------------------------------------------------------------- state changes

  /** CONNECTING: start the connect timer (ETIMEDOUT, RST to the peer). */
  startConnectTimer(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.connState !== ConnState.CONNECTING) return;
      this.owner.stats.connectTimeouts++;
      this.abort(true, new VsockError('ETIMEDOUT', `connect to ${this.describe()}: no RESPONSE within ${ms} ms`));
    }, ms);
  }

  /** RESPONSE arrived (or accept() said yes): connected; a queued chunk goes out, a waiting end() runs. */
  establish(): void {
    this.clearTimer();
    this.connState = ConnState.ESTABLISHED;
    this.socket.onEstablished();
    if (this.txBuf !== null) this.owner.kickSend(this);
    this.socket.runPendingFinal();
  }

  /**
   * end() once every write went out: SHUTDOWN(SEND) after the data. When the
   * reader already has the peer's end (`readDone`), the socket closes next
   * and closeGracefully would send SHUTDOWN(RCV|SEND) at once: that one
   * packet goes now instead of two (5.10.6.4: one or more SHUTDOWNs that
   * together say both).
   */
  shutdownSend(readDone: boolean): void {
    if (this.connState !== ConnState.ESTABLISHED) return;
    this.ourShutdown = readDone ? SHUTDOWN_BOTH : VSOCK_SHUTDOWN_F_SEND;
    this.owner.sendControl(this, VSOCK_OP_SHUTDOWN, this.ourShutdown);
  }

  /**
   * Both directions shut down cleanly: the close handshake (as Linux
   * virtio_transport_close): RST at once if the peer already shut both, else
   * SHUTDOWN(RCV|SEND) and wait for its RST, or the close timeout. `done`
   * runs when the connection is gone.
   */
  closeGracefully(done: () => void): void {
    if (this.peerShutdown === SHUTDOWN_BOTH) {
      this.abort(true, null);
      done();
      return;
    }
    this.connState = ConnState.CLOSING;
    this.closeCb = done;
    if (this.ourShutdown !== SHUTDOWN_BOTH) {
      this.ourShutdown = SHUTDOWN_BOTH;
      this.owner.sendControl(this, VSOCK_OP_SHUTDOWN, SHUTDOWN_BOTH);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.connState !== ConnState.CLOSING) return;
      this.owner.stats.closeTimeouts++;
      this.abort(true, null);
    }, this.owner.closeTimeoutMs);
    this.timer.unref();
  }

  /** destroy() by the user, or an error: RST (5.10.6.4 a reset ends it at once), out of the table. */
  reset(): void {
    if (this.connState === ConnState.CLOSED) return;
    this.owner.sendControl(this, VSOCK_OP_RST, 0);
    this.owner.detach(this);
    this.clearTimers();
  }

  /**
   * End the connection now: RST to the peer when `sendRst`, out of the
   * table, and the socket destroyed with `err` (or closed quietly when
   * null). A connection that was CLOSING finishes its close instead; one
   * still ACCEPTING was never given to anyone.
   */
  abort(sendRst: boolean, err: Error | null): void {
    const was = this.connState;
    if (was === ConnState.CLOSED) return;
    if (sendRst) this.owner.sendControl(this, VSOCK_OP_RST, 0);
    this.owner.detach(this);
    this.clearTimers();
    if (was === ConnState.CLOSING) {
      const cb = this.closeCb;
      this.closeCb = null;
      if (cb !== null) cb();
      return;
    }
    if (was !== ConnState.ACCEPTING) this.socket.onAborted(err);
  }

  /** Stop the connection's timers and the socket's idle timer. */
  clearTimers(): void {
    this.clearTimer();
    if (this.creditTimer !== null) {
      clearTimeout(this.creditTimer);
      this.creditTimer = null;
    }
    this.socket.stopIdleTimer();
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}

/** The credit timer's callback (module-level: the timer holds the connection as its argument, no closure per connection). */
function requestCreditIfStalled(c: Connection): void {
  c.requestCredit();
}
