import { EventEmitter } from 'node:events';
import { InvalidArgumentError } from '../../errors.js';
import {
  VSOCK_DEFAULT_BUF_ALLOC,
  VSOCK_MAX_PKT_PAYLOAD,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_TYPE_SEQPACKET,
  VSOCK_TYPE_STREAM,
} from '../../spec/vsock.js';
import type { VsockHeader } from '../vsock-header.js';
import { Action, ConnState, RxEvent, actionOf, rxEventOfOp } from './connection-states.js';
import { runConnectionAction } from './connection-actions.js';
import { Connection } from './connection.js';
import { ConnectionTable } from './connection-table.js';
import {
  VSOCK_DEFAULT_CLOSE_TIMEOUT_MS,
  VSOCK_DEFAULT_CONNECT_TIMEOUT_MS,
  VSOCK_DEFAULT_CREDIT_REQUEST_DELAY_MS,
  VSOCK_DEFAULT_MAX_CONNECTIONS,
  VSOCK_PORT_ANY,
} from './limits.js';
import type { VsockPacketPort, VsockPayloadParts } from './packet-port.js';
import { SendScheduler } from './send-scheduler.js';
import { type VsockStackStats, countIn, newStats } from './stack-stats.js';
import { VsockError } from './vsock-error.js';
import { type VsockOnread, checkOnread } from './vsock-onread.js';
import { VsockSeqpacketSocket } from './vsock-seqpacket-socket.js';
import { type VsockListenOptions, type VsockListenerOwner, VsockServer } from './vsock-server.js';
import { VsockConnection, VsockSocket } from './vsock-socket.js';

const U32_MAX = 0xffffffff;

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
  /**
   * How long a sender stalled on credit waits for the peer's CREDIT_UPDATE
   * before it sends a CREDIT_REQUEST (default
   * VSOCK_DEFAULT_CREDIT_REQUEST_DELAY_MS, 100; > 0, else
   * InvalidArgumentError). A peer that updates on its own is never asked.
   */
  creditRequestDelayMs?: number;
  /** VIRTIO_VSOCK_F_SEQPACKET negotiated; default false: seqpacket packets get RST, connect({ type: 'seqpacket' }) throws. */
  seqpacket?: boolean;
}

/** The checked onread option of a connect() or listen() of `vsockType`: stream sockets only (a seqpacket reader gets whole messages). */
function streamOnread(where: string, vsockType: number, onread: unknown): VsockOnread | undefined {
  const checked = checkOnread(where, onread);
  if (checked !== undefined && vsockType !== VSOCK_TYPE_STREAM) throw new InvalidArgumentError(`${where}: onread is for stream sockets, not seqpacket`);
  return checked;
}

const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX;
const isCid = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The options with their defaults, checked (InvalidArgumentError naming the value). */
function checkedOptions(port: VsockPacketPort, options: VsockStackOptions): Required<VsockStackOptions> {
  if (!isCid(options.localCid)) throw new InvalidArgumentError(`localCid ${options.localCid} is not a CID`);
  const o = {
    localCid: options.localCid,
    bufferSize: options.bufferSize ?? VSOCK_DEFAULT_BUF_ALLOC,
    maxConnections: options.maxConnections ?? VSOCK_DEFAULT_MAX_CONNECTIONS,
    connectTimeoutMs: options.connectTimeoutMs ?? VSOCK_DEFAULT_CONNECT_TIMEOUT_MS,
    closeTimeoutMs: options.closeTimeoutMs ?? VSOCK_DEFAULT_CLOSE_TIMEOUT_MS,
    creditRequestDelayMs: options.creditRequestDelayMs ?? VSOCK_DEFAULT_CREDIT_REQUEST_DELAY_MS,
    seqpacket: options.seqpacket ?? false,
  };
  if (!isU32(o.bufferSize) || o.bufferSize === 0) throw new InvalidArgumentError(`bufferSize ${o.bufferSize} must be 1 .. 2^32-1`);
  const maxPayload = port.maxPayload;
  if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > VSOCK_MAX_PKT_PAYLOAD) {
    throw new InvalidArgumentError(`port.maxPayload ${maxPayload} must be 1 .. ${VSOCK_MAX_PKT_PAYLOAD}`);
  }
  if (!Number.isInteger(o.maxConnections) || o.maxConnections < 0) throw new InvalidArgumentError(`maxConnections ${o.maxConnections} must be a non-negative integer`);
  if (!(o.connectTimeoutMs > 0)) throw new InvalidArgumentError(`connectTimeoutMs ${o.connectTimeoutMs} must be > 0`);
  if (!(o.closeTimeoutMs > 0)) throw new InvalidArgumentError(`closeTimeoutMs ${o.closeTimeoutMs} must be > 0`);
  if (!(o.creditRequestDelayMs > 0)) throw new InvalidArgumentError(`creditRequestDelayMs ${o.creditRequestDelayMs} must be > 0`);
  return o;
}

