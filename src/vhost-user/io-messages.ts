/**
 * What the vhost-user I/O thread and the control plane tell each other. The
 * I/O thread owns the listening socket and reads messages (and their fds)
 * off the connection; the control plane owns everything else, the
 * connection's fd included (it replies on it and closes it after tearing a
 * session down). Kicks never pass through the I/O thread.
 */

export interface IoWorkerData {
  /** The listening Unix socket. */
  listenFd: number;
  /** An eventfd the control plane signals after posting to the I/O thread (it sleeps in poll). */
  wakeFd: number;
}

/** I/O thread -> control plane. */
export type IoEvent =
  | { type: 'connected'; fd: number }
  | { type: 'message'; request: number; flags: number; payload: Uint8Array; fds: number[] }
  /** The front end hung up or sent something unreadable; the control plane tears down and closes `fd`. */
  | { type: 'closed'; fd: number; reason: string };

/** Control plane -> I/O thread (followed by a signal on wakeFd). */
export type IoCommand =
  /** The last connection is torn down: accept the next one. */
  | { type: 'listen' }
  | { type: 'quit' };
