import { InvalidArgumentError, VirtioLabError } from '../errors.js';
import * as R from '../spec/pci.js';
import type { VirtioDevice } from './virtio-device.js';

const TWO_32 = 0x1_0000_0000;

/** Width in bytes of each register, by offset; 64-bit registers are two 32-bit halves. */
const WIDTH: Record<number, number> = {
  [R.PCI_DEVICE_FEATURE_SELECT]: 4,
  [R.PCI_DEVICE_FEATURE]: 4,
  [R.PCI_DRIVER_FEATURE_SELECT]: 4,
  [R.PCI_DRIVER_FEATURE]: 4,
  [R.PCI_CONFIG_MSIX_VECTOR]: 2,
  [R.PCI_NUM_QUEUES]: 2,
  [R.PCI_DEVICE_STATUS]: 1,
  [R.PCI_CONFIG_GENERATION]: 1,
  [R.PCI_QUEUE_SELECT]: 2,
  [R.PCI_QUEUE_SIZE]: 2,
  [R.PCI_QUEUE_MSIX_VECTOR]: 2,
  [R.PCI_QUEUE_ENABLE]: 2,
  [R.PCI_QUEUE_NOTIFY_OFF]: 2,
  [R.PCI_QUEUE_DESC]: 4,
  [R.PCI_QUEUE_DESC + 4]: 4,
  [R.PCI_QUEUE_DRIVER]: 4,
  [R.PCI_QUEUE_DRIVER + 4]: 4,
  [R.PCI_QUEUE_DEVICE]: 4,
  [R.PCI_QUEUE_DEVICE + 4]: 4,
  [R.PCI_QUEUE_NOTIFY_DATA]: 2,
  [R.PCI_QUEUE_RESET]: 2,
};

/**
 * What the register window and PciDriver use of a device: a VirtioDevice, or
 * any device model with the same control-plane surface (HostileDriver drives
 * such devices through this window).
 */
export type CommonConfigDevice = Pick<
  VirtioDevice,
  | 'deviceFeatures'
  | 'driverFeatures'
  | 'setDriverFeatures'
  | 'lastFeatureRefusal'
  | 'configVector'
  | 'configGeneration'
  | 'numQueues'
  | 'notify'
  | 'status'
  | 'setStatus'
  | 'routeVector'
  | 'queueSize'
  | 'setQueueSize'
  | 'queueVector'
  | 'setQueueVector'
  | 'queueEnabled'
  | 'enableQueue'
  | 'queueAddresses'
  | 'setQueueAddresses'
  | 'queueResetting'
  | 'requestQueueReset'
>;

/**
 * The virtio-pci common configuration structure (4.1.4.3) as a register
 * window over a VirtioDevice, for emulators that decode guest MMIO by offset.
 * Reads never fail (an unknown offset reads 0). A write the device must
 * reject (out of order, bad value, read-only register) is ignored and counted
 * in `rejectedWrites` by error code; `lastRejected` keeps the last reason.
 */
export class PciCommonConfig<D extends CommonConfigDevice = VirtioDevice> {
  private deviceFeatureSelect = 0;
  private driverFeatureSelect = 0;
  private queueSelect = 0;
  readonly rejectedWrites = new Map<string, number>();
  lastRejected: VirtioLabError | undefined;

  constructor(readonly device: D) {}

  read(offset: number, width: number): number {
    if (WIDTH[offset] !== width) return 0;
    const d = this.device;
    const q = this.queueSelect;
    const inRange = q < d.numQueues;
    switch (offset) {
      case R.PCI_DEVICE_FEATURE_SELECT:
        return this.deviceFeatureSelect;
      case R.PCI_DEVICE_FEATURE:
        return featureWord(d.deviceFeatures, this.deviceFeatureSelect);
      case R.PCI_DRIVER_FEATURE_SELECT:
        return this.driverFeatureSelect;
      case R.PCI_DRIVER_FEATURE:
        return featureWord(d.driverFeatures, this.driverFeatureSelect);
      case R.PCI_CONFIG_MSIX_VECTOR:
        return d.configVector;
      case R.PCI_NUM_QUEUES:
        return d.numQueues;
      case R.PCI_DEVICE_STATUS:
        return d.status;
      case R.PCI_CONFIG_GENERATION:
        return d.configGeneration;
      case R.PCI_QUEUE_SELECT:
        return q;
      // A queue_select past num_queues reads queue_size 0: "queue unavailable" (4.1.4.3.2).
      case R.PCI_QUEUE_SIZE:
        return inRange ? d.queueSize(q) : 0;
      case R.PCI_QUEUE_MSIX_VECTOR:
        return inRange ? d.queueVector(q) : R.PCI_NO_VECTOR;
      case R.PCI_QUEUE_ENABLE:
        return inRange && d.queueEnabled(q) ? 1 : 0;
      case R.PCI_QUEUE_NOTIFY_OFF:
      case R.PCI_QUEUE_NOTIFY_DATA:
        return inRange ? q : 0;
      case R.PCI_QUEUE_RESET:
        return inRange && d.queueResetting(q) ? 1 : 0;
      default:
        return inRange ? this.addressHalf(offset) : 0;
    }
  }

