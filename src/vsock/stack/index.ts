/** The vsock connection layer shared by the guest driver and the host side. */
export type { VsockPacketPort, VsockPayloadParts } from './packet-port.js';
export { VsockStack, type VsockStackOptions } from './vsock-stack.js';
export type { VsockStackStats } from './stack-stats.js';
export {
  VSOCK_PORT_ANY,
  VSOCK_EPHEMERAL_PORT_FIRST,
  VSOCK_DEFAULT_MAX_CONNECTIONS,
  VSOCK_DEFAULT_CONNECT_TIMEOUT_MS,
  VSOCK_DEFAULT_CLOSE_TIMEOUT_MS,
  VSOCK_DEFAULT_CREDIT_REQUEST_DELAY_MS,
  VSOCK_DEFAULT_BACKLOG,
  VSOCK_MAX_QUEUED_RESETS,
  VSOCK_READABLE_HIGH_WATER_MARK,
} from './limits.js';
export { VsockConnection, VsockSocket } from './vsock-socket.js';
export { VsockSeqpacketSocket, type SeqpacketMessage } from './vsock-seqpacket-socket.js';
export { VsockServer, type VsockAcceptInfo, type VsockListenOptions } from './vsock-server.js';
export type { VsockOnread } from './vsock-onread.js';
export { VsockError, VSOCK_ERROR_CODES, type VsockErrorCode } from './vsock-error.js';
export { Credit } from './credit.js';
export {
  Action,
  ConnState,
  RxEvent,
  TRANSITIONS,
  CONN_STATE_NAMES,
  RX_EVENT_NAMES,
  actionOf,
  rxEventOfOp,
  type ActionName,
  type ConnStateName,
  type RxEventName,
  type Transition,
} from './connection-states.js';
