import type { QueueWorkerData } from '../worker/queue-worker-data.js';
import type { MappedRegionSpec } from './front-end-memory.js';

/** What a vhost-user queue worker starts from, beyond any queue worker's data. */
export interface VhostQueueWorkerData extends QueueWorkerData {
  /** The front end's memory, mapped by the control plane (each thread views it by address). */
  mapped: MappedRegionSpec[];
  /**
   * The ring's call eventfd. The number stays the same while the session
   * lives: a new SET_VRING_CALL is dup3'd onto it, so a running worker
   * never writes to a closed or reused fd.
   */
  callFd: number;
  /** The ring's kick eventfd (fixed for the session, as callFd), polled by the ring's thread. */
  kickFd: number;
  /** Address of the ring's notify page (host notifier) for its thread to watch, or null for none. */
  notifyPage: bigint | null;
  /** Notify writes found on the page, per ring (Int32 at the ring's index). */
  pageKicks: SharedArrayBuffer;
  /** Interrupts not sent per ring (Int32 at the ring's index): the call eventfd would have blocked. */
  callDrops: SharedArrayBuffer;
}
