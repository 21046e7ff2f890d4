import { EventEmitter } from 'node:events';
import {
  DeviceStatusError,
  FeatureNegotiationError,
  InvalidArgumentError,
  type QueueWorkerError,
  VirtioLabError,
  VirtqueueError,
} from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { NotifyArea, type WordRef, ring } from '../notify/notify-area.js';
import { type QueueState, validateQueueSize, validateQueueState } from '../ring/queue-state.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_IN_ORDER, F_RING_PACKED, F_RING_RESET, F_VERSION_1, type FeatureSet, hasFeature } from '../spec/features.js';
import { PACKED_RING_START } from '../ring/packed-layout.js';
import { PCI_NO_VECTOR } from '../spec/pci.js';
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
} from '../spec/status.js';
import { type CounterSchema, type QueueStats, StatsBlock } from '../stats/queue-stats.js';
import type { DeviceModel } from './device-model.js';
import { InlineQueueRunner } from './inline-queue-runner.js';
import type { QueueRunner } from './queue-runner.js';
import type { QueueWorkerEvents } from './queue-thread-handle.js';
import type { QueueWorkerData } from '../worker/queue-worker-data.js';
import { type QueueThreads, type ThreadMapping, defaultThreadMapping, mapQueueThreads } from './thread-mapping.js';

/** Options of a device's control plane. */
export interface VirtioDeviceOptions {
  /** Microseconds a queue thread polls before it sleeps, at most (default 30; the budget adapts below it). */
  spinUs?: number;
  /**
   * How the device's worker queues map onto queue threads (default: the
   * VIRTIO_LAB_THREADS environment variable, else 'auto'). See ThreadMapping.
   * With a shared pool, `spinUs` is the pool's.
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

/** Queue threads of another kind than the default, and what their queues start from. */
export interface QueueLauncher {
  /** The threads of a device with `numQueues` queues, and each queue's thread (its wake word is the queue's doorbell). Called once. */
  threads(numQueues: number): QueueThreads;
  /** The data a queue starts from on those threads, from the device's. */
  prepare(data: QueueWorkerData): QueueWorkerData;
}

/** A queue's ring addresses (guest-physical). */
export interface QueueAddresses {
  desc: number;
  avail: number;
  used: number;
}

/** What 'queue-error' events carry. */
export interface QueueErrorEvent {
  queue: number;
  error: VirtioLabError;
}

interface QueueSlot {
  size: number;
  desc: number;
  avail: number;
  used: number;
  enabled: boolean;
  vector: number;
  /** Where the queue resumes: set by setVringBase or saved by stopQueue; undefined: the format's start. */
  nextAvail: number | undefined;
  /** Saved by stopQueue; undefined means "read used.idx from memory" (as vhost does). */
  nextUsed: number | undefined;
  worker: QueueRunner | undefined;
}

const DRIVER_SETTABLE = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK | STATUS_FAILED;

/**
 * The main-thread control plane of one virtio device (after the vhost / vDPA
 * split): device status machine, feature negotiation, config space, queue
 * setup, and the queue threads its data queues run on (see ThreadMapping).
 * Device-specific behaviour comes from its DeviceModel.
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
  private readonly slots: QueueSlot[];
  /** Queues whose queue_reset is in progress. */
  private readonly queuesResetting = new Set<number>();
  private readonly vectorTargets: Array<{ ref: WordRef; i32: Int32Array }>;
  private resetting: Promise<void> | undefined;
  /** Microseconds a queue thread polls before it sleeps, at most. */
  readonly spinUs: number;
  private readonly launch: (data: QueueWorkerData, events: QueueWorkerEvents) => QueueRunner;
  /** Where the worker queues run. */
  private readonly threads: QueueThreads;
  /** The default launcher posts memory to workers: it must be shared. */
  private readonly sharedMemoryOnly: boolean;
  private mem: GuestMemory;

