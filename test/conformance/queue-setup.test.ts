import { describe, expect, it } from 'vitest';
import { DeviceStatusError, FeatureNegotiationError, InvalidArgumentError, NET_DEVICE_FEATURES, QueueStateError } from '../../src/index.js';
import { PACKED_RING_START } from '../../src/ring/packed-layout.js';
import { type QueueState, validateQueueState } from '../../src/ring/queue-state.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_RING_PACKED, F_VERSION_1, bit } from '../../src/spec/features.js';
import { PCI_NO_VECTOR, PCI_QUEUE_DESC, PCI_QUEUE_DEVICE, PCI_QUEUE_DRIVER, PCI_QUEUE_ENABLE, PCI_QUEUE_MSIX_VECTOR, PCI_QUEUE_SELECT, PCI_QUEUE_SIZE } from '../../src/spec/pci.js';
import { PACKED_DESC_ALIGN, PACKED_EVENT_ALIGN, PACKED_EVENT_SIZE, SPLIT_AVAIL_ALIGN, SPLIT_DESC_ALIGN, SPLIT_USED_ALIGN, splitAvailBytes, splitDescBytes, splitUsedBytes } from '../../src/spec/ring.js';
import { GUEST_BYTES, STAGE_DRIVER, STAGE_FEATURES_OK, bringTo, netRig, readStatus } from './harness.js';

/** Guest memory at a non-zero guest address, so that "inside memory" is not "non-negative". */
const GPA = 0x4_0000;
const PATTERN = 0xa5;

/**
 * The three areas of a state: [name, address, bytes, alignment] (2.7
 * "Virtqueue Part Alignment"; packed 2.8.10.1: the descriptor ring and two
 * 4-byte event suppression structures).
 */
function areas(s: QueueState): Array<[string, number, number, number]> {
  if (s.packed === true) {
    return [
      ['descriptor ring', s.desc, 16 * s.size, PACKED_DESC_ALIGN],
      ['driver event suppression', s.avail, PACKED_EVENT_SIZE, PACKED_EVENT_ALIGN],
      ['device event suppression', s.used, PACKED_EVENT_SIZE, PACKED_EVENT_ALIGN],
    ];
  }
  return [
    ['descriptor table', s.desc, splitDescBytes(s.size), SPLIT_DESC_ALIGN],
    ['driver area', s.avail, splitAvailBytes(s.size), SPLIT_AVAIL_ALIGN],
    ['device area', s.used, splitUsedBytes(s.size), SPLIT_USED_ALIGN],
  ];
}

/**
 * A rig negotiated with `features`, guest memory filled with a pattern, and
 * the driver's allocator left at an odd address so that every area has to be
 * aligned up. Queues are set up but DRIVER_OK is never written.
 */
/** Everything the NIC offers but the packed format: the split-ring tests. */
const SPLIT_FEATURES = NET_DEVICE_FEATURES & ~bit(F_RING_PACKED);

async function setupRig(features = SPLIT_FEATURES) {
  const rig = netRig({ gpa: GPA });
  rig.memory.fill(GPA, PATTERN, GUEST_BYTES);
  await rig.driver.negotiate(features);
  rig.alloc.alloc(3, 1);
  expect(rig.alloc.free % 2, 'allocator left at an odd address').toBe(1);
  return rig;
}

