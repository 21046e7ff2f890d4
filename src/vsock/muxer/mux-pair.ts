import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { VsockMuxerSocket } from './muxer-types.js';

// One bridged connection of the muxer: a Unix socket and, once there is
// one, its vsock socket; how the two close together.

/** 'line': waiting for the CONNECT line; 'connecting': for the other side; 'open': bytes flow. */
type Phase = 'line' | 'connecting' | 'open';

/** What a pair tells its muxer. */
export interface MuxPairHooks {
  /** An I/O error once the pair was open (counted, emitted). */
  ioError(e: unknown): void;
  bytesToGuest(n: number): void;
  bytesToHost(n: number): void;
  /** Both sockets have closed. */
  finished(p: MuxPair): void;
}

/** One Unix socket and, once there is one, its vsock socket. */
export class MuxPair {
  vsock: VsockMuxerSocket | null = null;
  phase: Phase;
  timer: NodeJS.Timeout | null = null;
  private unixClosed = false;
  private vsockClosed = false;
  /** Guest-initiated: `${remotePort}:${localPort}` while it waits for its 'connection'. */
  key: string | null = null;
  /** Guest-initiated: answers the stack's accept hook. */
  answer: ((ok: boolean) => void) | null = null;
  /** abort() ran: both sockets are being destroyed. */
  done = false;
  /** Resolves once both sockets have closed. */
  readonly finished: Promise<void>;
  private finish!: () => void;

  constructor(
    dir: 'host' | 'guest',
    readonly unix: Socket,
    private readonly hooks: MuxPairHooks,
  ) {
    this.phase = dir === 'host' ? 'line' : 'connecting';
    this.finished = new Promise<void>((r) => (this.finish = r));
    unix.on('error', (e) => this.error(e));
    unix.on('close', () => {
      this.unixClosed = true;
      this.sideClosed(unix);
    });
  }

  attachVsock(s: VsockMuxerSocket): void {
    this.vsock = s;
    s.on('error', (e) => this.error(e));
    s.on('close', () => {
      this.vsockClosed = true;
      this.sideClosed(s);
    });
  }

  /** Close both sockets now (a vsock socket destroyed before its end is reset). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.answer?.(false);
    this.answer = null;
    this.unix.destroy();
    this.vsock?.destroy();
  }

  clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Both sockets connected: bytes flow raw both ways, ends are passed on. */
  splice(vsock: VsockMuxerSocket, early: Buffer): void {
    this.phase = 'open';
    const { unix, hooks } = this;
    if (early.length > 0) {
      hooks.bytesToGuest(early.length);
      vsock.write(early);
    }
    unix.on('data', (d: Uint8Array) => hooks.bytesToGuest(d.byteLength));
    vsock.on('data', (d: Uint8Array) => hooks.bytesToHost(d.byteLength));
    unix.pipe(vsock);
    vsock.pipe(unix);
  }

  /** One side closed: a clean close lets the other finish its half; anything else ends both. */
  private sideClosed(s: Duplex): void {
    if (!(s.readableEnded && s.writableFinished)) this.abort();
    if (this.unixClosed && (this.vsock === null || this.vsockClosed)) {
      this.clearTimer();
      this.hooks.finished(this);
      this.answer?.(false);
      this.answer = null;
      this.finish();
    }
  }

  private error(e: Error): void {
    if (this.done) return;
    if (this.phase === 'open') this.hooks.ioError(e);
    // Before that, the failure was counted where it was seen, or is the client's own (it went away).
    this.abort();
  }
}
