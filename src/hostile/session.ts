import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { VirtioLabError } from '../errors.js';
import { GuestAllocator } from '../memory/allocator.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { ring } from '../notify/notify-area.js';
import { createQueueDriver } from '../ring/create-queue.js';
import type { QueueState } from '../ring/queue-state.js';
import type { VirtqDriver } from '../ring/virtqueue.js';
import { F_RING_PACKED, type FeatureSet, bit } from '../spec/features.js';
import { PciCommonConfig } from '../transport/pci-common-config.js';
import { PciDriver } from '../transport/pci-driver.js';
import type { QueueErrorEvent } from '../transport/virtio-device.js';
import type { QueueStats } from '../stats/queue-stats.js';
import type { ExpectedCounter } from './hostile-case.js';
import type { HostileDevice, HostileTarget, RingFormat } from './hostile-target.js';
import { RawRing } from './raw-ring.js';

/** How long a session waits for the device to show an effect before it calls it missing. */
export const EFFECT_TIMEOUT_MS = 2000;
/** Event-loop turns an effect is looked for before waiting in 1 ms sleeps. */
const IMMEDIATE_TURNS = 2000;

/** How HostileSession.up() brings a device up. */
export interface UpOptions {
  /** Features to accept beyond the target's. */
  add?: FeatureSet;
  /** A queue to leave for `beforeDriverOk` to set up (or not). */
  skipQueue?: number;
  /** Runs after queue setup, before DRIVER_OK. */
  beforeDriverOk?: (driver: PciDriver<HostileDevice>) => void;
}

/**
 * One case's view of the device under test (the `ctx` of HostileCase.run):
 * the PCI register window, the driver's allocator, queue states after
 * bring-up, raw pens and honest drivers per queue, and everything the device
 * reported while the session ran (queue errors, refused register writes).
 */
export class HostileSession {
  readonly device: HostileDevice;
  readonly memory: GuestMemory;
  readonly pci: PciCommonConfig<HostileDevice>;
  readonly alloc: GuestAllocator;
  /** Queue errors the device emitted since the session began. */
  readonly queueErrors: QueueErrorEvent[] = [];
  /** Named errors of the control plane: register writes it refused, features it refused. */
  readonly controlErrors: VirtioLabError[] = [];
  /** Per queue, after up(): its state as the driver laid it out. */
  states: QueueState[] = [];
  private readonly raws = new Map<number, RawRing>();
  private readonly drivers = new Map<number, VirtqDriver>();
  /** Receive buffers posted by receiveInto(), by queue (buffer id = index). */
  private readonly rxBuffers = new Map<number, { gpa: number[]; bytes: number }>();
  private readonly onQueueError = (e: QueueErrorEvent): void => {
    this.queueErrors.push(e);
  };

  constructor(
    readonly target: HostileTarget,
    readonly ring: RingFormat,
  ) {
    this.device = target.device;
    this.memory = target.device.memory;
    this.pci = new PciCommonConfig(target.device);
    this.alloc = new GuestAllocator(this.memory);
    this.device.on('queue-error', this.onQueueError);
  }

  /** The features the driver accepts for this ring format, with `add`. */
  wanted(add: FeatureSet = 0n): FeatureSet {
    const base = this.ring === 'packed' ? this.target.features | bit(F_RING_PACKED) : this.target.features & ~bit(F_RING_PACKED);
    return base | add;
  }

  /** A PciDriver over this session's register window and allocator. */
  driver(): PciDriver<HostileDevice> {
    return new PciDriver(this.pci, this.memory, this.alloc);
  }

  /**
   * Bring the device up from reset as a correct driver would (3.1.1):
   * negotiate (`add`: features beyond the target's), lay out every queue but
   * `skipQueue`, run `beforeDriverOk` (where a lie on setup goes), DRIVER_OK.
   * Receive buffers are the probe's to post, so a case may lie on a receive ring.
   */
  async up(options: UpOptions = {}): Promise<void> {
    this.forget();
    this.alloc.reset();
    const d = this.driver();
    await d.negotiate(this.wanted(options.add));
    this.states = [];
    for (let q = 0; q < this.device.numQueues; q++) {
      if (q !== options.skipQueue) this.states[q] = d.setupQueue(q, { size: this.target.queueSize });
    }
    options.beforeDriverOk?.(d);
    d.driverOk();
  }

  /** Reset the device and wait until status reads 0 (the worker threads are gone then). */
  async reset(): Promise<void> {
    this.forget();
    await this.driver().reset();
  }

  /** The raw pen on queue `q` (one per bring-up). */
  raw(q: number): RawRing {
    let r = this.raws.get(q);
    if (r === undefined) this.raws.set(q, (r = new RawRing(this.memory, this.states[q], () => this.kick(q))));
    return r;
  }

