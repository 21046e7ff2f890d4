import { AdaptiveWait } from '../notify/adaptive-wait.js';
import { NET_HDR_SIZE } from '../spec/net.js';
import { EAGAIN, EINTR, POLLIN, poll, readEventfd } from '../os/libc.js';
import { PortChannelConsumer, type PortChannelSpec, PortChannelProducer } from '../port/port-channel.js';
import { recordNetHdr } from '../net/net-port.js';
import { readAt, sharedAddress, writeAt } from './tun.js';

/** Int32 words of a TAP port's control area, each on its own cache line. */
export const TAP_WAKE_READER = 0;
export const TAP_WAKE_WRITER = 16;
export const TAP_STOP = 32;
/** Float64 index of the first counter (byte 256). */
const COUNTERS_AT = 32;

/** Counters of a TAP port ("read": interface -> lab, "written": lab -> interface). */
export const TAP_COUNTERS = [
  /** Frames read from the interface and handed to the lab (a GSO frame counts once). */
  'readFrames',
  'readBytes',
  /** Frames written to the interface. */
  'writtenFrames',
  'writtenBytes',
  /** Reads shorter than a vnet header and an Ethernet header. */
  'dropsShort',
  /** Frames the kernel refused (a header it rejects, the interface down): counted, not retried. */
  'dropsWrite',
  /** Reads that failed with something else than "nothing to read". */
  'readErrors',
  /** Times each thread went to sleep. */
  'readerSleeps',
  'writerSleeps',
] as const;
export type TapCounter = (typeof TAP_COUNTERS)[number];
export type TapPortStats = Record<TapCounter, number>;

const counter = (name: TapCounter): number => COUNTERS_AT + TAP_COUNTERS.indexOf(name);
const READ_FRAMES = counter('readFrames');
const READ_BYTES = counter('readBytes');
const WRITTEN_FRAMES = counter('writtenFrames');
const WRITTEN_BYTES = counter('writtenBytes');
const DROPS_SHORT = counter('dropsShort');
const DROPS_WRITE = counter('dropsWrite');
const READ_ERRORS = counter('readErrors');
const READER_SLEEPS = counter('readerSleeps');
const WRITER_SLEEPS = counter('writerSleeps');

/** Bytes of a TAP port's control area. */
export const TAP_CTL_BYTES = 8 * (COUNTERS_AT + TAP_COUNTERS.length);

export function readTapStats(ctl: SharedArrayBuffer): TapPortStats {
  const f64 = new Float64Array(ctl);
  const out = {} as TapPortStats;
  for (const name of TAP_COUNTERS) out[name] = f64[counter(name)];
  return out;
}

/** Everything a TAP worker starts from. */
export interface TapWorkerData {
  role: 'reader' | 'writer';
  /** The tap fd (non-blocking; shared by both threads of the port). */
  fd: number;
  /** An eventfd written once at close: wakes the reader out of poll(). */
  stopFd: number;
  ctl: SharedArrayBuffer;
  /** Reader: the channel into the lab. Writer: the channels out of it. */
  channels: PortChannelSpec[];
  maxFrame: number;
  spinUs: number;
}

/** Frames moved per batch before indices are published. */
const BATCH = 32;
/** A sleeping thread wakes at least this often to look at the stop word. */
const IDLE_MS = 1000;
const POLLOUT = 0x4;

/**
 * Interface -> lab: reads each frame, vnet header first, straight into a
 * record of the channel (the header lands where the record keeps it), so a
 * frame is copied once, by the kernel. The TAP is single-queue: every frame
 * goes into the first channel (a flow therefore stays on one receive queue).
 * It sleeps in poll() on the tap fd while the channel has room, and on its
 * wake word (the consumer frees space) while it is full.
 */
export class TapReader {
  private readonly out: PortChannelProducer;
  private readonly address: number;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly pollFds = new Uint8Array(16);
  private readonly stopBuf = new Uint8Array(8);
  private full = false;

  constructor(private readonly data: TapWorkerData) {
    this.out = new PortChannelProducer(data.channels[0]);
    this.address = sharedAddress(data.channels[0].buffer);
    this.i32 = new Int32Array(data.ctl);
    this.f64 = new Float64Array(data.ctl);
    const dv = new DataView(this.pollFds.buffer);
    dv.setInt32(0, data.fd, true);
    dv.setInt16(4, POLLIN, true);
    dv.setInt32(8, data.stopFd, true);
    dv.setInt16(12, POLLIN, true);
  }

