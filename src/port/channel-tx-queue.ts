import type { DescriptorChain } from '../ring/chain.js';
import { ChainReader } from '../ring/chain-io.js';
import { C_BYTES, C_CHAINS } from '../stats/queue-stats.js';
import type { HandlerContext, QueueHandler } from '../worker/queue-handler.js';
import type { PortChannelProducer } from './port-channel.js';

/** Chains moved per batch at most: one used-index store and one channel publish each. */
export const TX_BATCH = 32;
/** move(): the chain was dropped (the device counted why); it is completed all the same. */
export const TX_DROPPED = -1;
/**
 * move(): the chain cannot go yet (its channel is full: block(); or the
 * device's own reason, which its arm() knows); the chain goes back to the ring.
 */
export const TX_BLOCKED = -2;

/**
 * The skeleton of a transmit queue whose chains go into port channels, which
 * the net and vsock transmitqs share: pop a batch, let the device's move()
 * judge and copy each chain, complete every chain with used length 0
 * (transmit buffers are device-readable only, 2.7.8), and once per
 * batch add the counters, publish the channels and the used index, in that
 * order (whoever sees the published records then sees them counted). A chain
 * whose channel is full is given back (unpop) and the queue waits for room on
 * that channel: back-pressure reaches the driver as a full ring, never as
 * loss. No allocation per chain.
 */
export abstract class ChannelTxQueue<P> implements QueueHandler {
  protected readonly reader = new ChainReader();
  protected readonly chain: DescriptorChain;
  protected readonly statBase: number;
  /** The channel a chain waits on for room, and the frame length it needs. */
  private blockedOn: PortChannelProducer | null = null;
  private blockedLen = 0;

  constructor(protected readonly ctx: HandlerContext<P>) {
    this.chain = ctx.device.newChain();
    this.statBase = ctx.stats.base(ctx.queue);
  }

  /**
   * Judge one popped chain and copy it into its channel (reserve, write,
   * commit): the payload bytes moved, TX_DROPPED, or block()'s TX_BLOCKED.
   */
  protected abstract move(chain: DescriptorChain): number;

  /**
   * A batch starts: read shared state that holds for the batch, zero its drop
   * counts. Returns how many chains the batch may take (at most `max`).
   */
  protected abstract startBatch(max: number): number;

  /** Add the batch's drop counts to the queue's counters. */
  protected abstract countBatch(f64: Float64Array, base: number): void;

  /** Publish the committed records of every channel the queue sends on. */
  protected abstract publish(): void;

  /** move() found `out` full for a frame of `len` bytes: wait for room there. */
  protected block(out: PortChannelProducer, len: number): number {
    this.blockedOn = out;
    this.blockedLen = len;
    return TX_BLOCKED;
  }

  poll(): number {
    const { device } = this.ctx;
    const chain = this.chain;
    if (this.blockedOn !== null && !this.blockedOn.room(this.blockedLen)) return 0;
    this.blockedOn = null;
    const limit = this.startBatch(TX_BATCH);
    let n = 0;
    let bytes = 0;
    while (n < limit && device.pop(chain)) {
      const moved = this.move(chain);
      if (moved === TX_BLOCKED) {
        device.unpop();
        break;
      }
      device.pushUsed(chain.head, 0);
      if (moved > 0) bytes += moved;
      n++;
    }
    if (n !== 0) {
      const f64 = this.ctx.stats.f64;
      const b = this.statBase;
      f64[b + C_CHAINS] += n;
      f64[b + C_BYTES] += bytes;
      this.countBatch(f64, b);
      this.publish();
      if (device.publishUsed()) this.ctx.interrupt();
    }
    return n;
  }

  arm(): boolean {
    if (this.blockedOn !== null) return this.blockedOn.armSpace(this.blockedLen);
    this.ctx.device.enableNotify();
    return this.ctx.device.available() !== 0;
  }

  disarm(): void {
    this.ctx.device.disableNotify();
  }

  quiesce(): void {
    this.publish();
  }
}
