import { PortChannelConsumer, type PortChannelSpec } from '../backends/port-channel.js';
import { ChainWriter } from '../ring/chain-io.js';
import { NET_HDR_SIZE } from '../spec/net.js';
import { C_BYTES, C_CHAINS, C_DROPS_TOO_BIG } from '../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';

const BATCH = 32;

/** Parameters of a receive queue: the channel its frames arrive by. */
export interface NetRxParams {
  channel: PortChannelSpec;
}

const WAIT_DATA = 1;
const WAIT_BUFFERS = 2;

/**
 * The device side of a virtio-net receiveq (5.1.6.3), one buffer per packet
 * (header and frame in the writable half of one chain, at any split). A frame
 * waits in the channel until the driver posts a buffer, so an rx ring that
 * runs dry slows the sender instead of losing frames. A frame larger than a
 * posted buffer is dropped and counted; the buffer goes back unused.
 */
export class NetRxQueue implements QueueHandler {
  private readonly input: PortChannelConsumer;
  private readonly writer = new ChainWriter();
  private readonly chain;
  private readonly statBase: number;
  private waitingFor = WAIT_DATA;

  constructor(private readonly ctx: HandlerContext) {
    this.input = new PortChannelConsumer((ctx.params as NetRxParams).channel);
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
  }

  poll(): number {
    const { device } = this.ctx;
    const input = this.input;
    const chain = this.chain;
    let n = 0;
    let bytes = 0;
    let tooBig = 0;
    while (n < BATCH) {
      const at = input.peek();
      if (at < 0) {
        this.waitingFor = WAIT_DATA;
        break;
      }
      if (!device.pop(chain)) {
        this.waitingFor = WAIT_BUFFERS;
        break;
      }
      const len = input.len;
      if (chain.writableBytes < NET_HDR_SIZE + len) {
        device.unpop();
        input.consume();
        tooBig++;
        continue;
      }
      const w = this.writer.reset(chain);
      // virtio_net_hdr: no offload flags, no GSO, num_buffers = 1 (5.1.6.4).
      w.zero(NET_HDR_SIZE - 2);
      w.writeU16(1);
      w.copyFrom(input.u8, at, len);
      device.pushUsed(chain.head, w.written);
      input.consume();
      bytes += len;
      n++;
    }
    if (n !== 0 || tooBig !== 0) {
      // Counters first: whoever sees the used entries then sees them counted.
      const f64 = this.ctx.stats.f64;
      const b = this.statBase;
      f64[b + C_CHAINS] += n;
      f64[b + C_BYTES] += bytes;
      f64[b + C_DROPS_TOO_BIG] += tooBig;
      input.release();
      if (device.publishUsed()) this.ctx.interrupt();
    }
    return n + tooBig;
  }

  arm(): boolean {
    if (this.waitingFor === WAIT_DATA) return this.input.armData();
    this.ctx.device.enableNotify();
    return this.ctx.device.available() !== 0;
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  quiesce(): void {
    this.input.release();
  }
}
