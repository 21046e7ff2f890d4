import { PortChannelConsumer, type PortChannelSpec } from '../port/port-channel.js';
import { recordNetHdr } from './net-port.js';
import {
  NET_HDR_F_DATA_VALID,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_FLAGS,
  NET_HDR_GSO_NONE,
  NET_HDR_GSO_TYPE,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
} from '../spec/net.js';
import { C_BYTES, C_CHAINS, C_DROPS_TOO_BIG } from '../stats/queue-stats.js';
import { VirtqueueError } from '../errors.js';
import { RX_NO_BUFFERS, RX_SHORT_BUFFER, RX_TOO_BIG, type RxBufferMode, RxWriter } from '../virtskb/index.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';
import { RxFilterTable } from './ctrl/rx-filter.js';
import { type DirectRx, offerDirectRx } from './direct-link.js';
import { BAD_HEADER_REASONS, C_DROPS_BAD_HEADER, C_DROPS_FILTERED, C_SEGMENTS, badHeaderField } from './net-counters.js';
import { NetHdr, OffloadEngine } from './offload/index.js';
import { RX_CSUM, rxTakesGso } from './rx-offloads.js';

const BATCH = 32;

/**
 * IPv6 fragment identification for the UFO datagram at `position` in input
 * channel `input`: the same record always gets the same id (so a datagram
 * resumed after a stall, even by a restarted worker, reassembles), and every
 * record of one channel within 4 GiB gets a different one (odd multiplier:
 * a bijection on 32 bits).
 */
const fragmentIdOf = (position: number, input: number): number => Math.imul(position ^ (input << 24), 0x9e3779b1) >>> 0;
const OFFLOAD_FAILED = BAD_HEADER_REASONS.indexOf('offloadFailed');

/** Parameters of a receive queue. */
export interface NetRxParams {
  /** The channels its frames arrive by, one per source. */
  inputs: PortChannelSpec[];
  /** virtio_net_hdr bytes under the negotiated features (12, or 10 for legacy). */
  hdrSize: number;
  /** Receive buffer mode under the negotiated features (virtskb). */
  mode: RxBufferMode;
  /** Receive offloads the driver takes (RX_* bits of rx-offloads.ts). */
  offloads: number;
  /** Segments of GSO frames this driver cannot take are cut to this IP packet size. */
  mtu: number;
  /** The receive filter (CTRL_RX / CTRL_VLAN negotiated), or null to take every frame. */
  filter: SharedArrayBuffer | null;
}

/** A frame whose offload could not be carried out (counted as offloadFailed). */
const BAD_OFFLOAD = -100;
/** segment(): every segment so far was placed (or lost); otherwise the RX_* result that stopped it. */
const SEG_GOING = 1;
const WAIT_DATA = 1;
const WAIT_BUFFERS = 2;

/**
 * The device side of a virtio-net receiveq (5.1.6.3, 5.1.6.4). Frames come
 * from the port channels of its sources (round robin) and go through the
 * receive filter, then into posted buffers by the virtskb writer (one chain,
 * or several with mergeable buffers). Offloads the driver did not negotiate
 * are carried out here: a partial checksum is completed, a GSO frame is cut
 * into MTU-sized wire frames. A frame waits in its channel until the driver
 * posts buffers, so an rx ring that runs dry slows the sender instead of
 * losing frames; a frame no posted buffer can ever hold is dropped and
 * counted.
 */
export class NetRxQueue implements QueueHandler {
  private readonly inputs: PortChannelConsumer[];
  private readonly writer: RxWriter;
  private readonly filter: RxFilterTable | null;
  private readonly p: NetRxParams;
  private readonly statBase: number;
  private readonly hdr = new NetHdr();
  /** This queue as transmit queues of its thread see it (direct-link.ts). */
  private readonly direct: DirectRx | undefined;
  private engine: OffloadEngine | undefined;
  /** Header of the wire frames made by segmentation. */
  private readonly segHdr = new Uint8Array(NET_HDR_SIZE);
  private next = 0;
  private waitingFor = WAIT_DATA;
  /** Chains that were posted when the last frame found too few (WAIT_BUFFERS). */
  private starvedWith = 0;
  /** Each input's tailLoads when the filter was last re-read for it. */
  private readonly filterSeen: Float64Array;
  // State of the segment() call in progress (see there).
  private segOk = 0;
  private segLost = 0;
  private segBytes = 0;
  private segSkip = 0;
  private segNext = 0;
  private segStop = SEG_GOING;
  private segResume = 0;

