import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, link, lstat, open, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import type { IpHost, UdpBinding, UdpDatagram } from './ip-host.js';

/** Options of a TftpServer. */
export interface TftpServerOptions {
  /** The host whose UDP port 69 (or `port`) the server binds. */
  host: IpHost;
  /** Directory served: only plain file names in it can be read or written. */
  root: string;
  /** Well-known port; default 69. */
  port?: number;
  /** Milliseconds before a packet without answer is sent again; default 500 (a client's `timeout` option overrides it). */
  timeoutMs?: number;
  /** Times a packet is sent again before the transfer fails; default 5. */
  retries?: number;
  /** Accept uploads (WRQ); default true. */
  writable?: boolean;
  /** Largest upload in bytes; default 256 MiB (beyond: error 3). */
  maxUploadBytes?: number;
  /** Called when a transfer ends, well or not. */
  onTransferEnd?: (report: TftpTransferReport) => void;
}

/** How one transfer ended. */
export interface TftpTransferReport {
  kind: 'read' | 'write';
  file: string;
  peer: string;
  /** Payload bytes sent (read) or stored (write). */
  bytes: number;
  blksize: number;
  ok: boolean;
  /** Why it failed, when it did. */
  error?: string;
}

/** Counters of a TftpServer. */
export interface TftpServerStats {
  active: number;
  done: number;
  /** Transfers that failed, refused requests included. */
  failed: number;
  /** Requests answered with an ERROR packet before any data moved. */
  refused: number;
  bytesSent: number;
  bytesReceived: number;
  retransmits: number;
  /** Packets that are not TFTP, or not expected where they came. */
  badPackets: number;
}

/** TFTP opcodes (RFC 1350, RFC 2347). */
const RRQ = 1;
const WRQ = 2;
const DATA = 3;
const ACK = 4;
const ERROR = 5;
const OACK = 6;

/** TFTP error codes (RFC 1350, RFC 2347). */
const ERR_UNDEFINED = 0;
const ERR_NOT_FOUND = 1;
const ERR_ACCESS = 2;
const ERR_DISK_FULL = 3;
const ERR_ILLEGAL = 4;
const ERR_UNKNOWN_TID = 5;
const ERR_EXISTS = 6;

const DEFAULT_BLKSIZE = 512;
/** RFC 2348's limits of blksize. */
const MIN_BLKSIZE = 8;
const MAX_BLKSIZE = 65464;

/** A request refused with a TFTP error. */
class TftpRefusal extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A parsed RRQ or WRQ. */
interface TftpRequest {
  kind: 'read' | 'write';
  file: string;
  mode: string;
  /** Options by lower-case name (the first of duplicates). */
  options: Map<string, string>;
}

/** Split a request's NUL-terminated strings; null when the packet is not a well-formed request. */
function parseRequest(p: Uint8Array): TftpRequest | null {
  if (p.length < 4 || p[p.length - 1] !== 0) return null;
  const op = (p[0] << 8) | p[1];
  if (op !== RRQ && op !== WRQ) return null;
  const fields = Buffer.from(p.buffer, p.byteOffset + 2, p.length - 3).toString('latin1').split('\0');
  if (fields.length < 2 || fields.length % 2 !== 0) return null;
  const options = new Map<string, string>();
  for (let i = 2; i < fields.length; i += 2) {
    const name = fields[i].toLowerCase();
    if (!options.has(name)) options.set(name, fields[i + 1]);
  }
  return { kind: op === RRQ ? 'read' : 'write', file: fields[0], mode: fields[1].toLowerCase(), options };
}

function packet(op: number, n: number, size = 4): Uint8Array {
  const p = new Uint8Array(size);
  p[0] = op >>> 8;
  p[1] = op;
  p[2] = n >>> 8;
  p[3] = n;
  return p;
}

function errorPacket(code: number, message: string): Uint8Array {
  const text = Buffer.from(message, 'latin1');
  const p = packet(ERROR, code, 5 + text.length);
  p.set(text, 4);
  return p;
}

function oackPacket(options: Map<string, string>): Uint8Array {
  const body = [...options].map(([k, v]) => `${k}\0${v}\0`).join('');
  const text = Buffer.from(body, 'latin1');
  const p = new Uint8Array(2 + text.length);
  p[1] = OACK;
  p.set(text, 2);
  return p;
}

