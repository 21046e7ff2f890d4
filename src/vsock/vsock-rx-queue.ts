import { PortChannelConsumer, type PortChannelSpec } from '../port/port-channel.js';
import { VirtqueueError } from '../errors.js';
import { VSOCK_HDR_FLAGS, VSOCK_HDR_NUM_BUFFERS, VSOCK_HDR_SIZE, VSOCK_HDR_TYPE, VSOCK_SEQ_EOM, VSOCK_SEQ_EOR, VSOCK_TYPE_SEQPACKET } from '../spec/vsock.js';
import { C_BYTES, C_CHAINS, C_DROPS_MALFORMED, C_DROPS_TOO_BIG } from '../stats/queue-stats.js';
import { RX_NO_BUFFERS, RX_SHORT_BUFFER, RX_TOO_BIG, RxWriter } from '../virtskb/rx-writer.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';
import { C_SEGMENTS } from './vsock-counters.js';
import { setVsockHdrLen, vsockHdrLen } from './vsock-header.js';

/** Packets placed per batch: one used-index store and one channel release each. */
const BATCH = 32;
const WAIT_DATA = 1;
const WAIT_BUFFERS = 2;
const BATCH_FULL = 3;
/** Bytes of the scratch area a receive queue builds split packets' headers in. */
export const VSOCK_RX_SCRATCH_BYTES = 64;

/** Parameters of a virtio-vsock receive queue (handler kind 'vsock-rx'). */
export interface VsockRxParams {
  /**
   * The channel from the host side (allocVsockChannel): each record's meta
   * is the 44-byte virtio_vsock_hdr, its frame the hdr.len payload bytes.
   * This queue keeps a split packet's progress in the record's progress word.
   */
  input: PortChannelSpec;
  /** 'mergeable' with VSOCK_F_MRG_RXBUF (46-byte header with num_buffers), else 'small'. */
  mode: 'small' | 'mergeable';
  /** Receive header bytes: 44, or 46 with VSOCK_F_MRG_RXBUF. */
  hdrSize: number;
  /**
   * u8 index in input.buffer of VSOCK_RX_SCRATCH_BYTES bytes this queue alone
   * writes: the header of a split packet's part is built there (in the
   * channel's own buffer, so copying it is a copyWithin).
   */
  scratch: number;
}

/**
 * The device side of the virtio-vsock receiveq (5.10.6): packets come from
 * the host side's channel and go into the driver's posted buffers through the
 * virtskb RxWriter, one buffer per packet (small) or as many as the packet
 * needs with num_buffers in the 46-byte header (VSOCK_F_MRG_RXBUF, mergeable).
 *
 * A packet whose payload does not fit the buffer at the head of the ring is
 * split as Linux vhost_transport_do_send_pkt does: the part that fits goes
 * out with the header copied and len rewritten (for SEQPACKET, EOM and EOR
 * only on the final part), and the record stays in its channel with the
 * payload bytes already delivered as its progress,
 * so the next attempt, or a restarted worker, goes on from there: nothing is
 * delivered twice and nothing is lost. In mergeable mode this happens only
 * when the packet needs more buffers than the ring holds.
 *
 * A packet waits in its channel while no buffer is posted (the queue sets
 * avail_event and sleeps until the driver posts one). A posted buffer shorter
 * than the header is a driver error: VirtqueueError
 * RX_BUFFER_SHORTER_THAN_HEADER, and the transport sets DEVICE_NEEDS_RESET.
 * A record that is not a well-formed packet (hdr.len disagreeing with its
 * payload length) is dropped and counted
 * (dropsMalformed). No allocation per packet.
 */
export class VsockRxQueue implements QueueHandler {
  private readonly input: PortChannelConsumer;
  private readonly writer: RxWriter;
  private readonly p: VsockRxParams;
  private readonly statBase: number;
  private waitingFor = WAIT_DATA;
  /** Chains that were posted when the last packet found too few (WAIT_BUFFERS). */
  private starvedWith = 0;
  // The batch being polled: fields, so place() adds to them without allocating.
  private moved = 0;
  private bytes = 0;
  private parts = 0;
  private tooBig = 0;
  /** Payload bytes of a packet place() left unfinished, delivered so far. */
  private progress = 0;

  constructor(private readonly ctx: HandlerContext<VsockRxParams>) {
    this.p = ctx.params;
    this.input = new PortChannelConsumer(this.p.input);
    const mergeable = this.p.mode === 'mergeable';
    this.writer = new RxWriter(ctx.device, { mode: this.p.mode, hdrSize: this.p.hdrSize, numBuffersAt: mergeable ? VSOCK_HDR_NUM_BUFFERS : -1 });
    this.statBase = ctx.stats.base(ctx.queue);
  }

