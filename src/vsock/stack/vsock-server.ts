import { EventEmitter } from 'node:events';
import { VSOCK_DEFAULT_BACKLOG } from './limits.js';
import type { VsockOnread } from './vsock-onread.js';

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
  /**
   * Stream only: every accepted socket reads into the reader's own buffer
   * (as connect()'s onread, VsockOnread); the callback runs with the socket
   * as `this`, so one buffer and one callback can serve every connection.
   * Checked by listen() (InvalidArgumentError).
   */
  onread?: VsockOnread;
}

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
  /** @internal The accepted sockets' onread option (checked by listen()). */
  readonly onread: VsockOnread | undefined;
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
    this.onread = options?.onread;
  }

  /**
   * @internal Let accept() decide a REQUEST: `done(ok)` runs with its verdict,
   * at once without a hook or with a synchronous answer, else when the
   * promise settles (a throw or a rejection is a no). Counted in
   * pendingAccepts meanwhile.
   */
  decide(info: VsockAcceptInfo, done: (ok: boolean) => void): void {
    const hook = this.acceptHook;
    if (hook === undefined) {
      done(true);
      return;
    }
    this.pendingAccepts++;
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = hook(info);
    } catch {
      verdict = false;
    }
    if (typeof verdict === 'boolean') {
      this.pendingAccepts--;
      done(verdict);
      return;
    }
    Promise.resolve(verdict).then(
      (ok) => {
        this.pendingAccepts--;
        done(ok === true);
      },
      () => {
        this.pendingAccepts--;
        done(false);
      },
    );
  }

  /** Whether it still takes connections. */
  get listening(): boolean {
    return this.open;
  }

  /** @internal A connection was accepted (established): its socket (a VsockSocket or VsockSeqpacketSocket). */
  emitConnection(socket: EventEmitter): void {
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
