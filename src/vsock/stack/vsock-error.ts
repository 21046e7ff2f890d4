import { VirtioLabError } from '../../errors.js';

/**
 * Codes of the ways a vsock connection can fail, named as Node's net module
 * (and the Linux errno they mirror) names them.
 */
export const VSOCK_ERROR_CODES = [
  /** The peer reset the connection (RST while established), or a transport reset. */
  'ECONNRESET',
  /** The peer answered our REQUEST with RST (nobody listens, backlog full, refused). */
  'ECONNREFUSED',
  /** No RESPONSE within the connect timeout (an RST was sent to the peer). */
  'ETIMEDOUT',
  /** A seqpacket message larger than the peer's buf_alloc (it could never be received whole). */
  'EMSGSIZE',
  /** Write after the peer shut down its receive side (or the connection is gone). */
  'EPIPE',
  /** The peer broke the protocol on this connection (bad op, credit violation, data before RESPONSE); an RST was sent. */
  'EPROTO',
  /** connect() beyond the stack's maxConnections. */
  'EMAXCONN',
  /** The local port (or the whole (local port, peer) tuple) is taken. */
  'EADDRINUSE',
  /** No free ephemeral port left. */
  'EADDRNOTAVAIL',
  /** A seqpacket socket without VIRTIO_VSOCK_F_SEQPACKET negotiated. */
  'ESOCKTNOSUPPORT',
  /** The stack was closed. */
  'ENETDOWN',
] as const;
/** A VsockError's code: one of VSOCK_ERROR_CODES, named after the errno Linux gives in the same case. */
export type VsockErrorCode = (typeof VSOCK_ERROR_CODES)[number];

/** A vsock socket or stack failure, with a Node-like `code` (err.code === 'ECONNRESET', ...). */
export class VsockError extends VirtioLabError {
  declare readonly code: VsockErrorCode;

  constructor(code: VsockErrorCode, message: string) {
    super(code, `${code}: ${message}`);
  }
}
