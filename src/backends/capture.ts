import { InvalidArgumentError } from '../errors.js';
import { type FrameSink, NetHdr, OffloadEngine, type OffloadErrorCode } from '../net/offload/index.js';
import { NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_NONE, NET_MAX_TX_FRAME } from '../spec/net.js';
import { PcapWriter } from './pcap-writer.js';
import { recordNetHdr } from '../net/net-port.js';

/** The MTU wire frames are cut to when nothing else is said. */
export const DEFAULT_WIRE_MTU = 1500;

/** Bytes a GSO segment may add over its share of payload: its copy of the headers, an IPv6 fragment header. */
const SEGMENT_OVERHEAD = 8;

export function checkMtu(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new InvalidArgumentError(`MTU ${mtu} must be an integer in [68, 65535]`);
  return mtu;
}

/**
 * Turns channel records into wire frames. A record is a frame plus the
 * virtio_net_hdr its sender wrote (port-channel.ts): a GSO super-frame, or a
 * frame whose checksum is only partial (NEEDS_CSUM). Inside the virtio world
 * the receiving NIC resolves those; anything that leaves it (a pcap file, a
 * socket to QEMU) must see what a wire would carry: checksums complete and
 * no packet larger than the MTU. Plain frames pass through untouched, with
 * no copy; the others are rebuilt in the OffloadEngine's scratch buffer.
 */
export class WireFrames {
  /** Why the last resolve() failed. */
  error: OffloadErrorCode | undefined = undefined;
  private readonly hdr = new NetHdr();
  private readonly engine: OffloadEngine;

  constructor(
    readonly mtu: number = DEFAULT_WIRE_MTU,
    maxFrame: number = NET_MAX_TX_FRAME,
  ) {
    checkMtu(mtu);
    this.engine = new OffloadEngine(maxFrame);
  }

  /** True when the record's frame needs no work (no GSO, no partial checksum). */
  plain(u8: Uint8Array, at: number): boolean {
    const h = recordNetHdr(at);
    return u8[h + 1] === NET_HDR_GSO_NONE && (u8[h] & NET_HDR_F_NEEDS_CSUM) === 0;
  }

  /**
   * Bytes resolve() will emit for the record at `at` at most (frames only),
   * or -1 when its header cannot be carried out (`error` says why).
   */
  wireBytes(u8: Uint8Array, at: number, len: number): number {
    if (this.plain(u8, at)) return len;
    const hdr = this.hdr.read(u8, recordNetHdr(at));
    const n = this.engine.segmentCount(hdr, u8, at, len, this.mtu);
    if (n < 0) {
      this.error = this.engine.error;
      return -1;
    }
    return len + n * (this.engine.packet.hdrLen + SEGMENT_OVERHEAD);
  }

  /**
   * Emit the wire frames of the record whose frame is u8[at, at+len): the
   * frame itself when plain, else its checksum completed / its segments.
   * Returns how many were emitted, or -1 with `error` set (nothing emitted).
   * The emitted bytes are only valid during the call.
   */
  resolve(u8: Uint8Array, at: number, len: number, emit: FrameSink): number {
    this.error = undefined;
    if (this.plain(u8, at)) {
      emit(u8, at, len);
      return 1;
    }
    const hdr = this.hdr.read(u8, recordNetHdr(at));
    const n = this.engine.segment(hdr, u8, at, len, this.mtu, emit);
    if (n < 0) this.error = this.engine.error;
    return n;
  }
}

/** Options of a capture. */
export interface CaptureOptions {
  /** MTU that GSO frames are cut to; default 1500. */
  mtu?: number;
  /** Bytes kept of each frame (pcap snaplen); default the writer's. */
  snaplen?: number;
}

/**
 * A pcap file of wire frames: each channel record written is resolved first
 * (WireFrames), so a capture shows what a real link would carry and tshark
 * checks the checksums. A record whose header cannot be resolved is written
 * as it is and counted in `errors`.
 *
 * Timestamps: the writer's caller reads the clock once per batch (no clock
 * read per frame on the forwarding path), so every frame of a batch gets
 * that time, or 1 µs (the format's resolution) after the frame before it
 * when that is later. Frames of a batch, and the segments of a GSO frame,
 * thus keep their order and distinct stamps; while frames come faster than
 * one per µs the stamps run ahead of the clock until a quiet moment lets the
 * next clock read catch up.
 */
export class WireCapture {
  /** Records whose virtio_net_hdr could not be resolved. */
  errors = 0;
  private readonly writer: PcapWriter;
  private readonly wire: WireFrames;
  /** The clock of the batch being written, and the stamp of the last frame written (µs since the epoch). */
  private timeUs = 0;
  private lastUs = 0;
  private readonly sink: FrameSink = (u8, at, len) => this.writeFrame(u8, at, len);

  constructor(path: string, options: CaptureOptions = {}, maxFrame: number = NET_MAX_TX_FRAME) {
    this.wire = new WireFrames(options.mtu ?? DEFAULT_WIRE_MTU, maxFrame);
    this.writer = PcapWriter.open(path, options.snaplen === undefined ? {} : { snaplen: options.snaplen });
  }

  get path(): string {
    return this.writer.path;
  }

  /** Wire frames written so far. */
  get frames(): number {
    return this.writer.frames;
  }

  /** Write the record whose frame is u8[at, at+len), stamped `timeUs` (microseconds since the epoch). Returns frames written. */
  write(u8: Uint8Array, at: number, len: number, timeUs: number): number {
    this.timeUs = Math.floor(timeUs);
    const n = this.wire.resolve(u8, at, len, this.sink);
    if (n >= 0) return n;
    this.errors++;
    this.writeFrame(u8, at, len);
    return 1;
  }

  private writeFrame(u8: Uint8Array, at: number, len: number): void {
    const t = this.timeUs > this.lastUs ? this.timeUs : this.lastUs + 1;
    this.lastUs = t;
    this.writer.write(u8, at, len, t);
  }

  flush(): void {
    this.writer.flush();
  }

  close(): void {
    this.writer.close();
  }
}

/**
 * Fail now, on the caller's thread, when a capture file cannot be created
 * (a worker that opens it later could only report it asynchronously).
 */
export function checkCapturePath(path: string, options: CaptureOptions = {}): void {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError(`capture path ${String(path)} is not a file name`);
  if (options.mtu !== undefined) checkMtu(options.mtu);
  PcapWriter.open(path, options.snaplen === undefined ? {} : { snaplen: options.snaplen }).close();
}
