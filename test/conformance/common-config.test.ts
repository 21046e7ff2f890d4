import { describe, expect, it } from 'vitest';
import { DeviceStatusError, InvalidArgumentError, PciCommonConfig, QueueStateError } from '../../src/index.js';
import * as R from '../../src/spec/index.js';
import { PCI_NO_VECTOR } from '../../src/spec/pci.js';
import { STAGE_DRIVER, STAGE_FEATURES_OK, bringTo, expectRejectedWrite, netRig, readStatus, rejections } from './harness.js';

/** struct virtio_pci_common_cfg (virtio 1.2, 4.1.4.3): [constant, offset, width in bytes]. */
const LAYOUT: ReadonlyArray<readonly [name: keyof typeof R, offset: number, width: number]> = [
  ['PCI_DEVICE_FEATURE_SELECT', 0, 4],
  ['PCI_DEVICE_FEATURE', 4, 4],
  ['PCI_DRIVER_FEATURE_SELECT', 8, 4],
  ['PCI_DRIVER_FEATURE', 12, 4],
  ['PCI_CONFIG_MSIX_VECTOR', 16, 2],
  ['PCI_NUM_QUEUES', 18, 2],
  ['PCI_DEVICE_STATUS', 20, 1],
  ['PCI_CONFIG_GENERATION', 21, 1],
  ['PCI_QUEUE_SELECT', 22, 2],
  ['PCI_QUEUE_SIZE', 24, 2],
  ['PCI_QUEUE_MSIX_VECTOR', 26, 2],
  ['PCI_QUEUE_ENABLE', 28, 2],
  ['PCI_QUEUE_NOTIFY_OFF', 30, 2],
  ['PCI_QUEUE_DESC', 32, 8],
  ['PCI_QUEUE_DRIVER', 40, 8],
  ['PCI_QUEUE_DEVICE', 48, 8],
  ['PCI_QUEUE_NOTIFY_DATA', 56, 2],
  ['PCI_QUEUE_RESET', 58, 2],
];

/** Every access unit of the structure: 64-bit fields are two 32-bit halves (4.1.3). */
type Unit = readonly [name: string, offset: number, width: number];
const UNITS: readonly Unit[] = LAYOUT.flatMap(([name, offset, width]): Unit[] =>
  width === 8 ? [[`${name} low`, offset, 4], [`${name} high`, offset + 4, 4]] : [[name, offset, width]],
);

/**
 * Read-write registers: the stage at which the driver may write them, a
 * value, and for queue registers queue_select = 1 first.
 */
const WRITABLE: ReadonlyArray<{ name: string; offset: number; width: number; stage: number; value: number; queue?: boolean }> = [
  { name: 'device_feature_select', offset: 0, width: 4, stage: 0, value: 3 },
  { name: 'driver_feature_select', offset: 8, width: 4, stage: 0, value: 2 },
  { name: 'driver_feature (select 0)', offset: 12, width: 4, stage: STAGE_DRIVER, value: 0x3000_0020 },
  { name: 'config_msix_vector', offset: 16, width: 2, stage: 0, value: 2 },
  { name: 'device_status', offset: 20, width: 1, stage: 0, value: R.STATUS_ACKNOWLEDGE },
  { name: 'queue_select', offset: 22, width: 2, stage: 0, value: 1 },
  { name: 'queue_size', offset: 24, width: 2, stage: STAGE_FEATURES_OK, value: 64, queue: true },
  { name: 'queue_msix_vector', offset: 26, width: 2, stage: STAGE_FEATURES_OK, value: 1, queue: true },
  { name: 'queue_enable', offset: 28, width: 2, stage: STAGE_FEATURES_OK, value: 1, queue: true },
  { name: 'queue_desc low', offset: 32, width: 4, stage: STAGE_FEATURES_OK, value: 0x1230, queue: true },
  { name: 'queue_desc high', offset: 36, width: 4, stage: STAGE_FEATURES_OK, value: 0x7, queue: true },
  { name: 'queue_driver low', offset: 40, width: 4, stage: STAGE_FEATURES_OK, value: 0x2002, queue: true },
  { name: 'queue_driver high', offset: 44, width: 4, stage: STAGE_FEATURES_OK, value: 0x1f_ffff, queue: true },
  { name: 'queue_device low', offset: 48, width: 4, stage: STAGE_FEATURES_OK, value: 0xffff_fffc, queue: true },
  { name: 'queue_device high', offset: 52, width: 4, stage: STAGE_FEATURES_OK, value: 0x1, queue: true },
];