  constructor(private readonly ctx: HandlerContext<NetRxParams>) {
    this.p = ctx.params;
    this.inputs = this.p.inputs.map((c) => new PortChannelConsumer(c));
    this.filterSeen = new Float64Array(this.inputs.length).fill(-1);
    this.writer = new RxWriter(ctx.device, { mode: this.p.mode, hdrSize: this.p.hdrSize, numBuffersAt: NET_HDR_NUM_BUFFERS });
    this.filter = this.p.filter === null ? null : new RxFilterTable(this.p.filter);
    this.statBase = ctx.stats.base(ctx.queue);
    this.segHdr[NET_HDR_FLAGS] = (this.p.offloads & RX_CSUM) !== 0 ? NET_HDR_F_DATA_VALID : 0;
    const parts = { device: ctx.device, writer: this.writer, filter: this.filter, offloads: this.p.offloads, stats: ctx.stats, statBase: this.statBase, interrupt: () => ctx.interrupt() };
    this.direct = ctx.sharedLoop === true ? offerDirectRx(parts, this.inputs) : undefined;
  }

  poll(): number {
    const inputs = this.inputs;
    let moved = 0;
    let bytes = 0;
    let tooBig = 0;
    let filtered = 0;
    let badHeader = 0;
    let segments = 0;
    this.waitingFor = WAIT_DATA;
    for (let k = 0; k < inputs.length && moved < BATCH && this.waitingFor === WAIT_DATA; k++) {
      const i = this.next;
      const input = inputs[i];
      this.next = i + 1 === inputs.length ? 0 : i + 1;
      while (moved < BATCH) {
        const at = input.peek();
        if (at < 0) break;
        const u8 = input.u8;
        const len = input.len;
        const hdr = recordNetHdr(at);
        if (this.filter !== null) {
          // Re-read after every load of the channel index that can reveal new
          // frames: a frame sent after a filter command was acknowledged is
          // judged by the new table.
          if (input.tailLoads !== this.filterSeen[i]) {
            this.filterSeen[i] = input.tailLoads;
            this.filter.refresh();
          }
          if (!this.filter.accept(u8, at, len)) {
            input.consume();
            filtered++;
            continue;
          }
        }
        let r: number;
        if (u8[hdr + NET_HDR_GSO_TYPE] !== NET_HDR_GSO_NONE && !rxTakesGso(this.p.offloads, u8[hdr + NET_HDR_GSO_TYPE], u8, at, len)) {
          r = this.segment(input, hdr, at, len, fragmentIdOf(input.position, i));
          // Segments placed (or lost) count even when the rest of the frame waits for buffers.
          segments += this.segOk + this.segLost;
          tooBig += this.segLost;
          bytes += this.segBytes;
          moved += this.segOk;
        } else {
          r = this.finishChecksum(u8, hdr, at, len) ? this.writer.write(u8, hdr, u8, at, len) : BAD_OFFLOAD;
          if (r > 0) {
            moved++;
            bytes += len;
          }
        }
        if (r === RX_NO_BUFFERS) {
          this.waitingFor = WAIT_BUFFERS;
          // Posted but too few for this frame (mergeable, or segments): only more wake us.
          this.starvedWith = this.ctx.device.available();
          break;
        }
        if (r === RX_SHORT_BUFFER) {
          // The ring is stuck on a buffer the driver must not post: a driver error (2.1.2).
          throw new VirtqueueError('RX_BUFFER_SHORTER_THAN_HEADER', `queue ${this.ctx.queue}: a mergeable rx buffer is shorter than the ${this.p.hdrSize}-byte header (5.1.6.3.1)`, this.p.hdrSize);
        }
        if (r === RX_TOO_BIG) tooBig++;
        else if (r === BAD_OFFLOAD) {
          badHeader++;
          this.ctx.stats.f64[this.statBase + badHeaderField(OFFLOAD_FAILED)]++;
        }
        input.consume();
      }
    }
    const dropped = tooBig + filtered + badHeader;
    if (moved !== 0 || dropped !== 0) {
      // Counters first: whoever sees the used entries then sees them counted.
      const f64 = this.ctx.stats.f64;
      const b = this.statBase;
      f64[b + C_CHAINS] += moved;
      f64[b + C_BYTES] += bytes;
      if (tooBig !== 0) f64[b + C_DROPS_TOO_BIG] += tooBig;
      if (filtered !== 0) f64[b + C_DROPS_FILTERED] += filtered;
      if (badHeader !== 0) f64[b + C_DROPS_BAD_HEADER] += badHeader;
      if (segments !== 0) f64[b + C_SEGMENTS] += segments;
      // Used entries before channel space: a frame is always in sight, in
      // the channel's backlog or in the used ring, never in between.
      const notify = this.ctx.device.publishUsed();
      for (const input of inputs) input.release();
      if (notify) this.ctx.interrupt();
    }
    return moved + dropped;
  }