  write(offset: number, width: number, value: number): void {
    try {
      // A register holds only its width: cut the value as the bus would.
      this.apply(offset, width, width === 4 ? value >>> 0 : value & ((1 << (8 * width)) - 1));
    } catch (e) {
      if (!(e instanceof VirtioLabError)) throw e;
      this.rejectedWrites.set(e.code, (this.rejectedWrites.get(e.code) ?? 0) + 1);
      this.lastRejected = e;
    }
  }

  private apply(offset: number, width: number, value: number): void {
    if (WIDTH[offset] !== width) throw new InvalidArgumentError(`no ${width}-byte register at common config offset ${offset}`);
    const d = this.device;
    const q = this.queueSelect;
    switch (offset) {
      case R.PCI_DEVICE_FEATURE_SELECT:
        this.deviceFeatureSelect = value;
        return;
      case R.PCI_DRIVER_FEATURE_SELECT:
        this.driverFeatureSelect = value;
        return;
      case R.PCI_DRIVER_FEATURE: {
        // Feature bits stop at 127: a select past 3 names no word (and a huge one no bigint).
        if (this.driverFeatureSelect > 3) throw new InvalidArgumentError(`driver_feature_select ${this.driverFeatureSelect} is past the 4 feature words`);
        const shift = BigInt(32 * this.driverFeatureSelect);
        const mask = 0xffffffffn << shift;
        d.setDriverFeatures((d.driverFeatures & ~mask) | (BigInt(value) << shift));
        return;
      }
      case R.PCI_CONFIG_MSIX_VECTOR:
        if (value !== R.PCI_NO_VECTOR && value >= d.notify.vectors) {
          // A failed mapping reads back as NO_VECTOR (4.1.5.1.2).
          d.configVector = R.PCI_NO_VECTOR;
          throw new InvalidArgumentError(`config vector ${value} out of range`);
        }
        d.configVector = value;
        return;
      case R.PCI_DEVICE_STATUS:
        d.setStatus(value);
        return;
      case R.PCI_QUEUE_SELECT:
        this.queueSelect = value;
        return;
      case R.PCI_QUEUE_SIZE:
        d.setQueueSize(q, value);
        return;
      case R.PCI_QUEUE_MSIX_VECTOR:
        d.setQueueVector(q, value);
        return;
      case R.PCI_QUEUE_ENABLE:
        // Writing 0 is not a way to stop a queue (4.1.4.3.2); queue_reset is.
        if (value !== 1) throw new InvalidArgumentError(`queue_enable write of ${value}: only 1 is allowed`);
        d.enableQueue(q);
        return;
      case R.PCI_QUEUE_DESC:
      case R.PCI_QUEUE_DESC + 4:
      case R.PCI_QUEUE_DRIVER:
      case R.PCI_QUEUE_DRIVER + 4:
      case R.PCI_QUEUE_DEVICE:
      case R.PCI_QUEUE_DEVICE + 4:
        this.writeAddressHalf(offset, value);
        return;
      case R.PCI_QUEUE_RESET:
        // 4.1.4.3.2: with VIRTIO_F_RING_RESET the driver writes 1 to reset the selected queue.
        if (value !== 1) throw new InvalidArgumentError(`queue_reset write of ${value}: only 1 is allowed`);
        d.requestQueueReset(q);
        return;
      default:
        throw new InvalidArgumentError(`common config offset ${offset} is read-only`);
    }
  }

  private addressField(offset: number): { key: 'desc' | 'avail' | 'used'; high: boolean } {
    const base = offset & ~7;
    const key = base === R.PCI_QUEUE_DESC ? 'desc' : base === R.PCI_QUEUE_DRIVER ? 'avail' : 'used';
    return { key, high: (offset & 4) !== 0 };
  }

  private addressHalf(offset: number): number {
    const { key, high } = this.addressField(offset);
    const a = this.device.queueAddresses(this.queueSelect)[key];
    return high ? Math.floor(a / TWO_32) : a >>> 0;
  }

  private writeAddressHalf(offset: number, value: number): void {
    const { key, high } = this.addressField(offset);
    const a = this.device.queueAddresses(this.queueSelect)[key];
    const lo = high ? a >>> 0 : value;
    const hi = high ? value : Math.floor(a / TWO_32);
    this.device.setQueueAddresses(this.queueSelect, { [key]: hi * TWO_32 + lo });
  }
}

function featureWord(features: bigint, select: number): number {
  if (select > 3) return 0;
  return Number((features >> BigInt(32 * select)) & 0xffffffffn);
}