/** A decimal option value in [min, max], or -1. */
function optionNumber(v: string | undefined, min: number, max: number): number {
  if (v === undefined || !/^\d{1,10}$/.test(v)) return -1;
  const n = Number(v);
  return n >= min && n <= max ? n : -1;
}

/** Refuse what the server does not do: other modes than octet, names that are not plain names of the root, uploads when not writable. */
function checkRequest(req: TftpRequest, writable: boolean): void {
  if (req.mode === 'netascii') throw new TftpRefusal(ERR_UNDEFINED, 'netascii mode is not supported: use octet (binary)');
  if (req.mode !== 'octet') throw new TftpRefusal(ERR_ILLEGAL, `illegal TFTP operation: mode "${req.mode}"`);
  const f = req.file;
  if (f.length === 0 || f === '.' || f === '..' || /[/\\]/.test(f) || /[\0-\x1f\x7f]/.test(f)) {
    throw new TftpRefusal(ERR_ACCESS, `access violation: "${f}" is not a plain file name`);
  }
  if (req.kind === 'write' && !writable) throw new TftpRefusal(ERR_ACCESS, 'access violation: uploads are disabled');
}

/** The TFTP error for a file system error. */
function fsRefusal(e: unknown, file: string): TftpRefusal {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new TftpRefusal(ERR_NOT_FOUND, `file not found: ${file}`);
  if (code === 'EEXIST') return new TftpRefusal(ERR_EXISTS, `file already exists: ${file}`);
  if (code === 'ENOSPC' || code === 'EDQUOT') return new TftpRefusal(ERR_DISK_FULL, 'disk full');
  if (code === 'EACCES' || code === 'EPERM' || code === 'ELOOP' || code === 'EISDIR') return new TftpRefusal(ERR_ACCESS, `access violation: ${file}`);
  return new TftpRefusal(ERR_UNDEFINED, `${code ?? 'error'} on ${file}`);
}

/**
 * A TFTP server (RFC 1350, octet mode only, with the blksize, tsize and
 * timeout options of RFC 2347-2349) on an IpHost: enough for a guest's
 * `tftp -g` / `tftp -p` (busybox) against the lab.
 *
 * RRQ serves a plain file of the root directory (no path, no symbolic link);
 * WRQ stores an upload under a temporary name and links it into place when
 * complete (an existing file is never replaced: error 6). Each transfer runs
 * lock-step on its own ephemeral port (its TID): a DATA (or OACK) is sent
 * again after `timeoutMs` without its ACK, up to `retries` times. Packets
 * from another TID get error 5 and leave the transfer alone.
 */
export class TftpServer {
  readonly root: string;
  readonly port: number;
  private readonly host: IpHost;
  private readonly writable: boolean;
  private readonly onTransferEnd: ((report: TftpTransferReport) => void) | undefined;
  /** Transfers under way, by the peer's address and port (its TID). */
  private readonly transfers = new Map<string, Transfer>();
  private readonly ctx: TransferContext;
  private binding: UdpBinding | undefined;
  private closing: Promise<void> | undefined;