/** The connection behind a socket (tests and fault injection hand sockets to the stack's connection calls). */
const connectionOf = (c: Connection | VsockConnection): Connection => (c instanceof VsockConnection ? c.connection : c);

/**
 * The virtio-vsock connection layer, the same on both sides of a link (the
 * guest driver and the host side each run one over their own packet port),
 * as Firecracker's muxer is: the connection table (connection-table.ts), the
 * listeners, and the send scheduler (send-scheduler.ts) over one
 * VsockPacketPort. Each connection (connection.ts) keeps its own state,
 * credit and send position and carries a socket, a Node Duplex
 * (vsock-socket.ts).
 *
 * Receiving: receive() checks one packet, finds its connection or listener,
 * and runs the action of the state table (connection-states.ts).
 */
export class VsockStack extends EventEmitter implements VsockListenerOwner {
  readonly bufferSize: number;
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly creditRequestDelayMs: number;
  readonly seqpacket: boolean;
  readonly stats: VsockStackStats = newStats();

  private readonly table = new ConnectionTable();
  private readonly sender: SendScheduler;
  private readonly servers = new Map<number, VsockServer>();
  private anyServer: VsockServer | null = null;
  private closed = false;

  constructor(port: VsockPacketPort, options: VsockStackOptions) {
    super();
    const o = checkedOptions(port, options);
    this.bufferSize = o.bufferSize;
    this.maxConnections = o.maxConnections;
    this.connectTimeoutMs = o.connectTimeoutMs;
    this.closeTimeoutMs = o.closeTimeoutMs;
    this.creditRequestDelayMs = o.creditRequestDelayMs;
    this.seqpacket = o.seqpacket;
    this.sender = new SendScheduler(port, this.stats, o.localCid);
  }

  /** Our CID; a transport reset may change it. */
  get localCid(): number {
    return this.sender.localCid;
  }

  set localCid(cid: number) {
    this.sender.localCid = cid;
  }

  /** Connections in the table now. */
  get connectionCount(): number {
    return this.table.size;
  }

  // ================================================================ public API

