import type { FeatureSet } from '../spec/features.js';
import type { CounterSchema } from '../stats/queue-stats.js';
import type { HandlerFactory, HandlerKinds } from '../worker/queue-handler.js';
import type { ConfigSpace } from './config-space.js';

/**
 * How a queue runs: on its queue thread with the handler registered under
 * `kind` (the data path), with that kind's parameters from `K` (a
 * HandlerKinds map), or inline on the control plane's thread with `inline`
 * (a control queue).
 */
export type QueueWorkerSpec<K extends HandlerKinds = Record<string, unknown>> =
  | { [Kind in keyof K & string]: { kind: Kind; params: K[Kind] } }[keyof K & string]
  | { inline: HandlerFactory; params?: unknown };

/**
 * What makes a VirtioDevice a particular device: its id, offered features,
 * queues, config space and queue handlers. The transport (status machine,
 * negotiation, queue setup, workers) is shared by every device type. `K`
 * maps the handler kinds its queues name to their parameters; `S` names the
 * counters its queues keep beyond the common ones.
 */
export interface DeviceModel<K extends HandlerKinds = Record<string, unknown>, S extends CounterSchema = CounterSchema> {
  readonly deviceId: number;
  /** Features the device offers (transport bits included). */
  readonly features: FeatureSet;
  readonly numQueues: number;
  /** Largest size of each queue; the driver may choose a smaller power of two. */
  readonly maxQueueSize: number;
  readonly config: ConfigSpace;
  /** The counters each of its queues keeps beyond QUEUE_COUNTERS. */
  readonly counters: S;
  /** Why the device refuses this accepted set at FEATURES_OK, or undefined to accept. */
  checkFeatures(accepted: FeatureSet): string | undefined;
  /**
   * Whether queue `q` is served inline by the control plane under these
   * features (a control queue): its kicks then go to the device's own
   * doorbell, not to a queue thread. Pure: no side effects. Default: never.
   */
  runsInline?(q: number, negotiated: FeatureSet): boolean;
  /** The handler of queue `q` under the negotiated features; undefined: the queue has none yet. */
  queueWorker(q: number, negotiated: FeatureSet): QueueWorkerSpec<K> | undefined;
  /** The device was reset (2.4): put device-specific state (filters, active queues) back. */
  onReset?(): void;
  /**
   * Whether the device's own queue threads outlive it, kept for the next
   * such device in the process (QueueThreadPoolOptions.keepThreads): a new
   * thread boots and compiles its code afresh. Default false.
   */
  readonly keepsQueueThreads?: boolean;
}
