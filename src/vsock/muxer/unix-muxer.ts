/**
 * The host side of virtio-vsock as Unix sockets: Firecracker's "hybrid vsock".
 *
 * Host-initiated: a host program connects to the Unix socket at `udsPath` and
 * writes `CONNECT <port>\n`; the muxer opens a vsock stream to the guest's
 * port and, once it is established, answers `OK <local port>\n`; from then on
 * bytes flow raw both ways. If the vsock connect fails the Unix socket is
 * closed without a word, as Firecracker does.
 *
 * Guest-initiated: a guest connecting to host port P is forwarded to the Unix
 * socket `${udsPath}_P`; if nothing accepts there the guest's request is
 * answered with RST.
 *
 * The Unix socket is an attack surface: the line is read under a byte limit
 * and a time limit, every open connection counts against a limit, anything
 * that is not exactly `CONNECT <decimal u32>\n` is refused and counted by
 * reason, and the socket file is owner-only (0600) from the moment it has its
 * name.
 */
import { EventEmitter } from 'node:events';
import { type Server, type Socket, connect as netConnect, createServer } from 'node:net';
import { InvalidArgumentError } from '../../errors.js';
import { VSOCK_PORT_ANY } from '../stack/limits.js';
import { CONNECT_LINE_ERRORS, type ConnectLineError, parseConnectLine } from './connect-line.js';
import { MuxPair } from './mux-pair.js';
import { type VsockMuxerAcceptInfo, type VsockMuxerAcceptedSocket, type VsockMuxerEndpoint, VsockMuxerError, type VsockMuxerListener, type VsockMuxerSocket, type VsockUnixMuxerOptions, type VsockUnixMuxerStats } from './muxer-types.js';
import { type SocketFileIdentity, clearStale, errnoOf, listenPrivately, removeIfOurs } from './socket-file.js';

/** Default for {@link VsockUnixMuxerOptions.maxConnections}. */
export const DEFAULT_MUX_MAX_CONNECTIONS = 1024;
/** Default for {@link VsockUnixMuxerOptions.maxLineBytes}. */
export const DEFAULT_MUX_MAX_LINE_BYTES = 64;
/** Default for {@link VsockUnixMuxerOptions.connectLineTimeoutMs}. */
export const DEFAULT_MUX_LINE_TIMEOUT_MS = 5000;
/** Default for {@link VsockUnixMuxerOptions.acceptTimeoutMs}. */
export const DEFAULT_MUX_ACCEPT_TIMEOUT_MS = 5000;
/** The longest valid line, `CONNECT 4294967294\n`: maxLineBytes may not be smaller. */
export const MIN_MUX_LINE_BYTES = 'CONNECT 4294967294\n'.length;

const LF = 0x0a;
const EMPTY: Buffer = Buffer.alloc(0);
const MAX_UNIX_PATH = process.platform === 'linux' ? 107 : 103;

