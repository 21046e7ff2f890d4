import { describe, expect, it } from 'vitest';
import { DeviceStatusError, FeatureNegotiationError, type FeatureSet, NET_DEVICE_FEATURES, featureSet, hasFeature } from '../../src/index.js';
import { F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, NET_FEATURE_DEPENDENCIES, NET_F_CSUM, NET_F_CTRL_MAC_ADDR, NET_F_CTRL_RX, NET_F_CTRL_VLAN, NET_F_CTRL_VQ, NET_F_GUEST_ANNOUNCE, NET_F_GUEST_CSUM, NET_F_GUEST_ECN, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_UFO, NET_F_GUEST_USO4, NET_F_GUEST_USO6, NET_F_HOST_ECN, NET_F_HOST_TSO4, NET_F_HOST_TSO6, NET_F_HOST_UFO, NET_F_HOST_USO, NET_F_MAC, NET_F_MQ, NET_F_HASH_REPORT, NET_F_RSS, bit } from '../../src/spec/features.js';
import { PCI_DEVICE_FEATURE, PCI_DEVICE_FEATURE_SELECT, PCI_DRIVER_FEATURE, PCI_DRIVER_FEATURE_SELECT } from '../../src/spec/pci.js';
import { STATUS_FEATURES_OK } from '../../src/spec/status.js';
import {
  ALL_NET_FEATURES,
  STAGES,
  STAGE_DRIVER,
  STAGE_DRIVER_OK,
  STAGE_FEATURES_OK,
  bringTo,
  expectRejectedWrite,
  netFeatureName,
  netRig,
  readDeviceFeatures,
  readDriverFeatures,
  readStatus,
  rejections,
  tryFeaturesOk,
  writeDriverFeatures,
  writeStatus,
} from './harness.js';

/** An offer with bits in all four 32-bit words. */
const WIDE_OFFER: FeatureSet = NET_DEVICE_FEATURES | bit(NET_F_RSS) | bit(64 + 7) | bit(96 + 31);

/** virtio 1.2 section 5.1.3.1, restricted to the bits src/spec/features.ts defines. */
const SPEC_5_1_3_1: ReadonlyArray<readonly [number, readonly number[]]> = [
  [NET_F_GUEST_TSO4, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_TSO6, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_ECN, [NET_F_GUEST_TSO4, NET_F_GUEST_TSO6]],
  [NET_F_GUEST_UFO, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_USO4, [NET_F_GUEST_CSUM]],
  [NET_F_GUEST_USO6, [NET_F_GUEST_CSUM]],
  [NET_F_HOST_TSO4, [NET_F_CSUM]],
  [NET_F_HOST_TSO6, [NET_F_CSUM]],
  [NET_F_HOST_ECN, [NET_F_HOST_TSO4, NET_F_HOST_TSO6]],
  [NET_F_HOST_UFO, [NET_F_CSUM]],
  [NET_F_HOST_USO, [NET_F_CSUM]],
  [NET_F_CTRL_RX, [NET_F_CTRL_VQ]],
  [NET_F_CTRL_VLAN, [NET_F_CTRL_VQ]],
  [NET_F_GUEST_ANNOUNCE, [NET_F_CTRL_VQ]],
  [NET_F_MQ, [NET_F_CTRL_VQ]],
  [NET_F_CTRL_MAC_ADDR, [NET_F_CTRL_VQ]],
  [NET_F_RSS, [NET_F_CTRL_VQ]],
];

/**
 * `seed` plus, for every feature in it with an unmet dependency, the first
 * alternative of that dependency, until nothing is missing: the smallest
 * set a careful driver accepts around `seed`.
 */
function withRequirements(seed: FeatureSet): FeatureSet {
  let set = seed;
  for (let changed = true; changed; ) {
    changed = false;
    for (const [feature, needs] of NET_FEATURE_DEPENDENCIES) {
      if (hasFeature(set, feature) && !needs.some((n) => hasFeature(set, n))) {
        set |= bit(needs[0]);
        changed = true;
      }
    }
  }
  return set;
}

/** Features in `set` whose requirement (per NET_FEATURE_DEPENDENCIES) is not in `set`. */
function broken(set: FeatureSet): number[] {
  return NET_FEATURE_DEPENDENCIES.filter(([f, needs]) => hasFeature(set, f) && !needs.some((n) => hasFeature(set, n))).map(([f]) => f);
}

