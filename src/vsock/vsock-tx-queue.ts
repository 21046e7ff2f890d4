import { PortChannelProducer, type PortChannelSpec } from '../port/port-channel.js';
import type { WordRef } from '../notify/notify-area.js';
import { ChainReader } from '../ring/chain-io.js';
import { VSOCK_CID_HOST, VSOCK_HDR_LEN, VSOCK_HDR_SIZE, VSOCK_MAX_PKT_PAYLOAD } from '../spec/vsock.js';
import { C_BYTES, C_CHAINS, C_DROPS_MALFORMED } from '../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';
import { VSOCK_DROP_REASONS, type VsockDropReason, vsockDropField } from './vsock-counters.js';

/** Chains moved per batch: one used-index store and one channel publish each. */
const BATCH = 32;

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
 * When the channel is full the chain is given back (unpop) and the queue
 * sleeps until the host frees space: back-pressure reaches the driver as an
 * unused tx ring, never as loss. No allocation per packet.
 */
export class VsockTxQueue implements QueueHandler {
  private readonly out: PortChannelProducer;
  private readonly reader = new ChainReader();
  private readonly chain;
  private readonly statBase: number;
  private readonly cidI32: Int32Array;
  private readonly cidIndex: number;
  /** Record frame length the queue waits to have room for; 0 when not blocked. */
  private blocked = 0;

  constructor(private readonly ctx: HandlerContext<VsockTxParams>) {
    const p = ctx.params;
    this.out = new PortChannelProducer(p.output);
    this.cidI32 = new Int32Array(p.guestCid.buffer);
    this.cidIndex = p.guestCid.index;
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
  }

  poll(): number {
    const { device } = this.ctx;
    const out = this.out;
    const chain = this.chain;
    const f64 = this.ctx.stats.f64;
    const b = this.statBase;
    if (this.blocked !== 0 && !out.room(this.blocked)) return 0;
    this.blocked = 0;
    const cid = Atomics.load(this.cidI32, this.cidIndex) >>> 0;
    let n = 0;
    let bytes = 0;
    let dropped = 0;
    while (n < BATCH && device.pop(chain)) {
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
        else if (srcLo !== cid || srcHi !== 0) problem = WRONG_SRC_CID;
        else if (dstLo !== VSOCK_CID_HOST || dstHi !== 0) problem = WRONG_DST_CID;
      }
      if (problem !== NO_PROBLEM) {
        f64[b + vsockDropField(problem)]++;
        dropped++;
        device.pushUsed(chain.head, 0);
        n++;
        continue;
      }
      const at = out.reserve(len);
      if (at < 0) {
        // Full: give the chain back and wait for the host to free room (armSpace).
        device.unpop();
        this.blocked = len;
        break;
      }
      // Header (the record's meta, right before the frame) and payload in one
      // copy; bytes past hdr.len (if any) are ignored.
      this.reader.reset(chain).copyTo(out.u8, out.metaAt(at), VSOCK_HDR_SIZE + len);
      out.commit();
      // Transmit buffers are device-readable only: nothing written (2.7.8).
      device.pushUsed(chain.head, 0);
      bytes += len;
      n++;
    }
    if (n !== 0) {
      // Counters first: whoever sees the published packets then sees them counted.
      f64[b + C_CHAINS] += n;
      f64[b + C_BYTES] += bytes;
      if (dropped !== 0) f64[b + C_DROPS_MALFORMED] += dropped;
      out.publish();
      if (device.publishUsed()) this.ctx.interrupt();
    }
    return n;
  }

  arm(): boolean {
    if (this.blocked !== 0) return this.out.armSpace(this.blocked);
    this.ctx.device.enableNotify();
    return this.ctx.device.available() !== 0;
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  quiesce(): void {
    this.out.publish();
  }
}
