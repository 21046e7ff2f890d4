/**
 * Shared setup of the control-plane conformance tests: a virtio-net device in
 * a SharedArena guest memory, its common config register window and the
 * driver that programs it, plus register-level helpers that take a device to
 * a given initialization stage the way a driver does (3.1.1).
 *
 * No helper here sets DRIVER_OK while a queue is enabled: these tests never
 * start queue workers.
 */
import { expect } from 'vitest';
import * as lib from '../../src/spec/index.js';
import { type FeatureSet, GuestAllocator, type GuestMemory, NET_DEVICE_FEATURES, type NetDeviceOptions, PciCommonConfig, PciDriver, SharedArena, VirtioNetDevice, featureSet } from '../../src/index.js';
import { F_VERSION_1, NET_FEATURE_DEPENDENCIES, bit } from '../../src/spec/features.js';
import { PCI_DEVICE_FEATURE, PCI_DEVICE_FEATURE_SELECT, PCI_DEVICE_STATUS, PCI_DRIVER_FEATURE, PCI_DRIVER_FEATURE_SELECT } from '../../src/spec/pci.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../src/spec/status.js';

/** Bytes of guest memory every rig gets: room for both rings at the maximum size. */
export const GUEST_BYTES = 1 << 16;
export const TEST_MAC = '52:54:00:12:34:56';

/** The status of each stage of 3.1.1, in order. */
export const STAGE_ACK = STATUS_ACKNOWLEDGE;
export const STAGE_DRIVER = STAGE_ACK | STATUS_DRIVER;
export const STAGE_FEATURES_OK = STAGE_DRIVER | STATUS_FEATURES_OK;
export const STAGE_DRIVER_OK = STAGE_FEATURES_OK | STATUS_DRIVER_OK;
export const STAGES: ReadonlyArray<readonly [name: string, status: number]> = [
  ['reset', 0],
  ['ACKNOWLEDGE', STAGE_ACK],
  ['DRIVER', STAGE_DRIVER],
  ['FEATURES_OK', STAGE_FEATURES_OK],
  ['DRIVER_OK', STAGE_DRIVER_OK],
];

/** Every net feature bit this library knows, with VERSION_1: a set that satisfies every dependency. */
export const ALL_NET_FEATURES: FeatureSet = NET_FEATURE_DEPENDENCIES.reduce(
  (set, [feature, needs]) => set | bit(feature) | featureSet(...needs),
  NET_DEVICE_FEATURES | bit(F_VERSION_1),
);

export interface Rig {
  arena: SharedArena;
  memory: GuestMemory;
  device: VirtioNetDevice;
  pci: PciCommonConfig;
  alloc: GuestAllocator;
  driver: PciDriver;
}

export interface RigOptions extends NetDeviceOptions {
  /** Guest-physical address of the memory region (default 0). */
  gpa?: number;
  /** Bytes of guest memory (default GUEST_BYTES: rings only, no buffers). */
  bytes?: number;
}

export function netRig(options: RigOptions = {}): Rig {
  const { gpa = 0, bytes = GUEST_BYTES, ...net } = options;
  const arena = new SharedArena(bytes);
  const memory = arena.guestMemory(bytes, gpa);
  const device = new VirtioNetDevice(memory, { mac: TEST_MAC, ...net });
  const pci = new PciCommonConfig(device);
  const alloc = new GuestAllocator(memory);
  return { arena, memory, device, pci, alloc, driver: new PciDriver(pci, memory, alloc) };
}

export const readStatus = (pci: PciCommonConfig): number => pci.read(PCI_DEVICE_STATUS, 1);
export const writeStatus = (pci: PciCommonConfig, value: number): void => pci.write(PCI_DEVICE_STATUS, 1, value);

/** Read a 128-bit feature set through a select register, words 0..3. */
function readFeatureWords(pci: PciCommonConfig, selectReg: number, valueReg: number): FeatureSet {
  let set = 0n;
  for (let sel = 0; sel < 4; sel++) {
    pci.write(selectReg, 4, sel);
    set |= BigInt(pci.read(valueReg, 4)) << BigInt(32 * sel);
  }
  return set;
}

