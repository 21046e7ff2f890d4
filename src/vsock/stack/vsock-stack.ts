import { EventEmitter } from 'node:events';
import { InvalidArgumentError } from '../../errors.js';
import {
  VSOCK_DEFAULT_BUF_ALLOC,
  VSOCK_MAX_PKT_PAYLOAD,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_SHUTDOWN_F_SEND,
  VSOCK_TYPE_SEQPACKET,
  VSOCK_TYPE_STREAM,
} from '../../spec/vsock.js';
import { VsockHeader } from '../vsock-header.js';
import { Action, CONN_STATE_NAMES, ConnState, RxEvent, actionOf, rxEventOfOp } from './connection-states.js';
import type { VsockPacketPort } from './packet-port.js';
import { VsockError } from './vsock-error.js';
import { VsockSeqpacketSocket } from './vsock-seqpacket-socket.js';
import { type VsockListenOptions, type VsockListenerOwner, VsockServer } from './vsock-server.js';
import { type VsockConnection, VsockSocket } from './vsock-socket.js';

/** Listen on every port that has no listener of its own. Never allocated as a local port. */
export const VSOCK_PORT_ANY = 0xffffffff;
/** First ephemeral port (Linux: LAST_RESERVED_PORT + 1). */
export const VSOCK_EPHEMERAL_PORT_FIRST = 1024;
const EPHEMERAL_PORT_LAST = 0xfffffffe;
/** Default connection cap of a stack. */
export const VSOCK_DEFAULT_MAX_CONNECTIONS = 4096;
/** Linux VSOCK_DEFAULT_CONNECT_TIMEOUT (2 s). */
export const VSOCK_DEFAULT_CONNECT_TIMEOUT_MS = 2000;
/** Linux VSOCK_CLOSE_TIMEOUT (8 s): how long a close waits for the peer's RST. */
export const VSOCK_DEFAULT_CLOSE_TIMEOUT_MS = 8000;
/**
 * RST answers to packets of no connection that may wait for room in the port;
 * beyond, they are dropped and counted `rstDropped` (a flood of hostile
 * packets must not grow memory). Control packets of connections are never
 * dropped: each connection has at most a handful queued (credit packets
 * coalesce).
 */
export const VSOCK_MAX_QUEUED_RESETS = 256;

const U32_MAX = 0xffffffff;
/** Table key: localPort * 2^21 + low 21 bits of remotePort (< 2^53, exact); a chain resolves the rest. */
const KEY_MUL = 0x200000;
const KEY_LOW = 0x1fffff;
const SEND_IDLE = 0;
const SEND_MORE = 1;
const SEND_PORT_FULL = 2;

export interface VsockStackOptions {
  /** Our CID (guest: from the device config; host: 2). */
  localCid: number;
  /**
   * The most bytes one connection buffers on the receive side: its buf_alloc,
   * the credit the peer may use (default VSOCK_DEFAULT_BUF_ALLOC, 256 KiB;
   * 1 .. 2^32-1, else InvalidArgumentError). A peer that sends beyond it is
   * reset (EPROTO on the socket, counted `creditViolations`); a reader that
   * stops reading stops the writer once this much waits.
   */
  bufferSize?: number;
  /**
   * Connections in the table at once, every state (default
   * VSOCK_DEFAULT_MAX_CONNECTIONS, 4096; a non-negative integer, else
   * InvalidArgumentError). A REQUEST beyond gets RST (counted
   * `maxConnectionsRefused`, the peer sees ECONNREFUSED); connect() beyond
   * throws VsockError EMAXCONN.
   */
  maxConnections?: number;
  /** Default 2000. */
  connectTimeoutMs?: number;
  /** Default 8000. */
  closeTimeoutMs?: number;
  /** VIRTIO_VSOCK_F_SEQPACKET negotiated; default false: seqpacket packets get RST, connect({ type: 'seqpacket' }) throws. */
  seqpacket?: boolean;
}