function checkInt(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${v}`);
  return v;
}

/**
 * Firecracker-style hybrid vsock on the host: one Unix socket for
 * host-initiated connections (`CONNECT <port>\n` / `OK <port>\n`), and
 * `${udsPath}_P` sockets for guest-initiated connections to host port P.
 *
 * Events: 'rejected' (VsockMuxerError) each time a connection is refused or
 * its connect fails; 'socket-error' (Error) for an I/O error on a connected
 * pair (that pair is closed). Neither is 'error': nothing is thrown at a
 * process that does not listen.
 */
export class VsockUnixMuxer extends EventEmitter {
  /** Path of the listening Unix socket. */
  readonly udsPath: string;
  /** CID of the guest. */
  readonly guestCid: number;
  private readonly maxConnections: number;
  private readonly maxLineBytes: number;
  private readonly lineTimeoutMs: number;
  private readonly acceptTimeoutMs: number;
  private readonly pairs = new Set<MuxPair>();
  private readonly awaiting = new Map<string, MuxPair>();
  private server: Server | null = null;
  private listener: VsockMuxerListener | null = null;
  /** dev/ino of the socket file this muxer made: only that file is removed on close. */
  private identity: SocketFileIdentity | null = null;
  private closed = false;
  private listening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly counters = {
    hostConnects: 0,
    hostConnectFailures: 0,
    guestConnects: 0,
    guestConnectFailures: 0,
    badLines: Object.fromEntries(CONNECT_LINE_ERRORS.map((r) => [r, 0])) as Record<ConnectLineError, number>,
    lineTimeouts: 0,
    limitRefused: 0,
    bytesToGuest: 0,
    bytesToHost: 0,
    socketErrors: 0,
  };

  /**
   * @param endpoint the host-side vsock stack talking to the guest
   * @param options where to listen and the limits; throws InvalidArgumentError for values that cannot work
   */
  constructor(
    private readonly endpoint: VsockMuxerEndpoint,
    options: VsockUnixMuxerOptions,
  ) {
    super();
    const path = options.udsPath;
    if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) throw new InvalidArgumentError('udsPath must be a non-empty path without NUL');
    // Room for `_4294967295` too: the guest-initiated sockets are named after it.
    if (Buffer.byteLength(path) + 11 > MAX_UNIX_PATH) {
      throw new InvalidArgumentError(`udsPath is ${Buffer.byteLength(path)} bytes: Unix socket paths hold ${MAX_UNIX_PATH}, and ${path}_<port> needs up to 11 more`);
    }
    this.udsPath = path;
    this.guestCid = checkInt('guestCid', options.guestCid ?? Number.NaN, 0, 3, 0xfffffffe);
    this.maxConnections = checkInt('maxConnections', options.maxConnections, DEFAULT_MUX_MAX_CONNECTIONS, 1, 1 << 20);
    this.maxLineBytes = checkInt('maxLineBytes', options.maxLineBytes, DEFAULT_MUX_MAX_LINE_BYTES, MIN_MUX_LINE_BYTES, 65536);
    this.lineTimeoutMs = checkInt('connectLineTimeoutMs', options.connectLineTimeoutMs, DEFAULT_MUX_LINE_TIMEOUT_MS, 1, 2 ** 31 - 1);
    this.acceptTimeoutMs = checkInt('acceptTimeoutMs', options.acceptTimeoutMs, DEFAULT_MUX_ACCEPT_TIMEOUT_MS, 1, 2 ** 31 - 1);
  }

  /** A snapshot of the counters. */
  get stats(): VsockUnixMuxerStats {
    return { ...this.counters, badLines: { ...this.counters.badLines }, open: this.pairs.size };
  }

  /**
   * Listen on udsPath (mode 0600) and on every unclaimed vsock port of the
   * stack. A socket file already at udsPath is replaced only when nothing
   * accepts connections on it (rejects with code EADDRINUSE otherwise, EEXIST
   * when it is not a socket). Calling it again returns the same promise; a
   * listen() that fails leaves the muxer closed.
   */
  listen(): Promise<void> {
    if (this.closed) return Promise.reject(new VsockMuxerError('VSOCK_MUX_CLOSED', 'the muxer is closed'));
    this.listening ??= this.start().catch(async (e: unknown) => {
      await this.teardown();
      throw e;
    });
    return this.listening;
  }

  /**
   * Stop listening, close every Unix and vsock socket (vsock ones are reset),
   * and remove the socket file if it is still the one this muxer made.
   * Resolves once every socket has closed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.listening?.catch(() => undefined);
      await this.teardown();
    })();
    return this.closing;
  }

  // ---- listening ----

  private async start(): Promise<void> {
    await clearStale(this.udsPath);
    if (this.closed) throw new VsockMuxerError('VSOCK_MUX_CLOSED', 'the muxer was closed while it started');
    const server = createServer({ allowHalfOpen: true }, (s) => this.hostClient(s));
    this.server = server;
    // A backlog as deep as the connection limit (the kernel caps it at
    // somaxconn): a burst of connects within the limit is queued, not
    // refused with EAGAIN as Node's default of 511 would.
    this.identity = await listenPrivately(server, this.udsPath, this.maxConnections);
    server.on('error', (e) => this.ioError(e));
    if (this.closed) throw new VsockMuxerError('VSOCK_MUX_CLOSED', 'the muxer was closed while it started');
    const listener = this.endpoint.listen(VSOCK_PORT_ANY, { accept: (info) => this.acceptGuest(info) });
    this.listener = listener;
    listener.on('connection', (s: VsockMuxerAcceptedSocket) => this.guestConnection(s));
  }

  private async teardown(): Promise<void> {
    this.closed = true;
    const waits: Promise<void>[] = [];
    const listener = this.listener;
    this.listener = null;
    if (listener !== null) {
      try {
        listener.close();
      } catch (e) {
        this.ioError(e);
      }
    }
    const server = this.server;
    this.server = null;
    if (server !== null) waits.push(new Promise((r) => (server.listening ? server.close(() => r()) : r())));
    for (const p of this.pairs) {
      waits.push(p.finished);
      p.abort();
    }
    await Promise.all(waits);
    const id = this.identity;
    this.identity = null;
    if (id !== null) removeIfOurs(this.udsPath, id);
  }

  // ---- pairs ----

  private newPair(dir: 'host' | 'guest', unix: Socket): MuxPair {
    const p = new MuxPair(dir, unix, this.pairHooks);
    this.pairs.add(p);
    return p;
  }

  /** What each pair reports back: errors and bytes into the counters, its end out of the tables. */
  private readonly pairHooks = {
    ioError: (e: unknown): void => this.ioError(e),
    bytesToGuest: (n: number): void => void (this.counters.bytesToGuest += n),
    bytesToHost: (n: number): void => void (this.counters.bytesToHost += n),
    finished: (p: MuxPair): void => {
      this.pairs.delete(p);
      if (p.key !== null && this.awaiting.get(p.key) === p) this.awaiting.delete(p.key);
    },
  };

  private ioError(e: unknown): void {
    this.counters.socketErrors++;
    this.emit('socket-error', e);
  }

  private reject(p: MuxPair | null, err: VsockMuxerError): void {
    this.emit('rejected', err);
    p?.abort();
  }

  // ---- host-initiated ----

  private hostClient(unix: Socket): void {
    if (this.closed) {
      unix.on('error', () => undefined);
      unix.destroy();
      return;
    }
    if (this.pairs.size >= this.maxConnections) {
      unix.on('error', () => undefined);
      unix.destroy();
      this.counters.limitRefused++;
      this.reject(null, new VsockMuxerError('VSOCK_MUX_LIMIT', `a Unix client was refused: ${this.maxConnections} connections are open`));
      return;
    }
    const p = this.newPair('host', unix);
    p.timer = setTimeout(() => {
      p.timer = null;
      this.counters.lineTimeouts++;
      this.reject(p, new VsockMuxerError('VSOCK_MUX_LINE_TIMEOUT', `no CONNECT line within ${this.lineTimeoutMs} ms`));
    }, this.lineTimeoutMs);
    let buf = EMPTY;
    const badLine = (reason: ConnectLineError, message: string): void => {
      this.counters.badLines[reason]++;
      this.reject(p, new VsockMuxerError('VSOCK_MUX_BAD_LINE', message, { reason }));
    };
    const onEnd = (): void => badLine('truncated', `the client shut down after ${buf.length} bytes, before a full CONNECT line`);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const nl = buf.subarray(0, this.maxLineBytes).indexOf(LF);
      if (nl < 0) {
        if (buf.length >= this.maxLineBytes) badLine('line-too-long', `no \\n in the first ${this.maxLineBytes} bytes`);
        return;
      }
      unix.off('data', onData);
      unix.off('end', onEnd);
      unix.pause();
      p.clearTimer();
      const line = parseConnectLine(buf.subarray(0, nl));
      if (!line.ok) badLine(line.reason, line.message);
      else this.hostConnect(p, line.port, buf.subarray(nl + 1));
    };
    unix.on('data', onData);
    unix.on('end', onEnd);
  }

  private hostConnect(p: MuxPair, port: number, early: Buffer): void {
    p.phase = 'connecting';
    const failed = (errno: string | undefined, why: string): void => {
      if (p.done) return;
      this.counters.hostConnectFailures++;
      this.reject(p, new VsockMuxerError('VSOCK_MUX_CONNECT_FAILED', `vsock connect to ${this.guestCid}:${port} failed: ${why}`, { port, errno }));
    };
    let vsock: VsockMuxerSocket;
    try {
      vsock = this.endpoint.connect(this.guestCid, port);
    } catch (e) {
      failed(errnoOf(e), e instanceof Error ? e.message : String(e));
      return;
    }
    vsock.on('error', (e) => {
      if (p.phase === 'connecting') failed(errnoOf(e), e.message);
    });
    vsock.on('close', () => {
      if (p.phase === 'connecting') failed(undefined, 'closed before it was established');
    });
    p.attachVsock(vsock);
    vsock.once('connect', () => {
      if (p.done) return;
      this.counters.hostConnects++;
      p.unix.write(`OK ${vsock.localPort}\n`);
      p.splice(vsock, early);
    });
  }

  // ---- guest-initiated ----

  private acceptGuest(info: VsockMuxerAcceptInfo): boolean | Promise<boolean> {
    if (this.closed) return false;
    if (info.remoteCid !== this.guestCid) {
      this.counters.guestConnectFailures++;
      this.reject(null, new VsockMuxerError('VSOCK_MUX_FOREIGN_CID', `a connection request from CID ${info.remoteCid}, not the guest (${this.guestCid}), to port ${info.localPort}`, { port: info.localPort }));
      return false;
    }
    if (this.pairs.size >= this.maxConnections) {
      this.counters.limitRefused++;
      this.reject(null, new VsockMuxerError('VSOCK_MUX_LIMIT', `a guest connection to port ${info.localPort} was refused: ${this.maxConnections} connections are open`, { port: info.localPort }));
      return false;
    }
    const key = `${info.remotePort}:${info.localPort}`;
    if (this.awaiting.has(key)) return false;
    const path = `${this.udsPath}_${info.localPort}`;
    return new Promise<boolean>((resolve) => {
      const unix = netConnect({ path, allowHalfOpen: true });
      const p = this.newPair('guest', unix);
      p.answer = (ok) => resolve(ok);
      // Ahead of the pair's own handler, which would close it uncounted.
      unix.prependOnceListener('error', (e) => {
        if (p.phase !== 'connecting' || p.done) return;
        this.counters.guestConnectFailures++;
        this.reject(p, new VsockMuxerError('VSOCK_MUX_UNIX_CONNECT_FAILED', `guest connection to port ${info.localPort}: ${path} did not accept (${errnoOf(e) ?? e.message})`, { port: info.localPort, errno: errnoOf(e) }));
      });
      unix.once('connect', () => {
        if (p.done) return;
        p.key = key;
        this.awaiting.set(key, p);
        p.timer = setTimeout(() => {
          p.timer = null;
          this.counters.guestConnectFailures++;
          this.reject(p, new VsockMuxerError('VSOCK_MUX_ACCEPT_MISMATCH', `the accepted guest connection ${key} was not delivered within ${this.acceptTimeoutMs} ms`, { port: info.localPort }));
        }, this.acceptTimeoutMs);
        p.answer = null;
        resolve(true);
      });
    });
  }

  private guestConnection(s: VsockMuxerAcceptedSocket): void {
    const key = `${s.remotePort}:${s.localPort}`;
    const p = this.awaiting.get(key);
    if (p === undefined || p.done || this.closed) {
      s.on('error', () => undefined);
      s.destroy();
      if (!this.closed) {
        this.counters.guestConnectFailures++;
        this.reject(null, new VsockMuxerError('VSOCK_MUX_ACCEPT_MISMATCH', `a guest connection ${key} the muxer did not accept (or gave up on) was reset`, { port: s.localPort }));
      }
      return;
    }
    this.awaiting.delete(key);
    p.key = null;
    p.clearTimer();
    p.attachVsock(s);
    this.counters.guestConnects++;
    p.splice(s, EMPTY);
  }
}