  /**
   * 5.1.6.4.1: without GUEST_CSUM the device gives flags 0 and a fully
   * checksummed packet, so a partial checksum is completed here (in the
   * record, which this consumer owns until it consumes it).
   */
  private finishChecksum(u8: Uint8Array, hdr: number, at: number, len: number): boolean {
    if ((u8[hdr + NET_HDR_FLAGS] & NET_HDR_F_NEEDS_CSUM) === 0 || (this.p.offloads & RX_CSUM) !== 0) return true;
    const ok = this.offload().completeChecksum(this.hdr.read(u8, hdr), u8, at, len);
    u8[hdr + NET_HDR_FLAGS] = 0;
    return ok;
  }

  /** The offload engine, made on first use (its scratch is 64 KiB). */
  private offload(): OffloadEngine {
    return (this.engine ??= new OffloadEngine());
  }

  /**
   * Cut a GSO frame into wire frames for a driver that did not negotiate its
   * gso_type, each placed as a packet of its own (as a host kernel hands a tap
   * device's reader the segments one by one). Returns the segment count once
   * every segment is placed (or counted in segLost), RX_NO_BUFFERS when the
   * ring ran dry part way, RX_SHORT_BUFFER for a driver error, or BAD_OFFLOAD
   * when the frame cannot be segmented.
   *
   * Segments are placed as buffers come, never all-or-nothing: a frame may have
   * more segments than the driver can ever post at once (big buffers without
   * indirect descriptors: 3 chains in a 64-entry ring). When the ring runs dry
   * part way, the index of the next segment is kept as the record's progress
   * (0 when the record is made) and the next call, on the same record, skips the segments placed
   * before; so does a restarted worker, and nothing is placed twice.
   * Segmentation is deterministic (IPv4 ids and sequence numbers follow from
   * the frame; IPv6 fragment ids from the record's place in its channel), so
   * the skipped segments are the ones already placed.
   */
  private segment(input: PortChannelConsumer, hdr: number, at: number, len: number, fragmentId: number): number {
    const u8 = input.u8;
    const engine = this.offload();
    this.hdr.read(u8, hdr);
    this.segOk = 0;
    this.segLost = 0;
    this.segBytes = 0;
    this.segSkip = input.progress(at);
    this.segNext = 0;
    this.segStop = SEG_GOING;
    const count = engine.segment(this.hdr, u8, at, len, this.p.mtu, this.emitSegment, fragmentId);
    if (count < 0) return BAD_OFFLOAD;
    if (this.segStop === RX_NO_BUFFERS) {
      // Placed segments are published at the end of this poll; resume after them.
      input.setProgress(at, this.segResume);
      return RX_NO_BUFFERS;
    }
    // RX_SHORT_BUFFER: the queue stops before publishing, so the mark stays where it was.
    return this.segStop === SEG_GOING ? count : this.segStop;
  }

  private readonly emitSegment = (u8: Uint8Array, at: number, len: number): void => {
    const i = this.segNext++;
    if (i < this.segSkip || this.segStop !== SEG_GOING) return;
    const r = this.writer.write(this.segHdr, 0, u8, at, len);
    if (r > 0) {
      this.segOk++;
      this.segBytes += len;
    } else if (r === RX_TOO_BIG) {
      this.segLost++;
    } else {
      this.segStop = r;
      this.segResume = i;
    }
  };

  arm(): boolean {
    if (this.waitingFor === WAIT_DATA) {
      let ready = false;
      for (const input of this.inputs) if (input.armData()) ready = true;
      return ready;
    }
    return this.ctx.device.armForMoreThan(this.starvedWith);
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  quiesce(): void {
    for (const input of this.inputs) input.release();
  }

  detach(): void {
    this.direct?.close();
  }
}
