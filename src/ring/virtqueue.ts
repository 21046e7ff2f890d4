import type { DescriptorChain } from './chain.js';
import type { QueueState } from './queue-state.js';

/**
 * The device side of a virtqueue, whatever its format (split 2.7, packed
 * 2.8): what queue handlers, RxWriter and the queue runtime use. One
 * implementation per format, chosen once at queue setup (createQueueDevice),
 * so device code never asks which format it has.
 *
 * Every method validates what the driver wrote and throws VirtqueueError
 * (with the offending value) before the queue moves on a broken chain.
 */
export interface VirtqDevice {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** The state to hand back on stop (vhost GET_VRING_BASE): plain data. */
  state(base: QueueState): QueueState;
  /** A chain object big enough for any chain this queue accepts. */
  newChain(): DescriptorChain;
  /** Chains made available and not yet popped (packed: counted by walking the ring, at most size). */
  available(): number;
  /** Pop the next available chain into `chain`; false when none. */
  pop(chain: DescriptorChain): boolean;
  /** Give back the last `count` popped chains, unprocessed (not pushed used). */
  unpop(count?: number): void;
  /** Return the chain whose head (split) or buffer id (packed) is `head`, with `len` bytes written. */
  pushUsed(head: number, len: number): void;
  /** Publish what pushUsed() wrote; returns whether the driver wants an interrupt. */
  publishUsed(): boolean;
  /** Ask for a kick on the next chain, or on the first beyond the `ahead` available now. */
  enableNotify(ahead?: number): void;
  /** Before sleeping with `posted` chains too few: enableNotify(posted), then true when more are there already. */
  armForMoreThan(posted: number): boolean;
  /** Ask the driver not to kick while the device polls. */
  disableNotify(): void;
}

/**
 * The driver side of a virtqueue, whatever its format: what guest drivers
 * (virtskb RecvBuffers, NetPairDriver, the vsock driver, the control queue
 * driver) use. Tokens are the caller's numbers for its chains; getUsed()
 * gives them back.
 */
export interface VirtqDriver {
  readonly size: number;
  readonly eventIdx: boolean;
  /** Bytes the device wrote into the chain getUsed() returned last. */
  readonly usedLen: number;
  /** Descriptors free for new chains. */
  readonly numFree: number;
  /** Chains added and not yet returned. */
  readonly pending: number;
  /**
   * Where a new driver for this queue would go on (nothing in flight): the
   * QueueState nextAvail / nextUsed encoding of the format (split: u16 ring
   * indices; packed: index | wrap counter << 15).
   */
  readonly nextAvail: number;
  readonly nextUsed: number;
  addBuffer(gpa: number, len: number, writable: boolean, token: number): boolean;
  addChain(addrs: ArrayLike<number>, lens: ArrayLike<number>, nOut: number, nIn: number, token: number): boolean;
  /** Make chains added since the last call visible; returns whether to kick. */
  publish(): boolean;
  /** Used chains ready to reap. */
  usedAvailable(): number;
  /** Reap one used chain: its token (usedLen set), or -1. */
  getUsed(): number;
  /** Ask for an interrupt on the next used chain; true when some are waiting already. */
  enableInterrupts(): boolean;
  disableInterrupts(): void;
}
