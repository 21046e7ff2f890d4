import { PortChannelProducer, type PortChannelSpec } from '../port/port-channel.js';
import type { WordRef } from '../notify/notify-area.js';
import { ChannelTxQueue, TX_DROPPED } from '../port/channel-tx-queue.js';
import type { DescriptorChain } from '../ring/chain.js';
import { VSOCK_CID_HOST, VSOCK_HDR_LEN, VSOCK_HDR_SIZE, VSOCK_MAX_PKT_PAYLOAD } from '../spec/vsock.js';
import { C_DROPS_MALFORMED } from '../stats/queue-stats.js';
import type { HandlerContext } from '../worker/queue-handler.js';
import { VSOCK_DROP_REASONS, type VsockDropReason, vsockDropField } from './vsock-counters.js';

const reason = (r: VsockDropReason): number => VSOCK_DROP_REASONS.indexOf(r);
const SHORT_HEADER = reason('shortHeader');
const LEN_BEYOND_BUFFER = reason('lenBeyondBuffer');
const LEN_TOO_LARGE = reason('lenTooLarge');
const WRONG_SRC_CID = reason('wrongSrcCid');
const WRONG_DST_CID = reason('wrongDstCid');
const NO_PROBLEM = -1;

/** Parameters of a virtio-vsock transmit queue (handler kind 'vsock-tx'). */
export interface VsockTxParams {
  /**
   * The channel to the host side (allocVsockChannel): each record's meta
   * is the 44-byte virtio_vsock_hdr, its frame the hdr.len payload bytes.
   */
  output: PortChannelSpec;
  /** Shared Int32 word with the guest's current CID (read once per batch). */
  guestCid: WordRef;
}

/**
 * The device side of the virtio-vsock transmitq (5.10.6): each chain is a
 * virtio_vsock_hdr and its payload, read through ChainReader, so the header
 * and payload may be split over descriptors at any byte (Linux >= 6.1 puts
 * both in one descriptor, older drivers use two).
 *
 * Only structural checks are made here, each drop counted by reason
 * (VSOCK_DROP_REASONS, total under dropsMalformed) and the chain completed
 * with used length 0: a header that fits, hdr.len within the chain and
 * within VSOCK_MAX_PKT_PAYLOAD, src_cid the guest's CID and dst_cid the host
 * (as Linux vhost does). Everything else (op, type, connection state,
 * credit) is the host stack's to judge; it answers RST.
 *
 * The batch, completion and back-pressure (a full channel gives the chain
 * back until the host frees space) are ChannelTxQueue's. No allocation per
 * packet.
 */
export class VsockTxQueue extends ChannelTxQueue<VsockTxParams> {
  private readonly out: PortChannelProducer;
  private readonly cidI32: Int32Array;
  private readonly cidIndex: number;
  /** The guest's CID, read once per batch. */
  private cid = 0;
  /** Packets of the batch being polled that were dropped. */
  private dropped = 0;

  constructor(ctx: HandlerContext<VsockTxParams>) {
    super(ctx);
    const p = ctx.params;
    this.out = new PortChannelProducer(p.output);
    this.cidI32 = new Int32Array(p.guestCid.buffer);
    this.cidIndex = p.guestCid.index;
  }

  protected startBatch(max: number): number {
    this.cid = Atomics.load(this.cidI32, this.cidIndex) >>> 0;
    this.dropped = 0;
    return max;
  }

  protected move(chain: DescriptorChain): number {
    const out = this.out;
    const readable = chain.readableBytes;
    let problem = NO_PROBLEM;
    let len = 0;
    if (readable < VSOCK_HDR_SIZE) {
      problem = SHORT_HEADER;
    } else {
      // src_cid, dst_cid (le64 each), ports, then len: byte by byte across any split.
      const r = this.reader.reset(chain);
      const srcLo = r.readU32();
      const srcHi = r.readU32();
      const dstLo = r.readU32();
      const dstHi = r.readU32();
      r.skip(VSOCK_HDR_LEN - 16);
      len = r.readU32();
      if (len > readable - VSOCK_HDR_SIZE) problem = LEN_BEYOND_BUFFER;
      else if (len > VSOCK_MAX_PKT_PAYLOAD) problem = LEN_TOO_LARGE;
      else if (srcLo !== this.cid || srcHi !== 0) problem = WRONG_SRC_CID;
      else if (dstLo !== VSOCK_CID_HOST || dstHi !== 0) problem = WRONG_DST_CID;
    }
    if (problem !== NO_PROBLEM) {
      this.ctx.stats.f64[this.statBase + vsockDropField(problem)]++;
      this.dropped++;
      return TX_DROPPED;
    }
    const at = out.reserve(len);
    if (at < 0) return this.block(out, len);
    // Header (the record's meta, right before the frame) and payload in one
    // copy; bytes past hdr.len (if any) are ignored.
    this.reader.reset(chain).copyTo(out.u8, out.metaAt(at), VSOCK_HDR_SIZE + len);
    out.commit();
    return len;
  }

  protected countBatch(f64: Float64Array, b: number): void {
    if (this.dropped !== 0) f64[b + C_DROPS_MALFORMED] += this.dropped;
  }

  protected publish(): void {
    this.out.publish();
  }
}
