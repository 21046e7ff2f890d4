import { EventEmitter } from 'node:events';
import { DeviceStatusError, FeatureNegotiationError, InvalidArgumentError, type VirtioLabError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { NotifyArea, type WordRef } from '../notify/notify-area.js';
import { type QueueState, validateQueueSize } from '../ring/queue-state.js';
import { F_RING_PACKED, F_RING_RESET, type FeatureSet, hasFeature } from '../spec/features.js';
import { PCI_NO_VECTOR } from '../spec/pci.js';
import { STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../spec/status.js';
import { type CounterSchema, type QueueStats, StatsBlock } from '../stats/queue-stats.js';
import type { DeviceModel } from './device-model.js';
import { type QueueAddresses, type QueueSlot, QueueSlots } from './queue-slots.js';
import { type QueueLauncher, QueueStarter } from './queue-starter.js';
import { featureRefusal, statusAfterWrite } from './status-machine.js';
import type { ThreadMapping } from './thread-mapping.js';
import { VectorTable } from './vector-table.js';

export type { QueueAddresses } from './queue-slots.js';
export type { QueueLauncher } from './queue-starter.js';

/** Options of a device's control plane. */
export interface VirtioDeviceOptions {
  /** Microseconds a queue thread polls before it sleeps, at most (default 30; the budget adapts below it). */
  spinUs?: number;
  /** How often a sleeping queue thread looks at its queues, for a second after its last work, in milliseconds (default 0: never). See QueueThreadPoolOptions.idlePollMs. */
  idlePollMs?: number;
  /**
   * How the device's worker queues map onto queue threads (default: the
   * VIRTIO_LAB_THREADS environment variable, else 'auto'). See ThreadMapping.
   * With a shared pool, `spinUs` and `idlePollMs` are the pool's.
   */
  threads?: ThreadMapping;
  /**
   * Where the worker queues run when not on threads of `threads` over the
   * SharedArrayBuffer regions of the device's memory: the vhost-user back
   * end's ring threads (memory mapped from the front end, eventfd kicks and
   * interrupts). `threads` is then ignored.
   */
  queueLauncher?: QueueLauncher;
}

/** What 'queue-error' events carry. */
export interface QueueErrorEvent {
  queue: number;
  error: VirtioLabError;
}

/**
 * The main-thread control plane of one virtio device (after the vhost / vDPA
 * split): device status machine, feature negotiation, config space, queue
 * setup, and the queue threads its data queues run on (see ThreadMapping).
 * Device-specific behaviour comes from its DeviceModel. The queues' own
 * state and life cycle are a QueueSlots, where and how they start a
 * QueueStarter, the MSI-X routes a VectorTable.
 *
 * Calls that break the spec's rules for a driver throw named errors
 * (DeviceStatusError, InvalidArgumentError); the register view
 * (PciCommonConfig) turns them into counted, ignored writes for emulators.
 *
 * Events: 'queue-error' (QueueErrorEvent) when a worker finds bad guest data
 * or dies; 'config-interrupt' when it raises a config change.
 */
export class VirtioDevice<S extends CounterSchema = CounterSchema> extends EventEmitter {
  readonly notify: NotifyArea;
  readonly stats: StatsBlock;
  /** Vector of config-change interrupts (config_msix_vector). */
  configVector = PCI_NO_VECTOR;
  /** Why the last FEATURES_OK was refused, if it was. */
  lastFeatureRefusal: string | undefined;
  private driverFeatureBits: FeatureSet = 0n;
  private readonly slots: QueueSlots;
  private readonly vectors: VectorTable;
  private resetting: Promise<void> | undefined;
  /** Microseconds a queue thread polls before it sleeps, at most. */
  readonly spinUs: number;
  private readonly starter: QueueStarter;
  private mem: GuestMemory;

  constructor(
    readonly model: DeviceModel<Record<string, unknown>, S>,
    memory: GuestMemory,
    options: VirtioDeviceOptions = {},
  ) {
    super();
    validateQueueSize(model.maxQueueSize);
    this.spinUs = options.spinUs ?? 30;
    this.notify = NotifyArea.create(model.numQueues, model.numQueues + 1);
    this.stats = StatsBlock.create(model.numQueues, model.counters);
    this.slots = new QueueSlots(model.numQueues, model.maxQueueSize, this.notify);
    this.vectors = new VectorTable(this.notify);
    this.starter = new QueueStarter(model.numQueues, { ...options, spinUs: this.spinUs, idlePollMs: options.idlePollMs ?? 0, keepThreads: model.keepsQueueThreads ?? false }, this.notify, this.stats, this.vectors, {
      needsReset: (q, error) => this.needsReset(q, error),
      queueError: (q, error) => {
        this.emit('queue-error', { queue: q, error } satisfies QueueErrorEvent);
        this.emit('config-interrupt');
      },
    });
    this.starter.checkMemory(memory);
    this.mem = memory;
  }

  /** The guest memory queues run in. */
  get memory(): GuestMemory {
    return this.mem;
  }

  /**
   * Give the device other guest memory (a vhost-user front end's new memory
   * table). Only while no queue runs: a running worker keeps its own view.
   */
  setMemory(memory: GuestMemory): void {
    if (this.slots.runners().length > 0) throw new DeviceStatusError('guest memory can change only while no queue runs');
    this.starter.checkMemory(memory);
    this.mem = memory;
  }

  // ---- status (2.1, 3.1.1) -------------------------------------------------

  /** device_status as the driver reads it. Non-zero until a requested reset completes. */
  get status(): number {
    return Atomics.load(this.notify.i32, this.notify.statusWord);
  }

  /**
   * A driver's write of device_status. 0 starts a reset (read status until 0,
   * or await reset()). Other writes may only add bits, in the spec's order;
   * FEATURES_OK is dropped from the write when the device refuses the
   * features (3.1.1 step 6: the driver re-reads to find out).
   */
  setStatus(value: number): void {
    value &= 0xff;
    if (value === 0) {
      void this.reset();
      return;
    }
    if (this.resetting !== undefined) throw new DeviceStatusError('device reset in progress: wait until status reads 0');
    const current = this.status;
    let next = statusAfterWrite(current, value);
    const added = next & ~current;
    if ((added & STATUS_FEATURES_OK) !== 0) {
      this.lastFeatureRefusal = featureRefusal(this.model, this.driverFeatureBits);
      if (this.lastFeatureRefusal !== undefined) next &= ~(STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    }
    Atomics.store(this.notify.i32, this.notify.statusWord, next);
    if ((added & STATUS_DRIVER_OK) !== 0 && (next & STATUS_DRIVER_OK) !== 0) {
      for (let q = 0; q < this.slots.count; q++) if (this.slots.get(q).enabled) this.startQueue(q);
    }
  }

  /**
   * Reset the device (2.4): take every queue off its thread (the threads
   * stay), forget features and queue setup, and only then let status read 0.
   */
  reset(): Promise<void> {
    if (this.resetting !== undefined) return this.resetting;
    const workers = this.slots.runners();
    if (workers.length === 0) {
      this.clearState();
      return Promise.resolve();
    }
    this.resetting = Promise.all(workers.map((w) => w.terminate()))
      .then(() => this.clearState())
      .finally(() => (this.resetting = undefined));
    return this.resetting;
  }

  private clearState(): void {
    // Vector routes are MSI-X table state (PCI), which a virtio reset leaves alone.
    this.slots.clear();
    this.model.onReset?.();
    this.driverFeatureBits = 0n;
    this.lastFeatureRefusal = undefined;
    this.configVector = PCI_NO_VECTOR;
    Atomics.store(this.notify.i32, this.notify.statusWord, 0);
  }

  /**
   * Reset, then end the device's own queue threads (a shared pool is its
   * owner's to close). Nothing runs until a driver sets DRIVER_OK again.
   */
  async close(): Promise<void> {
    await this.reset();
    await this.starter.close();
  }

  /** How the worker queues map onto threads, in words ("per-device", "shared pool of 2", ...). */
  get threadMapping(): string {
    return this.starter.threads.name;
  }

  /**
   * The word that wakes whatever serves queue `q` (a driver's kick, a peer
   * channel's wake-up): the queue thread it is mapped to, or the device's
   * own doorbell for a queue the control plane serves inline (a control
   * queue). Fixed for the device's life, so a
   * driver or peer may keep it.
   */
  doorbell(q: number): WordRef {
    this.slots.get(q);
    if (this.model.runsInline?.(q, this.negotiatedFeatures) === true) {
      return { buffer: this.notify.spec.buffer, index: this.notify.doorbellWord(q) };
    }
    return this.starter.wakeWord(q);
  }

  // ---- features (2.2, 6) -------------------------------------------------

  get deviceFeatures(): FeatureSet {
    return this.model.features;
  }

  get driverFeatures(): FeatureSet {
    return this.driverFeatureBits;
  }

  /** The features in force: what the driver accepted, once FEATURES_OK stuck. */
  get negotiatedFeatures(): FeatureSet {
    return (this.status & STATUS_FEATURES_OK) !== 0 ? this.driverFeatureBits : 0n;
  }

  /** Write the driver's accepted features: allowed after DRIVER and before FEATURES_OK (3.1.1). */
  setDriverFeatures(features: FeatureSet): void {
    const s = this.status;
    if ((s & STATUS_DRIVER) === 0 || (s & STATUS_FEATURES_OK) !== 0) {
      throw new DeviceStatusError(`driver features may be written only after DRIVER and before FEATURES_OK (status 0x${s.toString(16)})`);
    }
    if (features < 0n || features >= 1n << 128n) throw new InvalidArgumentError('feature bits must fit in 128 bits');
    this.driverFeatureBits = features;
  }

  /** Like reading FEATURES_OK back, but throws the refusal reason. */
  assertFeaturesOk(): void {
    if ((this.status & STATUS_FEATURES_OK) === 0) throw new FeatureNegotiationError(this.lastFeatureRefusal ?? 'FEATURES_OK is not set');
  }

  // ---- config space (2.5) --------------------------------------------------

  get configGeneration(): number {
    return this.model.config.generation;
  }

  readConfig(offset: number, width: number): number {
    return this.model.config.read(offset, width);
  }

  writeConfig(offset: number, width: number, value: number): void {
    this.model.config.write(offset, width, value);
  }

  /**
   * Change config fields from the device side: bumps the generation and, once
   * DRIVER_OK is set, sends a config change notification (2.5.2).
   */
  updateConfig(change: (bytes: Uint8Array) => void): void {
    this.model.config.update(change);
    if ((this.status & STATUS_DRIVER_OK) !== 0) this.raiseConfigInterrupt();
  }

  // ---- interrupts ----------------------------------------------------------

  /**
   * Point MSI-X vector `vector` at a shared word (the message address a driver
   * programs). Several queues of several devices may target one word, so one
   * driver thread can sleep on all of them. Default: the device's own word.
   */
  routeVector(vector: number, target: WordRef): void {
    this.vectors.route(vector, target);
  }

  /** The word vector `vector` rings. */
  vectorTarget(vector: number): WordRef {
    return this.vectors.target(vector);
  }

  private raiseConfigInterrupt(): void {
    this.emit('config-interrupt');
    this.vectors.ring(this.configVector);
  }

  // ---- queues (4.1.4.3, vhost-style operations) ------------------------------

  get numQueues(): number {
    return this.slots.count;
  }

  /** Current queue size (initially the maximum, 4.1.4.3.2). */
  queueSize(q: number): number {
    return this.slots.get(q).size;
  }

  queueAddresses(q: number): QueueAddresses {
    const s = this.slots.get(q);
    return { desc: s.desc, avail: s.avail, used: s.used };
  }

  queueVector(q: number): number {
    return this.slots.get(q).vector;
  }

  queueEnabled(q: number): boolean {
    return this.slots.get(q).enabled;
  }

  /** True while a worker runs queue `q`. */
  queueRunning(q: number): boolean {
    return this.slots.get(q).worker !== undefined;
  }

  /**
   * Resolves once queue `q` runs on its thread (started at DRIVER_OK or
   * enable; a new queue thread first boots, tens of milliseconds), at once
   * for a queue that is not running. Never rejects: a thread that dies
   * first is reported as a 'queue-error'.
   */
  queueStarted(q: number): Promise<void> {
    return this.slots.get(q).worker?.started ?? Promise.resolve();
  }

  setQueueSize(q: number, size: number): void {
    const s = this.configurable(q);
    validateQueueSize(size, this.model.maxQueueSize, hasFeature(this.negotiatedFeatures, F_RING_PACKED));
    s.size = size;
  }

  setQueueAddresses(q: number, a: Partial<QueueAddresses>): void {
    this.configurable(q);
    this.slots.setAddresses(q, a);
  }

  setQueueVector(q: number, vector: number): void {
    this.configurable(q);
    this.slots.setVector(q, vector, this.vectors);
  }

  /**
   * vhost SET_VRING_BASE: where the device resumes reading the avail ring.
   * `nextUsed` (packed rings, as vhost-user's upper 16 bits) is where it
   * resumes writing used entries; by default the same as nextAvail for a
   * packed ring, and used.idx read from memory for a split ring.
   */
  setVringBase(q: number, nextAvail: number, nextUsed?: number): void {
    this.slots.setVringBase(q, nextAvail, nextUsed);
  }

  /** vhost GET_VRING_BASE: stops the queue and returns where it stopped. */
  async getVringBase(q: number): Promise<number> {
    return (await this.stopQueue(q)).nextAvail;
  }

  /** queue_enable = 1 (4.1.4.3.2). After DRIVER_OK the queue starts at once. */
  enableQueue(q: number): void {
    const s = this.configurable(q);
    s.enabled = true;
    if ((this.status & STATUS_DRIVER_OK) !== 0) this.startQueue(q);
  }

  /**
   * Start queue `q` on its queue thread, from `state` (validated: restored state
   * is input like any other) or from its configuration and base.
   */
  startQueue(q: number, state?: QueueState): void {
    const s = this.slots.get(q);
    if (s.worker !== undefined) throw new DeviceStatusError(`queue ${q} is already running`);
    if ((this.status & STATUS_DRIVER_OK) === 0) throw new DeviceStatusError(`queue ${q} cannot start before DRIVER_OK`);
    const features = this.negotiatedFeatures;
    const spec = this.model.queueWorker(q, features);
    if (spec === undefined) return;
    this.starter.start(this.slots, q, spec, features, this.memory, this.configVector, state);
  }

  /**
   * Stop queue `q` after its current batch and take it off its thread; returns the
   * queue's state, from which startQueue() resumes losing and duplicating
   * nothing. A stopped queue stays enabled.
   */
  stopQueue(q: number): Promise<QueueState> {
    return this.slots.stop(q);
  }

  /**
   * Reset one queue (vhost / vDPA style; the per-queue reset of
   * VIRTIO_F_RING_RESET, 2.6.1): take it off its thread without saving state and put
   * its configuration back to the values after a device reset (size = max,
   * not enabled, no vector, base 0). The other queues keep running.
   */
  resetQueue(q: number): Promise<void> {
    return this.slots.reset(q);
  }

  /**
   * The driver wrote 1 to queue_reset (VIRTIO_F_RING_RESET, 2.6.1): reset
   * queue `q` as resetQueue() does. queue_reset reads 1 until that is done,
   * then 0 (4.1.4.3), and the driver may set the queue up again.
   * @throws InvalidArgumentError without VIRTIO_F_RING_RESET negotiated.
   */
  requestQueueReset(q: number): void {
    this.slots.get(q);
    if (!hasFeature(this.negotiatedFeatures, F_RING_RESET)) throw new InvalidArgumentError(`queue_reset of queue ${q}: VIRTIO_F_RING_RESET is not negotiated`);
    this.slots.requestReset(q);
  }

  /** Whether a queue_reset of queue `q` is still in progress. */
  queueResetting(q: number): boolean {
    return this.slots.isResetting(q);
  }

  /**
   * Fault injection: kill queue `q`'s worker thread as a crash would. The
   * device notices, sets DEVICE_NEEDS_RESET, raises a config interrupt and
   * emits 'queue-error' with a QueueWorkerError; a reset brings it back.
   */
  killQueueWorker(q: number): Promise<void> {
    return this.slots.kill(q);
  }

  /** A snapshot of queue `q`'s counters. */
  queueStats(q: number): QueueStats<S> {
    this.slots.get(q);
    // The block was laid out from model.counters, which is an S.
    return this.stats.snapshot(q) as QueueStats<S>;
  }

  /**
   * Set DEVICE_NEEDS_RESET and notify the driver (2.1.2), then report. The
   * notification goes out when the bit changes: a thread that served several
   * queues of the device dies once, and the driver hears it once.
   */
  private needsReset(q: number, error: VirtioLabError): void {
    const was = Atomics.or(this.notify.i32, this.notify.statusWord, STATUS_DEVICE_NEEDS_RESET);
    if ((was & STATUS_DEVICE_NEEDS_RESET) === 0 && (this.status & STATUS_DRIVER_OK) !== 0) this.raiseConfigInterrupt();
    this.emit('queue-error', { queue: q, error } satisfies QueueErrorEvent);
  }

  /** A queue whose registers may be written: after FEATURES_OK, not yet enabled (3.1.1 step 7). */
  private configurable(q: number): QueueSlot {
    const s = this.slots.get(q);
    if ((this.status & STATUS_FEATURES_OK) === 0) throw new DeviceStatusError(`queue ${q} set up before FEATURES_OK (3.1.1)`);
    if (s.enabled) throw new DeviceStatusError(`queue ${q} is enabled: its configuration is fixed until reset`);
    return s;
  }
}