/** Counters of one stack (a plain object; read it any time). */
export interface VsockStackStats {
  packetsIn: number;
  packetsOut: number;
  /** RW payload bytes. */
  bytesIn: number;
  bytesOut: number;
  requestsIn: number;
  requestsSent: number;
  responsesIn: number;
  responsesSent: number;
  rstReceived: number;
  rstSent: number;
  shutdownsIn: number;
  shutdownsSent: number;
  rwIn: number;
  rwSent: number;
  creditUpdatesIn: number;
  creditUpdatesSent: number;
  creditRequestsIn: number;
  creditRequestsSent: number;
  /** RW beyond the credit we advertised (the connection was reset). */
  creditViolations: number;
  /** Packets (not RST) for no connection, answered with RST. */
  unknownConnection: number;
  /** op 0 (INVALID) or above 7. */
  badOp: number;
  /** Unknown / not negotiated type, or the other type than the connection's. */
  badType: number;
  /** hdr.len larger than the payload the port handed over: dropped. */
  badLength: number;
  /** REQUEST for a connection that exists: ignored. */
  duplicateRequest: number;
  /** A valid op the connection's state has no use for (reset or dropped, per the state table). */
  unexpectedOp: number;
  /** Dropped on purpose (RST with no connection, credit packets while closing, after close()). */
  ignored: number;
  /** REQUEST refused: the listener's backlog of pending accept() decisions was full. */
  backlogFull: number;
  /** REQUEST refused: maxConnections open. */
  maxConnectionsRefused: number;
  /** REQUEST refused by the listener's accept() (or the listener closed meanwhile). */
  acceptRefused: number;
  /** dst_cid was not our CID: dropped. */
  wrongCid: number;
  connectTimeouts: number;
  closeTimeouts: number;
  /** Control packets that had to wait for room in the port. */
  controlQueued: number;
  /** RST answers dropped because VSOCK_MAX_QUEUED_RESETS were already waiting. */
  rstDropped: number;
  /** port.send() returned false. */
  portFull: number;
  /** port.flush() calls (one per burst). */
  flushes: number;
  /** Connections in the table now (ACCEPTING, CONNECTING, ESTABLISHED, CLOSING). */
  connections: number;
  connectionsOpened: number;
  connectionsClosed: number;
}

function newStats(): VsockStackStats {
  return {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    requestsIn: 0,
    requestsSent: 0,
    responsesIn: 0,
    responsesSent: 0,
    rstReceived: 0,
    rstSent: 0,
    shutdownsIn: 0,
    shutdownsSent: 0,
    rwIn: 0,
    rwSent: 0,
    creditUpdatesIn: 0,
    creditUpdatesSent: 0,
    creditRequestsIn: 0,
    creditRequestsSent: 0,
    creditViolations: 0,
    unknownConnection: 0,
    badOp: 0,
    badType: 0,
    badLength: 0,
    duplicateRequest: 0,
    unexpectedOp: 0,
    ignored: 0,
    backlogFull: 0,
    maxConnectionsRefused: 0,
    acceptRefused: 0,
    wrongCid: 0,
    connectTimeouts: 0,
    closeTimeouts: 0,
    controlQueued: 0,
    rstDropped: 0,
    portFull: 0,
    flushes: 0,
    connections: 0,
    connectionsOpened: 0,
    connectionsClosed: 0,
  };
}

/**
 * Control packets waiting for room in the port, in order (a ring of parallel
 * arrays: nothing allocated per packet). An entry of a connection takes its
 * addresses and credit from the connection when it goes out; an RST answer
 * to a packet of no connection carries its own addresses.
 */
class ControlQueue {
  conn: Array<VsockConnection | null>;
  op: Uint8Array;
  flags: Uint32Array;
  cid: Float64Array;
  srcPort: Uint32Array;
  dstPort: Uint32Array;
  type: Uint16Array;
  head = 0;
  count = 0;

  constructor(private cap = 64) {
    this.conn = new Array<VsockConnection | null>(cap).fill(null);
    this.op = new Uint8Array(cap);
    this.flags = new Uint32Array(cap);
    this.cid = new Float64Array(cap);
    this.srcPort = new Uint32Array(cap);
    this.dstPort = new Uint32Array(cap);
    this.type = new Uint16Array(cap);
  }

  push(conn: VsockConnection | null, op: number, flags: number, cid: number, srcPort: number, dstPort: number, type: number): void {
    if (this.count === this.cap) this.grow();
    const i = (this.head + this.count) % this.cap;
    this.conn[i] = conn;
    this.op[i] = op;
    this.flags[i] = flags;
    this.cid[i] = cid;
    this.srcPort[i] = srcPort;
    this.dstPort[i] = dstPort;
    this.type[i] = type;
    this.count++;
  }

  shift(): void {
    this.conn[this.head] = null;
    this.head = (this.head + 1) % this.cap;
    this.count--;
  }

  clear(): void {
    while (this.count > 0) this.shift();
    this.head = 0;
  }

  private grow(): void {
    const cap = this.cap * 2;
    const order = (n: number): number => (this.head + n) % this.cap;
    const conn = new Array<VsockConnection | null>(cap).fill(null);
    const op = new Uint8Array(cap);
    const flags = new Uint32Array(cap);
    const cid = new Float64Array(cap);
    const srcPort = new Uint32Array(cap);
    const dstPort = new Uint32Array(cap);
    const type = new Uint16Array(cap);
    for (let n = 0; n < this.count; n++) {
      const i = order(n);
      conn[n] = this.conn[i];
      op[n] = this.op[i];
      flags[n] = this.flags[i];
      cid[n] = this.cid[i];
      srcPort[n] = this.srcPort[i];
      dstPort[n] = this.dstPort[i];
      type[n] = this.type[i];
    }
    this.conn = conn;
    this.op = op;
    this.flags = flags;
    this.cid = cid;
    this.srcPort = srcPort;
    this.dstPort = dstPort;
    this.type = type;
    this.cap = cap;
    this.head = 0;
  }
}

