import { VSOCK_OP_CREDIT_UPDATE, VSOCK_SHUTDOWN_F_RECEIVE, VSOCK_SHUTDOWN_F_SEND } from '../../spec/vsock.js';
import type { VsockHeader } from '../vsock-header.js';
import { Action, CONN_STATE_NAMES, ConnState } from './connection-states.js';
import type { Connection } from './connection.js';
import type { VsockPayloadParts } from './packet-port.js';
import { VsockError } from './vsock-error.js';

const SHUTDOWN_BOTH = VSOCK_SHUTDOWN_F_RECEIVE | VSOCK_SHUTDOWN_F_SEND;

/**
 * The actions of the state table (connection-states.ts) that act on a
 * connection, one `case` each: what a received packet does to the
 * connection it belongs to. The stack runs the others (replies to packets of
 * no connection, ACCEPT, the counted drops). `hdr` is read before any user
 * code runs.
 */
export function runConnectionAction(action: Action, state: ConnState, c: Connection, hdr: VsockHeader, payload: Uint8Array | VsockPayloadParts, off: number): void {
  switch (action) {
    case Action.ESTABLISH:
      c.establish();
      // establish() may have failed the socket (a seqpacket message the peer can never take).
      if (c.connState === ConnState.ESTABLISHED) c.socket.onConnected();
      break;
    case Action.REFUSED:
      c.abort(false, new VsockError('ECONNREFUSED', `connect to ${c.remoteCid}:${c.remotePort}: refused (RST)`));
      break;
    case Action.RECEIVE:
      receive(c, payload, off, hdr.len, hdr.flags);
      break;
    case Action.SEND_CREDIT_UPDATE:
      c.owner.sendControl(c, VSOCK_OP_CREDIT_UPDATE, 0);
      break;
    case Action.CREDIT_ARRIVED:
      break; // recorded before the action; sending resumes after it
    case Action.PEER_SHUTDOWN:
      peerShutdown(c, hdr.flags);
      break;
    case Action.PEER_RESET:
      peerReset(c);
      break;
    case Action.RESET_BAD_OP:
      c.owner.stats.badOp++;
      c.abort(true, new VsockError('EPROTO', `${c.remoteCid}:${c.remotePort} sent op ${hdr.op}`));
      break;
    case Action.RESET_UNEXPECTED:
      c.owner.stats.unexpectedOp++;
      c.abort(true, new VsockError('EPROTO', `${c.remoteCid}:${c.remotePort} sent op ${hdr.op} in state ${CONN_STATE_NAMES[state]}`));
      break;
    case Action.CANCEL_ACCEPT:
    case Action.CLOSE_DONE:
      c.abort(false, null);
      break;
    case Action.CLOSING_SHUTDOWN:
      // Both closed at once: once the peer has shut both, answer RST and finish.
      c.peerShutdown |= hdr.flags & SHUTDOWN_BOTH;
      if (c.peerShutdown === SHUTDOWN_BOTH) c.abort(true, null);
      break;
  }
}

/** RECEIVE: an RW payload, within the credit we gave (else RST, EPROTO); dropped after the peer's SHUTDOWN(SEND). */
function receive(c: Connection, payload: Uint8Array | VsockPayloadParts, off: number, len: number, flags: number): void {
  const s = c.owner.stats;
  // 5.10.6.3: the peer may not send more than the credit we gave it.
  if (!c.credit.mayReceive(len)) {
    s.creditViolations++;
    c.abort(true, new VsockError('EPROTO', `${c.remoteCid}:${c.remotePort} sent ${len} bytes beyond its credit`));
    return;
  }
  if ((c.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) {
    s.unexpectedOp++;
    return;
  }
  c.credit.onReceived(len);
  c.bytesRead += len;
  s.bytesIn += len;
  c.socket.touch();
  c.socket.rxData(payload, off, len, flags);
}

/** PEER_SHUTDOWN (5.10.6.4: flags are hints, RCV | SEND): RCV fails our pending write (EPIPE); SEND -> EOF after what was received. */
function peerShutdown(c: Connection, flags: number): void {
  const added = flags & SHUTDOWN_BOTH & ~c.peerShutdown;
  c.peerShutdown |= flags & SHUTDOWN_BOTH;
  if ((added & VSOCK_SHUTDOWN_F_RECEIVE) !== 0 && c.txBuf !== null) {
    c.failTx(new VsockError('EPIPE', `${c.describe()}: the peer shut down its receive side`));
  }
  if ((c.peerShutdown & VSOCK_SHUTDOWN_F_SEND) !== 0) c.socket.onPeerSendShutdown();
}

/**
 * PEER_RESET: RST while established: ECONNRESET, unless the peer had shut
 * both directions or we had (our SHUTDOWN(RCV|SEND) from end() after the
 * peer's end: the RST is its answer, 5.10.6.4): then a quiet end.
 */
function peerReset(c: Connection): void {
  if (c.peerShutdown === SHUTDOWN_BOTH || c.ourShutdown === SHUTDOWN_BOTH) {
    // What is queued stays readable; EOF follows it.
    c.owner.detach(c);
    c.clearTimers();
    return;
  }
  c.abort(false, new VsockError('ECONNRESET', `${c.describe()} was reset by the peer`));
}
