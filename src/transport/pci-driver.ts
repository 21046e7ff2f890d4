import { setImmediate as tick } from 'node:timers/promises';
import { DeviceStatusError, FeatureNegotiationError, InvalidArgumentError } from '../errors.js';
import type { GuestAllocator } from '../memory/allocator.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { WordRef } from '../notify/notify-area.js';
import type { QueueState } from '../ring/queue-state.js';
import { PACKED_RING_START, packedDescBytes } from '../ring/packed-layout.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_IN_ORDER, F_RING_PACKED, type FeatureSet, bit, hasFeature } from '../spec/features.js';
import * as R from '../spec/pci.js';
import {
  PACKED_DESC_ALIGN,
  PACKED_EVENT_ALIGN,
  PACKED_EVENT_SIZE,
  SPLIT_AVAIL_ALIGN,
  SPLIT_DESC_ALIGN,
  SPLIT_USED_ALIGN,
  splitAvailBytes,
  splitDescBytes,
  splitUsedBytes,
} from '../spec/ring.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../spec/status.js';
import type { CommonConfigDevice, PciCommonConfig } from './pci-common-config.js';
import type { VirtioDevice } from './virtio-device.js';

/** How a driver wants one queue laid out. */
export interface DriverQueueOptions {
  /** Queue size (a power of two no larger than the device's); default the device's maximum. */
  size?: number;
  /** MSI-X vector for the queue's interrupts; default none (the driver polls). */
  vector?: number;
}

/**
 * The driver's half of device initialization (3.1.1), done the way a guest
 * does it: through the common config registers, in the spec's order. It lays
 * the rings out in guest memory with the driver's allocator and returns each
 * queue's state for the driver-side ring (createQueueDriver).
 */
export class PciDriver<D extends CommonConfigDevice = VirtioDevice> {
  /** Features in force after negotiate(). */
  features: FeatureSet = 0n;

  constructor(
    readonly pci: PciCommonConfig<D>,
    readonly memory: GuestMemory,
    readonly alloc: GuestAllocator,
  ) {}

  private get status(): number {
    return this.pci.read(R.PCI_DEVICE_STATUS, 1);
  }

  private addStatus(bits: number): void {
    this.pci.write(R.PCI_DEVICE_STATUS, 1, this.status | bits);
  }

  /** Write 0 and wait until the device reads back 0 (4.1.4.3.2). */
  async reset(): Promise<void> {
    this.pci.write(R.PCI_DEVICE_STATUS, 1, 0);
    while (this.status !== 0) await tick();
  }

  /**
   * Reset, ACKNOWLEDGE, DRIVER, read the offered features, accept
   * `wanted & offered` (less VIRTIO_F_IN_ORDER unless VIRTIO_F_RING_PACKED
   * is in it too), FEATURES_OK, and re-read it to learn whether the device
   * agreed (3.1.1 steps 1-6).
   * @throws FeatureNegotiationError when the device refused the set.
   */
  async negotiate(wanted: FeatureSet): Promise<FeatureSet> {
    await this.reset();
    this.addStatus(STATUS_ACKNOWLEDGE);
    this.addStatus(STATUS_DRIVER);
    let offered = 0n;
    for (let sel = 0; sel < 4; sel++) {
      this.pci.write(R.PCI_DEVICE_FEATURE_SELECT, 4, sel);
      offered |= BigInt(this.pci.read(R.PCI_DEVICE_FEATURE, 4)) << BigInt(32 * sel);
    }
    let accepted = wanted & offered;
    // 2.7.5: with IN_ORDER a split driver must use descriptors in table order; the
    // split driver here takes them from a free list, so it takes IN_ORDER only with packed rings.
    if (!hasFeature(accepted, F_RING_PACKED)) accepted &= ~bit(F_IN_ORDER);
    for (let sel = 0; sel < 4; sel++) {
      this.pci.write(R.PCI_DRIVER_FEATURE_SELECT, 4, sel);
      this.pci.write(R.PCI_DRIVER_FEATURE, 4, Number((accepted >> BigInt(32 * sel)) & 0xffffffffn));
    }
    this.addStatus(STATUS_FEATURES_OK);
    if ((this.status & STATUS_FEATURES_OK) === 0) {
      throw new FeatureNegotiationError(`device refused features 0x${accepted.toString(16)}: ${this.pci.device.lastFeatureRefusal ?? 'no reason given'}`);
    }
    this.features = accepted;
    return accepted;
  }

  /** Route an MSI-X vector to a shared word (the MSI-X table entry). */
  routeVector(vector: number, target: WordRef): void {
    this.pci.device.routeVector(vector, target);
  }