  constructor(
    readonly model: DeviceModel<Record<string, unknown>, S>,
    memory: GuestMemory,
    options: VirtioDeviceOptions = {},
  ) {
    super();
    validateQueueSize(model.maxQueueSize);
    this.spinUs = options.spinUs ?? 30;
    const launcher = options.queueLauncher;
    const threads = launcher?.threads(model.numQueues) ?? mapQueueThreads(options.threads ?? defaultThreadMapping(), model.numQueues, this.spinUs);
    this.threads = threads;
    this.launch = (data, events) => threads.pool.start(threads.threadOf[data.queue], launcher === undefined ? data : launcher.prepare(data), events);
    this.sharedMemoryOnly = launcher === undefined;
    if (this.sharedMemoryOnly) checkShared(memory);
    this.mem = memory;
    this.notify = NotifyArea.create(model.numQueues, model.numQueues + 1);
    this.stats = StatsBlock.create(model.numQueues, model.counters);
    this.slots = Array.from({ length: model.numQueues }, () => this.freshSlot());
    this.vectorTargets = Array.from({ length: this.notify.vectors }, (_, v) => this.ownVector(v));
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
    if (this.slots.some((s) => s.worker !== undefined)) throw new DeviceStatusError('guest memory can change only while no queue runs');
    if (this.sharedMemoryOnly) checkShared(memory);
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
    const mine = current & ~STATUS_DEVICE_NEEDS_RESET;
    if ((mine & ~value) !== 0) throw new DeviceStatusError(`status 0x${value.toString(16)} clears bits of 0x${mine.toString(16)}: a driver must not clear status bits (2.1.1)`);
    if ((value & ~DRIVER_SETTABLE & ~STATUS_DEVICE_NEEDS_RESET) !== 0) throw new DeviceStatusError(`status 0x${value.toString(16)} sets undefined bits`);
    const added = value & ~current & ~STATUS_DEVICE_NEEDS_RESET;
    const need = (bit: number, before: number, name: string, beforeName: string): void => {
      if ((value & bit) !== 0 && (value & before) === 0) throw new DeviceStatusError(`${name} set before ${beforeName} (3.1.1 order)`);
    };
    need(STATUS_DRIVER, STATUS_ACKNOWLEDGE, 'DRIVER', 'ACKNOWLEDGE');
    need(STATUS_FEATURES_OK, STATUS_DRIVER, 'FEATURES_OK', 'DRIVER');
    need(STATUS_DRIVER_OK, STATUS_FEATURES_OK, 'DRIVER_OK', 'FEATURES_OK');
    // DEVICE_NEEDS_RESET is the device's to set: a driver's read-modify-write may
    // carry it back, but a driver write never sets it (2.1.1).
    let next = (value & ~STATUS_DEVICE_NEEDS_RESET) | (current & STATUS_DEVICE_NEEDS_RESET);
    if ((added & STATUS_FEATURES_OK) !== 0) {
      this.lastFeatureRefusal = this.featureRefusal(this.driverFeatureBits);
      if (this.lastFeatureRefusal !== undefined) next &= ~(STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    }
    Atomics.store(this.notify.i32, this.notify.statusWord, next);
    if ((added & STATUS_DRIVER_OK) !== 0 && (next & STATUS_DRIVER_OK) !== 0) {
      for (let q = 0; q < this.slots.length; q++) if (this.slots[q].enabled) this.startQueue(q);
    }
  }

  /**
   * Reset the device (2.4): take every queue off its thread (the threads
   * stay), forget features and queue setup, and only then let status read 0.
   */
  reset(): Promise<void> {
    if (this.resetting !== undefined) return this.resetting;
    const workers = this.slots.flatMap((s) => (s.worker === undefined ? [] : [s.worker]));
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
    this.slots.forEach((_, q) => (this.slots[q] = this.freshSlot()));
    this.model.onReset?.();
    this.driverFeatureBits = 0n;
    this.lastFeatureRefusal = undefined;
    this.configVector = PCI_NO_VECTOR;
    // Vector routes are MSI-X table state (PCI), which a virtio reset leaves alone.
    for (let q = 0; q < this.slots.length; q++) Atomics.store(this.notify.i32, this.notify.controlWord(q), 0);
    Atomics.store(this.notify.i32, this.notify.statusWord, 0);
  }

  /**
   * Reset, then end the device's own queue threads (a shared pool is its
   * owner's to close). Nothing runs until a driver sets DRIVER_OK again.
   */
  async close(): Promise<void> {
    await this.reset();
    if (this.threads.owned) await this.threads.pool.close();
  }

  /** How the worker queues map onto threads, in words ("per-device", "shared pool of 2", ...). */
  get threadMapping(): string {
    return this.threads.name;
  }

  /**
   * The word that wakes whatever serves queue `q` (a driver's kick, a peer
   * channel's wake-up): the queue thread it is mapped to, or the device's
   * own doorbell for a queue the control plane serves inline (a control
   * queue). Fixed for the device's life, so a
   * driver or peer may keep it.
   */
  doorbell(q: number): WordRef {
    this.slot(q);
    if (this.model.runsInline?.(q, this.negotiatedFeatures) === true) {
      return { buffer: this.notify.spec.buffer, index: this.notify.doorbellWord(q) };
    }
    return this.threads.pool.wakeWord(this.threads.threadOf[q]);
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

  private featureRefusal(accepted: FeatureSet): string | undefined {
    const unoffered = accepted & ~this.model.features;
    if (unoffered !== 0n) return `driver accepted feature bits the device did not offer: 0x${unoffered.toString(16)}`;
    if (!hasFeature(accepted, F_VERSION_1)) return 'VIRTIO_F_VERSION_1 not accepted: this device has no legacy interface';
    return this.model.checkFeatures(accepted);
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
    this.checkVector(vector);
    this.vectorTargets[vector] = { ref: target, i32: new Int32Array(target.buffer) };
  }

  /** The word vector `vector` rings. */
  vectorTarget(vector: number): WordRef {
    this.checkVector(vector);
    return this.vectorTargets[vector].ref;
  }

  private raiseConfigInterrupt(): void {
    this.emit('config-interrupt');
    const v = this.configVector;
    if (v === PCI_NO_VECTOR) return;
    const t = this.vectorTargets[v];
    ring(t.i32, t.ref.index);
  }

  private checkVector(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.notify.vectors) {
      throw new InvalidArgumentError(`vector ${vector} out of range (device has ${this.notify.vectors})`);
    }
  }

  private ownVector(v: number): { ref: WordRef; i32: Int32Array } {
    return { ref: { buffer: this.notify.spec.buffer, index: this.notify.vectorWord(v) }, i32: this.notify.i32 };
  }

  // ---- queues (4.1.4.3, vhost-style operations) ------------------------------

  get numQueues(): number {
    return this.slots.length;
  }

  /** Current queue size (initially the maximum, 4.1.4.3.2). */
  queueSize(q: number): number {
    return this.slot(q).size;
  }

  queueAddresses(q: number): QueueAddresses {
    const s = this.slot(q);
    return { desc: s.desc, avail: s.avail, used: s.used };
  }

  queueVector(q: number): number {
    return this.slot(q).vector;
  }

  queueEnabled(q: number): boolean {
    return this.slot(q).enabled;
  }

  /** True while a worker runs queue `q`. */
  queueRunning(q: number): boolean {
    return this.slot(q).worker !== undefined;
  }

  setQueueSize(q: number, size: number): void {
    const s = this.configurable(q);
    validateQueueSize(size, this.model.maxQueueSize, hasFeature(this.negotiatedFeatures, F_RING_PACKED));
    s.size = size;
  }

  setQueueAddresses(q: number, a: Partial<QueueAddresses>): void {
    const s = this.configurable(q);
    for (const [k, v] of Object.entries(a)) {
      if (!Number.isSafeInteger(v) || (v as number) < 0) throw new InvalidArgumentError(`queue ${q} ${k} address ${v} is not a guest address`);
    }
    Object.assign(s, a);
  }

  setQueueVector(q: number, vector: number): void {
    const s = this.configurable(q);
    if (vector !== PCI_NO_VECTOR) {
      try {
        this.checkVector(vector);
      } catch (e) {
        // A failed mapping reads back as NO_VECTOR (4.1.5.1.2).
        s.vector = PCI_NO_VECTOR;
        throw e;
      }
    }
    s.vector = vector;
  }

  /**
   * vhost SET_VRING_BASE: where the device resumes reading the avail ring.
   * `nextUsed` (packed rings, as vhost-user's upper 16 bits) is where it
   * resumes writing used entries; by default the same as nextAvail for a
   * packed ring, and used.idx read from memory for a split ring.
   */
  setVringBase(q: number, nextAvail: number, nextUsed?: number): void {
    const s = this.slot(q);
    if (s.worker !== undefined) throw new DeviceStatusError(`queue ${q} is running: stop it before setting its base`);
    for (const v of [nextAvail, nextUsed ?? 0]) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidArgumentError(`vring base ${v} is not a u16`);
    }
    s.nextAvail = nextAvail;
    s.nextUsed = nextUsed;
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
    const s = this.slot(q);
    if (s.worker !== undefined) throw new DeviceStatusError(`queue ${q} is already running`);
    if ((this.status & STATUS_DRIVER_OK) === 0) throw new DeviceStatusError(`queue ${q} cannot start before DRIVER_OK`);
    const features = this.negotiatedFeatures;
    const spec = this.model.queueWorker(q, features);
    if (spec === undefined) return;
    let st: QueueState;
    try {
      st = state ?? this.configuredState(q, features);
      validateQueueState(st, this.memory);
    } catch (e) {
      // Addresses the driver programmed that cannot be a ring (QueueStateError,
      // GuestMemoryError): the device cannot run the queue (2.1.2).
      if (!(e instanceof VirtioLabError)) throw e;
      this.needsReset(q, e);
      return;
    }
    const target = (v: number): WordRef | null => (v === PCI_NO_VECTOR ? null : this.vectorTargets[v].ref);
    const onDeath = (error: QueueWorkerError): void => {
      if (s.worker !== undefined) s.worker = undefined;
      this.needsReset(q, error);
    };
    if ('inline' in spec) {
      s.worker = new InlineQueueRunner(q, this.memory, st, this.notify, this.stats, target(s.vector), spec.params, spec.inline, {
        onDeath,
        onQueueError: (error) => {
          s.worker = undefined;
          this.needsReset(q, error);
        },
      });
      return;
    }
    s.worker = this.launch(
      {
        kind: spec.kind,
        queue: q,
        memory: this.memory.specs(),
        state: st,
        notify: this.notify.spec,
        stats: this.stats.buffer,
        counters: this.stats.schema,
        interrupt: target(s.vector),
        configInterrupt: target(this.configVector),
        params: spec.params,
      },
      {
        onDeath,
        onQueueError: (m) => {
          this.emit('queue-error', { queue: q, error: new VirtqueueError(m.code as VirtqueueError['code'], m.message, m.value) } satisfies QueueErrorEvent);
          this.emit('config-interrupt');
        },
      },
    );
  }

