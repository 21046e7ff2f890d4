import { closeSync, openSync, writeSync } from 'node:fs';
import { InvalidArgumentError, VirtioLabError } from '../errors.js';

/** Classic libpcap file format, written in host (little-endian) order. */
const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_VERSION_MAJOR = 2;
const PCAP_VERSION_MINOR = 4;
const LINKTYPE_ETHERNET = 1;
const GLOBAL_HEADER_SIZE = 24;
const RECORD_HEADER_SIZE = 16;
/** tcpdump's default snapshot length: whole frames, GSO frames included. */
const DEFAULT_SNAPLEN = 262_144;
/** Records are gathered here and reach the file in one write per MiB. */
const BUFFER_SIZE = 1 << 20;

/** A file system call on a capture file failed; `cause` is Node's error. */
export class PcapWriteError extends VirtioLabError {
  constructor(
    readonly path: string,
    op: string,
    cause: unknown,
  ) {
    super('PCAP_IO', `pcap ${op} ${path}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.cause = cause;
  }
}

/** Options of PcapWriter.open. */
export interface PcapWriterOptions {
  /** Bytes kept of each frame; longer frames are truncated, their orig_len kept. Default 262144. */
  snaplen?: number;
}

/**
 * Writes Ethernet frames to a classic pcap file (readable by tcpdump and
 * Wireshark) with microsecond timestamps. Records are buffered in one
 * preallocated 1 MiB buffer and written with fs.writeSync: no allocation per
 * frame, and nothing reaches the file before flush(), close() or a full
 * buffer. Not safe to share between threads.
 */
export class PcapWriter {
  private fd: number;
  private readonly buf = Buffer.allocUnsafe(BUFFER_SIZE);
  private used = 0;
  private count = 0;

  private constructor(
    /** The file being written. */
    readonly path: string,
    fd: number,
    /** Bytes kept of each frame. */
    readonly snaplen: number,
  ) {
    this.fd = fd;
  }

  /** Create (or truncate) `path` and write the pcap global header. */
  static open(path: string, options: PcapWriterOptions = {}): PcapWriter {
    const snaplen = options.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0x7fffffff) {
      throw new InvalidArgumentError(`pcap snaplen ${snaplen} is not a positive 31-bit integer`);
    }
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (e) {
      throw new PcapWriteError(path, 'open', e);
    }
    const w = new PcapWriter(path, fd, snaplen);
    const b = w.buf;
    b.writeUInt32LE(PCAP_MAGIC_US, 0);
    b.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
    b.writeUInt16LE(PCAP_VERSION_MINOR, 6);
    b.writeInt32LE(0, 8); // thiszone: timestamps are UTC
    b.writeUInt32LE(0, 12); // sigfigs
    b.writeUInt32LE(snaplen, 16);
    b.writeUInt32LE(LINKTYPE_ETHERNET, 20);
    w.used = GLOBAL_HEADER_SIZE;
    return w;
  }

  /** Frames written so far (buffered ones included). */
  get frames(): number {
    return this.count;
  }

  /**
   * Append the frame u8[at, at+len) as one record stamped `timeUs`
   * (microseconds since the Unix epoch; default now).
   */
  write(u8: Uint8Array, at: number, len: number, timeUs: number = nowUs()): void {
    if (this.fd < 0) throw new InvalidArgumentError(`pcap ${this.path} is closed`);
    if (!Number.isInteger(at) || !Number.isInteger(len) || at < 0 || len < 0 || at + len > u8.length) {
      throw new InvalidArgumentError(`frame [${at}, ${at}+${len}) is outside a ${u8.length}-byte buffer`);
    }
    const caplen = Math.min(len, this.snaplen);
    if (this.used + RECORD_HEADER_SIZE + caplen > BUFFER_SIZE) this.flush();
    const sec = Math.floor(timeUs / 1e6);
    const b = this.buf;
    let i = this.used;
    b.writeUInt32LE(sec >>> 0, i);
    b.writeUInt32LE(Math.floor(timeUs - sec * 1e6), i + 4);
    b.writeUInt32LE(caplen, i + 8);
    b.writeUInt32LE(len, i + 12);
    i += RECORD_HEADER_SIZE;
    if (i + caplen <= BUFFER_SIZE) {
      // Buffer's copy takes any Uint8Array as source without making a view of it.
      Buffer.prototype.copy.call(u8, b, i, at, at + caplen);
      this.used = i + caplen;
    } else {
      // A snaplen beyond the buffer: the header, then the frame straight from u8.
      this.used = i;
      this.flush();
      this.writeAll(u8, at, caplen);
    }
    this.count++;
  }

  /** Write buffered records to the file. */
  flush(): void {
    if (this.fd < 0 || this.used === 0) return;
    const n = this.used;
    this.used = 0;
    this.writeAll(this.buf, 0, n);
  }

  /** Flush and close the file; later calls do nothing. Throws the first failure. */
  close(): void {
    if (this.fd < 0) return;
    let failure: unknown;
    try {
      this.flush();
    } catch (e) {
      failure = e;
    }
    const fd = this.fd;
    this.fd = -1;
    try {
      closeSync(fd);
    } catch (e) {
      failure ??= new PcapWriteError(this.path, 'close', e);
    }
    if (failure !== undefined) throw failure;
  }

  private writeAll(src: Uint8Array, at: number, len: number): void {
    try {
      // writeSync may write less than asked (a full pipe, a signal).
      for (let done = 0; done < len; ) done += writeSync(this.fd, src, at + done, len - done);
    } catch (e) {
      throw new PcapWriteError(this.path, 'write', e);
    }
  }
}

/** Wall-clock microseconds since the epoch, finer than Date.now(). */
const nowUs = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000);
