import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { VirtioLabError } from '../../errors.js';
import type { ConnectLineError } from './connect-line.js';

// What the Unix-socket muxer needs of a vsock stack, its options, counters
// and errors (see unix-muxer.ts).

/** A vsock stream socket as the stack hands it out: a Duplex with its ports. */
export type VsockMuxerSocket = Duplex & {
  /** This end's vsock port (for a host-initiated connection: the ephemeral port the stack picked). */
  readonly localPort: number;
};

/** A socket delivered by a listener's 'connection' event. */
export type VsockMuxerAcceptedSocket = VsockMuxerSocket & {
  /** The peer's (guest's) vsock port. */
  readonly remotePort: number;
};

/** What a listener's accept hook is told about a connection request, before it is answered. */
export interface VsockMuxerAcceptInfo {
  /** CID of the peer that asks. */
  remoteCid: number;
  /** Port of the peer that asks. */
  remotePort: number;
  /** The local port it asks for. */
  localPort: number;
}

/** Options of {@link VsockMuxerEndpoint.listen}. */
export interface VsockMuxerListenOptions {
  /**
   * Decides a connection request before it is answered: true (or a promise
   * of true) sends RESPONSE and then a 'connection' event; false sends RST.
   */
  accept?: (info: VsockMuxerAcceptInfo) => boolean | Promise<boolean>;
}

/** A listening vsock port: emits 'connection' with a {@link VsockMuxerAcceptedSocket}. */
export interface VsockMuxerListener extends EventEmitter {
  /** Stop listening (established connections stay). */
  close(): void;
}

/**
 * The part of a host-side vsock stack (local CID 2, talking to one guest) the
 * muxer uses. A VsockStack satisfies it structurally.
 *
 * `connect` returns at once; the socket emits 'connect' when established, or
 * 'error' (code ECONNREFUSED, ECONNRESET, ETIMEDOUT) and 'close' when not.
 * Sockets must support half-close: end() shuts down the sending direction
 * only, and 'end' is emitted when the peer shut down its own.
 */
export interface VsockMuxerEndpoint {
  /** Open a stream connection to remoteCid:remotePort. */
  connect(remoteCid: number, remotePort: number): VsockMuxerSocket;
  /** Listen on a local port ({@link VSOCK_PORT_ANY}: every port without a listener of its own). */
  listen(port: number, options?: VsockMuxerListenOptions): VsockMuxerListener;
}

/** Options of {@link VsockUnixMuxer}. */
export interface VsockUnixMuxerOptions {
  /**
   * Path of the listening Unix socket (at most 107 bytes on Linux, 103
   * elsewhere). Guest-initiated connections to port P go to `${udsPath}_P`.
   */
  udsPath: string;
  /** The guest's CID: host-initiated connections go there, guest-initiated ones must come from it. */
  guestCid: number;
  /** Connections open at once, in every phase and both directions (default 1024); more are refused. */
  maxConnections?: number;
  /** Longest CONNECT line, its `\n` included (default 64, at least 19). */
  maxLineBytes?: number;
  /** A client that has not sent its full CONNECT line this long after connecting is closed (default 5000 ms). */
  connectLineTimeoutMs?: number;
  /**
   * A guest connection the muxer accepted (its Unix socket connected) that
   * the stack does not deliver as 'connection' this long after is dropped
   * (default 5000 ms).
   */
  acceptTimeoutMs?: number;
}

/** Counters of a {@link VsockUnixMuxer} (a snapshot). */
export interface VsockUnixMuxerStats {
  /** Host-initiated connections established (`OK` sent). */
  hostConnects: number;
  /** Host-initiated connections whose vsock connect failed (refused, reset, timed out, or the stack threw). */
  hostConnectFailures: number;
  /** Guest-initiated connections forwarded to their Unix socket. */
  guestConnects: number;
  /**
   * Guest-initiated connections refused with RST or dropped: the Unix socket
   * `${udsPath}_P` did not accept, the request came from another CID, or the
   * stack did not deliver an accepted connection.
   */
  guestConnectFailures: number;
  /** CONNECT lines refused, by reason. */
  badLines: Record<ConnectLineError, number>;
  /** Clients closed for not sending their line in time. */
  lineTimeouts: number;
  /** Connections (either direction) refused because maxConnections were open. */
  limitRefused: number;
  /** Bytes read from Unix sockets and handed to vsock sockets. */
  bytesToGuest: number;
  /** Bytes read from vsock sockets and handed to Unix sockets. */
  bytesToHost: number;
  /** I/O errors on Unix or vsock sockets after the connect phase (that pair was closed). */
  socketErrors: number;
  /** Connections open now, in every phase. */
  open: number;
}

/** Codes of {@link VsockMuxerError}. */
export type VsockMuxerErrorCode =
  /** A CONNECT line was refused (see `reason`). */
  | 'VSOCK_MUX_BAD_LINE'
  /** A client did not send its CONNECT line in time. */
  | 'VSOCK_MUX_LINE_TIMEOUT'
  /** maxConnections were open. */
  | 'VSOCK_MUX_LIMIT'
  /** The vsock connect for a CONNECT line failed (see `errno`). */
  | 'VSOCK_MUX_CONNECT_FAILED'
  /** The Unix socket for a guest-initiated connection did not accept (see `errno`). */
  | 'VSOCK_MUX_UNIX_CONNECT_FAILED'
  /** A guest-initiated request came from a CID other than guestCid. */
  | 'VSOCK_MUX_FOREIGN_CID'
  /** The stack did not deliver a connection the muxer accepted, or delivered one it did not. */
  | 'VSOCK_MUX_ACCEPT_MISMATCH'
  /** listen() after close(). */
  | 'VSOCK_MUX_CLOSED'
  /** Something listens at udsPath already. */
  | 'EADDRINUSE'
  /** udsPath exists and is not a socket: it is never replaced. */
  | 'EEXIST';

/** A connection the muxer refused or lost, or a listen() that cannot be done. */
export class VsockMuxerError extends VirtioLabError {
  declare readonly code: VsockMuxerErrorCode;
  /** For VSOCK_MUX_BAD_LINE: what was wrong with the line. */
  readonly reason: ConnectLineError | undefined;
  /** The vsock port concerned, when there is one. */
  readonly port: number | undefined;
  /** The system error code behind it (ECONNREFUSED, ETIMEDOUT, ENOENT...), when there is one. */
  readonly errno: string | undefined;

  constructor(code: VsockMuxerErrorCode, message: string, detail: { reason?: ConnectLineError; port?: number; errno?: string } = {}) {
    super(code, message);
    this.reason = detail.reason;
    this.port = detail.port;
    this.errno = detail.errno;
  }
}