const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX;
const isCid = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * The virtio-vsock connection layer, the same on both sides of a link (the
 * guest driver and the host side each run one over their own packet port):
 * the connection table, listeners, the state machine of
 * connection-states.ts, credit flow control (credit.ts), and a fair send
 * loop over one VsockPacketPort.
 *
 * Sending: control packets (REQUEST, RESPONSE, SHUTDOWN, RST, CREDIT_*) go
 * out first, in order; when the port is full they wait in a bounded queue.
 * Data goes round-robin over the connections that have some, one packet per
 * turn, each packet at most port.maxPayload and within the peer's credit.
 * When port.send() returns false everything waits for onWritable(). One
 * port.flush() ends every synchronous burst that sent anything (a
 * microtask), never one per packet. One VsockHeader is reused for every
 * packet sent.
 *
 * Receiving: receive() runs one packet through the state table.
 */
export class VsockStack extends EventEmitter implements VsockListenerOwner {
  /** Our CID; a transport reset may change it. */
  localCid: number;
  readonly bufferSize: number;
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly seqpacket: boolean;
  readonly stats: VsockStackStats = newStats();

  private readonly port: VsockPacketPort;
  private readonly maxPayload: number;
  /** The one header every packet is sent with. */
  private readonly hdr = new VsockHeader();
  /** Connections by key(localPort, remotePort); a chain through bucketNext holds the rest of the tuple. */
  private readonly conns = new Map<number, VsockConnection>();
  private connCount = 0;
  /** Connections per local port (ephemeral allocation skips ports in use). */
  private readonly portUse = new Map<number, number>();
  private readonly servers = new Map<number, VsockServer>();
  private anyServer: VsockServer | null = null;
  private nextEphemeral = VSOCK_EPHEMERAL_PORT_FIRST;
  private readonly ctl = new ControlQueue();
  private rawQueued = 0;
  private sendHead: VsockConnection | null = null;
  private sendTail: VsockConnection | null = null;
  private doneHead: VsockConnection | null = null;
  private doneTail: VsockConnection | null = null;
  private pumping = false;
  private portBlocked = false;
  private flushPending = false;
  private closed = false;
  private readonly flushTask = (): void => {
    this.flushPending = false;
    this.stats.flushes++;
    this.port.flush();
  };