/** `set` less `drop`, then less every feature but `keep` left without its requirement, until none is. */
function prune(set: FeatureSet, drop: FeatureSet, keep: number): FeatureSet {
  let out = set & ~drop;
  for (let f = broken(out).find((b) => b !== keep); f !== undefined; f = broken(out).find((b) => b !== keep)) out &= ~bit(f);
  return out;
}

const names = (bits: readonly number[]): string => bits.map(netFeatureName).join(' or ');

describe('2.2 / 4.1.4.3 feature bits through the common config', () => {
  for (const [label, offer] of [['the default offer', undefined], ['an offer spanning all four words', WIDE_OFFER]] as const) {
    it(`4.1.4.3.2: device_feature through device_feature_select 0..3 presents deviceFeatures (${label})`, () => {
      const { device, pci } = netRig(offer === undefined ? {} : { features: offer });
      expect(readDeviceFeatures(pci)).toBe(device.deviceFeatures);
      expect(device.deviceFeatures).toBe(offer ?? NET_DEVICE_FEATURES);
      for (let sel = 0; sel < 4; sel++) {
        pci.write(PCI_DEVICE_FEATURE_SELECT, 4, sel);
        expect(pci.read(PCI_DEVICE_FEATURE_SELECT, 4)).toBe(sel);
        expect(pci.read(PCI_DEVICE_FEATURE, 4)).toBe(Number((device.deviceFeatures >> BigInt(32 * sel)) & 0xffffffffn));
      }
    });
  }

  it('4.1.4.3.2: device_feature presents 0 for a device_feature_select past the feature words', () => {
    const { pci } = netRig({ features: WIDE_OFFER });
    for (const sel of [4, 5, 0xffff, 0xffffffff]) {
      pci.write(PCI_DEVICE_FEATURE_SELECT, 4, sel);
      expect(pci.read(PCI_DEVICE_FEATURE, 4), `select ${sel}`).toBe(0);
    }
  });

  it('4.1.4.3.2: driver_feature writes through driver_feature_select 0..3 assemble one 128-bit set, in any word order', () => {
    const { device, pci } = netRig({ features: WIDE_OFFER });
    bringTo(pci, STAGE_DRIVER);
    writeDriverFeatures(pci, WIDE_OFFER, [3, 1, 0, 2]);
    expect(device.driverFeatures).toBe(WIDE_OFFER);
    expect(readDriverFeatures(pci)).toBe(WIDE_OFFER);
    // Rewriting one word replaces that word only.
    pci.write(PCI_DRIVER_FEATURE_SELECT, 4, 2);
    pci.write(PCI_DRIVER_FEATURE, 4, 0);
    expect(device.driverFeatures).toBe(WIDE_OFFER & ~(0xffffffffn << 64n));
    expect(rejections(pci)).toBe(0);
  });

  it('4.1.4.3.2: driver_feature writes assemble a 64-bit set from words 0 and 1', () => {
    const { device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    writeDriverFeatures(pci, NET_DEVICE_FEATURES, [1, 0]);
    expect(device.driverFeatures).toBe(NET_DEVICE_FEATURES);
    writeStatus(pci, STAGE_FEATURES_OK);
    expect(readStatus(pci)).toBe(STAGE_FEATURES_OK);
    expect(device.negotiatedFeatures).toBe(NET_DEVICE_FEATURES);
  });

  it('4.1.4.3.2: a driver_feature write past the four feature words is rejected and changes nothing', () => {
    const { device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    writeDriverFeatures(pci, NET_DEVICE_FEATURES);
    for (const sel of [4, 0xffff, 0xffffffff]) {
      pci.write(PCI_DRIVER_FEATURE_SELECT, 4, sel);
      expectRejectedWrite(pci, PCI_DRIVER_FEATURE, 4, 1, 'INVALID_ARGUMENT');
      expect(pci.read(PCI_DRIVER_FEATURE, 4)).toBe(0);
    }
    expect(device.driverFeatures).toBe(NET_DEVICE_FEATURES);
  });

  for (const [name, stage] of STAGES.filter(([, s]) => s !== STAGE_DRIVER)) {
    it(`3.1.1: driver features cannot be written at stage ${name} (only after DRIVER, before FEATURES_OK)`, () => {
      const { device, pci } = netRig();
      bringTo(pci, stage);
      const before = device.driverFeatures;
      expect(() => device.setDriverFeatures(NET_DEVICE_FEATURES | bit(NET_F_HASH_REPORT))).toThrow(DeviceStatusError);
      pci.write(PCI_DRIVER_FEATURE_SELECT, 4, 0);
      expectRejectedWrite(pci, PCI_DRIVER_FEATURE, 4, 0xffffffff, 'INVALID_DEVICE_STATUS');
      expect(device.driverFeatures).toBe(before);
      expect(readStatus(pci)).toBe(stage);
    });
  }
});

describe('2.2 / 3.1.1 FEATURES_OK: the device checks the accepted set', () => {
  const refusals: ReadonlyArray<{ rule: string; accept: FeatureSet; reason: RegExp }> = [
    { rule: '2.2.1: FEATURES_OK is refused when the driver accepts a feature the device did not offer', accept: NET_DEVICE_FEATURES | bit(NET_F_HASH_REPORT), reason: /did not offer/ },
    { rule: '2.2.1: FEATURES_OK is refused for an unoffered bit in the high feature words', accept: NET_DEVICE_FEATURES | bit(100), reason: /did not offer/ },
    { rule: '6: FEATURES_OK is refused when the driver omits VIRTIO_F_VERSION_1', accept: NET_DEVICE_FEATURES & ~bit(F_VERSION_1), reason: /VERSION_1/ },
    { rule: '6: FEATURES_OK is refused for an empty accepted set (no VIRTIO_F_VERSION_1)', accept: 0n, reason: /VERSION_1/ },
  ];
  for (const c of refusals) {
    it(`${c.rule}: the bit reads back clear and lastFeatureRefusal explains`, () => {
      const { device, pci } = netRig();
      expect(tryFeaturesOk(pci, c.accept)).toBe(false);
      expect(readStatus(pci)).toBe(STAGE_DRIVER);
      expect(device.lastFeatureRefusal).toMatch(c.reason);
      expect(device.negotiatedFeatures).toBe(0n);
      expect(() => device.assertFeaturesOk()).toThrow(FeatureNegotiationError);
      // The write itself is not a rejected register write: the driver learns by re-reading.
      expect(rejections(pci)).toBe(0);
    });
  }

  it('3.1.1 step 6: DRIVER_OK written together with a refused FEATURES_OK does not stick either', () => {
    const { device, pci } = netRig();
    bringTo(pci, STAGE_DRIVER);
    writeDriverFeatures(pci, 0n);
    writeStatus(pci, STAGE_DRIVER_OK);
    expect(readStatus(pci)).toBe(STAGE_DRIVER);
    expect(device.lastFeatureRefusal).toMatch(/VERSION_1/);
  });

  it('3.1.1 step 6: after a refusal the driver may accept a valid set and FEATURES_OK sticks', () => {
    const { device, pci } = netRig();
    expect(tryFeaturesOk(pci, 0n)).toBe(false);
    writeDriverFeatures(pci, NET_DEVICE_FEATURES);
    writeStatus(pci, STAGE_FEATURES_OK);
    expect(readStatus(pci)).toBe(STAGE_FEATURES_OK);
    expect(device.lastFeatureRefusal).toBeUndefined();
    expect(device.negotiatedFeatures).toBe(NET_DEVICE_FEATURES);
    expect(() => device.assertFeaturesOk()).not.toThrow();
  });

  it('2.2.2: the device accepts every valid subset it offers: the whole offer, VERSION_1 alone, and the default set', () => {
    for (const accept of [ALL_NET_FEATURES, bit(F_VERSION_1), NET_DEVICE_FEATURES]) {
      const { device, pci } = netRig({ features: ALL_NET_FEATURES });
      expect(tryFeaturesOk(pci, accept), `accept 0x${accept.toString(16)}: ${device.lastFeatureRefusal}`).toBe(true);
      expect(device.negotiatedFeatures).toBe(accept);
    }
  });
});

describe('5.1.3.1 virtio-net feature bit requirements', () => {
  it('5.1.3.1: NET_FEATURE_DEPENDENCIES holds every requirement the spec lists for the defined bits', () => {
    for (const [feature, needs] of SPEC_5_1_3_1) {
      const entry = NET_FEATURE_DEPENDENCIES.find(([f]) => f === feature);
      expect(entry, netFeatureName(feature)).toBeDefined();
      expect([...(entry?.[1] ?? [])].sort(), netFeatureName(feature)).toEqual([...needs].sort());
    }
  });

  for (const [feature, needs] of NET_FEATURE_DEPENDENCIES) {
    // Two sets per rule: the feature alone, and the whole offer less its requirement (and
    // whatever else needed that): either way this rule, and only it, is broken.
    const without = [bit(F_VERSION_1) | bit(feature), prune(ALL_NET_FEATURES, featureSet(...needs), feature)];

    it(`5.1.3.1: ${netFeatureName(feature)} accepted without ${names(needs)} is refused at FEATURES_OK`, () => {
      for (const accept of without) {
        expect(broken(accept)).toEqual([feature]);
        const { device, pci } = netRig({ features: ALL_NET_FEATURES });
        expect(tryFeaturesOk(pci, accept)).toBe(false);
        expect(readStatus(pci) & STATUS_FEATURES_OK).toBe(0);
        expect(device.lastFeatureRefusal).toContain(`feature ${feature} `);
        expect(device.negotiatedFeatures).toBe(0n);
      }
    });

    for (const need of needs) {
      it(`5.1.3.1: ${netFeatureName(feature)} accepted with ${netFeatureName(need)} is accepted at FEATURES_OK`, () => {
        for (const accept of without.map((set) => withRequirements(set | bit(need)))) {
          expect(broken(accept)).toEqual([]);
          const { device, pci } = netRig({ features: ALL_NET_FEATURES });
          expect(tryFeaturesOk(pci, accept), device.lastFeatureRefusal).toBe(true);
          expect(device.lastFeatureRefusal).toBeUndefined();
          expect(device.negotiatedFeatures).toBe(accept);
        }
      });
    }
  }
});

describe('3.1.1 PciDriver.negotiate', () => {
  it('3.1.1 steps 1-6: negotiate accepts wanted ∩ offered, sets FEATURES_OK and returns the accepted set', async () => {
    const { device, pci, driver } = netRig();
    const wanted = bit(F_VERSION_1) | bit(F_EVENT_IDX) | bit(NET_F_MAC) | bit(NET_F_HASH_REPORT) | bit(90);
    const accepted = await driver.negotiate(wanted);
    expect(accepted).toBe(wanted & NET_DEVICE_FEATURES);
    expect(hasFeature(accepted, NET_F_HASH_REPORT)).toBe(false);
    expect(hasFeature(accepted, F_INDIRECT_DESC)).toBe(false);
    expect(driver.features).toBe(accepted);
    expect(device.negotiatedFeatures).toBe(accepted);
    expect(readStatus(pci)).toBe(STAGE_FEATURES_OK);
  });

  it('3.1.1 step 1: negotiate resets a live device before it starts again', async () => {
    const { device, pci, driver } = netRig();
    bringTo(pci, STAGE_DRIVER_OK);
    const accepted = await driver.negotiate(bit(F_VERSION_1));
    expect(accepted).toBe(bit(F_VERSION_1));
    expect(readStatus(pci)).toBe(STAGE_FEATURES_OK);
    expect(device.negotiatedFeatures).toBe(bit(F_VERSION_1));
  });

  const refused: ReadonlyArray<{ rule: string; offer?: FeatureSet; wanted: FeatureSet; reason: RegExp }> = [
    { rule: '6: negotiate throws FeatureNegotiationError when VERSION_1 is not wanted', wanted: NET_DEVICE_FEATURES & ~bit(F_VERSION_1), reason: /VERSION_1/ },
    { rule: '5.1.3.1: negotiate throws FeatureNegotiationError when a wanted feature lacks its requirement', offer: ALL_NET_FEATURES, wanted: bit(F_VERSION_1) | bit(NET_F_GUEST_TSO4), reason: new RegExp(`feature ${NET_F_GUEST_TSO4} `) },
  ];
  for (const c of refused) {
    it(`${c.rule}, and FEATURES_OK reads clear`, async () => {
      const { device, pci, driver } = netRig(c.offer === undefined ? {} : { features: c.offer });
      const err = await driver.negotiate(c.wanted).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FeatureNegotiationError);
      expect((err as FeatureNegotiationError).code).toBe('FEATURES_REFUSED');
      expect((err as Error).message).toMatch(c.reason);
      expect(readStatus(pci)).toBe(STAGE_DRIVER);
      expect(device.negotiatedFeatures).toBe(0n);
      expect(driver.features).toBe(0n);
    });
  }
});