/** Read the 128 offered feature bits through device_feature_select 0..3. */
export const readDeviceFeatures = (pci: PciCommonConfig): FeatureSet => readFeatureWords(pci, PCI_DEVICE_FEATURE_SELECT, PCI_DEVICE_FEATURE);

/** Write a 128-bit accepted set through driver_feature_select, words in the given order. */
export function writeDriverFeatures(pci: PciCommonConfig, set: FeatureSet, order: readonly number[] = [0, 1, 2, 3]): void {
  for (const sel of order) {
    pci.write(PCI_DRIVER_FEATURE_SELECT, 4, sel);
    pci.write(PCI_DRIVER_FEATURE, 4, Number((set >> BigInt(32 * sel)) & 0xffffffffn));
  }
}

/** Read the accepted set back through driver_feature_select 0..3. */
export const readDriverFeatures = (pci: PciCommonConfig): FeatureSet => readFeatureWords(pci, PCI_DRIVER_FEATURE_SELECT, PCI_DRIVER_FEATURE);

/**
 * Reset, then add status bits in the spec's order up to `stage` (one of the
 * STAGE_ values), through the registers. FEATURES_OK is reached with
 * `features` (default: everything offered). Asserts each step stuck.
 */
export function bringTo(pci: PciCommonConfig, stage: number, features: FeatureSet = pci.device.deviceFeatures): void {
  writeStatus(pci, 0);
  expect(readStatus(pci)).toBe(0);
  let status = 0;
  for (const step of [STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK, STATUS_DRIVER_OK]) {
    if ((stage & step) === 0) break;
    if (step === STATUS_FEATURES_OK) writeDriverFeatures(pci, features);
    // These tests never start queue workers: DRIVER_OK only with every queue disabled.
    if (step === STATUS_DRIVER_OK) for (let q = 0; q < pci.device.numQueues; q++) expect(pci.device.queueEnabled(q)).toBe(false);
    status |= step;
    writeStatus(pci, status);
    expect(readStatus(pci), `stage 0x${status.toString(16)}`).toBe(status);
  }
  expect(status).toBe(stage);
}

/**
 * Accept `features` and write FEATURES_OK from the DRIVER stage; returns
 * whether the bit stuck (3.1.1 step 6: the driver re-reads status).
 */
export function tryFeaturesOk(pci: PciCommonConfig, features: FeatureSet): boolean {
  bringTo(pci, STAGE_DRIVER);
  writeDriverFeatures(pci, features);
  writeStatus(pci, STAGE_FEATURES_OK);
  return (readStatus(pci) & STATUS_FEATURES_OK) !== 0;
}

/** Rejected register writes so far, by code (or all codes). */
export function rejections(pci: PciCommonConfig, code?: string): number {
  if (code !== undefined) return pci.rejectedWrites.get(code) ?? 0;
  let n = 0;
  for (const v of pci.rejectedWrites.values()) n += v;
  return n;
}

/** Do a register write that must be ignored: exactly one more rejection, with this code. */
export function expectRejectedWrite(pci: PciCommonConfig, offset: number, width: number, value: number, code: string): void {
  const all = rejections(pci);
  const mine = rejections(pci, code);
  pci.write(offset, width, value);
  expect(rejections(pci, code), `write of ${value} at offset ${offset} rejected with ${code} (last: ${pci.lastRejected?.message})`).toBe(mine + 1);
  expect(rejections(pci)).toBe(all + 1);
}

/** The error `fn` throws (fails the test if it returns). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  expect.fail('expected a throw');
}

/** Name of a virtio-net feature bit, from the library's own constants. */
export function netFeatureName(n: number): string {
  for (const [k, v] of Object.entries(lib)) if (k.startsWith('NET_F_') && v === n) return `VIRTIO_${k}`;
  return `bit ${n}`;
}
