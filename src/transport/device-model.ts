import type { FeatureSet } from '../spec/features.js';
import type { ConfigSpace } from './config-space.js';

/** Which worker handler runs a queue, and with what (plain data). */
export interface QueueWorkerSpec {
  kind: string;
  params: unknown;
}

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
  /** The handler of queue `q` under the negotiated features; undefined: the queue has none yet. */
  queueWorker(q: number, negotiated: FeatureSet): QueueWorkerSpec | undefined;
}
