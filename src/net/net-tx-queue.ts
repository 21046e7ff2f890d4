import { PortChannelProducer, type PortChannelSpec } from '../backends/port-channel.js';
import { ChainReader } from '../ring/chain-io.js';
import { NET_HDR_SIZE } from '../spec/net.js';
import { C_BYTES, C_CHAINS, C_DROPS_MALFORMED, C_DROPS_TOO_BIG } from '../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';

/** Chains moved per batch: one used-index store and one channel publish each. */
const BATCH = 32;

/** Parameters of a transmit queue: the channel its frames leave by. */
export interface NetTxParams {
  channel: PortChannelSpec;
}

/**
 * The device side of a virtio-net transmitq (5.1.6.2): each chain is a
 * virtio_net_hdr followed by one frame, read across descriptors at any split.
 * Frames go to the port channel; when the channel is full the chain is given
 * back (not dropped) and the queue waits for space: back-pressure reaches the
 * driver as a full ring, never as silent loss. Frames the device cannot carry
 * are counted by reason and completed with used length 0.
 */
export class NetTxQueue implements QueueHandler {
  private readonly out: PortChannelProducer;
  private readonly reader = new ChainReader();
  private readonly chain;
  private readonly statBase: number;
  /** Frame length waiting for channel space, or 0. */
  private blocked = 0;

  constructor(private readonly ctx: HandlerContext) {
    this.out = new PortChannelProducer((ctx.params as NetTxParams).channel);
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
  }

  poll(): number {
    const { device } = this.ctx;
    const out = this.out;
    const chain = this.chain;
    const f64 = this.ctx.stats.f64;
    if (this.blocked !== 0 && !out.room(this.blocked)) return 0;
    this.blocked = 0;
    let n = 0;
    let bytes = 0;
    let malformed = 0;
    let tooBig = 0;
    while (n < BATCH && device.pop(chain)) {
      const len = chain.readableBytes - NET_HDR_SIZE;
      if (len <= 0 || len > out.maxFrame) {
        if (len <= 0) malformed++;
        else tooBig++;
        device.pushUsed(chain.head, 0);
        n++;
        continue;
      }
      const at = out.reserve(len);
      if (at < 0) {
        device.unpop();
        this.blocked = len;
        break;
      }
      const r = this.reader.reset(chain);
      r.skip(NET_HDR_SIZE);
      r.copyTo(out.u8, at, len);
      out.commit();
      device.pushUsed(chain.head, 0);
      bytes += len;
      n++;
    }
    if (n !== 0) {
      // Counters first: whoever sees the published frames then sees them counted.
      const b = this.statBase;
      f64[b + C_CHAINS] += n;
      f64[b + C_BYTES] += bytes;
      if (malformed !== 0) f64[b + C_DROPS_MALFORMED] += malformed;
      if (tooBig !== 0) f64[b + C_DROPS_TOO_BIG] += tooBig;
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