  /** @throws InvalidArgumentError on bad options. */
  constructor(options: TftpServerOptions) {
    this.host = options.host;
    this.root = resolve(options.root);
    this.port = options.port ?? 69;
    this.writable = options.writable ?? true;
    this.onTransferEnd = options.onTransferEnd;
    const timeoutMs = options.timeoutMs ?? 500;
    const retries = options.retries ?? 5;
    const maxUploadBytes = options.maxUploadBytes ?? 256 << 20;
    if (!(Number.isInteger(this.port) && this.port >= 1 && this.port <= 0xffff)) throw new InvalidArgumentError(`TFTP port ${this.port} must be an integer in [1, 65535]`);
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`TFTP timeoutMs ${timeoutMs} must be > 0`);
    if (!(Number.isInteger(retries) && retries >= 0)) throw new InvalidArgumentError(`TFTP retries ${retries} must be an integer >= 0`);
    if (!(Number.isSafeInteger(maxUploadBytes) && maxUploadBytes >= 0)) throw new InvalidArgumentError(`TFTP maxUploadBytes ${maxUploadBytes} must be an integer >= 0`);
    this.ctx = {
      host: this.host,
      root: this.root,
      timeoutMs,
      retries,
      maxUploadBytes,
      counters: { done: 0, failed: 0, refused: 0, bytesSent: 0, bytesReceived: 0, retransmits: 0, badPackets: 0 },
      ended: (t, report, refused) => this.ended(t, report, refused),
    };
  }

  /** Bind the well-known port. @throws InvalidArgumentError when started twice, closed, or the port is taken. */
  start(): void {
    if (this.closing !== undefined) throw new InvalidArgumentError('TftpServer.start(): the server is closed');
    if (this.binding !== undefined) throw new InvalidArgumentError('TftpServer.start(): already started');
    this.binding = this.host.bindUdp(this.port, (d) => this.onRequest(d));
  }

  /** Unbind, fail every transfer in flight (temporary files removed); resolves when their files are closed. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.binding?.close();
      await Promise.all([...this.transfers.values()].map((t) => t.abort('server closed')));
    })();
    return this.closing;
  }

  /** A snapshot of the counters. */
  stats(): TftpServerStats {
    return { active: this.transfers.size, ...this.ctx.counters };
  }

  private onRequest(d: UdpDatagram): void {
    const req = parseRequest(d.payload);
    if (req === null) {
      this.ctx.counters.badPackets++;
      return;
    }
    // A request repeated while its transfer runs (the client's timer beat our first answer): that transfer's timer resends.
    const peer = `${d.srcIp}:${d.srcPort}`;
    if (this.transfers.has(peer)) return;
    const t = new Transfer(this.ctx, req, d.srcIp, d.srcPort);
    this.transfers.set(peer, t);
    t.start((r) => checkRequest(r, this.writable));
  }

  private ended(t: Transfer, report: TftpTransferReport, refused: boolean): void {
    const c = this.ctx.counters;
    if (this.transfers.get(report.peer) === t) this.transfers.delete(report.peer);
    if (report.ok) c.done++;
    else c.failed++;
    if (refused) c.refused++;
    this.onTransferEnd?.(report);
  }
}

/** What a transfer shares with its server. */
interface TransferContext {
  host: IpHost;
  root: string;
  timeoutMs: number;
  retries: number;
  maxUploadBytes: number;
  counters: Omit<TftpServerStats, 'active'>;
  /** Called once by each transfer as it ends. */
  ended(t: Transfer, report: TftpTransferReport, refused: boolean): void;
}

/**
 * One transfer, on its own port. Its steps (the request, each packet, each
 * timeout) run one after the other on a promise chain, since each may touch
 * the file.
 */
