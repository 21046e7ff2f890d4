import type { FeatureSet } from '../spec/features.js';
import type { HandlerFactory } from '../worker/queue-handler.js';
import type { ConfigSpace } from './config-space.js';

/**
 * How a queue runs: on its own worker thread with the handler registered
 * under `kind` (the data path), or inline on the control plane's thread with
 * `inline` (a control queue).
 */
export type QueueWorkerSpec = { kind: string; params: unknown } | { inline: HandlerFactory; params?: unknown };

/**
 * What makes a VirtioDevice a particular device: its id, offered features,
 * queues, config space and queue handlers. The transport (status machine,
 * negotiation, queue setup, workers) is shared by every device type.
 */
export interface DeviceModel {
  readonly deviceId: number;
  /** Features the device offers (transport bits included). */
  readonly features: FeatureSet;
  readonly numQueues: number;
  /** Largest size of each queue; the driver may choose a smaller power of two. */
  readonly maxQueueSize: number;
  readonly config: ConfigSpace;
  /** Why the device refuses this accepted set at FEATURES_OK, or undefined to accept. */
  checkFeatures(accepted: FeatureSet): string | undefined;
  /**
   * Whether queue `q` is served inline by the control plane under these
   * features (a control queue): its kicks then go to the device's own
   * doorbell, not to a queue thread. Pure: no side effects. Default: never.
   */
  runsInline?(q: number, negotiated: FeatureSet): boolean;
  /** The handler of queue `q` under the negotiated features; undefined: the queue has none yet. */
  queueWorker(q: number, negotiated: FeatureSet): QueueWorkerSpec | undefined;
  /** The device was reset (2.4): put device-specific state (filters, active queues) back. */
  onReset?(): void;
}
