import {
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
} from '../../spec/vsock.js';

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
  /** Stalls: a send found the peer's credit used up (one per stall, however long; a CREDIT_REQUEST goes only for a long one). */
  creditStalls: number;
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

export function newStats(): VsockStackStats {
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
    creditStalls: 0,
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

/** Count one received packet by op (unknown ops count only in packetsIn). */
export function countIn(s: VsockStackStats, op: number): void {
  s.packetsIn++;
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
}

/** Count one sent packet by op. */
export function countOut(s: VsockStackStats, op: number): void {
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
}
