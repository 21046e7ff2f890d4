import { DeviceStatusError, InvalidArgumentError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { NotifyArea } from '../notify/notify-area.js';
import { PACKED_RING_START } from '../ring/packed-layout.js';
import type { QueueState } from '../ring/queue-state.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_IN_ORDER, F_RING_PACKED, type FeatureSet, hasFeature } from '../spec/features.js';
import { PCI_NO_VECTOR } from '../spec/pci.js';
import type { QueueRunner } from './queue-runner.js';
import type { VectorTable } from './vector-table.js';

/** A queue's ring addresses (guest-physical). */
export interface QueueAddresses {
  desc: number;
  avail: number;
  used: number;
}

/** One queue's registers (4.1.4.3), where it resumes, and what runs it. */
export interface QueueSlot extends QueueAddresses {
  size: number;
  enabled: boolean;
  vector: number;
  /** Where the queue resumes: set by setVringBase or saved by stop; undefined: the format's start. */
  nextAvail: number | undefined;
  /** Saved by stop; undefined means "read used.idx from memory" (as vhost does). */
  nextUsed: number | undefined;
  worker: QueueRunner | undefined;
}

/**
 * A device's queues: each one's configuration and base, the runner serving
 * it, and the parts of a queue's life cycle that do not depend on the
 * device status (stop saving state, per-queue reset, vring base). The
 * device checks status before it calls these (3.1.1).
 */
export class QueueSlots {
  private readonly slots: QueueSlot[];
  /** Queues whose queue_reset is in progress. */
  private readonly resetting = new Set<number>();

  constructor(
    count: number,
    private readonly maxSize: number,
    private readonly notify: NotifyArea,
  ) {
    this.slots = Array.from({ length: count }, () => this.fresh());
  }

  get count(): number {
    return this.slots.length;
  }

  /** Queue q's slot. @throws InvalidArgumentError for a queue the device does not have. */
  get(q: number): QueueSlot {
    if (!Number.isInteger(q) || q < 0 || q >= this.slots.length) throw new InvalidArgumentError(`queue ${q} does not exist (device has ${this.slots.length})`);
    return this.slots[q];
  }

  /** The runners of the queues that run. */
  runners(): QueueRunner[] {
    return this.slots.flatMap((s) => (s.worker === undefined ? [] : [s.worker]));
  }

  /** Every queue back to its values after a device reset (no runner is left), its control word 0. */
  clear(): void {
    for (let q = 0; q < this.slots.length; q++) this.clearOne(q);
  }

  /** Set some of queue q's ring addresses. @throws InvalidArgumentError for one that is not a guest address. */
  setAddresses(q: number, a: Partial<QueueAddresses>): void {
    const s = this.get(q);
    for (const [k, v] of Object.entries(a)) {
      if (!Number.isSafeInteger(v) || (v as number) < 0) throw new InvalidArgumentError(`queue ${q} ${k} address ${v} is not a guest address`);
    }
    Object.assign(s, a);
  }

  /** Map queue q's interrupts to `vector` of `vectors` (or NO_VECTOR). @throws InvalidArgumentError for a vector there is not. */
  setVector(q: number, vector: number, vectors: VectorTable): void {
    const s = this.get(q);
    if (vector !== PCI_NO_VECTOR) {
      try {
        vectors.check(vector);
      } catch (e) {
        // A failed mapping reads back as NO_VECTOR (4.1.5.1.2).
        s.vector = PCI_NO_VECTOR;
        throw e;
      }
    }
    s.vector = vector;
  }

  /** vhost SET_VRING_BASE (see VirtioDevice.setVringBase). */
  setVringBase(q: number, nextAvail: number, nextUsed?: number): void {
    const s = this.get(q);
    if (s.worker !== undefined) throw new DeviceStatusError(`queue ${q} is running: stop it before setting its base`);
    for (const v of [nextAvail, nextUsed ?? 0]) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidArgumentError(`vring base ${v} is not a u16`);
    }
    s.nextAvail = nextAvail;
    s.nextUsed = nextUsed;
  }

  /** Stop queue q after its current batch, end its runner, keep its state as the base. */
  async stop(q: number): Promise<QueueState> {
    const s = this.get(q);
    const w = s.worker;
    if (w === undefined) throw new DeviceStatusError(`queue ${q} is not running`);
    const state = await w.stop();
    await w.terminate();
    s.worker = undefined;
    s.nextAvail = state.nextAvail;
    s.nextUsed = state.nextUsed;
    return state;
  }

  /** End queue q's runner without saving state and put its configuration back as after a device reset. */
  async reset(q: number): Promise<void> {
    const s = this.get(q);
    const w = s.worker;
    s.worker = undefined;
    await w?.terminate();
    this.clearOne(q);
  }

  /** reset(q) in the background, once at a time; queue_reset reads 1 meanwhile (4.1.4.3). */
  requestReset(q: number): void {
    if (this.resetting.has(q)) return;
    this.resetting.add(q);
    void this.reset(q).finally(() => this.resetting.delete(q));
  }

  /** Whether a requestReset of queue q is still in progress. */
  isResetting(q: number): boolean {
    return this.resetting.has(q);
  }

  /** Fault injection: kill queue q's runner as a crash would. */
  async kill(q: number): Promise<void> {
    const w = this.get(q).worker;
    if (w === undefined) throw new DeviceStatusError(`queue ${q} is not running`);
    await w.kill();
  }

  /** The state queue q starts from: its configuration and base, under `features`. */
  configuredState(q: number, features: FeatureSet, memory: GuestMemory): QueueState {
    const s = this.get(q);
    const packed = hasFeature(features, F_RING_PACKED);
    // A fresh packed ring starts at index 0 with wrap counters 1 (2.8.1); a base
    // set for it carries the wrap counter in bit 15 and stands for used too, as in vhost.
    const nextAvail = s.nextAvail ?? (packed ? PACKED_RING_START : 0);
    // used.idx is read only where it can be: a device area outside guest memory is then
    // refused by validateQueueState as INVALID_QUEUE_STATE naming the area, like the other two.
    const nextUsed = s.nextUsed ?? (packed ? nextAvail : memory.contains(s.used + 2, 2) ? memory.readU16(s.used + 2) : 0);
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

  private clearOne(q: number): void {
    this.slots[q] = this.fresh();
    Atomics.store(this.notify.i32, this.notify.controlWord(q), 0);
  }

  private fresh(): QueueSlot {
    return { size: this.maxSize, desc: 0, avail: 0, used: 0, enabled: false, vector: PCI_NO_VECTOR, nextAvail: undefined, nextUsed: undefined, worker: undefined };
  }
}
