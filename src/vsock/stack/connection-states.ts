/**
 * The vsock connection state machine as one table: every state x every
 * received packet -> what the stack does and where the connection goes.
 *
 * Both ends of a virtio-vsock link run this same logic (virtio 1.2 section
 * 5.10.6; Linux net/vmw_vsock/virtio_transport_common.c:
 * virtio_transport_recv_listen / _connecting / _connected / _disconnecting;
 * Firecracker devices/virtio/vsock/csm/). `VsockStack.receive` looks the cell
 * up and runs its action; nothing else decides how a packet is handled.
 *
 * Before the table, in this order (VsockStack.receive):
 *  1. dst_cid is not our CID: dropped, counted `wrongCid`.
 *  2. type is neither STREAM nor (when negotiated) SEQPACKET: counted
 *     `badType`, answered with RST (unless it is an RST), no connection is
 *     looked at (Linux: virtio_transport_valid_type -> reset_no_sock).
 *  3. The state is found: the connection (local port = dst_port, peer =
 *     src_cid:src_port) if there is one; else LISTEN when a listener owns
 *     dst_port (or VSOCK_PORT_ANY listens); else CLOSED ("no such socket").
 *  4. The event is the op (0..7), UNKNOWN_OP for any op above 7, or
 *     TYPE_MISMATCH when the connection / listener has the other type.
 *  5. On a connection, every packet but a TYPE_MISMATCH one updates the
 *     peer's buf_alloc and fwd_cnt (5.10.6.3; Linux space_update runs before
 *     the state switch), so credit rides on every op, RST included.
 *
 * RST is never answered with RST (that would loop between two stacks).
 */

/** Connection states (Linux sk_state; Firecracker ConnState). */
export const ConnState = {
  /** Not a connection: a listener owns the port and no connection matches. */
  LISTEN: 0,
  /** A REQUEST was taken by a listener whose accept() hook is still deciding; nothing sent yet. */
  ACCEPTING: 1,
  /** We sent REQUEST and wait for RESPONSE (or RST, or the connect timeout). */
  CONNECTING: 2,
  /** Data flows; each direction may be shut down on its own (SHUTDOWN flags). */
  ESTABLISHED: 3,
  /** Both directions are done; we sent SHUTDOWN(RCV|SEND) and wait for the peer's RST (or the close timeout). */
  CLOSING: 4,
  /** No connection (never was, or ended: not in the connection table). */
  CLOSED: 5,
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];
export type ConnStateName = keyof typeof ConnState;
export const CONN_STATE_COUNT = 6;
/** State names by number. */
export const CONN_STATE_NAMES: readonly ConnStateName[] = ['LISTEN', 'ACCEPTING', 'CONNECTING', 'ESTABLISHED', 'CLOSING', 'CLOSED'];

/** What arrived: the op (VSOCK_OP_* values 0..7), or one of two derived events. */
export const RxEvent = {
  INVALID: 0,
  REQUEST: 1,
  RESPONSE: 2,
  RST: 3,
  SHUTDOWN: 4,
  RW: 5,
  CREDIT_UPDATE: 6,
  CREDIT_REQUEST: 7,
  /** op > 7: not in the spec. */
  UNKNOWN_OP: 8,
  /** A valid type, but not the type of the connection / listener it is addressed to. */
  TYPE_MISMATCH: 9,
} as const;
export type RxEvent = (typeof RxEvent)[keyof typeof RxEvent];
export type RxEventName = keyof typeof RxEvent;
export const RX_EVENT_COUNT = 10;
export const RX_EVENT_NAMES: readonly RxEventName[] = [
  'INVALID',
  'REQUEST',
  'RESPONSE',
  'RST',
  'SHUTDOWN',
  'RW',
  'CREDIT_UPDATE',
  'CREDIT_REQUEST',
  'UNKNOWN_OP',
  'TYPE_MISMATCH',
];

/** The event of a received op. */
export const rxEventOfOp = (op: number): RxEvent => (op <= 7 ? (op as RxEvent) : RxEvent.UNKNOWN_OP);

