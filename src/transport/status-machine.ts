import { DeviceStatusError } from '../errors.js';
import { F_VERSION_1, type FeatureSet, hasFeature } from '../spec/features.js';
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
} from '../spec/status.js';
import type { DeviceModel } from './device-model.js';

const DRIVER_SETTABLE = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK | STATUS_FAILED;

/**
 * The device_status a driver's non-zero write `value` leads to from
 * `current`, before the device has its say on FEATURES_OK. A write may only
 * add bits, in the spec's order (2.1.1, 3.1.1).
 * @throws DeviceStatusError for a write that breaks those rules.
 */
export function statusAfterWrite(current: number, value: number): number {
  const mine = current & ~STATUS_DEVICE_NEEDS_RESET;
  if ((mine & ~value) !== 0) throw new DeviceStatusError(`status 0x${value.toString(16)} clears bits of 0x${mine.toString(16)}: a driver must not clear status bits (2.1.1)`);
  if ((value & ~DRIVER_SETTABLE & ~STATUS_DEVICE_NEEDS_RESET) !== 0) throw new DeviceStatusError(`status 0x${value.toString(16)} sets undefined bits`);
  requireBefore(value, STATUS_DRIVER, STATUS_ACKNOWLEDGE, 'DRIVER', 'ACKNOWLEDGE');
  requireBefore(value, STATUS_FEATURES_OK, STATUS_DRIVER, 'FEATURES_OK', 'DRIVER');
  requireBefore(value, STATUS_DRIVER_OK, STATUS_FEATURES_OK, 'DRIVER_OK', 'FEATURES_OK');
  // DEVICE_NEEDS_RESET is the device's to set: a driver's read-modify-write may
  // carry it back, but a driver write never sets it (2.1.1).
  return (value & ~STATUS_DEVICE_NEEDS_RESET) | (current & STATUS_DEVICE_NEEDS_RESET);
}

function requireBefore(value: number, bit: number, before: number, name: string, beforeName: string): void {
  if ((value & bit) !== 0 && (value & before) === 0) throw new DeviceStatusError(`${name} set before ${beforeName} (3.1.1 order)`);
}

/**
 * Why `model`'s device refuses the driver's `accepted` features at
 * FEATURES_OK (3.1.1 step 5), or undefined when it takes them.
 */
export function featureRefusal(model: Pick<DeviceModel, 'features' | 'checkFeatures'>, accepted: FeatureSet): string | undefined {
  const unoffered = accepted & ~model.features;
  if (unoffered !== 0n) return `driver accepted feature bits the device did not offer: 0x${unoffered.toString(16)}`;
  if (!hasFeature(accepted, F_VERSION_1)) return 'VIRTIO_F_VERSION_1 not accepted: this device has no legacy interface';
  return model.checkFeatures(accepted);
}
