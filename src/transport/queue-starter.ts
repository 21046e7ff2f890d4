import { InvalidArgumentError, type QueueWorkerError, VirtioLabError, VirtqueueError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { NotifyArea, WordRef } from '../notify/notify-area.js';
import { type QueueState, validateQueueState } from '../ring/queue-state.js';
import type { FeatureSet } from '../spec/features.js';
import type { StatsBlock } from '../stats/queue-stats.js';
import type { HandlerFactory } from '../worker/queue-handler.js';
import type { QueueWorkerData } from '../worker/queue-worker-data.js';
import type { QueueWorkerSpec } from './device-model.js';
import { InlineQueueRunner } from './inline-queue-runner.js';
import type { QueueRunner } from './queue-runner.js';
import type { QueueSlot, QueueSlots } from './queue-slots.js';
import { type QueueThreads, defaultThreadMapping, mapQueueThreads } from './thread-mapping.js';
import type { VectorTable } from './vector-table.js';
import type { VirtioDeviceOptions } from './virtio-device.js';

/** Queue threads of another kind than the default, and what their queues start from. */
export interface QueueLauncher {
  /** The threads of a device with `numQueues` queues, and each queue's thread (its wake word is the queue's doorbell). Called once. */
  threads(numQueues: number): QueueThreads;
  /** The data a queue starts from on those threads, from the device's. */
  prepare(data: QueueWorkerData): QueueWorkerData;
}

/** What a QueueStarter tells its device about the queues it started. */
export interface QueueStartReports {
  /** Queue `q` cannot run (its state is no ring) or its runner died: the device needs a reset (2.1.2). */
  needsReset(q: number, error: VirtioLabError): void;
  /** Queue `q`'s thread found bad guest data (and set DEVICE_NEEDS_RESET itself). */
  queueError(q: number, error: VirtqueueError): void;
}

type InlineQueueSpec = Extract<QueueWorkerSpec, { inline: HandlerFactory }>;
type ThreadQueueSpec = Exclude<QueueWorkerSpec, { inline: HandlerFactory }>;

/**
 * Where a device's queues run and how one starts there: on the queue
 * threads its ThreadMapping (or QueueLauncher) gives it, or inline on the
 * control plane's thread for a queue its model serves there (a control
 * queue). Called per queue start, never per kick.
 */
export class QueueStarter {
  /** Where the worker queues run. */
  readonly threads: QueueThreads;
  private readonly launcher: QueueLauncher | undefined;

  constructor(
    numQueues: number,
    options: VirtioDeviceOptions & { spinUs: number; idlePollMs: number; keepThreads: boolean },
    private readonly notify: NotifyArea,
    private readonly stats: StatsBlock,
    private readonly vectors: VectorTable,
    private readonly reports: QueueStartReports,
  ) {
    this.launcher = options.queueLauncher;
    this.threads = this.launcher?.threads(numQueues) ?? mapQueueThreads(options.threads ?? defaultThreadMapping(), numQueues, { spinUs: options.spinUs, idlePollMs: options.idlePollMs, keepThreads: options.keepThreads });
  }

  /**
   * @throws InvalidArgumentError for memory queue threads cannot share: the
   * default launcher posts memory to workers, and workerData copies an
   * ArrayBuffer (each worker would process a private copy of it).
   */
  checkMemory(memory: GuestMemory): void {
    if (this.launcher !== undefined) return;
    for (const r of memory.regions) {
      if (!(r.buffer instanceof SharedArrayBuffer)) {
        throw new InvalidArgumentError(`guest memory region at 0x${r.gpa.toString(16)} is not a SharedArrayBuffer: queue workers would each get a copy of it`);
      }
    }
  }

  /** The wake word of queue `q`'s thread. */
  wakeWord(q: number): WordRef {
    return this.threads.pool.wakeWord(this.threads.threadOf[q]);
  }

  /**
   * Start queue `q` from `state`, or else from its slot's configuration and
   * base under `features`, and put its runner in the slot. State that is no
   * ring in `memory` (QueueStateError, GuestMemoryError) is reported as
   * needing a reset instead: the device cannot run the queue (2.1.2).
   */
  start(slots: QueueSlots, q: number, spec: QueueWorkerSpec, features: FeatureSet, memory: GuestMemory, configVector: number, state?: QueueState): void {
    let st: QueueState;
    try {
      st = state ?? slots.configuredState(q, features, memory);
      validateQueueState(st, memory);
    } catch (e) {
      if (!(e instanceof VirtioLabError)) throw e;
      this.reports.needsReset(q, e);
      return;
    }
    const s = slots.get(q);
    s.worker = 'inline' in spec ? this.runInline(q, s, st, spec, memory) : this.runOnThread(q, s, st, spec, memory, configVector);
  }

  /** End the device's own queue threads (a shared pool is its owner's to close). */
  async close(): Promise<void> {
    if (this.threads.owned) await this.threads.pool.close();
  }

  private onDeath(q: number, s: QueueSlot): (error: QueueWorkerError) => void {
    return (error) => {
      if (s.worker !== undefined) s.worker = undefined;
      this.reports.needsReset(q, error);
    };
  }

  /** Serve queue `q` on the control plane's thread; bad guest data ends it as a death does. */
  private runInline(q: number, s: QueueSlot, st: QueueState, spec: InlineQueueSpec, memory: GuestMemory): QueueRunner {
    return new InlineQueueRunner(q, memory, st, this.notify, this.stats, this.vectors.targetOrNull(s.vector), spec.params, spec.inline, {
      onDeath: this.onDeath(q, s),
      onQueueError: (error) => {
        s.worker = undefined;
        this.reports.needsReset(q, error);
      },
    });
  }

  /** Run queue `q` on its queue thread. */
  private runOnThread(q: number, s: QueueSlot, st: QueueState, spec: ThreadQueueSpec, memory: GuestMemory, configVector: number): QueueRunner {
    const data: QueueWorkerData = {
      kind: spec.kind,
      queue: q,
      memory: memory.specs(),
      state: st,
      notify: this.notify.spec,
      stats: this.stats.buffer,
      counters: this.stats.schema,
      interrupt: this.vectors.targetOrNull(s.vector),
      configInterrupt: this.vectors.targetOrNull(configVector),
      params: spec.params,
    };
    return this.threads.pool.start(this.threads.threadOf[q], this.launcher === undefined ? data : this.launcher.prepare(data), {
      onDeath: this.onDeath(q, s),
      onQueueError: (m) => this.reports.queueError(q, new VirtqueueError(m.code as VirtqueueError['code'], m.message, m.value)),
    });
  }
}