/** Read-only for the driver (queue_reset has its own tests below: it is writable with VIRTIO_F_RING_RESET). */
const READ_ONLY: ReadonlyArray<{ name: string; offset: number; width: number; expected: (rig: ReturnType<typeof netRig>) => number }> = [
  { name: 'device_feature', offset: 4, width: 4, expected: (r) => Number(r.device.deviceFeatures & 0xffffffffn) },
  { name: 'num_queues', offset: 18, width: 2, expected: (r) => r.device.numQueues },
  { name: 'config_generation', offset: 21, width: 1, expected: (r) => r.device.configGeneration },
  { name: 'queue_notify_off', offset: 30, width: 2, expected: () => 1 },
  { name: 'queue_notify_data', offset: 56, width: 2, expected: () => 1 },
];

/** A rig at FEATURES_OK with queue_select = q, where every queue register is writable. */
function queueRig(q = 0, features?: R.FeatureSet) {
  const rig = netRig();
  bringTo(rig.pci, STAGE_FEATURES_OK, features ?? rig.device.deviceFeatures);
  rig.pci.write(R.PCI_QUEUE_SELECT, 2, q);
  return rig;
}

/** The per-queue registers of the selected queue, as read through the window. */
function queueRegisters(pci: PciCommonConfig): number[] {
  return [24, 26, 28, 32, 36, 40, 44, 48, 52].map((off) => pci.read(off, off >= 32 ? 4 : 2));
}

describe('4.1.4.3 common configuration structure layout', () => {
  it('4.1.4.3: the register offsets in src/spec/pci.ts are those of struct virtio_pci_common_cfg', () => {
    for (const [name, offset] of LAYOUT) expect(R[name], name).toBe(offset);
    expect(R.PCI_COMMON_CFG_SIZE).toBe(60);
    expect(PCI_NO_VECTOR).toBe(0xffff);
  });

  it('4.1.4.3 / 5.1.2: num_queues reads the number of queues of the device (receiveq, transmitq, controlq)', () => {
    const { pci, device } = netRig();
    expect(pci.read(R.PCI_NUM_QUEUES, 2)).toBe(3);
    expect(device.numQueues).toBe(3);
  });

  for (const w of WRITABLE) {
    it(`4.1.4.3: ${w.name} (offset ${w.offset}, ${w.width} bytes) reads back what the driver wrote`, () => {
      const { pci } = netRig();
      bringTo(pci, w.stage);
      if (w.queue === true) pci.write(R.PCI_QUEUE_SELECT, 2, 1);
      expect(pci.read(w.offset, w.width)).not.toBe(w.value);
      pci.write(w.offset, w.width, w.value);
      expect(rejections(pci), pci.lastRejected?.message).toBe(0);
      expect(pci.read(w.offset, w.width)).toBe(w.value);
      if (w.queue === true) {
        // It was queue 1's register: queue 0's is untouched.
        pci.write(R.PCI_QUEUE_SELECT, 2, 0);
        expect(pci.read(w.offset, w.width)).not.toBe(w.value);
      }
    });
  }

  for (const r of READ_ONLY) {
    it(`4.1.4.3.1: ${r.name} (offset ${r.offset}) is read-only: a driver write is rejected and it keeps its value`, () => {
      const rig = queueRig(1);
      const value = r.expected(rig);
      expect(rig.pci.read(r.offset, r.width)).toBe(value);
      expectRejectedWrite(rig.pci, r.offset, r.width, value ^ 1, 'INVALID_ARGUMENT');
      expect(rig.pci.read(r.offset, r.width)).toBe(value);
      expect(rig.pci.lastRejected).toBeInstanceOf(InvalidArgumentError);
    });
  }

  it('4.1.3: every register read at a width other than its own reads 0, and such a write is rejected', () => {
    const rig = queueRig(0);
    const { pci } = rig;
    pci.write(R.PCI_CONFIG_MSIX_VECTOR, 2, 1);
    for (const [name, offset, width] of UNITS) {
      const right = pci.read(offset, width);
      for (const wrong of [1, 2, 4, 8].filter((x) => x !== width)) {
        expect(pci.read(offset, wrong), `${name} read as ${wrong} bytes`).toBe(0);
        expectRejectedWrite(pci, offset, wrong, 1, 'INVALID_ARGUMENT');
      }
      expect(pci.read(offset, width), `${name} after wrong-width writes`).toBe(right);
    }
    // The registers the wrong-width reads hid are really non-zero.
    expect(pci.read(R.PCI_QUEUE_SIZE, 2)).toBe(256);
    expect(pci.read(R.PCI_DEVICE_STATUS, 1)).toBe(STAGE_FEATURES_OK);
    expect(readStatus(pci)).toBe(STAGE_FEATURES_OK);
  });

  it('4.1.3: an access that does not start at a register reads 0 and its write is rejected', () => {
    const { pci } = queueRig(0);
    const starts = new Set(UNITS.map(([, o]) => o));
    for (let offset = 0; offset < 64; offset++) {
      if (starts.has(offset)) continue;
      for (const width of [1, 2, 4]) {
        expect(pci.read(offset, width), `read ${width}@${offset}`).toBe(0);
        expectRejectedWrite(pci, offset, width, 0, 'INVALID_ARGUMENT');
      }
    }
    expect(readStatus(pci)).toBe(STAGE_FEATURES_OK);
  });
});

