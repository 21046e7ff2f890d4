import { VirtioLabError } from '../errors.js';
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
  /**
   * The thread no longer serves this queue (stopped, removed or failed):
   * drop whatever other queues of the thread hold of it.
   */
  detach?(): void;
}

/** What a handler is built from inside its worker; `P` is its kind's parameters. */
export interface HandlerContext<P = unknown> {
  queue: number;
  memory: GuestMemory;
  device: VirtqDevice;
  stats: StatsBlock;
  /** Raise this queue's interrupt (counted); no-op when the driver set no vector. */
  interrupt(): void;
  /** Handler-specific parameters from the device model (plain data). */
  params: P;
  /**
   * The handler runs in a queue thread's loop, which polls every queue it
   * serves: handlers of one thread may hand each other work directly (a
   * transmit queue writing into a receive queue's buffers). Unset where a
   * caller polls handlers by hand (one-thread rigs), which then keep to
   * their channels.
   */
  sharedLoop?: boolean;
}

export type HandlerFactory<P = unknown> = (ctx: HandlerContext<P>) => QueueHandler;

/**
 * A map of handler kinds to the parameters each takes, e.g.
 * `{ 'net-rx': NetRxParams }`. A device layer declares its own; the worker
 * entry files join them and register one factory per kind.
 */
export type HandlerKinds = object;

/** One factory per kind of `K`, each typed by its kind's parameters. */
export type HandlerRegistry<K extends HandlerKinds> = { readonly [Kind in keyof K]: HandlerFactory<K[Kind]> };

/**
 * What a queue thread runs a queue of `kind` with: the registry's factory.
 * The kind arrives as a string from the control plane; one that is not
 * registered is an UNKNOWN_QUEUE_KIND error naming it.
 */
export function handlerLookup<K extends HandlerKinds>(registry: HandlerRegistry<K>): (kind: string) => HandlerFactory {
  return (kind) => {
    if (!Object.hasOwn(registry, kind)) throw new VirtioLabError('UNKNOWN_QUEUE_KIND', `no queue handler named "${kind}"`);
    // Sound: the device model that named `kind` built its params as K[kind].
    return registry[kind as keyof K] as HandlerFactory;
  };
}