/** What the stack does (VsockStack.receive has one `case` per action). */
export const Action = {
  /** Drop; counted `ignored`. */
  IGNORE: 0,
  /** No connection for it: answer RST (unless it is an RST); counted `unknownConnection`. */
  REPLY_RST: 1,
  /** op 0 or > 7 with no connection: answer RST; counted `badOp`. */
  REPLY_RST_BAD_OP: 2,
  /** Type differs from the connection's / listener's: answer RST, leave the connection alone; counted `badType`. */
  REPLY_RST_BAD_TYPE: 3,
  /**
   * New connection from a listener: RST instead when the listener's backlog
   * (connections whose accept() is pending) is full (`backlogFull`), the stack
   * is at maxConnections (`maxConnectionsRefused`), or accept() says no
   * (`acceptRefused`); else RESPONSE, and the server emits 'connection'.
   */
  ACCEPT: 4,
  /** A REQUEST for a connection that exists: counted `duplicateRequest`, ignored (the connection keeps working). */
  DUPLICATE_REQUEST: 5,
  /** RESPONSE to our REQUEST: connected ('connect'), queued writes go out. */
  ESTABLISH: 6,
  /** RST to our REQUEST: 'error' ECONNREFUSED, 'close'. */
  REFUSED: 7,
  /**
   * RW: payload to the reader. An RW beyond the credit we advertised
   * (rx_cnt - fwd_cnt + len > buf_alloc) is counted `creditViolations` and the
   * connection is reset (RST, EPROTO). Data after the peer's SHUTDOWN(SEND) is
   * dropped (`unexpectedOp`).
   */
  RECEIVE: 8,
  /** CREDIT_REQUEST: answer CREDIT_UPDATE. */
  SEND_CREDIT_UPDATE: 9,
  /** CREDIT_UPDATE: the peer's numbers are already recorded; resume sending if data waits. */
  CREDIT_ARRIVED: 10,
  /**
   * SHUTDOWN: record the peer's flags. SEND -> 'end' after the data already
   * received; RCV -> our writes fail with EPIPE. Both flags and every byte
   * handed to the reader: answer RST and leave the table quietly (Linux
   * recv_connected: peer_shutdown == SHUTDOWN_MASK and no data -> reset).
   */
  PEER_SHUTDOWN: 11,
  /** RST while established: 'error' ECONNRESET, 'close' (quietly, with no error, when the peer had shut both directions). */
  PEER_RESET: 12,
  /** op 0 or > 7 on a connection: counted `badOp`; RST the connection (EPROTO). */
  RESET_BAD_OP: 13,
  /** A valid op that this state cannot take (RW before ESTABLISHED, ...): counted `unexpectedOp`; RST the connection (EPROTO). */
  RESET_UNEXPECTED: 14,
  /** An op this state has no use for, harmless: counted `unexpectedOp`, dropped (Linux ignores it too). */
  IGNORE_UNEXPECTED: 15,
  /** RST while accept() decides: the connection is forgotten, nothing is emitted. */
  CANCEL_ACCEPT: 16,
  /** SHUTDOWN while closing: record flags; once the peer has shut both, answer RST and finish (simultaneous close). */
  CLOSING_SHUTDOWN: 17,
  /** RST while closing: the close handshake is complete ('close'). */
  CLOSE_DONE: 18,
} as const;
export type Action = (typeof Action)[keyof typeof Action];
export type ActionName = keyof typeof Action;

/** One cell: what is done, the state after it in the normal case, and why. */
export interface Transition {
  readonly action: ActionName;
  readonly next: ConnStateName;
  readonly why: string;
}

const t = (action: ActionName, next: ConnStateName, why: string): Transition => ({ action, next, why });

/**
 * THE TABLE. Rows: state; columns: received event. `next` is the state after
 * the action in the normal case; the action's comment above says when it
 * ends the connection instead (CLOSED).
 */
