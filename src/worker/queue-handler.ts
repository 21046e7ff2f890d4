import type { GuestMemory } from '../memory/guest-memory.js';
import type { VirtqDevice } from '../ring/virtqueue.js';
import type { StatsBlock } from '../stats/queue-stats.js';

/**
 * What a queue worker runs: the device-specific half of a queue's data path
 * (net rx, net tx, ...). The queue thread's loop (queue-thread.ts) owns waking,
 * sleeping and control; a handler only moves items.
 */
export interface QueueHandler {
  /**
   * Process at most one batch and publish it (used index, interrupts, peer
   * wake-ups). Returns how many items moved; 0 means idle. Throws
   * VirtqueueError on a broken chain.
   */
  poll(): number;
  /**
   * About to sleep: ask every source this handler waits on (kicks, peer
   * channel) to wake the worker, then look once more. Returns true when work
   * is already there and the worker must not sleep.
   */
  arm(): boolean;
  /** Woken: stop asking for notifications while polling. */
  disarm(): void;
  /** Give back anything taken but not finished, so the queue can stop cleanly. */
  quiesce(): void;
}

/** What a handler is built from inside its worker. */
export interface HandlerContext {
  queue: number;
  memory: GuestMemory;
  device: VirtqDevice;
  stats: StatsBlock;
  /** Raise this queue's interrupt (counted); no-op when the driver set no vector. */
  interrupt(): void;
  /** Handler-specific parameters from the device model (plain data). */
  params: unknown;
}

export type HandlerFactory = (ctx: HandlerContext) => QueueHandler;