describe('4.1.4.3 queue registers', () => {
  it('4.1.4.3.2: queue_size reads the maximum after reset and 0 for a queue_select past num_queues', () => {
    const { pci, device } = netRig({ queueSize: 128 });
    for (let q = 0; q < device.numQueues; q++) {
      pci.write(R.PCI_QUEUE_SELECT, 2, q);
      expect(pci.read(R.PCI_QUEUE_SIZE, 2)).toBe(128);
    }
    for (const q of [device.numQueues, device.numQueues + 1, 0xffff]) {
      pci.write(R.PCI_QUEUE_SELECT, 2, q);
      expect(pci.read(R.PCI_QUEUE_SELECT, 2)).toBe(q);
      expect(pci.read(R.PCI_QUEUE_SIZE, 2), `queue ${q}`).toBe(0);
      expect(pci.read(R.PCI_QUEUE_ENABLE, 2)).toBe(0);
      expect(pci.read(R.PCI_QUEUE_MSIX_VECTOR, 2)).toBe(PCI_NO_VECTOR);
      for (const off of [32, 36, 40, 44, 48, 52]) expect(pci.read(off, 4)).toBe(0);
    }
  });

  it('4.1.4.3.2: writes to the registers of a queue past num_queues are rejected', () => {
    const { pci } = queueRig(3);
    for (const [off, width, value] of [[24, 2, 64], [26, 2, 0], [28, 2, 1], [32, 4, 0x1000], [44, 4, 0]]) {
      expectRejectedWrite(pci, off, width, value, 'INVALID_ARGUMENT');
    }
    expect(pci.read(R.PCI_QUEUE_SIZE, 2)).toBe(0);
  });

  const ADDRESSES: ReadonlyArray<readonly [field: 'desc' | 'avail' | 'used', offset: number, value: number]> = [
    ['desc', R.PCI_QUEUE_DESC, 0x1_2345_6780],
    ['avail', R.PCI_QUEUE_DRIVER, 0x1f_ffff_ffff_fffe],
    ['used', R.PCI_QUEUE_DEVICE, 0xffff_fffc],
  ];
  for (const order of ['low half first', 'high half first'] as const) {
    it(`4.1.3: 64-bit queue addresses written as two 32-bit halves (${order}) read back`, () => {
      const { pci, device } = queueRig(1);
      for (const [, offset, value] of ADDRESSES) {
        const lo = value >>> 0;
        const hi = Math.floor(value / 2 ** 32);
        const halves: Array<[number, number]> = [[offset, lo], [offset + 4, hi]];
        for (const [o, v] of order === 'low half first' ? halves : halves.reverse()) pci.write(o, 4, v);
        expect(pci.read(offset, 4)).toBe(lo);
        expect(pci.read(offset + 4, 4)).toBe(hi);
      }
      expect(rejections(pci)).toBe(0);
      expect(device.queueAddresses(1)).toEqual(Object.fromEntries(ADDRESSES.map(([f, , v]) => [f, v])));
      expect(device.queueAddresses(0)).toEqual({ desc: 0, avail: 0, used: 0 });
    });
  }

  it('4.1.3: rewriting one half of a queue address keeps the other half', () => {
    const { pci, device } = queueRig(0);
    pci.write(R.PCI_QUEUE_DESC, 4, 0x1000);
    pci.write(R.PCI_QUEUE_DESC + 4, 4, 0x5);
    pci.write(R.PCI_QUEUE_DESC, 4, 0x2000);
    expect(device.queueAddresses(0).desc).toBe(5 * 2 ** 32 + 0x2000);
    pci.write(R.PCI_QUEUE_DESC + 4, 4, 0);
    expect(device.queueAddresses(0).desc).toBe(0x2000);
  });

  it('4.1.4.3.1: queue_size takes only a power of two no larger than the maximum (split ring: VIRTIO_F_RING_PACKED not negotiated)', () => {
    const splitOnly = netRig().device.deviceFeatures & ~R.bit(R.F_RING_PACKED);
    const { pci, device } = queueRig(0, splitOnly);
    for (const bad of [0, 3, 6, 100, 255, 257, 512, 0x8000, 0xffff]) {
      expectRejectedWrite(pci, R.PCI_QUEUE_SIZE, 2, bad, 'INVALID_QUEUE_STATE');
      expect(pci.read(R.PCI_QUEUE_SIZE, 2), `after ${bad}`).toBe(256);
    }
    expect(pci.lastRejected).toBeInstanceOf(QueueStateError);
    for (const good of [1, 2, 4, 128, 256, 16]) {
      pci.write(R.PCI_QUEUE_SIZE, 2, good);
      expect(pci.read(R.PCI_QUEUE_SIZE, 2)).toBe(good);
      expect(device.queueSize(0)).toBe(good);
    }
  });

  it('2.8.10.1 / 4.1.4.3.2: with VIRTIO_F_RING_PACKED negotiated queue_size takes any size from 1 to the maximum, a power of two or not', () => {
    const { pci, device } = queueRig(0, netRig().device.deviceFeatures | R.bit(R.F_RING_PACKED));
    expect(R.hasFeature(device.negotiatedFeatures, R.F_RING_PACKED)).toBe(true);
    for (const good of [1, 3, 5, 100, 255, 256, 7]) {
      pci.write(R.PCI_QUEUE_SIZE, 2, good);
      expect(pci.read(R.PCI_QUEUE_SIZE, 2), `size ${good}`).toBe(good);
      expect(device.queueSize(0)).toBe(good);
    }
    for (const bad of [0, 257, 0x8000, 0xffff]) {
      expectRejectedWrite(pci, R.PCI_QUEUE_SIZE, 2, bad, 'INVALID_QUEUE_STATE');
      expect(pci.read(R.PCI_QUEUE_SIZE, 2), `after ${bad}`).toBe(7);
    }
  });

  for (const [name, stage] of [['reset', 0], ['ACKNOWLEDGE', R.STATUS_ACKNOWLEDGE], ['DRIVER', STAGE_DRIVER]] as const) {
    it(`3.1.1 step 7: queue registers are rejected before FEATURES_OK (stage ${name})`, () => {
      const { pci } = netRig();
      bringTo(pci, stage);
      pci.write(R.PCI_QUEUE_SELECT, 2, 0);
      const before = queueRegisters(pci);
      for (const [off, width, value] of [[24, 2, 64], [26, 2, 1], [28, 2, 1], [32, 4, 0x1000], [36, 4, 1], [40, 4, 0x2000], [44, 4, 1], [48, 4, 0x3000], [52, 4, 1]]) {
        expectRejectedWrite(pci, off, width, value, 'INVALID_DEVICE_STATUS');
      }
      expect(pci.lastRejected).toBeInstanceOf(DeviceStatusError);
      expect(queueRegisters(pci)).toEqual(before);
      expect(readStatus(pci)).toBe(stage);
    });
  }

  it('4.1.4.3: a queue\'s registers are fixed once queue_enable is 1, other queues stay writable', () => {
    const { pci, device } = queueRig(0);
    pci.write(R.PCI_QUEUE_SIZE, 2, 64);
    pci.write(R.PCI_QUEUE_ENABLE, 2, 1);
    expect(pci.read(R.PCI_QUEUE_ENABLE, 2)).toBe(1);
    const before = queueRegisters(pci);
    for (const [off, width, value] of [[24, 2, 32], [26, 2, 1], [28, 2, 1], [32, 4, 0x1000], [36, 4, 1], [40, 4, 0x2000], [44, 4, 1], [48, 4, 0x3000], [52, 4, 1]]) {
      expectRejectedWrite(pci, off, width, value, 'INVALID_DEVICE_STATUS');
    }
    expect(queueRegisters(pci)).toEqual(before);
    expect(device.queueSize(0)).toBe(64);
    pci.write(R.PCI_QUEUE_SELECT, 2, 1);
    pci.write(R.PCI_QUEUE_SIZE, 2, 32);
    expect(pci.read(R.PCI_QUEUE_SIZE, 2)).toBe(32);
    expect(device.queueRunning(0)).toBe(false);
  });

  it('4.1.4.3.1: a queue_enable write of 0 is rejected, before and after enabling', () => {
    const { pci, device } = queueRig(0);
    expectRejectedWrite(pci, R.PCI_QUEUE_ENABLE, 2, 0, 'INVALID_ARGUMENT');
    expect(pci.read(R.PCI_QUEUE_ENABLE, 2)).toBe(0);
    expectRejectedWrite(pci, R.PCI_QUEUE_ENABLE, 2, 2, 'INVALID_ARGUMENT');
    pci.write(R.PCI_QUEUE_ENABLE, 2, 1);
    expectRejectedWrite(pci, R.PCI_QUEUE_ENABLE, 2, 0, 'INVALID_ARGUMENT');
    expect(pci.read(R.PCI_QUEUE_ENABLE, 2)).toBe(1);
    expect(device.queueEnabled(0)).toBe(true);
  });
});

