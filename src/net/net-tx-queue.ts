import { CopySite } from '../memory/copy.js';
import type { PortOutput } from '../port/port-channel.js';
import { recordNetHdr } from './net-port.js';
import { ChannelTxQueue, TX_BLOCKED, TX_DROPPED } from '../port/channel-tx-queue.js';
import { SteeredOutput } from '../port/steered-output.js';
import type { DescriptorChain } from '../ring/chain.js';
import { NET_HDR_NUM_BUFFERS } from '../spec/net.js';
import { C_DROPS_MALFORMED, C_DROPS_TOO_BIG } from '../stats/queue-stats.js';
import type { HandlerContext } from '../worker/queue-handler.js';
import { DIRECT_CHANNEL, DIRECT_DONE, DIRECT_WAIT, DirectOutput } from './direct-link.js';
import { C_DROPS_BAD_HEADER, badHeaderField } from './net-counters.js';
import { copyTxHeaderWords, txHeaderProblem } from './tx-header.js';

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
 * frame in the channel record (its meta); the receiver carries out what it asks
 * (checksum, segmentation) unless its own driver takes it as is. The batch,
 * completion and back-pressure are ChannelTxQueue's. Frames the device
 * cannot carry are counted by reason and completed with used length 0.
 */
export class NetTxQueue extends ChannelTxQueue<NetTxParams> {
  private readonly out: SteeredOutput;
  private readonly p: NetTxParams;
  private readonly flow = new Uint8Array(FLOW_BYTES);
  /** The frame copy of a one-descriptor chain into its channel. */
  private readonly frameCopy = new CopySite();
  /** Outputs whose receiver this thread serves: frames go straight into its buffers. */
  private readonly direct: DirectOutput;
  // Drops of the batch being polled, by counter.
  private malformed = 0;
  private tooBig = 0;
  private badHeader = 0;

  constructor(ctx: HandlerContext<NetTxParams>) {
    super(ctx);
    this.p = ctx.params;
    this.out = new SteeredOutput(this.p.output);
    // Outside a queue thread's loop nothing pairs: no output is looked up.
    this.direct = new DirectOutput(ctx.sharedLoop === true ? this.out.producers : [], this.p);
  }

  protected startBatch(max: number): number {
    this.out.refresh();
    this.malformed = this.tooBig = this.badHeader = 0;
    return this.direct.begin(this.ctx.device, max);
  }

  protected move(chain: DescriptorChain): number {
    const { hdrSize, offloads, maxPlainFrame } = this.p;
    const len = chain.readableBytes - hdrSize;
    // Several receiving queues: the flow hash needs the frame's first bytes.
    const k = this.out.producers.length === 1 ? 0 : this.pickByFrame(chain, len);
    const out = this.out.producers[k];
    if (len <= 0 || len > out.maxFrame) {
      if (len <= 0) this.malformed++;
      else this.tooBig++;
      return TX_DROPPED;
    }
    if (this.direct.on) {
      const d = this.direct.send(k, chain, len);
      if (d === DIRECT_DONE) return len;
      // No receive buffers: the chain goes back and arm() waits for a refill.
      if (d === DIRECT_WAIT) return TX_BLOCKED;
      if (d !== DIRECT_CHANNEL) return this.dropBadHeader(d);
    }
    const at = out.reserve(len);
    if (at < 0) return this.block(out, len);
    const hdr = recordNetHdr(at);
    // Records start on 8 bytes, so a 12-byte meta before the frame is word-aligned; checked all the same.
    const wordHeader = (hdr & 3) === 0 && copyTxHeaderWords(chain, hdrSize, out.u32, hdr >>> 2);
    if (!wordHeader) {
      this.reader.reset(chain).copyTo(out.u8, hdr, hdrSize);
      // num_buffers only means something on receive (5.1.6): the record carries 0
      // (a legacy 10-byte header has no such field: its bytes are set as well).
      out.u8[hdr + NET_HDR_NUM_BUFFERS] = 0;
      out.u8[hdr + NET_HDR_NUM_BUFFERS + 1] = 0;
    }
    const problem = txHeaderProblem(out.u8, hdr, len, offloads, maxPlainFrame);
    // The record is not committed: the next reserve() writes over it.
    if (problem >= 0) return this.dropBadHeader(problem);
    if (chain.readable === 1) {
      // Header and frame in one descriptor (as Linux >= 6.1 posts them): one copy, no cursor.
      this.frameCopy.copy(chain.segRegion[0].u8, chain.segIdx[0] + hdrSize, out.u8, at, len);
    } else {
      const r = this.reader;
      if (wordHeader) r.reset(chain).skip(hdrSize);
      r.copyTo(out.u8, at, len);
    }
    out.commit();
    return len;
  }

  protected countBatch(f64: Float64Array, b: number): void {
    if (this.malformed !== 0) f64[b + C_DROPS_MALFORMED] += this.malformed;
    if (this.tooBig !== 0) f64[b + C_DROPS_TOO_BIG] += this.tooBig;
    if (this.badHeader !== 0) f64[b + C_DROPS_BAD_HEADER] += this.badHeader;
  }

  protected publish(): void {
    this.out.publish();
    // What went direct: the receivers' used indices and counters.
    this.direct.flush();
  }

  override arm(): boolean {
    if (this.direct.blocked) return this.direct.armWait();
    return super.arm();
  }

  detach(): void {
    // A batch that threw part way: what went direct is still the receiver's to see.
    this.direct.flush();
  }

  /** Count a chain whose header asks for what was not negotiated (tx-header.ts problem code). */
  private dropBadHeader(problem: number): number {
    this.ctx.stats.f64[this.statBase + badHeaderField(problem)]++;
    this.badHeader++;
    return TX_DROPPED;
  }

  /** Choose the channel from the frame's flow (multi-queue receivers only). */
  private pickByFrame(chain: DescriptorChain, len: number): number {
    const r = this.reader.reset(chain);
    r.skip(this.p.hdrSize);
    const n = Math.min(len, FLOW_BYTES);
    r.copyTo(this.flow, 0, n);
    return this.out.pickIndex(this.flow, 0, n);
  }
}
