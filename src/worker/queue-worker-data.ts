import type { MessagePort } from 'node:worker_threads';
import type { MemoryRegionSpec } from '../memory/guest-memory.js';
import type { NotifyAreaSpec, WordRef } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import type { CounterSchema } from '../stats/queue-stats.js';

/** Everything one queue starts from on a queue thread: plain data and shared buffers. */
export interface QueueWorkerData {
  /** Handler kind, a key of the handler registry (e.g. 'net-tx'). */
  kind: string;
  queue: number;
  memory: MemoryRegionSpec[];
  state: QueueState;
  /** The queue's device: its status word takes DEVICE_NEEDS_RESET. */
  notify: NotifyAreaSpec;
  stats: SharedArrayBuffer;
  /** How `stats` is laid out: the device's counter schema. */
  counters: CounterSchema;
  /** Where this queue's interrupt goes (its MSI-X vector's target), or null for none. */
  interrupt: WordRef | null;
  /** Where config-change interrupts go, or null for none. */
  configInterrupt: WordRef | null;
  params: unknown;
}

/**
 * The two words of one queue thread: every queue it serves rings `wake`
 * (kicks, peer channels, the control plane), and the control plane sets
 * `control` before it rings when a call waits on the thread's port.
 */
export interface QueueThreadWords {
  buffer: SharedArrayBuffer;
  wake: number;
  control: number;
}

/** What a queue thread starts from (its workerData). */
export interface QueueThreadData {
  words: QueueThreadWords;
  /** Microseconds to poll before sleeping (the most the adaptive budget grows to). */
  spinUs: number;
  /** While every queue is idle, for a second after the last work, wake this often (ms) for one look at the queues and the task; 0: sleep until woken (QueueThreadPoolOptions.idlePollMs). */
  idlePollMs: number;
  /** The comlink control channel (transferred). */
  control: MessagePort;
  /**
   * An eventfd that wakes the thread when it sleeps in poll() rather than on
   * its wake word (a vhost-user ring's thread, which polls kick eventfds):
   * ring() signals it while the word has POLL_SLEEPER set.
   */
  wakeFd?: number;
  /**
   * The URL (href) of a module whose default export builds the thread's
   * tasks (a TaskFactory): threads of a pool made with
   * QueueThreadPoolOptions.taskModule run the task-queue-worker entry,
   * which loads it before it serves anything.
   */
  taskModule?: string;
}

/**
 * The control calls a queue thread serves (through comlink). `slot` names
 * one started queue on that thread (the control plane numbers them).
 */
export interface QueueThreadApi {
  /** Serve one more queue, from its state. */
  start(slot: number, data: QueueWorkerData): void;
  /** Stop serving `slot` after the current batch; returns its state (the vring base). */
  stop(slot: number): QueueState | undefined;
  /** Stop serving `slot` without keeping its state. */
  remove(slot: number): void;
  /**
   * Run a task beside the queues (see ThreadTask): the thread polls it every
   * round until it finishes, then posts a TaskDoneMessage with its report.
   */
  startTask(data: unknown): void;
}

/** Posted once by a thread whose task finished: what the task reported, or what it threw. */
export interface TaskDoneMessage {
  type: 'task-done';
  report: unknown;
  /** The task threw: its error's name and message (the report is then undefined). */
  error?: string;
}

/** Messages a queue thread posts on its parentPort (not comlink: they are unsolicited). */
export interface QueueErrorMessage {
  type: 'queue-error';
  slot: number;
  queue: number;
  code: string;
  message: string;
  value: number;
}