describe('4.1.5.1.2 MSI-X vector configuration', () => {
  it('4.1.5.1.2: config_msix_vector and queue_msix_vector take every vector of the table and NO_VECTOR', () => {
    const { pci, device } = queueRig(1);
    for (const v of [...Array.from({ length: device.notify.vectors }, (_, i) => i), PCI_NO_VECTOR]) {
      pci.write(R.PCI_CONFIG_MSIX_VECTOR, 2, v);
      expect(pci.read(R.PCI_CONFIG_MSIX_VECTOR, 2)).toBe(v);
      expect(device.configVector).toBe(v);
      pci.write(R.PCI_QUEUE_MSIX_VECTOR, 2, v);
      expect(pci.read(R.PCI_QUEUE_MSIX_VECTOR, 2)).toBe(v);
      expect(device.queueVector(1)).toBe(v);
    }
    expect(rejections(pci)).toBe(0);
  });

  for (const [name, offset] of [['config_msix_vector', R.PCI_CONFIG_MSIX_VECTOR], ['queue_msix_vector', R.PCI_QUEUE_MSIX_VECTOR]] as const) {
    it(`4.1.5.1.2: a failed ${name} mapping reads back NO_VECTOR, not the previous vector`, () => {
      const { pci, device } = queueRig(0);
      for (const bad of [device.notify.vectors, 0x7ff, 0xfffe]) {
        pci.write(offset, 2, 1);
        expect(pci.read(offset, 2)).toBe(1);
        expectRejectedWrite(pci, offset, 2, bad, 'INVALID_ARGUMENT');
        expect(pci.read(offset, 2), `after mapping ${bad}`).toBe(PCI_NO_VECTOR);
      }
    });
  }

  it('4.1.5.1.2: PciDriver.setConfigVector verifies the mapping by reading it back', () => {
    const { driver, pci, device } = queueRig(0);
    driver.setConfigVector(1);
    expect(pci.read(R.PCI_CONFIG_MSIX_VECTOR, 2)).toBe(1);
    expect(() => driver.setConfigVector(device.notify.vectors)).toThrow(InvalidArgumentError);
    expect(pci.read(R.PCI_CONFIG_MSIX_VECTOR, 2)).toBe(PCI_NO_VECTOR);
  });
});

