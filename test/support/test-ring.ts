/**
 * Which ring format the shared test rigs ask for: split by default, packed
 * with VIRTIO_LAB_TEST_RING=packed (CI runs the rig-based suites both ways,
 * so every test that runs on split rings runs on packed ones too).
 */
import { type FeatureSet } from '../../src/index.js';
import { F_RING_PACKED, bit } from '../../src/spec/features.js';

export const TEST_RING: 'split' | 'packed' = process.env.VIRTIO_LAB_TEST_RING === 'packed' ? 'packed' : 'split';

/** `features` with VIRTIO_F_RING_PACKED set or cleared for the test ring format. */
export function withTestRing(features: FeatureSet): FeatureSet {
  return TEST_RING === 'packed' ? features | bit(F_RING_PACKED) : features & ~bit(F_RING_PACKED);
}
