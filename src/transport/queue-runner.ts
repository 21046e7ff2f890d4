import type { QueueState } from '../ring/queue-state.js';

/**
 * A running queue as the control plane sees it: on a queue thread
 * (a slot on a QueueThreadHandle) or served by the control plane itself
 * (InlineQueueRunner, for control queues).
 */
export interface QueueRunner {
  /**
   * Resolves once the queue runs: its thread has taken it (a new thread
   * boots first, tens of milliseconds). Never rejects: a thread that dies
   * first is reported as a death.
   */
  readonly started: Promise<void>;
  /** Stop after the current batch; resolves with the queue's state (the vring base). */
  stop(): Promise<QueueState>;
  /** End it without saving state. */
  terminate(): Promise<void>;
  /** Fault injection: end it as a crash would; reported as a death. */
  kill(): Promise<void>;
}