  /**
   * An honest driver for queue `q` (one per bring-up). After a lie the
   * device survived, it goes on where the raw pen stopped.
   */
  honest(q: number): VirtqDriver {
    let d = this.drivers.get(q);
    if (d === undefined) {
      const at = this.raws.get(q)?.position();
      const state = at === undefined ? this.states[q] : { ...this.states[q], nextAvail: at, nextUsed: at };
      this.drivers.set(q, (d = createQueueDriver(this.memory, state)));
    }
    return d;
  }

  /** True when every raw pen outside `broken` has had all its chains used. */
  rawSettled(broken: ReadonlySet<number>): boolean {
    for (const [q, r] of this.raws) if (!broken.has(q) && !r.settled()) return false;
    return true;
  }

  /** Ring queue `q`'s doorbell. */
  kick(q: number): void {
    const word = this.device.doorbell(q);
    ring(new Int32Array(word.buffer), word.index);
  }

  /** A common-config register write; a refusal is recorded in controlErrors. */
  write(offset: number, width: number, value: number): void {
    const before = this.pci.lastRejected;
    this.pci.write(offset, width, value);
    if (this.pci.lastRejected !== before && this.pci.lastRejected !== undefined) this.controlErrors.push(this.pci.lastRejected);
  }

  /** Run a control-plane call that a lying driver expects to fail; a named error is recorded, anything else rethrown. */
  attempt(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof VirtioLabError)) throw e;
      this.controlErrors.push(e);
    }
  }

  /** Poll `done` (yielding to the event loop) until it holds or `ms` pass; returns whether it held. */
  async until(done: () => boolean, ms = EFFECT_TIMEOUT_MS): Promise<boolean> {
    const end = Date.now() + ms;
    // Most effects land within a wake-up (tens of microseconds): look again on
    // the next turn of the event loop first, and fall back to 1 ms sleeps
    // (timers cost a millisecond each, which capped the fuzzer near 20 cases/s).
    for (let turns = 0; !done(); turns++) {
      if (Date.now() > end) return false;
      await (turns < IMMEDIATE_TURNS ? setImmediate() : sleep(1));
    }
    return true;
  }

  /**
   * A counter of queue `q` (picked from queueStats) as an expectation
   * measured from now. `T` is the snapshot of the target's device
   * (NetQueueStats, VsockQueueStats) when `pick` reads its own counters.
   */
  counter<T extends QueueStats = QueueStats>(name: string, q: number, pick: (s: T) => number, bounds: { min?: number; max?: number } = {}): ExpectedCounter {
    // The case names the device kind it applies to, so its snapshot is a T.
    const read = (): number => pick(this.device.queueStats(q) as T);
    const before = read();
    return { name: `queue ${q} ${name}`, delta: () => read() - before, ...bounds };
  }

  /** Copy `bytes` into a fresh buffer in guest memory; returns its guest address. */
  buffer(bytes: Uint8Array | number): number {
    const len = typeof bytes === 'number' ? bytes : bytes.length;
    const gpa = this.alloc.alloc(Math.max(len, 1), 16);
    if (typeof bytes !== 'number') this.memory.write(gpa, bytes);
    return gpa;
  }

  /**
   * Keep `count` receive buffers of `bytes` posted on honest queue `q`;
   * hand a copy of each one the device has used to `take`, posting it again,
   * until `take` returns true (then returns true) or none is left.
   */
  receiveInto(q: number, count: number, bytes: number, take: (data: Uint8Array) => boolean): boolean {
    const d = this.honest(q);
    let bufs = this.rxBuffers.get(q);
    if (bufs === undefined || d.pending === 0) {
      bufs = { gpa: Array.from({ length: count }, () => this.buffer(bytes)), bytes };
      this.rxBuffers.set(q, bufs);
      bufs.gpa.forEach((gpa, i) => d.addBuffer(gpa, bytes, true, i));
      d.publish();
      this.kick(q);
    }
    for (let i = d.getUsed(); i >= 0; i = d.getUsed()) {
      const data = new Uint8Array(d.usedLen);
      this.memory.read(bufs.gpa[i], data);
      d.addBuffer(bufs.gpa[i], bufs.bytes, true, i);
      d.publish();
      this.kick(q);
      if (take(data)) return true;
    }
    return false;
  }

  /** Stop listening to the device. */
  end(): void {
    this.device.off('queue-error', this.onQueueError);
  }

  private forget(): void {
    this.raws.clear();
    this.drivers.clear();
    this.rxBuffers.clear();
  }
}