  /**
   * Stop queue `q` after its current batch and take it off its thread; returns the
   * queue's state, from which startQueue() resumes losing and duplicating
   * nothing. A stopped queue stays enabled.
   */
  async stopQueue(q: number): Promise<QueueState> {
    const s = this.slot(q);
    const w = s.worker;
    if (w === undefined) throw new DeviceStatusError(`queue ${q} is not running`);
    const state = await w.stop();
    await w.terminate();
    s.worker = undefined;
    s.nextAvail = state.nextAvail;
    s.nextUsed = state.nextUsed;
    return state;
  }

  /**
   * Reset one queue (vhost / vDPA style; the per-queue reset of
   * VIRTIO_F_RING_RESET, 2.6.1): take it off its thread without saving state and put
   * its configuration back to the values after a device reset (size = max,
   * not enabled, no vector, base 0). The other queues keep running.
   */
  async resetQueue(q: number): Promise<void> {
    const s = this.slot(q);
    const w = s.worker;
    s.worker = undefined;
    await w?.terminate();
    this.slots[q] = this.freshSlot();
    Atomics.store(this.notify.i32, this.notify.controlWord(q), 0);
  }

  /**
   * The driver wrote 1 to queue_reset (VIRTIO_F_RING_RESET, 2.6.1): reset
   * queue `q` as resetQueue() does. queue_reset reads 1 until that is done,
   * then 0 (4.1.4.3), and the driver may set the queue up again.
   * @throws InvalidArgumentError without VIRTIO_F_RING_RESET negotiated.
   */
  requestQueueReset(q: number): void {
    this.slot(q);
    if (!hasFeature(this.negotiatedFeatures, F_RING_RESET)) throw new InvalidArgumentError(`queue_reset of queue ${q}: VIRTIO_F_RING_RESET is not negotiated`);
    if (this.queuesResetting.has(q)) return;
    this.queuesResetting.add(q);
    void this.resetQueue(q).finally(() => this.queuesResetting.delete(q));
  }