  /** Set the config-change vector. */
  setConfigVector(vector: number): void {
    this.writeChecked(R.PCI_CONFIG_MSIX_VECTOR, 2, vector, `config vector ${vector} not mapped`);
  }

  /**
   * Write a register and read it back: a device refuses a write by keeping
   * (or, for a vector, clearing) the value, and the driver must check
   * (4.1.5.1.2). Throws `error` with the device's reason.
   */
  private writeChecked(reg: number, width: number, value: number, what: string, error: new (m: string) => Error = InvalidArgumentError): void {
    this.pci.write(reg, width, value);
    if (this.pci.read(reg, width) !== value) throw new error(`${what}: ${this.pci.lastRejected?.message ?? 'unknown reason'}`);
  }

  /**
   * Lay out queue `q` in guest memory, program its registers and enable it
   * (3.1.1 step 7): a split ring (descriptor table, avail ring, used ring), or
   * with VIRTIO_F_RING_PACKED a packed ring (descriptor ring and the driver and
   * device event suppression structures, 2.8.10).
   */
  setupQueue(q: number, options: DriverQueueOptions = {}): QueueState {
    const pci = this.pci;
    pci.write(R.PCI_QUEUE_SELECT, 2, q);
    const max = pci.read(R.PCI_QUEUE_SIZE, 2);
    if (max === 0) throw new FeatureNegotiationError(`queue ${q} is not available on this device`);
    // An enabled queue ignores every register write: laying out new rings would hand back a state the device does not use.
    if (pci.read(R.PCI_QUEUE_ENABLE, 2) !== 0) throw new DeviceStatusError(`queue ${q} is already enabled: reset the device to set it up again`);
    const size = Math.min(options.size ?? max, max);
    this.writeChecked(R.PCI_QUEUE_SIZE, 2, size, `queue ${q} size ${size} refused`);
    const packed = hasFeature(this.features, F_RING_PACKED);
    const desc = packed ? this.zeroed(packedDescBytes(size), PACKED_DESC_ALIGN) : this.zeroed(splitDescBytes(size), SPLIT_DESC_ALIGN);
    const avail = packed ? this.zeroed(PACKED_EVENT_SIZE, PACKED_EVENT_ALIGN) : this.zeroed(splitAvailBytes(size), SPLIT_AVAIL_ALIGN);
    const used = packed ? this.zeroed(PACKED_EVENT_SIZE, PACKED_EVENT_ALIGN) : this.zeroed(splitUsedBytes(size), SPLIT_USED_ALIGN);
    const start = packed ? PACKED_RING_START : 0;
    for (const [reg, gpa] of [[R.PCI_QUEUE_DESC, desc], [R.PCI_QUEUE_DRIVER, avail], [R.PCI_QUEUE_DEVICE, used]] as const) {
      pci.write(reg, 4, gpa >>> 0);
      pci.write(reg + 4, 4, Math.floor(gpa / 0x1_0000_0000));
    }
    const vector = options.vector ?? R.PCI_NO_VECTOR;
    this.writeChecked(R.PCI_QUEUE_MSIX_VECTOR, 2, vector, `queue ${q} vector ${vector} not mapped`);
    this.writeChecked(R.PCI_QUEUE_ENABLE, 2, 1, `queue ${q} did not enable`, FeatureNegotiationError);
    return {
      size,
      desc,
      avail,
      used,
      nextAvail: start,
      nextUsed: start,
      eventIdx: hasFeature(this.features, F_EVENT_IDX),
      indirect: hasFeature(this.features, F_INDIRECT_DESC),
      packed,
      inOrder: hasFeature(this.features, F_IN_ORDER),
    };
  }

  /**
   * Reset one queue (VIRTIO_F_RING_RESET, 2.6.1): write 1 to queue_reset and
   * wait until it reads 0 again (4.1.4.3.2). The queue is then as after a
   * device reset; setupQueue() brings it back.
   */
  async resetQueue(q: number): Promise<void> {
    const pci = this.pci;
    pci.write(R.PCI_QUEUE_SELECT, 2, q);
    const rejected = pci.lastRejected;
    pci.write(R.PCI_QUEUE_RESET, 2, 1);
    if (pci.lastRejected !== rejected) throw new InvalidArgumentError(`queue ${q} reset refused: ${pci.lastRejected?.message}`);
    while (pci.read(R.PCI_QUEUE_RESET, 2) !== 0) await tick();
  }

  /** DRIVER_OK: the device goes live (3.1.1 step 8). */
  driverOk(): void {
    this.addStatus(STATUS_DRIVER_OK);
  }

  private zeroed(len: number, align: number): number {
    const gpa = this.alloc.alloc(len, align);
    this.memory.fill(gpa, 0, len);
    return gpa;
  }
}