describe('register width and MSI-X routes', () => {
  it('4.1.3: a write holds only the register width: 0x10000 written to the 2-byte queue_select selects queue 0', () => {
    const { pci } = netRig();
    bringTo(pci, STAGE_FEATURES_OK);
    pci.write(R.PCI_QUEUE_SELECT, 2, 0x1_0001);
    expect(pci.read(R.PCI_QUEUE_SELECT, 2)).toBe(1);
    expect(pci.read(R.PCI_QUEUE_SIZE, 2)).toBe(pci.device.queueSize(1));
  });

  it('4.1.5.1.2: MSI-X table routes survive a device reset (they are PCI state, not virtio state)', async () => {
    const { pci, driver } = netRig();
    const word = { buffer: new SharedArrayBuffer(64), index: 3 };
    driver.routeVector(1, word);
    await driver.reset();
    expect(pci.device.vectorTarget(1)).toBe(word);
  });

  describe('2.6.1 / 4.1.4.3: queue_reset (VIRTIO_F_RING_RESET)', () => {
    it('without VIRTIO_F_RING_RESET negotiated a queue_reset write is rejected and it reads 0', () => {
      const rig = netRig();
      bringTo(rig.pci, STAGE_FEATURES_OK, rig.device.deviceFeatures & ~R.bit(R.F_RING_RESET));
      rig.pci.write(R.PCI_QUEUE_SELECT, 2, 0);
      expectRejectedWrite(rig.pci, R.PCI_QUEUE_RESET, 2, 1, 'INVALID_ARGUMENT');
      expect(rig.pci.read(R.PCI_QUEUE_RESET, 2)).toBe(0);
    });

    it('with it, writing 1 resets only the selected queue: queue_reset reads 1 until done, then 0; queue_enable 0, size max, addresses 0; the queue can be set up again', async () => {
      const rig = netRig();
      bringTo(rig.pci, STAGE_FEATURES_OK);
      const q0 = rig.driver.setupQueue(0, { size: 64 });
      const q1 = rig.driver.setupQueue(1, { size: 32 });
      rig.pci.write(R.PCI_QUEUE_SELECT, 2, 1);
      rig.pci.write(R.PCI_QUEUE_RESET, 2, 1);
      expect(rig.pci.read(R.PCI_QUEUE_RESET, 2)).toBe(1);
      expectRejectedWrite(rig.pci, R.PCI_QUEUE_RESET, 2, 2, 'INVALID_ARGUMENT');
      while (rig.pci.read(R.PCI_QUEUE_RESET, 2) !== 0) await new Promise((r) => setImmediate(r));
      expect([rig.pci.read(R.PCI_QUEUE_ENABLE, 2), rig.pci.read(R.PCI_QUEUE_SIZE, 2), rig.device.queueAddresses(1).desc]).toEqual([0, rig.device.queueSize(1), 0]);
      // Queue 0 is untouched.
      expect([rig.device.queueEnabled(0), rig.device.queueSize(0), rig.device.queueAddresses(0).desc]).toEqual([true, 64, q0.desc]);
      // Set up again, as after a device reset.
      const again = rig.driver.setupQueue(1, { size: 16 });
      expect(rig.device.queueEnabled(1)).toBe(true);
      expect(again.size).toBe(16);
      expect(again.desc).not.toBe(q1.desc);
    });

    it('PciDriver.resetQueue() writes queue_reset and waits for 0', async () => {
      const rig = netRig();
      bringTo(rig.pci, STAGE_FEATURES_OK);
      rig.driver.setupQueue(0, { size: 64 });
      await rig.driver.resetQueue(0);
      expect(rig.device.queueEnabled(0)).toBe(false);
      expect(rig.pci.read(R.PCI_QUEUE_RESET, 2)).toBe(0);
    });
  });
});
