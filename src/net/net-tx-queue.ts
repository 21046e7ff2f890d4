import type { PortChannelProducer, PortOutput } from '../backends/port-channel.js';
import { recordNetHdr } from '../backends/port-channel.js';
import { SteeredOutput } from '../backends/steered-output.js';
import type { DescriptorChain } from '../ring/chain.js';
import { ChainReader } from '../ring/chain-io.js';
import { NET_HDR_NUM_BUFFERS } from '../spec/net.js';
import { C_BYTES, C_CHAINS, C_DROPS_MALFORMED, C_DROPS_TOO_BIG } from '../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';
import { DIRECT_CHANNEL, DIRECT_DONE, DIRECT_WAIT, DirectOutput } from './direct-link.js';
import { C_DROPS_BAD_HEADER, badHeaderField } from './net-counters.js';
import { txHeaderProblem } from './tx-header.js';

/** Chains moved per batch: one used-index store and one channel publish each. */
const BATCH = 32;
/** A frame's first bytes, enough for its flow hash (Ethernet, two VLAN tags, IPv6, ports). */
const FLOW_BYTES = 14 + 8 + 40 + 4;

/** Parameters of a transmit queue. */
export interface NetTxParams {
  /** Where its frames go: one channel per receiving queue, steered by flow hash. */
  output: PortOutput;
  /** virtio_net_hdr bytes before each frame under the negotiated features (12, or 10 for legacy). */
  hdrSize: number;
  /** Offloads the driver may ask for (TX_* bits of tx-header.ts). */
  offloads: number;
  /** Largest frame without GSO: MTU plus Ethernet header and one VLAN tag. */
  maxPlainFrame: number;
}

/**
 * The device side of a virtio-net transmitq (5.1.6.2): each chain is a
 * virtio_net_hdr followed by one frame, read across descriptors at any split.
 * The header is checked against the negotiated offloads and travels with the
 * frame in the channel record; the receiver carries out what it asks
 * (checksum, segmentation) unless its own driver takes it as is. When the
 * channel is full the chain is given back (not dropped) and the queue waits
 * for space: back-pressure reaches the driver as a full ring, never as silent
 * loss. Frames the device cannot carry are counted by reason and completed
 * with used length 0.
 */
export class NetTxQueue implements QueueHandler {
  private readonly out: SteeredOutput;
  private readonly reader = new ChainReader();
  private readonly chain;
  private readonly statBase: number;
  private readonly p: NetTxParams;
  private readonly flow = new Uint8Array(FLOW_BYTES);
  /** Outputs whose receiver this thread serves: frames go straight into its buffers. */
  private readonly direct: DirectOutput;
  /** The channel a frame waits on for space, and its length. */
  private blockedOn: PortChannelProducer | undefined;
  private blocked = 0;

  constructor(private readonly ctx: HandlerContext<NetTxParams>) {
    this.p = ctx.params;
    this.out = new SteeredOutput(this.p.output);
    // Outside a queue thread's loop nothing pairs: no output is looked up.
    this.direct = new DirectOutput(ctx.sharedLoop === true ? this.out.producers : [], this.p);
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
  }

  poll(): number {
    const { device } = this.ctx;
    const { hdrSize, offloads, maxPlainFrame } = this.p;
    const chain = this.chain;
    const f64 = this.ctx.stats.f64;
    const b = this.statBase;
    if (this.blockedOn !== undefined && !this.blockedOn.room(this.blocked)) return 0;
    this.blockedOn = undefined;
    this.out.refresh();
    const direct = this.direct;
    const limit = direct.begin(device, BATCH);
    let n = 0;
    let bytes = 0;
    let malformed = 0;
    let tooBig = 0;
    let badHeader = 0;
    while (n < limit && device.pop(chain)) {
      const len = chain.readableBytes - hdrSize;
      // Several receiving queues: the flow hash needs the frame's first bytes.
      const k = this.out.producers.length === 1 ? 0 : this.pickByFrame(chain, len);
      const out = this.out.producers[k];
      if (len <= 0 || len > out.maxFrame) {
        if (len <= 0) malformed++;
        else tooBig++;
        device.pushUsed(chain.head, 0);
        n++;
        continue;
      }
      if (direct.on) {
        const d = direct.send(k, chain, len);
        if (d === DIRECT_WAIT) {
          device.unpop();
          break;
        }
        if (d !== DIRECT_CHANNEL) {
          if (d === DIRECT_DONE) bytes += len;
          else {
            f64[b + badHeaderField(d)]++;
            badHeader++;
          }
          device.pushUsed(chain.head, 0);
          n++;
          continue;
        }
      }
      const at = out.reserve(len);
      if (at < 0) {
        device.unpop();
        this.blockedOn = out;
        this.blocked = len;
        break;
      }
      const hdr = recordNetHdr(at);
      const r = this.reader.reset(chain);
      r.copyTo(out.u8, hdr, hdrSize);
      // num_buffers only means something on receive (5.1.6); the receiving queue keeps
      // its segmentation progress there (NetRxQueue.segment), so it starts at 0.
      // A legacy 10-byte header has no such field: zeroed as well.
      out.u8[hdr + NET_HDR_NUM_BUFFERS] = 0;
      out.u8[hdr + NET_HDR_NUM_BUFFERS + 1] = 0;
      const problem = txHeaderProblem(out.u8, hdr, len, offloads, maxPlainFrame);
      if (problem >= 0) {
        // The record is not committed: the next reserve() writes over it.
        f64[b + badHeaderField(problem)]++;
        badHeader++;
        device.pushUsed(chain.head, 0);
        n++;
        continue;
      }
      r.copyTo(out.u8, at, len);
      out.commit();
      device.pushUsed(chain.head, 0);
      bytes += len;
      n++;
    }
    if (n !== 0) {
      // Counters first: whoever sees the published frames then sees them counted.
      f64[b + C_CHAINS] += n;
      f64[b + C_BYTES] += bytes;
      if (malformed !== 0) f64[b + C_DROPS_MALFORMED] += malformed;
      if (tooBig !== 0) f64[b + C_DROPS_TOO_BIG] += tooBig;
      if (badHeader !== 0) f64[b + C_DROPS_BAD_HEADER] += badHeader;
      this.out.publish();
      direct.flush();
      if (device.publishUsed()) this.ctx.interrupt();
    }
    return n;
  }

  /** Choose the channel from the frame's flow (multi-queue receivers only). */
  private pickByFrame(chain: DescriptorChain, len: number): number {
    const r = this.reader.reset(chain);
    r.skip(this.p.hdrSize);
    const n = Math.min(len, FLOW_BYTES);
    r.copyTo(this.flow, 0, n);
    return this.out.pickIndex(this.flow, 0, n);
  }

  arm(): boolean {
    if (this.blockedOn !== undefined) return this.blockedOn.armSpace(this.blocked);
    if (this.direct.blocked) return this.direct.armWait();
    this.ctx.device.enableNotify();
    return this.ctx.device.available() !== 0;
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  quiesce(): void {
    this.out.publish();
  }

  detach(): void {
    // A batch that threw part way: what went direct is still the receiver's to see.
    this.direct.flush();
  }
}
