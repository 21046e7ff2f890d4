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
import { type Stats, chmodSync, lstatSync, mkdtempSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { type Server, type Socket, connect as netConnect, createServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { InvalidArgumentError, VirtioLabError } from '../errors.js';
import { VSOCK_PORT_ANY } from './stack/limits.js';

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

// ---- what the muxer needs of a vsock stack ----

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

// ---- options, stats, errors ----

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

/** Why a CONNECT line was refused. */
export type ConnectLineError =
  /** No `\n` within maxLineBytes. */
  | 'line-too-long'
  /** The line does not start with `CONNECT ` (case-sensitive). */
  | 'not-connect'
  /** The port is missing, not decimal digits, above 4294967295, or VMADDR_PORT_ANY. */
  | 'bad-port'
  /** Anything after the port: spaces, a `\r`, more words. */
  | 'trailing-garbage'
  /** The client shut down its sending side before a full line. */
  | 'truncated';

/** Every {@link ConnectLineError}, in the order of stats.badLines. */
export const CONNECT_LINE_ERRORS: readonly ConnectLineError[] = ['line-too-long', 'not-connect', 'bad-port', 'trailing-garbage', 'truncated'];

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

/** Result of {@link parseConnectLine}. */
export type ConnectLineResult = { ok: true; port: number } | { ok: false; reason: ConnectLineError; message: string };

const SP = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const PREFIX = 'CONNECT';

/**
 * Parse one CONNECT line, without its `\n`: exactly `CONNECT <port>` with
 * one space, the port 1 to 10 decimal digits (leading zeros allowed) and at
 * most 4294967294 (4294967295 is VMADDR_PORT_ANY). Nothing else is allowed:
 * no `\r`, no trailing space, no lowercase.
 */
export function parseConnectLine(line: Uint8Array): ConnectLineResult {
  const bad = (reason: ConnectLineError, why: string): ConnectLineResult => ({ ok: false, reason, message: `${why} in CONNECT line ${printable(line)}` });
  let head = true;
  for (let i = 0; i < PREFIX.length; i++) if (line[i] !== PREFIX.charCodeAt(i)) head = false;
  if (!head || (line.length > PREFIX.length && line[PREFIX.length] !== SP)) {
    const lower = Buffer.from(line.subarray(0, PREFIX.length)).toString('latin1').toUpperCase() === PREFIX;
    return bad('not-connect', lower ? 'the command is case-sensitive: "CONNECT <port>" expected' : '"CONNECT <port>" expected');
  }
  const start = PREFIX.length + 1;
  let end = start;
  while (end < line.length && line[end] !== SP && line[end] !== TAB && line[end] !== CR) end++;
  if (end === start || start > line.length) return bad('bad-port', 'no port');
  const token = line.subarray(start, end);
  if (token.length > 10 || !token.every((b) => b >= 0x30 && b <= 0x39)) return bad('bad-port', 'port is not a decimal u32');
  const port = Number(Buffer.from(token).toString('latin1'));
  if (port > 0xffffffff) return bad('bad-port', 'port is above 4294967295');
  if (port === VSOCK_PORT_ANY) return bad('bad-port', 'port 4294967295 is VMADDR_PORT_ANY');
  if (end < line.length) {
    const why = line[end] === CR ? 'a \\r before the \\n (lines end with \\n alone)' : 'characters after the port';
    return bad('trailing-garbage', why);
  }
  return { ok: true, port };
}

/** A line for a log: at most 40 bytes, anything outside printable ASCII as \xNN. */
function printable(line: Uint8Array): string {
  let s = '';
  for (const b of line.subarray(0, 40)) s += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${s}${line.length > 40 ? '...' : ''}" (${line.length} bytes)`;
}

// ---- the muxer ----

type Phase = 'line' | 'connecting' | 'open';

/** One Unix socket and, once there is one, its vsock socket. */
interface Pair {
  readonly dir: 'host' | 'guest';
  readonly unix: Socket;
  vsock: VsockMuxerSocket | null;
  phase: Phase;
  timer: NodeJS.Timeout | null;
  unixClosed: boolean;
  vsockClosed: boolean;
  /** Guest-initiated: `${remotePort}:${localPort}` while it waits for its 'connection'. */
  key: string | null;
  /** Guest-initiated: answers the stack's accept hook. */
  answer: ((ok: boolean) => void) | null;
  done: boolean;
  finished: Promise<void>;
  finish: () => void;
}

const EMPTY: Buffer = Buffer.alloc(0);
const MAX_UNIX_PATH = process.platform === 'linux' ? 107 : 103;

function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

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
  private readonly pairs = new Set<Pair>();
  private readonly awaiting = new Map<string, Pair>();
  private server: Server | null = null;
  private listener: VsockMuxerListener | null = null;
  /** dev/ino of the socket file this muxer made: only that file is removed on close. */
  private identity: { dev: number; ino: number } | null = null;
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
    await this.clearStale();
    if (this.closed) throw new VsockMuxerError('VSOCK_MUX_CLOSED', 'the muxer was closed while it started');
    const server = createServer({ allowHalfOpen: true }, (s) => this.hostClient(s));
    this.server = server;
    // Bind in a fresh 0700 directory next to udsPath, chmod, then rename into
    // place: the socket is never reachable by others under udsPath, not even
    // briefly, and a stale file there is replaced in one step. The bind path
    // (dirname + 11 bytes) is never longer than udsPath + 11, checked in the
    // constructor.
    const privateDir = mkdtempSync(join(dirname(this.udsPath), `.${basename(this.udsPath).slice(0, 1)}`));
    const bindPath = join(privateDir, 's');
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // A backlog as deep as the connection limit (the kernel caps it at
        // somaxconn): a burst of connects within the limit is queued, not
        // refused with EAGAIN as Node's default of 511 would.
        server.listen({ path: bindPath, backlog: this.maxConnections }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      chmodSync(bindPath, 0o600);
      renameSync(bindPath, this.udsPath);
    } finally {
      try {
        unlinkSync(bindPath);
      } catch {
        // Renamed away (the usual case).
      }
      rmdirSync(privateDir);
    }
    const st = lstatSync(this.udsPath);
    this.identity = { dev: st.dev, ino: st.ino };
    server.on('error', (e) => this.ioError(e));
    if (this.closed) throw new VsockMuxerError('VSOCK_MUX_CLOSED', 'the muxer was closed while it started');
    const listener = this.endpoint.listen(VSOCK_PORT_ANY, { accept: (info) => this.acceptGuest(info) });
    this.listener = listener;
    listener.on('connection', (s: VsockMuxerAcceptedSocket) => this.guestConnection(s));
  }

  /** What is at udsPath may be replaced: nothing, or a socket nobody accepts on. */
  private async clearStale(): Promise<void> {
    let st: Stats;
    try {
      st = lstatSync(this.udsPath);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      throw e;
    }
    if (!st.isSocket()) throw new VsockMuxerError('EEXIST', `${this.udsPath} exists and is not a socket: it is not replaced`);
    const probe = await new Promise<string>((resolve) => {
      const s = netConnect(this.udsPath);
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e) => resolve(errnoOf(e) ?? 'error'));
    });
    // ECONNREFUSED: a socket file with no listener behind it. ENOENT: gone since.
    if (probe !== 'ECONNREFUSED' && probe !== 'ENOENT') {
      throw new VsockMuxerError('EADDRINUSE', `${this.udsPath} is in use (a connect to it gave ${probe}): not replaced`, { errno: probe });
    }
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
      this.abort(p);
    }
    await Promise.all(waits);
    const id = this.identity;
    this.identity = null;
    if (id !== null) {
      try {
        const st = lstatSync(this.udsPath);
        if (st.dev === id.dev && st.ino === id.ino) unlinkSync(this.udsPath);
      } catch {
        // Gone already, or not ours any more.
      }
    }
  }

  // ---- pairs ----

  private newPair(dir: 'host' | 'guest', unix: Socket): Pair {
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const p: Pair = { dir, unix, vsock: null, phase: dir === 'host' ? 'line' : 'connecting', timer: null, unixClosed: false, vsockClosed: false, key: null, answer: null, done: false, finished, finish };
    this.pairs.add(p);
    unix.on('error', (e) => this.pairError(p, e));
    unix.on('close', () => {
      p.unixClosed = true;
      this.sideClosed(p, unix);
    });
    return p;
  }

  private attachVsock(p: Pair, s: VsockMuxerSocket): void {
    p.vsock = s;
    s.on('error', (e) => this.pairError(p, e));
    s.on('close', () => {
      p.vsockClosed = true;
      this.sideClosed(p, s);
    });
  }

  /** One side closed: a clean close lets the other finish its half; anything else ends both. */
  private sideClosed(p: Pair, s: Duplex): void {
    if (!(s.readableEnded && s.writableFinished)) this.abort(p);
    if (p.unixClosed && (p.vsock === null || p.vsockClosed)) {
      this.clearTimer(p);
      this.pairs.delete(p);
      if (p.key !== null && this.awaiting.get(p.key) === p) this.awaiting.delete(p.key);
      p.answer?.(false);
      p.answer = null;
      p.finish();
    }
  }

  /** Close both sockets now (a vsock socket destroyed before its end is reset). */
  private abort(p: Pair): void {
    if (p.done) return;
    p.done = true;
    this.clearTimer(p);
    p.answer?.(false);
    p.answer = null;
    p.unix.destroy();
    p.vsock?.destroy();
  }

  private clearTimer(p: Pair): void {
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
  }

  private pairError(p: Pair, e: Error): void {
    if (p.done) return;
    if (p.phase === 'open') this.ioError(e);
    // Before that, the failure was counted where it was seen, or is the client's own (it went away).
    this.abort(p);
  }

  private ioError(e: unknown): void {
    this.counters.socketErrors++;
    this.emit('socket-error', e);
  }

  private reject(p: Pair | null, err: VsockMuxerError): void {
    this.emit('rejected', err);
    if (p !== null) this.abort(p);
  }

  /** Both sockets connected: bytes flow raw both ways, ends are passed on. */
  private splice(p: Pair, vsock: VsockMuxerSocket, early: Buffer): void {
    p.phase = 'open';
    const { unix } = p;
    if (early.length > 0) {
      this.counters.bytesToGuest += early.length;
      vsock.write(early);
    }
    unix.on('data', (d: Uint8Array) => (this.counters.bytesToGuest += d.byteLength));
    vsock.on('data', (d: Uint8Array) => (this.counters.bytesToHost += d.byteLength));
    unix.pipe(vsock);
    vsock.pipe(unix);
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
      this.clearTimer(p);
      const line = parseConnectLine(buf.subarray(0, nl));
      if (!line.ok) badLine(line.reason, line.message);
      else this.hostConnect(p, line.port, buf.subarray(nl + 1));
    };
    unix.on('data', onData);
    unix.on('end', onEnd);
  }

  private hostConnect(p: Pair, port: number, early: Buffer): void {
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
    this.attachVsock(p, vsock);
    vsock.once('connect', () => {
      if (p.done) return;
      this.counters.hostConnects++;
      p.unix.write(`OK ${vsock.localPort}\n`);
      this.splice(p, vsock, early);
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
    this.clearTimer(p);
    this.attachVsock(p, s);
    this.counters.guestConnects++;
    this.splice(p, s, EMPTY);
  }
}