describe('2.7 / 3.1.1 step 7: PciDriver.setupQueue', () => {
  it('2.7: spec alignments are desc 16, avail 2, used 4, with sizes 16n, 6+2n, 6+8n', () => {
    expect([SPLIT_DESC_ALIGN, SPLIT_AVAIL_ALIGN, SPLIT_USED_ALIGN]).toEqual([16, 2, 4]);
    expect([splitDescBytes(8), splitAvailBytes(8), splitUsedBytes(8)]).toEqual([128, 22, 70]);
  });

  for (const [rule, format, features] of [
    ['2.7', 'split', SPLIT_FEATURES],
    ['2.8', 'packed', NET_DEVICE_FEATURES],
  ] as const)
  for (const size of [1, 2, 8, 64, 256]) {
    it(`${rule}: setupQueue(size ${size}) lays out aligned, disjoint, zeroed ${format} rings inside guest memory`, async () => {
      const { driver, memory, pci, device } = await setupRig(features);
      const state = driver.setupQueue(1, { size });
      expect(state.size).toBe(size);
      expect(state.packed).toBe(format === 'packed');
      const parts = areas(state);
      for (const [name, gpa, len, align] of parts) {
        expect(gpa % align, `${name} at 0x${gpa.toString(16)} is ${align}-aligned`).toBe(0);
        expect(memory.contains(gpa, len), `${name} inside guest memory`).toBe(true);
        const bytes = new Uint8Array(len);
        memory.read(gpa, bytes);
        expect(bytes.every((b) => b === 0), `${name} zeroed`).toBe(true);
      }
      const spans = parts.map(([, gpa, len]) => [gpa, gpa + len]).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
      // Only the rings were zeroed: the byte after the last area still holds the pattern.
      expect(memory.readU8(spans[2][1])).toBe(PATTERN);
      // The device holds what the driver laid out.
      expect(device.queueSize(1)).toBe(size);
      expect(device.queueAddresses(1)).toEqual({ desc: state.desc, avail: state.avail, used: state.used });
      expect(device.queueEnabled(1)).toBe(true);
      expect(device.queueRunning(1)).toBe(false);
      pci.write(PCI_QUEUE_SELECT, 2, 1);
      expect(pci.read(PCI_QUEUE_SIZE, 2)).toBe(size);
      expect(pci.read(PCI_QUEUE_ENABLE, 2)).toBe(1);
      for (const [reg, gpa] of [[PCI_QUEUE_DESC, state.desc], [PCI_QUEUE_DRIVER, state.avail], [PCI_QUEUE_DEVICE, state.used]]) {
        expect(pci.read(reg, 4) + pci.read(reg + 4, 4) * 2 ** 32).toBe(gpa);
      }
    });
  }

  it('2.7: the QueueState setupQueue returns is accepted by validateQueueState and starts at index 0', async () => {
    const { driver, memory } = await setupRig();
    for (const q of [0, 1]) {
      const state = driver.setupQueue(q);
      expect(() => validateQueueState(state, memory)).not.toThrow();
      expect(state.size).toBe(256);
      expect([state.nextAvail, state.nextUsed]).toEqual([0, 0]);
    }
  });

  it('2.8.1: a packed QueueState is accepted by validateQueueState and starts at index 0 with both wrap counters 1 (vhost base 0x8000)', async () => {
    const { driver, memory } = await setupRig(NET_DEVICE_FEATURES);
    for (const q of [0, 1]) {
      const state = driver.setupQueue(q);
      expect(() => validateQueueState(state, memory)).not.toThrow();
      expect(state.packed).toBe(true);
      expect([state.nextAvail, state.nextUsed]).toEqual([PACKED_RING_START, PACKED_RING_START]);
    }
  });

  for (const [label, features, eventIdx, indirect] of [
    ['EVENT_IDX without INDIRECT_DESC', bit(F_VERSION_1) | bit(F_EVENT_IDX), true, false],
    ['INDIRECT_DESC without EVENT_IDX', bit(F_VERSION_1) | bit(F_INDIRECT_DESC), false, true],
    ['neither', bit(F_VERSION_1), false, false],
  ] as const) {
    it(`6: the QueueState carries the negotiated ring features (${label})`, async () => {
      const { driver } = await setupRig(features);
      const state = driver.setupQueue(0, { size: 16 });
      expect([state.eventIdx, state.indirect]).toEqual([eventIdx, indirect]);
    });
  }

  it('4.1.5.1.3: setupQueue programs the requested MSI-X vector, default NO_VECTOR', async () => {
    const { driver, device } = await setupRig();
    driver.setupQueue(0, { vector: 2 });
    driver.setupQueue(1);
    expect(device.queueVector(0)).toBe(2);
    expect(device.queueVector(1)).toBe(PCI_NO_VECTOR);
  });

  it('4.1.4.3.2: setupQueue caps the size at the device maximum', async () => {
    const { driver, device } = await setupRig();
    const state = driver.setupQueue(0, { size: 1024 });
    expect(state.size).toBe(256);
    expect(device.queueSize(0)).toBe(256);
  });

  it('4.1.4.3.2: setupQueue refuses a queue the device does not have (queue_size reads 0)', async () => {
    const { driver, device } = await setupRig();
    expect(() => driver.setupQueue(device.numQueues)).toThrow(FeatureNegotiationError);
  });

  for (const size of [0, 3, 100]) {
    it(`4.1.4.3.1: setupQueue throws when the device refuses queue_size ${size}, and enables nothing`, async () => {
      const { driver, device, alloc } = await setupRig();
      const free = alloc.free;
      expect(() => driver.setupQueue(0, { size })).toThrow(InvalidArgumentError);
      expect(device.queueSize(0)).toBe(256);
      expect(device.queueEnabled(0)).toBe(false);
      expect(alloc.free).toBe(free);
    });
  }

  it('4.1.5.1.2: setupQueue throws when the device cannot map its vector, and enables nothing', async () => {
    const { driver, device, pci } = await setupRig();
    expect(() => driver.setupQueue(0, { vector: device.notify.vectors })).toThrow(InvalidArgumentError);
    pci.write(PCI_QUEUE_SELECT, 2, 0);
    expect(pci.read(PCI_QUEUE_MSIX_VECTOR, 2)).toBe(PCI_NO_VECTOR);
    expect(device.queueEnabled(0)).toBe(false);
  });

  it('3.1.1 step 7: setupQueue before FEATURES_OK fails and enables nothing', () => {
    const { driver, device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    expect(() => driver.setupQueue(0)).toThrow(FeatureNegotiationError);
    expect(device.queueEnabled(0)).toBe(false);
    expect(readStatus(pci)).toBe(STAGE_DRIVER);
  });

  it('3.1.1 step 7: setupQueue twice on one queue fails: its configuration is fixed once enabled', async () => {
    const { driver, device } = await setupRig();
    const first = driver.setupQueue(0, { size: 16 });
    const free = driver.alloc.free;
    expect(() => driver.setupQueue(0, { size: 16 })).toThrow(DeviceStatusError);
    expect(driver.alloc.free).toBe(free);
    expect(device.queueAddresses(0)).toEqual({ desc: first.desc, avail: first.avail, used: first.used });
    expect(readStatus(driver.pci)).toBe(STAGE_FEATURES_OK);
  });
});

describe('2.7 validateQueueState', () => {
  /** A valid state of `size` entries in the rig's memory, and the memory. */
  async function valid(size = 16) {
    const { driver, memory } = await setupRig();
    const state = driver.setupQueue(0, { size });
    validateQueueState(state, memory);
    return { state, memory };
  }

  const expectRejected = (state: QueueState, memory: Parameters<typeof validateQueueState>[1], why: string, reason?: RegExp): void => {
    let err: unknown;
    try {
      validateQueueState(state, memory);
    } catch (e) {
      err = e;
    }
    expect(err, why).toBeInstanceOf(QueueStateError);
    expect((err as QueueStateError).code).toBe('INVALID_QUEUE_STATE');
    if (reason !== undefined) expect((err as Error).message, why).toMatch(reason);
  };

  it('2.7: a misaligned descriptor table, driver area or device area is rejected', async () => {
    const { state, memory } = await valid();
    for (const [field, by] of [['desc', 8], ['desc', 2], ['avail', 1], ['used', 2], ['used', 1]] as const) {
      expectRejected({ ...state, [field]: state[field] + by }, memory, `${field} + ${by}`, /aligned/);
    }
    // Aligned moves stay valid.
    expect(() => validateQueueState({ ...state, desc: state.desc + 16, avail: state.avail + 2, used: state.used + 4 }, memory)).not.toThrow();
  });

  it('2.7: an area outside guest memory, or straddling its end or start, is rejected', async () => {
    const { state, memory } = await valid(16);
    const end = GPA + GUEST_BYTES;
    // Every address here is aligned for its area: only the bounds are wrong.
    const outside: Array<[string, Partial<QueueState>]> = [
      ['desc before memory', { desc: 0 }],
      ['desc straddles start', { desc: GPA - 16 }],
      ['desc straddles end', { desc: end - 128 }],
      ['avail past end', { avail: end }],
      ['avail straddles end', { avail: end - 36 }],
      ['used straddles end', { used: end - 132 }],
      ['used far away', { used: 2 ** 40 }],
      ['desc negative', { desc: -16 }],
    ];
    for (const [why, change] of outside) expectRejected({ ...state, ...change }, memory, why, /is not inside guest memory/);
    expectRejected({ ...state, desc: state.desc + 0.5 }, memory, 'desc not an integer', /aligned/);
    // Up to the last byte is still inside (the used ring's 134 bytes end 2 short: 4-alignment).
    for (const change of [{ desc: end - 256 }, { avail: end - 38 }, { used: end - 136 }, { desc: GPA }]) {
      expect(() => validateQueueState({ ...state, ...change }, memory), JSON.stringify(change)).not.toThrow();
    }
  });

  it('2.7: queue sizes must be powers of two up to 32768', async () => {
    const { state, memory } = await valid(1);
    for (const size of [0, 3, 12, 65536, -2, 1.5]) expectRejected({ ...state, size }, memory, `size ${size}`);
    for (const size of [1, 2, 256]) expect(() => validateQueueState({ ...state, size }, memory)).not.toThrow();
  });

  it('2.7: no more chains in flight than the queue size (nextAvail - nextUsed, mod 2^16)', async () => {
    const size = 16;
    const { state, memory } = await valid(size);
    const ok = (nextAvail: number, nextUsed: number) => () => validateQueueState({ ...state, nextAvail, nextUsed }, memory);
    expect(ok(size, 0)).not.toThrow();
    expectRejected({ ...state, nextAvail: size + 1, nextUsed: 0 }, memory, 'one too many in flight');
    // Across the u16 wrap.
    expect(ok((0xfff0 + size) & 0xffff, 0xfff0)).not.toThrow();
    expectRejected({ ...state, nextAvail: (0xfff0 + size + 1) & 0xffff, nextUsed: 0xfff0 }, memory, 'one too many across the wrap');
    // Used ahead of avail is "almost 2^16 in flight".
    expectRejected({ ...state, nextAvail: 0, nextUsed: 1 }, memory, 'used ahead of avail');
  });

  it('2.7: ring indices must be u16', async () => {
    const { state, memory } = await valid();
    for (const [field, v] of [['nextAvail', 0x10000], ['nextAvail', -1], ['nextUsed', 0x10000], ['nextUsed', 1.5]] as const) {
      expectRejected({ ...state, [field]: v }, memory, `${field} ${v}`);
    }
  });
});
