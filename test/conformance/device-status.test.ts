import { describe, expect, it } from 'vitest';
import { DeviceStatusError } from '../../src/index.js';
import { bit } from '../../src/spec/features.js';
import { PCI_CONFIG_MSIX_VECTOR, PCI_DEVICE_STATUS, PCI_NO_VECTOR, PCI_QUEUE_DESC, PCI_QUEUE_DEVICE, PCI_QUEUE_DRIVER, PCI_QUEUE_ENABLE, PCI_QUEUE_MSIX_VECTOR, PCI_QUEUE_SELECT, PCI_QUEUE_SIZE } from '../../src/spec/pci.js';
import { STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED, STATUS_FEATURES_OK } from '../../src/spec/status.js';
import {
  STAGES,
  STAGE_ACK,
  STAGE_DRIVER,
  STAGE_DRIVER_OK,
  STAGE_FEATURES_OK,
  bringTo,
  expectRejectedWrite,
  netRig,
  readDriverFeatures,
  readStatus,
  rejections,
  thrown,
  writeDriverFeatures,
  writeStatus,
} from './harness.js';

/** Writes the device must refuse, from the stage the driver has reached. */
const OUT_OF_ORDER: ReadonlyArray<{ rule: string; from: number; write: number }> = [
  { rule: '3.1.1: DRIVER before ACKNOWLEDGE is rejected', from: 0, write: STATUS_DRIVER },
  { rule: '3.1.1: FEATURES_OK before DRIVER is rejected', from: STAGE_ACK, write: STAGE_ACK | STATUS_FEATURES_OK },
  { rule: '3.1.1: DRIVER_OK before FEATURES_OK is rejected', from: STAGE_DRIVER, write: STAGE_DRIVER | STATUS_DRIVER_OK },
  { rule: '3.1.1: DRIVER_OK straight after ACKNOWLEDGE is rejected', from: STAGE_ACK, write: STAGE_ACK | STATUS_DRIVER_OK },
  { rule: '3.1.1: FEATURES_OK as the first write is rejected', from: 0, write: STATUS_FEATURES_OK },
  { rule: '2.1: reserved status bit 0x10 cannot be set', from: STAGE_ACK, write: STAGE_ACK | 0x10 },
  { rule: '2.1: reserved status bit 0x20 cannot be set', from: STAGE_ACK, write: STAGE_ACK | 0x20 },
];

/**
 * From DRIVER_OK (no queue enabled), every write that drops one bit; then
 * clears that keep the order rules intact, so that only the clear is wrong.
 */
const CLEARING = [
  ...[STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK, STATUS_DRIVER_OK].map((b) => ({
    rule: `2.1.1: the driver must not clear status bit 0x${b.toString(16)}`,
    from: STAGE_DRIVER_OK,
    write: STAGE_DRIVER_OK & ~b,
  })),
  { rule: '2.1.1: the driver must not clear FEATURES_OK (back to DRIVER)', from: STAGE_FEATURES_OK, write: STAGE_DRIVER },
  { rule: '2.1.1: the driver must not clear DRIVER (back to ACKNOWLEDGE)', from: STAGE_DRIVER, write: STAGE_ACK },
  { rule: '2.1.1: the driver must not clear ACKNOWLEDGE and DRIVER while setting FAILED', from: STAGE_DRIVER, write: STATUS_FAILED },
];

