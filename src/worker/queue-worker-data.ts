import type { MessagePort } from 'node:worker_threads';
import type { MemoryRegionSpec } from '../memory/guest-memory.js';
import type { NotifyAreaSpec, WordRef } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';

/** Everything a queue worker starts from: plain data and shared buffers. */
export interface QueueWorkerData {
  /** Handler kind, a key of the handler registry (e.g. 'net-tx'). */
  kind: string;
  queue: number;
  memory: MemoryRegionSpec[];
  state: QueueState;
  notify: NotifyAreaSpec;
  stats: SharedArrayBuffer;
  /** Where this queue's interrupt goes (its MSI-X vector's target), or null for none. */
  interrupt: WordRef | null;
  /** Where config-change interrupts go, or null for none. */
  configInterrupt: WordRef | null;
  /** Microseconds to poll before sleeping. */
  spinUs: number;
  /** The comlink control channel (transferred). */
  control: MessagePort;
  params: unknown;
}

/** The control calls a queue worker serves (through comlink). */
export interface QueueWorkerApi {
  /** Stop processing after the current batch; returns the queue state (the vring base). */
  stop(): QueueState;
}

/** Messages a queue worker posts on its parentPort (not comlink: they are unsolicited). */
export interface QueueErrorMessage {
  type: 'queue-error';
  queue: number;
  code: string;
  message: string;
  value: number;
}