  /** Open a stream connection (REQUEST now; 'connect' on RESPONSE); `onread`: the reader's own receive buffer (VsockOnread). */
  connect(remoteCid: number, remotePort: number, options?: { type?: 'stream'; timeoutMs?: number; localPort?: number; onread?: VsockOnread }): VsockSocket;
  /** Open a seqpacket connection (needs `seqpacket` negotiated). */
  connect(remoteCid: number, remotePort: number, options: { type: 'seqpacket'; timeoutMs?: number; localPort?: number }): VsockSeqpacketSocket;
  connect(
    remoteCid: number,
    remotePort: number,
    options?: { type?: 'stream' | 'seqpacket'; timeoutMs?: number; localPort?: number; onread?: VsockOnread },
  ): VsockSocket | VsockSeqpacketSocket {
    this.checkOpen();
    if (!isCid(remoteCid)) throw new InvalidArgumentError(`connect: remote CID ${remoteCid} is not a CID`);
    if (!isU32(remotePort)) throw new InvalidArgumentError(`connect: remote port ${remotePort} is not a u32`);
    const vsockType = this.typeCode(options?.type ?? 'stream');
    const onread = streamOnread('connect', vsockType, options?.onread);
    const timeoutMs = options?.timeoutMs ?? this.connectTimeoutMs;
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`connect: timeoutMs ${timeoutMs} must be > 0`);
    if (this.table.size >= this.maxConnections) {
      throw new VsockError('EMAXCONN', `connect to ${remoteCid}:${remotePort}: ${this.table.size} connections open (maxConnections)`);
    }
    let localPort = options?.localPort;
    if (localPort === undefined) {
      localPort = this.table.allocatePort(this.servers);
    } else {
      if (!isU32(localPort) || localPort === VSOCK_PORT_ANY) throw new InvalidArgumentError(`connect: local port ${localPort} is not a usable port`);
      if (this.lookup(localPort, remoteCid, remotePort) !== null) {
        throw new VsockError('EADDRINUSE', `connect: ${this.localCid}:${localPort} -> ${remoteCid}:${remotePort} exists`);
      }
    }
    const sock = this.newSocket(vsockType, localPort, remoteCid, remotePort, ConnState.CONNECTING, onread);
    this.attach(sock.connection);
    this.sender.sendControl(sock.connection, VSOCK_OP_REQUEST, 0);
    sock.connection.startConnectTimer(timeoutMs);
    return sock;
  }

  /** Listen on `port` (VSOCK_PORT_ANY: every port without a listener of its own). */
  listen(port: number, options?: VsockListenOptions): VsockServer {
    this.checkOpen();
    if (!isU32(port)) throw new InvalidArgumentError(`listen: port ${port} is not a u32`);
    streamOnread('listen', this.typeCode(options?.type ?? 'stream'), options?.onread);
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
   * One received packet: `hdr.len` payload bytes at payload[off..], or in
   * parts (`off` unused; valid only during the call: what is kept is
   * copied). Checks it, finds its state (connection, listener or none) and
   * runs the state table's action.
   */
  receive(hdr: VsockHeader, payload: Uint8Array | VsockPayloadParts, off: number): void {
    const s = this.stats;
    // Read the header once: actions run user code, and the port may reuse hdr.
    const op = hdr.op;
    const type = hdr.type;
    const srcCid = hdr.srcCid;
    const srcPort = hdr.srcPort;
    const dstPort = hdr.dstPort;
    countIn(s, op);
    if (this.closed) {
      s.ignored++;
      return;
    }
    // 5.10.6: a packet for another CID is not ours.
    if (hdr.dstCid !== this.localCid) {
      s.wrongCid++;
      return;
    }
    if (hdr.len > (payload instanceof Uint8Array ? payload.length - off : payload.length)) {
      s.badLength++;
      return;
    }
    // Unknown type (or SEQPACKET not negotiated): RST, no connection looked at.
    if (type !== VSOCK_TYPE_STREAM && (type !== VSOCK_TYPE_SEQPACKET || !this.seqpacket)) {
      s.badType++;
      if (op !== VSOCK_OP_RST) this.sender.replyRst(srcCid, dstPort, srcPort, type);
      return;
    }
    const c = this.lookup(dstPort, srcCid, srcPort);
    if (c !== null) {
      if (c.vsockType === type) {
        c.onPeerCredit(hdr.bufAlloc, hdr.fwdCnt);
        this.act(c.connState, rxEventOfOp(op), c, null, hdr, payload, off);
      } else this.act(c.connState, RxEvent.TYPE_MISMATCH, c, null, hdr, payload, off);
      // Credit rides on every packet: resume a sender that waited for it.
      c.resumeIfCredit();
      return;
    }
    const server = this.servers.get(dstPort) ?? this.anyServer;
    if (server === null) this.act(ConnState.CLOSED, rxEventOfOp(op), null, null, hdr, payload, off);
    else this.act(ConnState.LISTEN, this.typeCode(server.type) !== type ? RxEvent.TYPE_MISMATCH : rxEventOfOp(op), null, server, hdr, payload, off);
  }

  /** The port has room again: send what waits. */
  onWritable(): void {
    this.sender.onWritable();
  }

  /**
   * 5.10.6.6 VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: every connection is gone
   * (ECONNRESET on each socket; a closing one just finishes), nothing is
   * sent, queued control packets are dropped; listeners stay.
   */
  transportReset(): void {
    const all = this.table.all();
    this.sender.reset(all);
    for (const c of all) c.abort(false, new VsockError('ECONNRESET', `vsock ${this.localCid}:${c.localPort} -> ${c.remoteCid}:${c.remotePort}: transport reset`));
  }

  /** Reset every connection (RST sent; sockets close without an error) and close every listener. */
  close(): void {
    if (this.closed) return;
    for (const c of this.table.all()) c.abort(true, null);
    this.closed = true;
    if (this.anyServer !== null) this.anyServer.markClosed();
    for (const server of this.servers.values()) server.markClosed();
    this.anyServer = null;
    this.servers.clear();
    this.emit('close');
  }

  // ================================================================ a connection's calls (ConnectionOwner)

  /** @internal Send (or queue, in order) one control packet of a connection. */
  sendControl(c: Connection | VsockConnection, op: number, flags: number): void {
    this.sender.sendControl(connectionOf(c), op, flags);
  }

  /** @internal RST for a connection. */
  sendRst(c: Connection | VsockConnection): void {
    this.sender.sendControl(connectionOf(c), VSOCK_OP_RST, 0);
  }

  /** @internal A connection has data to send (or credit again). */
  kickSend(c: Connection): void {
    this.sender.kickSend(c);
  }

  /** @internal Out of the table (state CLOSED); the socket object may live on. */
  detach(c: Connection | VsockConnection): void {
    const conn = connectionOf(c);
    if (conn.connState === ConnState.CLOSED) return;
    conn.connState = ConnState.CLOSED;
    this.table.remove(conn);
    this.stats.connections = this.table.size;
    this.stats.connectionsClosed++;
  }

  // ================================================================ internals

  /** The action of (state, event) for one received packet (connection-states.ts; connection-actions.ts runs those on a connection). */
  private act(state: ConnState, event: RxEvent, c: Connection | null, server: VsockServer | null, hdr: VsockHeader, payload: Uint8Array | VsockPayloadParts, off: number): void {
    const s = this.stats;
    const action = actionOf(state, event);
    switch (action) {
      case Action.IGNORE:
        s.ignored++;
        break;
      case Action.REPLY_RST:
        s.unknownConnection++;
        if (hdr.op !== VSOCK_OP_RST) this.replyTo(hdr);
        break;
      case Action.REPLY_RST_BAD_OP:
        s.badOp++;
        this.replyTo(hdr);
        break;
      case Action.REPLY_RST_BAD_TYPE:
        s.badType++;
        if (hdr.op !== VSOCK_OP_RST) this.replyTo(hdr);
        break;
      case Action.ACCEPT:
        this.accept(server as VsockServer, hdr);
        break;
      case Action.DUPLICATE_REQUEST:
        s.duplicateRequest++;
        break;
      case Action.IGNORE_UNEXPECTED:
        s.unexpectedOp++;
        break;
      default:
        runConnectionAction(action, state, c as Connection, hdr, payload, off);
    }
  }

  /** RST answering a received packet that reached no connection. */
  private replyTo(hdr: VsockHeader): void {
    this.sender.replyRst(hdr.srcCid, hdr.dstPort, hdr.srcPort, hdr.type);
  }

  private lookup(localPort: number, remoteCid: number, remotePort: number): Connection | null {
    return this.table.lookup(localPort, remoteCid, remotePort);
  }

  private attach(c: Connection): void {
    this.table.add(c);
    this.stats.connections = this.table.size;
    this.stats.connectionsOpened++;
  }

  private newSocket(
    vsockType: number,
    localPort: number,
    remoteCid: number,
    remotePort: number,
    state: ConnState,
    onread: VsockOnread | undefined,
  ): VsockSocket | VsockSeqpacketSocket {
    const conn = new Connection({ owner: this, localCid: this.localCid, vsockType, localPort, remoteCid, remotePort, bufAlloc: this.bufferSize, state });
    return vsockType === VSOCK_TYPE_SEQPACKET ? new VsockSeqpacketSocket(conn) : new VsockSocket(conn, onread);
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

  /** Action ACCEPT: a REQUEST a listener takes (RST when the stack or the backlog is full, or accept() refuses). */
  private accept(server: VsockServer, hdr: VsockHeader): void {
    const s = this.stats;
    const { type, srcCid: remoteCid, srcPort: remotePort, dstPort: localPort } = hdr;
    if (this.table.size >= this.maxConnections) {
      s.maxConnectionsRefused++;
      this.replyTo(hdr);
      return;
    }
    if (server.pendingAccepts >= server.backlog) {
      s.backlogFull++;
      this.replyTo(hdr);
      return;
    }
    const sock = this.newSocket(type, localPort, remoteCid, remotePort, ConnState.ACCEPTING, server.onread);
    const c = sock.connection;
    c.onPeerCredit(hdr.bufAlloc, hdr.fwdCnt);
    c.server = server;
    this.attach(c);
    server.decide({ remoteCid, remotePort, localPort }, (ok) => this.finishAccept(sock, ok));
  }

  private finishAccept(sock: VsockSocket | VsockSeqpacketSocket, ok: boolean): void {
    const c = sock.connection;
    if (c.connState !== ConnState.ACCEPTING) return; // the peer gave up, or a reset
    const server = c.server as VsockServer;
    if (!ok || !server.listening || this.closed) {
      this.stats.acceptRefused++;
      c.abort(true, null);
      return;
    }
    this.sender.sendControl(c, VSOCK_OP_RESPONSE, 0);
    c.establish();
    server.emitConnection(sock);
  }
}
