import { EventEmitter } from 'node:events';
import type { VsockSeqpacketSocket } from './vsock-seqpacket-socket.js';
import type { VsockSocket } from './vsock-socket.js';

/** Who asks: the peer's address and the port it asked for. */
export interface VsockAcceptInfo {
  remoteCid: number;
  remotePort: number;
  localPort: number;
}

/** Options of VsockStack.listen() (and VsockHost.listen()). */
export interface VsockListenOptions {
  /** Socket type of the connections (default 'stream'); a REQUEST of the other type gets RST. */
  type?: 'stream' | 'seqpacket';
  /**
   * How many connections may wait for accept() to decide at once (default
   * 128); a REQUEST beyond gets RST (counted `backlogFull`).
   */
  backlog?: number;
  /**
   * Decide a REQUEST before answering: RESPONSE when it returns / resolves
   * true, RST otherwise (false, a throw or a rejection). The Unix muxer
   * connects its Unix socket first.
   */
  accept?: (info: VsockAcceptInfo) => boolean | Promise<boolean>;
}

/** Default listen backlog (Linux SOMAXCONN before 5.4). */
export const VSOCK_DEFAULT_BACKLOG = 128;

/** What a server needs from its stack. */
export interface VsockListenerOwner {
  unlisten(server: VsockServer): void;
}

/**
 * A listening port, like net.Server: 'connection' (socket) for each accepted
 * connection (already established: the RESPONSE is on its way), 'close' once
 * close() stopped it. Connections it accepted live on after close().
 */
export class VsockServer extends EventEmitter {
  /** The port (VSOCK_PORT_ANY: every port that has no listener of its own). */
  readonly port: number;
  readonly type: 'stream' | 'seqpacket';
  readonly backlog: number;
  /** @internal */
  readonly acceptHook: ((info: VsockAcceptInfo) => boolean | Promise<boolean>) | undefined;
  /** @internal Connections whose accept() has not answered yet. */
  pendingAccepts = 0;
  /** Connections accepted so far. */
  accepted = 0;
  private open = true;

  /** @internal Made by VsockStack.listen(). */
  constructor(
    private readonly owner: VsockListenerOwner,
    port: number,
    options: VsockListenOptions | undefined,
  ) {
    super();
    this.port = port;
    this.type = options?.type ?? 'stream';
    this.backlog = options?.backlog ?? VSOCK_DEFAULT_BACKLOG;
    this.acceptHook = options?.accept;
  }

  /** Whether it still takes connections. */
  get listening(): boolean {
    return this.open;
  }

  /** @internal A connection was accepted (established). */
  emitConnection(socket: VsockSocket | VsockSeqpacketSocket): void {
    this.accepted++;
    this.emit('connection', socket);
  }

  /** @internal The stack is gone: stop without touching the stack. */
  markClosed(): void {
    if (!this.open) return;
    this.open = false;
    process.nextTick(() => this.emit('close'));
  }

  /** Stop listening (REQUESTs to the port get RST from now on); 'close' follows. */
  close(callback?: () => void): this {
    if (!this.open) {
      if (callback !== undefined) process.nextTick(callback);
      return this;
    }
    if (callback !== undefined) this.once('close', callback);
    this.owner.unlisten(this);
    this.markClosed();
    return this;
  }
}