export const TRANSITIONS: Readonly<Record<ConnStateName, Readonly<Record<RxEventName, Transition>>>> = {
  // A listener, no connection yet (Linux virtio_transport_recv_listen: only REQUEST is valid).
  LISTEN: {
    INVALID: t('REPLY_RST_BAD_OP', 'LISTEN', 'op 0 is never valid'),
    REQUEST: t('ACCEPT', 'ESTABLISHED', 'new connection: RESPONSE (ACCEPTING while accept() decides; RST when refused)'),
    RESPONSE: t('REPLY_RST', 'LISTEN', 'no connection to respond to'),
    RST: t('IGNORE', 'LISTEN', 'never answer RST'),
    SHUTDOWN: t('REPLY_RST', 'LISTEN', 'no connection'),
    RW: t('REPLY_RST', 'LISTEN', 'data for no connection'),
    CREDIT_UPDATE: t('REPLY_RST', 'LISTEN', 'no connection'),
    CREDIT_REQUEST: t('REPLY_RST', 'LISTEN', 'no connection'),
    UNKNOWN_OP: t('REPLY_RST_BAD_OP', 'LISTEN', 'op not in the spec'),
    TYPE_MISMATCH: t('REPLY_RST_BAD_TYPE', 'LISTEN', 'the listener has the other socket type'),
  },
  // REQUEST taken, accept() pending; the peer is CONNECTING and may only resend REQUEST or give up with RST.
  ACCEPTING: {
    INVALID: t('RESET_BAD_OP', 'CLOSED', 'op 0 is never valid'),
    REQUEST: t('DUPLICATE_REQUEST', 'ACCEPTING', 'same REQUEST again'),
    RESPONSE: t('RESET_UNEXPECTED', 'CLOSED', 'the peer is the one connecting'),
    RST: t('CANCEL_ACCEPT', 'CLOSED', 'the peer gave up (its connect timeout)'),
    SHUTDOWN: t('RESET_UNEXPECTED', 'CLOSED', 'not connected yet'),
    RW: t('RESET_UNEXPECTED', 'CLOSED', 'RW before ESTABLISHED'),
    CREDIT_UPDATE: t('RESET_UNEXPECTED', 'CLOSED', 'not connected yet'),
    CREDIT_REQUEST: t('RESET_UNEXPECTED', 'CLOSED', 'not connected yet'),
    UNKNOWN_OP: t('RESET_BAD_OP', 'CLOSED', 'op not in the spec'),
    TYPE_MISMATCH: t('REPLY_RST_BAD_TYPE', 'ACCEPTING', 'other type: not this connection'),
  },
  // We sent REQUEST (Linux virtio_transport_recv_connecting: RESPONSE or RST; anything else -> EPROTO + RST).
  CONNECTING: {
    INVALID: t('RESET_BAD_OP', 'CLOSED', 'op 0 is never valid'),
    REQUEST: t('RESET_UNEXPECTED', 'CLOSED', 'simultaneous open is not part of vsock'),
    RESPONSE: t('ESTABLISH', 'ESTABLISHED', 'the peer accepted'),
    RST: t('REFUSED', 'CLOSED', 'the peer refused: ECONNREFUSED'),
    SHUTDOWN: t('RESET_UNEXPECTED', 'CLOSED', 'not connected yet'),
    RW: t('RESET_UNEXPECTED', 'CLOSED', 'RW before ESTABLISHED'),
    CREDIT_UPDATE: t('RESET_UNEXPECTED', 'CLOSED', 'not connected yet'),
    CREDIT_REQUEST: t('RESET_UNEXPECTED', 'CLOSED', 'not connected yet'),
    UNKNOWN_OP: t('RESET_BAD_OP', 'CLOSED', 'op not in the spec'),
    TYPE_MISMATCH: t('REPLY_RST_BAD_TYPE', 'CONNECTING', 'other type: not this connection'),
  },
  // Linux virtio_transport_recv_connected.
  ESTABLISHED: {
    INVALID: t('RESET_BAD_OP', 'CLOSED', 'op 0 is never valid'),
    REQUEST: t('DUPLICATE_REQUEST', 'ESTABLISHED', 'a retransmitted or forged REQUEST must not disturb the connection'),
    RESPONSE: t('IGNORE_UNEXPECTED', 'ESTABLISHED', 'already connected (Linux ignores it)'),
    RST: t('PEER_RESET', 'CLOSED', 'the peer reset: ECONNRESET'),
    SHUTDOWN: t('PEER_SHUTDOWN', 'ESTABLISHED', 'half close; RST + CLOSED once both directions are shut and drained'),
    RW: t('RECEIVE', 'ESTABLISHED', 'data (RST + CLOSED on a credit violation)'),
    CREDIT_UPDATE: t('CREDIT_ARRIVED', 'ESTABLISHED', 'more room at the peer'),
    CREDIT_REQUEST: t('SEND_CREDIT_UPDATE', 'ESTABLISHED', 'the peer asks for our numbers'),
    UNKNOWN_OP: t('RESET_BAD_OP', 'CLOSED', 'op not in the spec'),
    TYPE_MISMATCH: t('REPLY_RST_BAD_TYPE', 'ESTABLISHED', 'other type: not this connection'),
  },
  // We sent SHUTDOWN(RCV|SEND) (Linux virtio_transport_recv_disconnecting: only RST matters).
  CLOSING: {
    INVALID: t('RESET_BAD_OP', 'CLOSED', 'op 0 is never valid'),
    REQUEST: t('DUPLICATE_REQUEST', 'CLOSING', 'the connection still exists'),
    RESPONSE: t('IGNORE_UNEXPECTED', 'CLOSING', 'already connected'),
    RST: t('CLOSE_DONE', 'CLOSED', 'the peer finished the close handshake'),
    SHUTDOWN: t('CLOSING_SHUTDOWN', 'CLOSING', 'both closed at once: answer RST when the peer has shut both (CLOSED)'),
    RW: t('IGNORE_UNEXPECTED', 'CLOSING', 'the peer had shut its send side before we got here'),
    CREDIT_UPDATE: t('IGNORE', 'CLOSING', 'nothing left to send'),
    CREDIT_REQUEST: t('IGNORE', 'CLOSING', 'nothing left to receive'),
    UNKNOWN_OP: t('RESET_BAD_OP', 'CLOSED', 'op not in the spec'),
    TYPE_MISMATCH: t('REPLY_RST_BAD_TYPE', 'CLOSING', 'other type: not this connection'),
  },
  // No connection and no listener (Linux: no socket -> virtio_transport_reset_no_sock).
  CLOSED: {
    INVALID: t('REPLY_RST_BAD_OP', 'CLOSED', 'op 0 is never valid'),
    REQUEST: t('REPLY_RST', 'CLOSED', 'nobody listens: the connector gets ECONNREFUSED'),
    RESPONSE: t('REPLY_RST', 'CLOSED', 'no such connection'),
    RST: t('IGNORE', 'CLOSED', 'never answer RST'),
    SHUTDOWN: t('REPLY_RST', 'CLOSED', 'no such connection'),
    RW: t('REPLY_RST', 'CLOSED', 'data for no connection'),
    CREDIT_UPDATE: t('REPLY_RST', 'CLOSED', 'no such connection'),
    CREDIT_REQUEST: t('REPLY_RST', 'CLOSED', 'no such connection'),
    UNKNOWN_OP: t('REPLY_RST_BAD_OP', 'CLOSED', 'op not in the spec'),
    TYPE_MISMATCH: t('REPLY_RST', 'CLOSED', 'cannot happen (nothing to mismatch); as no connection'),
  },
};

/** The table compiled for the hot path: ACTIONS[state * RX_EVENT_COUNT + event]. */
const ACTIONS = new Uint8Array(CONN_STATE_COUNT * RX_EVENT_COUNT);
for (let s = 0; s < CONN_STATE_COUNT; s++) {
  for (let e = 0; e < RX_EVENT_COUNT; e++) {
    ACTIONS[s * RX_EVENT_COUNT + e] = Action[TRANSITIONS[CONN_STATE_NAMES[s]][RX_EVENT_NAMES[e]].action];
  }
}

/** The action of (state, event): one typed-array load. */
export const actionOf = (state: ConnState, event: RxEvent): Action => ACTIONS[state * RX_EVENT_COUNT + event] as Action;