  /** Whether a queue_reset of queue `q` is still in progress. */
  queueResetting(q: number): boolean {
    return this.queuesResetting.has(q);
  }

  /**
   * Fault injection: kill queue `q`'s worker thread as a crash would. The
   * device notices, sets DEVICE_NEEDS_RESET, raises a config interrupt and
   * emits 'queue-error' with a QueueWorkerError; a reset brings it back.
   */
  async killQueueWorker(q: number): Promise<void> {
    const w = this.slot(q).worker;
    if (w === undefined) throw new DeviceStatusError(`queue ${q} is not running`);
    await w.kill();
  }

  /** A snapshot of queue `q`'s counters. */
  queueStats(q: number): QueueStats<S> {
    this.slot(q);
    // The block was laid out from model.counters, which is an S.
    return this.stats.snapshot(q) as QueueStats<S>;
  }

  private configuredState(q: number, features: FeatureSet): QueueState {
    const s = this.slot(q);
    const packed = hasFeature(features, F_RING_PACKED);
    // A fresh packed ring starts at index 0 with wrap counters 1 (2.8.1); a base
    // set for it carries the wrap counter in bit 15 and stands for used too, as in vhost.
    const nextAvail = s.nextAvail ?? (packed ? PACKED_RING_START : 0);
    // used.idx is read only where it can be: a device area outside guest memory is then
    // refused by validateQueueState as INVALID_QUEUE_STATE naming the area, like the other two.
    const nextUsed = s.nextUsed ?? (packed ? nextAvail : this.memory.contains(s.used + 2, 2) ? this.memory.readU16(s.used + 2) : 0);
    return {
      size: s.size,
      desc: s.desc,
      avail: s.avail,
      used: s.used,
      nextAvail,
      nextUsed,
      eventIdx: hasFeature(features, F_EVENT_IDX),
      indirect: hasFeature(features, F_INDIRECT_DESC),
      packed,
      inOrder: hasFeature(features, F_IN_ORDER),
    };
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

  private slot(q: number): QueueSlot {
    if (!Number.isInteger(q) || q < 0 || q >= this.slots.length) throw new InvalidArgumentError(`queue ${q} does not exist (device has ${this.slots.length})`);
    return this.slots[q];
  }

  /** A queue whose registers may be written: after FEATURES_OK, not yet enabled (3.1.1 step 7). */
  private configurable(q: number): QueueSlot {
    const s = this.slot(q);
    if ((this.status & STATUS_FEATURES_OK) === 0) throw new DeviceStatusError(`queue ${q} set up before FEATURES_OK (3.1.1)`);
    if (s.enabled) throw new DeviceStatusError(`queue ${q} is enabled: its configuration is fixed until reset`);
    return s;
  }

  private freshSlot(): QueueSlot {
    return {
      size: this.model.maxQueueSize,
      desc: 0,
      avail: 0,
      used: 0,
      enabled: false,
      vector: PCI_NO_VECTOR,
      nextAvail: undefined,
      nextUsed: undefined,
      worker: undefined,
    };
  }
}

/** workerData copies an ArrayBuffer: a queue worker would process a private copy of such memory. */
function checkShared(memory: GuestMemory): void {
  for (const r of memory.regions) {
    if (!(r.buffer instanceof SharedArrayBuffer)) {
      throw new InvalidArgumentError(`guest memory region at 0x${r.gpa.toString(16)} is not a SharedArrayBuffer: queue workers would each get a copy of it`);
    }
  }
}