class Transfer {
  private readonly binding: UdpBinding;
  private readonly host: IpHost;
  private chain: Promise<void> = Promise.resolve();
  private fh: FileHandle | undefined;
  private tempPath: string | undefined;
  private blksize = DEFAULT_BLKSIZE;
  private timeoutMs: number;
  /** The packet sent last, and the block number of the packet that answers it. */
  private last: Uint8Array = new Uint8Array(0);
  private block = 0;
  private tries = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Payload bytes sent or stored so far (the file offset). */
  private bytes = 0;
  /** Read: the last DATA sent was short (its ACK ends the transfer). Write: the last DATA is stored and acknowledged. */
  private final = false;
  private finished = false;
  private dataBuffer: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly ctx: TransferContext,
    private readonly req: TftpRequest,
    private readonly peerIp: string,
    private readonly peerPort: number,
  ) {
    this.host = ctx.host;
    this.timeoutMs = ctx.timeoutMs;
    this.binding = this.host.bindUdp(0, (d) => this.enqueue(() => this.onPacket(d)));
  }

  /** Check the request (`check` throws a TftpRefusal), open the file, then answer: OACK, DATA 1 or ACK 0, or an ERROR. */
  start(check: (req: TftpRequest) => void): void {
    this.enqueue(async () => {
      try {
        check(this.req);
        const accepted = this.req.kind === 'read' ? await this.openRead() : await this.openWrite();
        this.dataBuffer = new Uint8Array(4 + this.blksize);
        // With options, the OACK stands for DATA 0 (read: ACK 0 answers it) or ACK 0 (write: DATA 1 answers it).
        if (accepted.size !== 0) await this.send(oackPacket(accepted), this.req.kind === 'read' ? 0 : 1);
        else if (this.req.kind === 'read') await this.sendData(1);
        else await this.send(packet(ACK, 0), 1);
      } catch (e) {
        if (!(e instanceof TftpRefusal)) throw e;
        await this.sendError(e.code, e.message);
        await this.end(e.message, true);
      }
    });
  }

  /** End the transfer now (server closing); resolves once its file is closed. */
  abort(why: string): Promise<void> {
    this.enqueue(() => this.end(why));
    return this.chain;
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(() => (this.finished ? undefined : step())).catch((e: unknown) => this.end(`internal error: ${(e as Error).message}`));
  }

  // ---- opening -----------------------------------------------------------

  /** Open the file to serve (never through a symbolic link); returns the options acknowledged. */
  private async openRead(): Promise<Map<string, string>> {
    try {
      this.fh = await open(join(this.ctx.root, this.req.file), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (e) {
      throw fsRefusal(e, this.req.file);
    }
    const st = await this.fh.stat();
    if (!st.isFile()) throw new TftpRefusal(ERR_ACCESS, `access violation: ${this.req.file} is not a regular file`);
    return this.negotiate(st.size);
  }

  /** Create the temporary file of an upload; returns the options acknowledged. */
  private async openWrite(): Promise<Map<string, string>> {
    const exists = await lstat(join(this.ctx.root, this.req.file)).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return false;
        throw fsRefusal(e, this.req.file);
      },
    );
    if (exists) throw new TftpRefusal(ERR_EXISTS, `file already exists: ${this.req.file}`);
    const accepted = this.negotiate(-1);
    const tsize = Number(accepted.get('tsize') ?? 0);
    if (tsize > this.ctx.maxUploadBytes) throw new TftpRefusal(ERR_DISK_FULL, `an upload of ${tsize} bytes exceeds the ${this.ctx.maxUploadBytes}-byte limit`);
    const temp = join(this.ctx.root, `.${this.req.file}.${randomBytes(4).toString('hex')}.tftp-part`);
    try {
      this.fh = await open(temp, 'wx');
    } catch (e) {
      throw fsRefusal(e, this.req.file);
    }
    this.tempPath = temp;
    return accepted;
  }

  /** Take the options the server supports (RFC 2347-2349); `size` is the file's (-1 on upload). */
  private negotiate(size: number): Map<string, string> {
    const o = this.req.options;
    const accepted = new Map<string, string>();
    const blksize = optionNumber(o.get('blksize'), MIN_BLKSIZE, MAX_BLKSIZE);
    if (blksize > 0) {
      // RFC 2348: the server may answer with a smaller size; one DATA must fit one frame.
      this.blksize = Math.min(blksize, this.host.maxUdpPayload - 4);
      accepted.set('blksize', String(this.blksize));
    }
    const timeout = optionNumber(o.get('timeout'), 1, 255);
    if (timeout > 0) {
      this.timeoutMs = timeout * 1000;
      accepted.set('timeout', String(timeout));
    }
    const tsize = optionNumber(o.get('tsize'), 0, Number.MAX_SAFE_INTEGER);
    if (tsize >= 0) accepted.set('tsize', String(size >= 0 ? size : tsize));
    return accepted;
  }

  // ---- packets -------------------------------------------------------------

  private async onPacket(d: UdpDatagram): Promise<void> {
    const p = d.payload;
    if (d.srcIp !== this.peerIp || d.srcPort !== this.peerPort) {
      // RFC 1350: a packet from another TID gets an error and leaves this transfer alone.
      this.ctx.counters.badPackets++;
      await this.host.sendUdp(d.srcIp, d.srcPort, this.binding.port, errorPacket(ERR_UNKNOWN_TID, 'unknown transfer ID')).catch(() => undefined);
      return;
    }
    const op = p.length >= 4 ? (p[0] << 8) | p[1] : -1;
    const n = (p[2] << 8) | p[3];
    if (op === ERROR) return this.end(`peer sent error ${n}: ${Buffer.from(p.subarray(4, Math.max(4, p.indexOf(0, 4)))).toString('latin1')}`);
    if (this.req.kind === 'read' && op === ACK) return this.onAck(n);
    if (this.req.kind === 'write' && op === DATA && p.length <= 4 + this.blksize) return this.onData(n, p);
    this.ctx.counters.badPackets++;
  }

  /** Read side: an ACK. Old and repeated ACKs are ignored (no Sorcerer's Apprentice: only the timer resends). */
  private async onAck(n: number): Promise<void> {
    if (n !== this.block) return;
    if (this.final) return this.end();
    await this.sendData((n + 1) & 0xffff);
  }

  /** Write side: a DATA. The one expected is stored and acknowledged; a repeat of the previous one is acknowledged again. */
  private async onData(n: number, p: Uint8Array): Promise<void> {
    if (this.last[1] === ACK && ((this.last[2] << 8) | this.last[3]) === n) return this.resend();
    if (n !== this.block || this.final) return;
    const len = p.length - 4;
    if (this.bytes + len > this.ctx.maxUploadBytes) return this.fail(ERR_DISK_FULL, `the upload exceeds the ${this.ctx.maxUploadBytes}-byte limit`);
    try {
      await this.fh!.write(p, 4, len, this.bytes);
      this.bytes += len;
      this.ctx.counters.bytesReceived += len;
      if (len < this.blksize) await this.store();
    } catch (e) {
      const r = fsRefusal(e, this.req.file);
      return this.fail(r.code, r.message);
    }
    this.final = len < this.blksize;
    await this.send(packet(ACK, n), (n + 1) & 0xffff);
  }

  /** Close the upload and link it into place: link() fails rather than replace a file that appeared meanwhile. */
  private async store(): Promise<void> {
    await this.fh!.close();
    this.fh = undefined;
    const temp = this.tempPath!;
    this.tempPath = undefined;
    try {
      await link(temp, join(this.ctx.root, this.req.file));
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  /** Read and send DATA block `n` (the one after the last acknowledged). */
  private async sendData(n: number): Promise<void> {
    const buf = this.dataBuffer;
    const { bytesRead } = await this.fh!.read(buf, 4, this.blksize, this.bytes);
    buf[0] = 0;
    buf[1] = DATA;
    buf[2] = n >>> 8;
    buf[3] = n;
    this.bytes += bytesRead;
    this.ctx.counters.bytesSent += bytesRead;
    this.final = bytesRead < this.blksize;
    await this.send(buf.subarray(0, 4 + bytesRead), n);
  }

  /** Send `p`, to be answered by block number `block`, and arm the timer. */
  private async send(p: Uint8Array, block: number): Promise<void> {
    this.last = p;
    this.block = block;
    this.tries = 0;
    await this.transmit();
  }

  private async resend(): Promise<void> {
    this.ctx.counters.retransmits++;
    await this.transmit();
  }

  private async transmit(): Promise<void> {
    clearTimeout(this.timer);
    await this.host.sendUdp(this.peerIp, this.peerPort, this.binding.port, this.last);
    // After its final ACK a writer dallies two timeouts (RFC 1350: that ACK may be lost), acknowledging a repeated last DATA.
    const wait = this.req.kind === 'write' && this.final ? 2 * this.timeoutMs : this.timeoutMs;
    this.timer = setTimeout(() => this.enqueue(() => this.onTimeout()), wait);
  }

  private async onTimeout(): Promise<void> {
    if (this.req.kind === 'write' && this.final) return this.end();
    if (this.tries >= this.ctx.retries) return this.fail(ERR_UNDEFINED, `timed out after ${this.tries + 1} sends without an answer`);
    this.tries++;
    await this.resend();
  }

  // ---- ending ----------------------------------------------------------------

  /** Send an ERROR (best effort: the peer may be gone). */
  private async sendError(code: number, message: string): Promise<void> {
    await this.host.sendUdp(this.peerIp, this.peerPort, this.binding.port, errorPacket(code, message)).catch(() => undefined);
  }

  private async fail(code: number, message: string): Promise<void> {
    await this.sendError(code, message);
    await this.end(message);
  }

  /** Release the port, timer and files; a transfer ended without `error` succeeded. */
  private async end(error?: string, refused = false): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.binding.close();
    await this.fh?.close().catch(() => undefined);
    if (this.tempPath !== undefined) await unlink(this.tempPath).catch(() => undefined);
    const report: TftpTransferReport = { kind: this.req.kind, file: this.req.file, peer: `${this.peerIp}:${this.peerPort}`, bytes: this.bytes, blksize: this.blksize, ok: error === undefined };
    if (error !== undefined) report.error = error;
    this.ctx.ended(this, report, refused);
  }
}