  /** Read up to a batch of frames into the channel; returns frames read. */
  readBatch(): number {
    const out = this.out;
    const u8 = out.u8;
    const f64 = this.f64;
    const max = this.data.maxFrame;
    let n = 0;
    let bytes = 0;
    this.full = false;
    while (n < BATCH) {
      const at = out.reserve(max);
      if (at < 0) {
        this.full = true;
        break;
      }
      const r = readAt(this.data.fd, this.address + recordNetHdr(at), max + NET_HDR_SIZE);
      if (r < 0) {
        if (r === -EINTR) continue;
        if (r !== -EAGAIN) f64[READ_ERRORS]++;
        break;
      }
      const len = r - NET_HDR_SIZE;
      if (len < 14) {
        f64[DROPS_SHORT]++;
        continue;
      }
      // num_buffers: older kernels skip the last two header bytes instead of zeroing them, and
      // a receive queue keeps its segmentation progress there.
      u8[at - 2] = 0;
      u8[at - 1] = 0;
      out.shrink(len);
      out.commit();
      bytes += len;
      n++;
    }
    out.publish();
    // Counters once per batch, like a queue's.
    f64[READ_FRAMES] += n;
    f64[READ_BYTES] += bytes;
    return n;
  }

  run(): void {
    const i32 = this.i32;
    const dv = new DataView(this.pollFds.buffer);
    while (Atomics.load(i32, TAP_STOP) === 0) {
      if (this.readBatch() !== 0) continue;
      this.f64[READER_SLEEPS]++;
      if (this.full) {
        const seen = Atomics.load(i32, TAP_WAKE_READER);
        if (Atomics.load(i32, TAP_STOP) !== 0 || this.out.armSpace(this.data.maxFrame)) continue;
        Atomics.wait(i32, TAP_WAKE_READER, seen, IDLE_MS);
        continue;
      }
      dv.setInt16(6, 0, true);
      dv.setInt16(14, 0, true);
      poll(this.pollFds, 2, IDLE_MS);
      if ((dv.getInt16(14, true) & POLLIN) !== 0) readEventfd(this.data.stopFd, this.stopBuf);
    }
  }
}

/**
 * Lab -> interface: writes each record (vnet header and frame, adjacent in
 * the channel) with one write(). The kernel takes GSO frames and partial
 * checksums as a NIC's driver wrote them. Sleeps on its wake word (frames
 * arrive); a write the kernel cannot take now (EAGAIN) waits in poll() for
 * the fd to be writable.
 */
export class TapWriter {
  private readonly inputs: PortChannelConsumer[];
  private readonly address: number;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly wait: AdaptiveWait;
  private readonly pollFd = new Uint8Array(8);
  private blocked = false;
  private readonly pollOnce = (): number => this.writeBatch();

  constructor(private readonly data: TapWorkerData) {
    this.inputs = data.channels.map((c) => new PortChannelConsumer(c));
    this.address = data.channels.length === 0 ? 0 : sharedAddress(data.channels[0].buffer);
    this.i32 = new Int32Array(data.ctl);
    this.f64 = new Float64Array(data.ctl);
    this.wait = new AdaptiveWait(this.i32, TAP_WAKE_WRITER, data.spinUs);
    const dv = new DataView(this.pollFd.buffer);
    dv.setInt32(0, data.fd, true);
    dv.setInt16(4, POLLOUT, true);
  }

  /** Write up to a batch of frames from each input; returns frames taken. */
  writeBatch(): number {
    const f64 = this.f64;
    const fd = this.data.fd;
    let n = 0;
    let written = 0;
    let bytes = 0;
    this.blocked = false;
    for (const c of this.inputs) {
      for (let k = 0; k < BATCH; k++) {
        const at = c.peek();
        if (at < 0) break;
        const len = c.len;
        const r = writeAt(fd, this.address + recordNetHdr(at), len + NET_HDR_SIZE);
        if (r === -EAGAIN) {
          this.blocked = true;
          break;
        }
        if (r === -EINTR) continue;
        if (r < 0) f64[DROPS_WRITE]++;
        else {
          written++;
          bytes += len;
        }
        c.consume();
        n++;
      }
      c.release();
    }
    f64[WRITTEN_FRAMES] += written;
    f64[WRITTEN_BYTES] += bytes;
    return n;
  }

  run(): void {
    const i32 = this.i32;
    while (Atomics.load(i32, TAP_STOP) === 0) {
      if (this.writeBatch() !== 0) continue;
      if (this.blocked) {
        poll(this.pollFd, 1, 10);
        continue;
      }
      if (this.wait.spin(this.pollOnce) !== 0) continue;
      const seen = this.wait.snapshot();
      if (Atomics.load(i32, TAP_STOP) !== 0 || this.armed()) continue;
      this.f64[WRITER_SLEEPS]++;
      this.wait.sleep(seen, IDLE_MS);
    }
  }

  private armed(): boolean {
    for (const c of this.inputs) if (c.armData()) return true;
    return false;
  }
}

/** The body of a TAP worker thread. */
export function runTapWorker(data: TapWorkerData): void {
  if (data.role === 'reader') new TapReader(data).run();
  else new TapWriter(data).run();
}