  constructor(port: VsockPacketPort, options: VsockStackOptions) {
    super();
    if (!isCid(options.localCid)) throw new InvalidArgumentError(`localCid ${options.localCid} is not a CID`);
    const bufferSize = options.bufferSize ?? VSOCK_DEFAULT_BUF_ALLOC;
    if (!isU32(bufferSize) || bufferSize === 0) throw new InvalidArgumentError(`bufferSize ${bufferSize} must be 1 .. 2^32-1`);
    const maxPayload = port.maxPayload;
    if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > VSOCK_MAX_PKT_PAYLOAD) {
      throw new InvalidArgumentError(`port.maxPayload ${maxPayload} must be 1 .. ${VSOCK_MAX_PKT_PAYLOAD}`);
    }
    this.port = port;
    this.maxPayload = maxPayload;
    this.localCid = options.localCid;
    this.bufferSize = bufferSize;
    this.maxConnections = options.maxConnections ?? VSOCK_DEFAULT_MAX_CONNECTIONS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? VSOCK_DEFAULT_CONNECT_TIMEOUT_MS;
    this.closeTimeoutMs = options.closeTimeoutMs ?? VSOCK_DEFAULT_CLOSE_TIMEOUT_MS;
    if (!Number.isInteger(this.maxConnections) || this.maxConnections < 0) throw new InvalidArgumentError(`maxConnections ${this.maxConnections} must be a non-negative integer`);
    if (!(this.connectTimeoutMs > 0)) throw new InvalidArgumentError(`connectTimeoutMs ${this.connectTimeoutMs} must be > 0`);
    if (!(this.closeTimeoutMs > 0)) throw new InvalidArgumentError(`closeTimeoutMs ${this.closeTimeoutMs} must be > 0`);
    this.seqpacket = options.seqpacket ?? false;
  }

  /** Connections in the table now. */
  get connectionCount(): number {
    return this.connCount;
  }

  // ================================================================ public API

  /** Open a stream connection (REQUEST now; 'connect' on RESPONSE). */
  connect(remoteCid: number, remotePort: number, options?: { type?: 'stream'; timeoutMs?: number; localPort?: number }): VsockSocket;
  /** Open a seqpacket connection (needs `seqpacket` negotiated). */
  connect(remoteCid: number, remotePort: number, options: { type: 'seqpacket'; timeoutMs?: number; localPort?: number }): VsockSeqpacketSocket;
  connect(
    remoteCid: number,
    remotePort: number,
    options?: { type?: 'stream' | 'seqpacket'; timeoutMs?: number; localPort?: number },
  ): VsockSocket | VsockSeqpacketSocket {
    this.checkOpen();
    if (!isCid(remoteCid)) throw new InvalidArgumentError(`connect: remote CID ${remoteCid} is not a CID`);
    if (!isU32(remotePort)) throw new InvalidArgumentError(`connect: remote port ${remotePort} is not a u32`);
    const type = options?.type ?? 'stream';
    const vsockType = this.typeCode(type);
    const timeoutMs = options?.timeoutMs ?? this.connectTimeoutMs;
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`connect: timeoutMs ${timeoutMs} must be > 0`);
    if (this.connCount >= this.maxConnections) {
      throw new VsockError('EMAXCONN', `connect to ${remoteCid}:${remotePort}: ${this.connCount} connections open (maxConnections)`);
    }
    let localPort = options?.localPort;
    if (localPort === undefined) {
      localPort = this.allocatePort();
    } else {
      if (!isU32(localPort) || localPort === VSOCK_PORT_ANY) throw new InvalidArgumentError(`connect: local port ${localPort} is not a usable port`);
      if (this.lookup(localPort, remoteCid, remotePort) !== null) {
        throw new VsockError('EADDRINUSE', `connect: ${this.localCid}:${localPort} -> ${remoteCid}:${remotePort} exists`);
      }
    }
    const c = this.newConnection(vsockType, localPort, remoteCid, remotePort, ConnState.CONNECTING);
    this.attach(c);
    this.sendControl(c, VSOCK_OP_REQUEST, 0);
    c.startConnectTimer(timeoutMs);
    return c as VsockSocket | VsockSeqpacketSocket;
  }

  /** Listen on `port` (VSOCK_PORT_ANY: every port without a listener of its own). */
  listen(port: number, options?: VsockListenOptions): VsockServer {
    this.checkOpen();
    if (!isU32(port)) throw new InvalidArgumentError(`listen: port ${port} is not a u32`);
    this.typeCode(options?.type ?? 'stream');
    const backlog = options?.backlog;
    if (backlog !== undefined && !(Number.isInteger(backlog) && backlog >= 0)) throw new InvalidArgumentError(`listen: backlog ${backlog}`);
    if (port === VSOCK_PORT_ANY ? this.anyServer !== null : this.servers.has(port)) {
      throw new VsockError('EADDRINUSE', `listen: port ${port} has a listener`);
    }
    const server = new VsockServer(this, port, options);
    if (port === VSOCK_PORT_ANY) this.anyServer = server;
    else this.servers.set(port, server);
    return server;
  }

  /** @internal VsockServer.close(). */
  unlisten(server: VsockServer): void {
    if (this.anyServer === server) this.anyServer = null;
    else if (this.servers.get(server.port) === server) this.servers.delete(server.port);
  }

  /**
   * One received packet: `hdr.len` payload bytes at payload[off..] (valid only
   * during the call: what is kept is copied). Runs the state table.
   */
  receive(hdr: VsockHeader, payload: Uint8Array, off: number): void {
    const s = this.stats;
    s.packetsIn++;
    // Read the header once: actions run user code, and the port may reuse hdr.
    const op = hdr.op;
    const type = hdr.type;
    const len = hdr.len;
    const flags = hdr.flags;
    const srcCid = hdr.srcCid;
    const srcPort = hdr.srcPort;
    const dstPort = hdr.dstPort;
    switch (op) {
      case VSOCK_OP_REQUEST:
        s.requestsIn++;
        break;
      case VSOCK_OP_RESPONSE:
        s.responsesIn++;
        break;
      case VSOCK_OP_RST:
        s.rstReceived++;
        break;
      case VSOCK_OP_SHUTDOWN:
        s.shutdownsIn++;
        break;
      case VSOCK_OP_RW:
        s.rwIn++;
        break;
      case VSOCK_OP_CREDIT_UPDATE:
        s.creditUpdatesIn++;
        break;
      case VSOCK_OP_CREDIT_REQUEST:
        s.creditRequestsIn++;
        break;
    }
    if (this.closed) {
      s.ignored++;
      return;
    }
    // 5.10.6: a packet for another CID is not ours.
    if (hdr.dstCid !== this.localCid) {
      s.wrongCid++;
      return;
    }
    if (len > payload.length - off) {
      s.badLength++;
      return;
    }
    // Unknown type (or SEQPACKET not negotiated): RST, no connection looked at.
    if (type !== VSOCK_TYPE_STREAM && (type !== VSOCK_TYPE_SEQPACKET || !this.seqpacket)) {
      s.badType++;
      if (op !== VSOCK_OP_RST) this.replyRst(srcCid, dstPort, srcPort, type);
      return;
    }
    let event = rxEventOfOp(op);
    const c = this.lookup(dstPort, srcCid, srcPort);
    let server: VsockServer | null = null;
    let state: ConnState;
    if (c !== null) {
      state = c.connState;
      if (c.vsockType !== type) event = RxEvent.TYPE_MISMATCH;
      else c.credit.onPeerHeader(hdr.bufAlloc, hdr.fwdCnt);
    } else {
      server = this.servers.get(dstPort) ?? this.anyServer;
      if (server !== null) {
        state = ConnState.LISTEN;
        if (this.typeCode(server.type) !== type) event = RxEvent.TYPE_MISMATCH;
      } else {
        state = ConnState.CLOSED;
      }
    }

    switch (actionOf(state, event)) {
      case Action.IGNORE:
        s.ignored++;
        break;
      case Action.REPLY_RST:
        s.unknownConnection++;
        if (op !== VSOCK_OP_RST) this.replyRst(srcCid, dstPort, srcPort, type);
        break;
      case Action.REPLY_RST_BAD_OP:
        s.badOp++;
        this.replyRst(srcCid, dstPort, srcPort, type);
        break;
      case Action.REPLY_RST_BAD_TYPE:
        s.badType++;
        if (op !== VSOCK_OP_RST) this.replyRst(srcCid, dstPort, srcPort, type);
        break;
      case Action.ACCEPT:
        this.accept(server as VsockServer, type, srcCid, srcPort, dstPort, hdr.bufAlloc, hdr.fwdCnt);
        break;
      case Action.DUPLICATE_REQUEST:
        s.duplicateRequest++;
        break;
      case Action.ESTABLISH: {
        const conn = c as VsockConnection;
        conn.establish();
        if (conn.connState === ConnState.ESTABLISHED) {
          conn.emit('connect');
          conn.emit('ready');
        }
        break;
      }
      case Action.REFUSED: {
        const conn = c as VsockConnection;
        conn.abort(false, new VsockError('ECONNREFUSED', `connect to ${srcCid}:${srcPort}: refused (RST)`));
        break;
      }
      case Action.RECEIVE: {
        const conn = c as VsockConnection;
        // 5.10.6.3: the peer may not send more than the credit we gave it.
        if (!conn.credit.mayReceive(len)) {
          s.creditViolations++;
          conn.abort(true, new VsockError('EPROTO', `${srcCid}:${srcPort} sent ${len} bytes beyond its credit`));
          break;
        }
        if ((conn.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) {
          s.unexpectedOp++;
          break;
        }
        conn.credit.onReceived(len);
        conn.bytesRead += len;
        s.bytesIn += len;
        conn.touch();
        conn.rxData(payload, off, len, flags);
        break;
      }
      case Action.SEND_CREDIT_UPDATE:
        this.sendControl(c as VsockConnection, VSOCK_OP_CREDIT_UPDATE, 0);
        break;
      case Action.CREDIT_ARRIVED:
        break; // recorded above; sending resumes below
      case Action.PEER_SHUTDOWN:
        (c as VsockConnection).onPeerShutdown(flags);
        break;
      case Action.PEER_RESET:
        (c as VsockConnection).onPeerReset();
        break;
      case Action.RESET_BAD_OP:
        s.badOp++;
        (c as VsockConnection).abort(true, new VsockError('EPROTO', `${srcCid}:${srcPort} sent op ${op}`));
        break;
      case Action.RESET_UNEXPECTED:
        s.unexpectedOp++;
        (c as VsockConnection).abort(true, new VsockError('EPROTO', `${srcCid}:${srcPort} sent op ${op} in state ${CONN_STATE_NAMES[state]}`));
        break;
      case Action.IGNORE_UNEXPECTED:
        s.unexpectedOp++;
        break;
      case Action.CANCEL_ACCEPT:
      case Action.CLOSE_DONE:
        (c as VsockConnection).abort(false, null);
        break;
      case Action.CLOSING_SHUTDOWN:
        (c as VsockConnection).onClosingShutdown(flags);
        break;
    }

    // Credit rides on every packet: resume a sender that waited for it.
    if (c !== null && c.creditBlocked && c.connState === ConnState.ESTABLISHED && c.credit.peerFree() > 0) {
      c.creditBlocked = false;
      c.creditRequested = false;
      this.kickSend(c);
    }
  }

  /** The port has room again: send what waits. */
  onWritable(): void {
    this.portBlocked = false;
    this.pump();
  }

  /**
   * 5.10.6.6 VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: every connection is gone
   * (ECONNRESET on each socket; a closing one just finishes), nothing is
   * sent, queued control packets are dropped; listeners stay.
   */
  transportReset(): void {
    this.ctl.clear();
    this.rawQueued = 0;
    for (let c = this.sendHead; c !== null; ) {
      const next: VsockConnection | null = c.sendNext;
      c.sendNext = null;
      c.inSendRing = false;
      c = next;
    }
    this.sendHead = this.sendTail = null;
    this.portBlocked = false;
    for (const c of this.allConnections()) {
      c.creditUpdateQueued = c.creditRequestQueued = false;
      c.abort(false, new VsockError('ECONNRESET', `vsock ${this.localCid}:${c.localPort} -> ${c.remoteCid}:${c.remotePort}: transport reset`));
    }
  }

  /** Reset every connection (RST sent; sockets close without an error) and close every listener. */
  close(): void {
    if (this.closed) return;
    for (const c of this.allConnections()) c.abort(true, null);
    this.closed = true;
    if (this.anyServer !== null) this.anyServer.markClosed();
    for (const server of this.servers.values()) server.markClosed();
    this.anyServer = null;
    this.servers.clear();
    this.emit('close');
  }

  // ================================================================ internals used by sockets

  /** @internal Send (or queue, in order) one control packet of a connection. */
  sendControl(c: VsockConnection, op: number, flags: number): void {
    if (this.ctl.count === 0 && !this.portBlocked) {
      if (this.sendConnPacket(c, op, flags)) return;
      this.portBlocked = true;
    }
    if (op === VSOCK_OP_CREDIT_UPDATE) {
      if (c.creditUpdateQueued) return;
      c.creditUpdateQueued = true;
    } else if (op === VSOCK_OP_CREDIT_REQUEST) {
      if (c.creditRequestQueued) return;
      c.creditRequestQueued = true;
    }
    this.stats.controlQueued++;
    this.ctl.push(c, op, flags, 0, 0, 0, 0);
  }

  /** @internal RST for a connection. */
  sendRst(c: VsockConnection): void {
    this.sendControl(c, VSOCK_OP_RST, 0);
  }

  /** @internal The reader took bytes: CREDIT_UPDATE when the peer needs to hear of it (credit.ts). */
  afterConsume(c: VsockConnection): void {
    if (c.connState === ConnState.ESTABLISHED && c.credit.needsUpdate()) this.sendControl(c, VSOCK_OP_CREDIT_UPDATE, 0);
  }

  /** @internal A connection has data to send (or credit again). */
  kickSend(c: VsockConnection): void {
    if (c.connState !== ConnState.ESTABLISHED) return; // data waits for RESPONSE
    if (!c.inSendRing) {
      c.inSendRing = true;
      c.sendNext = null;
      if (this.sendTail === null) this.sendHead = c;
      else this.sendTail.sendNext = c;
      this.sendTail = c;
    }
    if (!this.pumping && !this.portBlocked) this.pump();
  }

  /** @internal Out of the table (state CLOSED); the socket object may live on. */
  detach(c: VsockConnection): void {
    if (c.connState === ConnState.CLOSED) return;
    c.connState = ConnState.CLOSED;
    const key = c.tableKey;
    const head = this.conns.get(key);
    if (head === c) {
      if (c.bucketNext === null) this.conns.delete(key);
      else this.conns.set(key, c.bucketNext);
    } else {
      for (let p = head ?? null; p !== null; p = p.bucketNext) {
        if (p.bucketNext === c) {
          p.bucketNext = c.bucketNext;
          break;
        }
      }
    }
    c.bucketNext = null;
    const use = (this.portUse.get(c.localPort) ?? 1) - 1;
    if (use === 0) this.portUse.delete(c.localPort);
    else this.portUse.set(c.localPort, use);
    this.connCount--;
    this.stats.connections = this.connCount;
    this.stats.connectionsClosed++;
  }

  // ================================================================ connection table

  private lookup(localPort: number, remoteCid: number, remotePort: number): VsockConnection | null {
    let c = this.conns.get(localPort * KEY_MUL + (remotePort & KEY_LOW)) ?? null;
    while (c !== null && (c.remotePort !== remotePort || c.remoteCid !== remoteCid || c.localPort !== localPort)) c = c.bucketNext;
    return c;
  }

  private attach(c: VsockConnection): void {
    const key = c.localPort * KEY_MUL + (c.remotePort & KEY_LOW);
    c.tableKey = key;
    c.bucketNext = this.conns.get(key) ?? null;
    this.conns.set(key, c);
    this.portUse.set(c.localPort, (this.portUse.get(c.localPort) ?? 0) + 1);
    this.connCount++;
    this.stats.connections = this.connCount;
    this.stats.connectionsOpened++;
  }

  private allConnections(): VsockConnection[] {
    const all: VsockConnection[] = [];
    for (const head of this.conns.values()) {
      for (let c: VsockConnection | null = head; c !== null; c = c.bucketNext) all.push(c);
    }
    return all;
  }

  /** Linux __vsock_bind_connectible: ephemeral ports from 1024 up, skipping ports in use, wrapping. */
  private allocatePort(): number {
    const span = EPHEMERAL_PORT_LAST - VSOCK_EPHEMERAL_PORT_FIRST + 1;
    for (let i = 0; i < span; i++) {
      const p = this.nextEphemeral;
      this.nextEphemeral = p >= EPHEMERAL_PORT_LAST ? VSOCK_EPHEMERAL_PORT_FIRST : p + 1;
      if (!this.portUse.has(p) && !this.servers.has(p)) return p;
    }
    throw new VsockError('EADDRNOTAVAIL', 'no free local port');
  }

  private newConnection(vsockType: number, localPort: number, remoteCid: number, remotePort: number, state: ConnState): VsockConnection {
    const init = { stack: this, vsockType, localPort, remoteCid, remotePort, bufAlloc: this.bufferSize, state };
    return vsockType === VSOCK_TYPE_SEQPACKET ? new VsockSeqpacketSocket(init) : new VsockSocket(init);
  }

  private typeCode(type: 'stream' | 'seqpacket'): number {
    if (type === 'stream') return VSOCK_TYPE_STREAM;
    if (type === 'seqpacket') {
      if (!this.seqpacket) throw new VsockError('ESOCKTNOSUPPORT', 'seqpacket sockets need VIRTIO_VSOCK_F_SEQPACKET (stack option seqpacket)');
      return VSOCK_TYPE_SEQPACKET;
    }
    throw new InvalidArgumentError(`socket type ${String(type)} is neither 'stream' nor 'seqpacket'`);
  }

  private checkOpen(): void {
    if (this.closed) throw new VsockError('ENETDOWN', 'the vsock stack is closed');
  }

  // ================================================================ accepting

  private accept(server: VsockServer, type: number, remoteCid: number, remotePort: number, localPort: number, bufAlloc: number, fwdCnt: number): void {
    const s = this.stats;
    if (this.connCount >= this.maxConnections) {
      s.maxConnectionsRefused++;
      this.replyRst(remoteCid, localPort, remotePort, type);
      return;
    }
    if (server.pendingAccepts >= server.backlog) {
      s.backlogFull++;
      this.replyRst(remoteCid, localPort, remotePort, type);
      return;
    }
    const c = this.newConnection(type, localPort, remoteCid, remotePort, ConnState.ACCEPTING);
    c.credit.onPeerHeader(bufAlloc, fwdCnt);
    c.server = server;
    this.attach(c);
    const hook = server.acceptHook;
    if (hook === undefined) {
      this.finishAccept(c, true);
      return;
    }
    server.pendingAccepts++;
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = hook({ remoteCid, remotePort, localPort });
    } catch {
      verdict = false;
    }
    if (typeof verdict === 'boolean') {
      server.pendingAccepts--;
      this.finishAccept(c, verdict);
      return;
    }
    Promise.resolve(verdict).then(
      (ok) => {
        server.pendingAccepts--;
        this.finishAccept(c, ok === true);
      },
      () => {
        server.pendingAccepts--;
        this.finishAccept(c, false);
      },
    );
  }

  private finishAccept(c: VsockConnection, ok: boolean): void {
    if (c.connState !== ConnState.ACCEPTING) return; // the peer gave up, or a reset
    const server = c.server as VsockServer;
    if (!ok || !server.listening || this.closed) {
      this.stats.acceptRefused++;
      c.abort(true, null);
      return;
    }
    this.sendControl(c, VSOCK_OP_RESPONSE, 0);
    c.establish();
    server.emitConnection(c as VsockSocket | VsockSeqpacketSocket);
  }

  // ================================================================ sending

  /** RST answering a packet that has no connection (5.10.6.4; Linux virtio_transport_reset_no_sock). */
  private replyRst(dstCid: number, srcPort: number, dstPort: number, type: number): void {
    if (this.ctl.count === 0 && !this.portBlocked) {
      if (this.sendRawRst(dstCid, srcPort, dstPort, type)) return;
      this.portBlocked = true;
    }
    if (this.rawQueued >= VSOCK_MAX_QUEUED_RESETS) {
      this.stats.rstDropped++;
      return;
    }
    this.rawQueued++;
    this.stats.controlQueued++;
    this.ctl.push(null, VSOCK_OP_RST, 0, dstCid, srcPort, dstPort, type);
  }

  private sendRawRst(dstCid: number, srcPort: number, dstPort: number, type: number): boolean {
    const h = this.hdr;
    h.srcCid = this.localCid;
    h.dstCid = dstCid;
    h.srcPort = srcPort;
    h.dstPort = dstPort;
    h.len = 0;
    h.type = type;
    h.op = VSOCK_OP_RST;
    h.flags = 0;
    h.bufAlloc = 0;
    h.fwdCnt = 0;
    if (!this.port.send(h, null, 0, 0)) {
      this.stats.portFull++;
      return false;
    }
    this.sent(VSOCK_OP_RST);
    return true;
  }

  private sendConnPacket(c: VsockConnection, op: number, flags: number): boolean {
    const h = this.hdr;
    h.srcCid = this.localCid;
    h.dstCid = c.remoteCid;
    h.srcPort = c.localPort;
    h.dstPort = c.remotePort;
    h.len = 0;
    h.type = c.vsockType;
    h.op = op;
    h.flags = flags;
    c.credit.fill(h);
    if (!this.port.send(h, null, 0, 0)) {
      this.stats.portFull++;
      return false;
    }
    c.credit.onSent(0);
    this.sent(op);
    return true;
  }

  /** Count a packet out; schedule the burst's one flush. */
  private sent(op: number): void {
    const s = this.stats;
    s.packetsOut++;
    switch (op) {
      case VSOCK_OP_REQUEST:
        s.requestsSent++;
        break;
      case VSOCK_OP_RESPONSE:
        s.responsesSent++;
        break;
      case VSOCK_OP_RST:
        s.rstSent++;
        break;
      case VSOCK_OP_SHUTDOWN:
        s.shutdownsSent++;
        break;
      case VSOCK_OP_RW:
        s.rwSent++;
        break;
      case VSOCK_OP_CREDIT_UPDATE:
        s.creditUpdatesSent++;
        break;
      case VSOCK_OP_CREDIT_REQUEST:
        s.creditRequestsSent++;
        break;
    }
    if (!this.flushPending) {
      this.flushPending = true;
      queueMicrotask(this.flushTask);
    }
  }

  /** Waiting control packets, in order. False when the port filled up. */
  private drainControl(): boolean {
    const q = this.ctl;
    while (q.count > 0) {
      const i = q.head;
      const c = q.conn[i];
      const op = q.op[i];
      if (c !== null) {
        if (c.connState === ConnState.CLOSED && op !== VSOCK_OP_RST) {
          // Ended meanwhile: only its RST still means something.
        } else if (!this.sendConnPacket(c, op, q.flags[i])) {
          this.portBlocked = true;
          return false;
        }
        if (op === VSOCK_OP_CREDIT_UPDATE) c.creditUpdateQueued = false;
        else if (op === VSOCK_OP_CREDIT_REQUEST) c.creditRequestQueued = false;
      } else {
        if (!this.sendRawRst(q.cid[i], q.srcPort[i], q.dstPort[i], q.type[i])) {
          this.portBlocked = true;
          return false;
        }
        this.rawQueued--;
      }
      q.shift();
    }
    return true;
  }

  /**
   * The send loop: control packets first, then one data packet per
   * connection per turn, round robin, until nothing can go or the port is
   * full. Write callbacks of finished chunks run after it (they may write
   * again, re-entering through kickSend).
   */
  private pump(): void {
    if (this.pumping || this.portBlocked) return;
    this.pumping = true;
    try {
      if (this.drainControl()) {
        while (this.sendHead !== null) {
          const c: VsockConnection = this.sendHead;
          const r = this.sendData(c);
          if (r === SEND_PORT_FULL) {
            this.portBlocked = true;
            break;
          }
          this.sendHead = c.sendNext;
          if (this.sendHead === null) this.sendTail = null;
          c.sendNext = null;
          c.inSendRing = false;
          if (r === SEND_MORE) {
            c.inSendRing = true;
            if (this.sendTail === null) this.sendHead = c;
            else this.sendTail.sendNext = c;
            this.sendTail = c;
          }
          if (this.portBlocked) break; // a control packet (CREDIT_REQUEST) found the port full
        }
      }
    } finally {
      this.pumping = false;
    }
    this.runDone();
  }

  /** One data packet of c: at most maxPayload, at most the peer's credit (5.10.6.3). */
  private sendData(c: VsockConnection): number {
    const buf = c.txBuf;
    if (buf === null || c.connState !== ConnState.ESTABLISHED) return SEND_IDLE;
    let n = c.txEnd - c.txOff;
    if (n > 0) {
      const free = c.credit.peerFree();
      if (free === 0) {
        c.creditBlocked = true;
        if (!c.creditRequested) {
          c.creditRequested = true;
          this.sendControl(c, VSOCK_OP_CREDIT_REQUEST, 0);
        }
        return SEND_IDLE;
      }
      if (n > free) n = free;
      if (n > this.maxPayload) n = this.maxPayload;
    } // else: a zero-length seqpacket message, one header-only packet
    const last = c.txOff + n === c.txEnd;
    const h = this.hdr;
    h.srcCid = this.localCid;
    h.dstCid = c.remoteCid;
    h.srcPort = c.localPort;
    h.dstPort = c.remotePort;
    h.len = n;
    h.type = c.vsockType;
    h.op = VSOCK_OP_RW;
    h.flags = last ? c.txFlags : 0;
    c.credit.fill(h);
    if (!this.port.send(h, n === 0 ? null : buf, c.txOff, n)) {
      this.stats.portFull++;
      return SEND_PORT_FULL;
    }
    c.credit.onSent(n);
    c.txOff += n;
    c.bytesWritten += n;
    this.stats.bytesOut += n;
    this.sent(VSOCK_OP_RW);
    c.touch();
    if (!last) return SEND_MORE;
    // The chunk is all out: its callback runs after the pump.
    c.doneCb = c.txCb;
    c.txCb = null;
    c.txBuf = null;
    c.doneNext = null;
    if (this.doneTail === null) this.doneHead = c;
    else this.doneTail.doneNext = c;
    this.doneTail = c;
    return SEND_IDLE;
  }

  private runDone(): void {
    while (this.doneHead !== null) {
      const c: VsockConnection = this.doneHead;
      this.doneHead = c.doneNext;
      if (this.doneHead === null) this.doneTail = null;
      c.doneNext = null;
      const cb = c.doneCb;
      c.doneCb = null;
      if (cb !== null) cb();
    }
  }
}