  poll(): number {
    const input = this.input;
    const u8 = input.u8;
    let malformed = 0;
    let consumed = 0;
    this.moved = this.bytes = this.parts = this.tooBig = 0;
    this.waitingFor = WAIT_DATA;
    while (this.moved < BATCH) {
      const at = input.peek();
      if (at < 0) break;
      const hdrAt = input.metaAt(at);
      const payload = input.len;
      const done = input.progress(at);
      if (vsockHdrLen(u8, hdrAt) !== payload || done > payload) {
        input.consume();
        consumed++;
        malformed++;
        continue;
      }
      const stop = this.place(hdrAt, at, payload, done);
      if (stop === 0) {
        input.consume();
        consumed++;
        continue;
      }
      // Part of the packet may be out: the next attempt (or a restarted worker) goes on from here.
      input.setProgress(at, this.progress);
      if (stop === WAIT_BUFFERS) {
        this.waitingFor = WAIT_BUFFERS;
        this.starvedWith = this.ctx.device.available();
      }
      break;
    }
    if (this.moved !== 0 || consumed !== 0) {
      // Counters first: whoever sees the used entries then sees them counted.
      const f64 = this.ctx.stats.f64;
      const b = this.statBase;
      f64[b + C_CHAINS] += this.moved;
      f64[b + C_BYTES] += this.bytes;
      if (this.parts !== 0) f64[b + C_SEGMENTS] += this.parts;
      if (malformed !== 0) f64[b + C_DROPS_MALFORMED] += malformed;
      if (this.tooBig !== 0) f64[b + C_DROPS_TOO_BIG] += this.tooBig;
      // Used entries before channel space, as the net receive queue does: a packet is always in sight.
      const notify = this.ctx.device.publishUsed();
      input.release();
      if (notify) this.ctx.interrupt();
    }
    return this.moved + malformed + this.tooBig;
  }

  /**
   * Write the record (header at `hdrAt`, payload at `payloadAt`, delivered up to `done`) into the
   * driver's buffers: the whole rest first; when it does not fit, the part
   * that fits now. Returns 0 when the packet is finished (all out, or
   * dropped as too big), else BATCH_FULL or WAIT_BUFFERS with the bytes
   * delivered so far in `progress`.
   */
  private place(hdrAt: number, payloadAt: number, payload: number, done: number): number {
    const writer = this.writer;
    const hdrSize = this.p.hdrSize;
    const u8 = this.input.u8;
    let cap = payload;
    for (;;) {
      const rest = payload - done;
      const n = rest < cap ? rest : cap;
      const whole = done === 0 && n === payload;
      const r = writer.write(u8, whole ? hdrAt : this.partHeader(hdrAt, n, n === rest), u8, payloadAt + done, n);
      if (r > 0) {
        this.moved++;
        this.bytes += n;
        if (!whole) this.parts++;
        done += n;
        if (done === payload) return 0;
        if (this.moved >= BATCH) {
          this.progress = done;
          return BATCH_FULL;
        }
        cap = payload;
        continue;
      }
      if (r === RX_NO_BUFFERS) {
        this.progress = done;
        return WAIT_BUFFERS;
      }
      if (r === RX_SHORT_BUFFER || (r === RX_TOO_BIG && writer.lastChainBytes < hdrSize)) {
        // Every receive buffer must hold the header; the ring is stuck on this one (2.1.2).
        throw new VirtqueueError(
          'RX_BUFFER_SHORTER_THAN_HEADER',
          `queue ${this.ctx.queue}: a posted rx buffer is shorter than the ${hdrSize}-byte receive header`,
          r === RX_TOO_BIG ? writer.lastChainBytes : hdrSize,
        );
      }
      // RX_TOO_BIG: the buffers at the head of the ring hold lastChainBytes.
      const fits = writer.lastChainBytes - hdrSize;
      if (fits <= 0 || fits >= n) {
        // Buffers that hold a header and no payload byte can never carry the rest.
        this.tooBig++;
        return 0;
      }
      cap = fits;
    }
  }

  /**
   * The header of one part of a split packet, built in the scratch area: the
   * record's header (at `hdrAt`) with len = `n`; for SEQPACKET, EOM and EOR only when the
   * part is the `last` (Linux clears them on the others). Returns its index.
   */
  private partHeader(hdrAt: number, n: number, last: boolean): number {
    const u8 = this.input.u8;
    const s = this.p.scratch;
    u8.copyWithin(s, hdrAt, hdrAt + VSOCK_HDR_SIZE);
    setVsockHdrLen(u8, s, n);
    const type = u8[s + VSOCK_HDR_TYPE] | (u8[s + VSOCK_HDR_TYPE + 1] << 8);
    if (!last && type === VSOCK_TYPE_SEQPACKET) u8[s + VSOCK_HDR_FLAGS] &= ~(VSOCK_SEQ_EOM | VSOCK_SEQ_EOR);
    return s;
  }

  arm(): boolean {
    if (this.waitingFor === WAIT_DATA) return this.input.armData();
    return this.ctx.device.armForMoreThan(this.starvedWith);
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  quiesce(): void {
    this.input.release();
  }
}