describe('2.1 device status: order of the driver\'s writes', () => {
  it('3.1.1: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK in order are each accepted (VirtioDevice.setStatus)', () => {
    const { device } = netRig();
    for (const [, stage] of STAGES.slice(1)) {
      if ((stage & STATUS_FEATURES_OK) !== 0 && (stage & STATUS_DRIVER_OK) === 0) device.setDriverFeatures(device.deviceFeatures);
      device.setStatus(stage);
      expect(device.status).toBe(stage);
    }
    expect(device.negotiatedFeatures).toBe(device.deviceFeatures);
  });

  it('3.1.1: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK in order are each accepted (common config)', () => {
    const { pci } = netRig();
    bringTo(pci, STAGE_DRIVER_OK);
    expect(readStatus(pci)).toBe(STAGE_DRIVER_OK);
    expect(rejections(pci)).toBe(0);
  });

  for (const c of [...OUT_OF_ORDER, ...CLEARING]) {
    it(`${c.rule} (VirtioDevice.setStatus throws DeviceStatusError, status unchanged)`, () => {
      const { device, pci } = netRig();
      bringTo(pci, c.from);
      const err = thrown(() => device.setStatus(c.write));
      expect(err).toBeInstanceOf(DeviceStatusError);
      expect((err as DeviceStatusError).code).toBe('INVALID_DEVICE_STATUS');
      expect(device.status).toBe(c.from);
    });

    it(`${c.rule} (common config write ignored and counted, status unchanged)`, () => {
      const { pci } = netRig();
      bringTo(pci, c.from);
      expectRejectedWrite(pci, PCI_DEVICE_STATUS, 1, c.write, 'INVALID_DEVICE_STATUS');
      expect(pci.lastRejected).toBeInstanceOf(DeviceStatusError);
      expect(readStatus(pci)).toBe(c.from);
    });
  }

  it('2.1.1: rewriting the bits already set is not a clear and is accepted', () => {
    const { pci } = netRig();
    bringTo(pci, STAGE_DRIVER_OK);
    writeStatus(pci, STAGE_DRIVER_OK);
    expect(readStatus(pci)).toBe(STAGE_DRIVER_OK);
    expect(rejections(pci)).toBe(0);
  });

  for (const [name, stage] of STAGES) {
    it(`2.1: FAILED may be set by the driver at stage ${name}`, () => {
      const { device, pci } = netRig();
      bringTo(pci, stage);
      device.setStatus(stage | STATUS_FAILED);
      expect(device.status).toBe(stage | STATUS_FAILED);
      writeStatus(pci, stage | STATUS_FAILED);
      expect(readStatus(pci)).toBe(stage | STATUS_FAILED);
      expect(rejections(pci)).toBe(0);
    });
  }

  it('2.1.1: after FAILED the driver resets, and status reads 0', () => {
    const { pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    writeStatus(pci, STAGE_DRIVER | STATUS_FAILED);
    writeStatus(pci, 0);
    expect(readStatus(pci)).toBe(0);
  });
});

describe('2.1 device status: DEVICE_NEEDS_RESET belongs to the device', () => {
  for (const [name, stage] of STAGES.slice(1)) {
    it(`2.1.1: a driver write cannot set DEVICE_NEEDS_RESET (at stage ${name})`, () => {
      const { device, pci } = netRig();
      bringTo(pci, stage);
      writeStatus(pci, stage | STATUS_DEVICE_NEEDS_RESET);
      expect(readStatus(pci)).toBe(stage);
      device.setStatus(stage | STATUS_DEVICE_NEEDS_RESET);
      expect(device.status).toBe(stage);
    });
  }

  it('2.1.2: DEVICE_NEEDS_RESET set by the device survives the driver\'s writes and only reset clears it', () => {
    const { device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    // The device side (a queue worker) sets the bit in the shared status word.
    Atomics.or(device.notify.i32, device.notify.statusWord, STATUS_DEVICE_NEEDS_RESET);
    expect(readStatus(pci)).toBe(STAGE_DRIVER | STATUS_DEVICE_NEEDS_RESET);
    // A driver that writes only its own bits does not clear it...
    writeStatus(pci, STAGE_DRIVER);
    expect(readStatus(pci)).toBe(STAGE_DRIVER | STATUS_DEVICE_NEEDS_RESET);
    // ...nor does a read-modify-write that carries it back.
    writeStatus(pci, readStatus(pci) | STATUS_FAILED);
    expect(readStatus(pci)).toBe(STAGE_DRIVER | STATUS_FAILED | STATUS_DEVICE_NEEDS_RESET);
    expect(rejections(pci)).toBe(0);
    writeStatus(pci, 0);
    expect(readStatus(pci)).toBe(0);
  });
});

describe('2.4 / 4.1.4.3.2 device reset', () => {
  for (const [name, stage] of STAGES.slice(1)) {
    it(`4.1.4.3.2: writing 0 to device_status at stage ${name} resets the device and status reads 0`, async () => {
      const { device, pci } = netRig();
      bringTo(pci, stage);
      writeStatus(pci, 0);
      expect(readStatus(pci)).toBe(0);
      await device.reset();
      expect(device.status).toBe(0);
      expect(rejections(pci)).toBe(0);
    });
  }

  it('2.4: after reset the driver starts again from ACKNOWLEDGE', () => {
    const { device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER_OK);
    writeStatus(pci, 0);
    expect(() => device.setStatus(STATUS_DRIVER)).toThrow(DeviceStatusError);
    expect(() => device.setDriverFeatures(device.deviceFeatures)).toThrow(DeviceStatusError);
    bringTo(pci, STAGE_DRIVER_OK);
    expect(device.negotiatedFeatures).toBe(device.deviceFeatures);
  });

  it('2.4 / 4.1.4.3.2: reset returns features and queue configuration to their defaults', () => {
    const { device, pci } = netRig({ features: fourWordOffer() });
    const max = device.model.maxQueueSize;
    bringTo(pci, STAGE_FEATURES_OK, device.deviceFeatures);
    pci.write(PCI_CONFIG_MSIX_VECTOR, 2, 0);
    for (let q = 0; q < device.numQueues; q++) {
      pci.write(PCI_QUEUE_SELECT, 2, q);
      pci.write(PCI_QUEUE_SIZE, 2, 16);
      for (const [i, reg] of [PCI_QUEUE_DESC, PCI_QUEUE_DRIVER, PCI_QUEUE_DEVICE].entries()) {
        pci.write(reg, 4, 0x1000 * (i + 1));
        pci.write(reg + 4, 4, 1);
      }
      pci.write(PCI_QUEUE_MSIX_VECTOR, 2, q + 1);
      pci.write(PCI_QUEUE_ENABLE, 2, 1);
      expect(pci.read(PCI_QUEUE_ENABLE, 2)).toBe(1);
    }
    expect(rejections(pci)).toBe(0);
    expect(device.negotiatedFeatures).not.toBe(0n);

    writeStatus(pci, 0);

    expect(readStatus(pci)).toBe(0);
    expect(device.driverFeatures).toBe(0n);
    expect(readDriverFeatures(pci)).toBe(0n);
    expect(device.negotiatedFeatures).toBe(0n);
    expect(device.lastFeatureRefusal).toBeUndefined();
    expect(pci.read(PCI_CONFIG_MSIX_VECTOR, 2)).toBe(PCI_NO_VECTOR);
    for (let q = 0; q < device.numQueues; q++) {
      pci.write(PCI_QUEUE_SELECT, 2, q);
      expect(pci.read(PCI_QUEUE_SIZE, 2), `queue ${q} size`).toBe(max);
      expect(pci.read(PCI_QUEUE_ENABLE, 2), `queue ${q} enable`).toBe(0);
      expect(pci.read(PCI_QUEUE_MSIX_VECTOR, 2), `queue ${q} vector`).toBe(PCI_NO_VECTOR);
      for (const reg of [PCI_QUEUE_DESC, PCI_QUEUE_DRIVER, PCI_QUEUE_DEVICE]) {
        expect(pci.read(reg, 4), `queue ${q} offset ${reg} low`).toBe(0);
        expect(pci.read(reg + 4, 4), `queue ${q} offset ${reg} high`).toBe(0);
      }
      expect(device.queueAddresses(q)).toEqual({ desc: 0, avail: 0, used: 0 });
      expect(device.queueEnabled(q)).toBe(false);
      expect(device.queueRunning(q)).toBe(false);
    }
  });

  it('2.4: a refusal reason does not outlive reset', () => {
    const { device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    writeDriverFeatures(pci, 0n);
    writeStatus(pci, STAGE_FEATURES_OK);
    expect(device.lastFeatureRefusal).toBeDefined();
    writeStatus(pci, 0);
    expect(device.lastFeatureRefusal).toBeUndefined();
  });
});

/** An offer with a bit in each of the four feature words, so that reset has every word to clear. */
function fourWordOffer(): bigint {
  return bit(5) | bit(32) | bit(64 + 3) | bit(96 + 31);
}
