import { flowHash } from '../wire/flow-hash.js';
import { PortChannelProducer, type PortOutput } from './port-channel.js';

/**
 * The producer side of a PortOutput: picks the channel for each frame by
 * flow hash over the receiver's active queues (read once per batch), so a
 * flow stays on one receive queue. With one active queue no hash is taken.
 */
export class SteeredOutput {
  readonly producers: PortChannelProducer[];
  private readonly activeI32: Int32Array | null;
  private readonly activeIndex: number;
  private active = 1;

  constructor(spec: PortOutput) {
    this.producers = spec.channels.map((c) => new PortChannelProducer(c));
    this.activeI32 = spec.active === null ? null : new Int32Array(spec.active.buffer);
    this.activeIndex = spec.active === null ? 0 : spec.active.index;
    this.refresh();
  }

  /** Re-read how many queues the receiver uses (once per batch). */
  refresh(): void {
    const n = this.activeI32 === null ? this.producers.length : Atomics.load(this.activeI32, this.activeIndex);
    this.active = Math.max(1, Math.min(n, this.producers.length));
  }

  /** The channel that carries this frame. */
  pick(u8: Uint8Array, at: number, len: number): PortChannelProducer {
    return this.producers[this.pickIndex(u8, at, len)];
  }

  /** The index in `producers` of the channel that carries this frame. */
  pickIndex(u8: Uint8Array, at: number, len: number): number {
    return this.active === 1 ? 0 : flowHash(u8, at, len) % this.active;
  }

  /** Publish every channel's committed frames. */
  publish(): void {
    for (const p of this.producers) p.publish();
  }
}
