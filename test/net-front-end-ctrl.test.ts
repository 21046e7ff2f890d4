import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, SharedArena, VirtioNetDevice, featureSet } from '../src/index.js';
import { NET_F_CTRL_VQ, NET_F_MQ, F_VERSION_1 } from '../src/spec/features.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK } from '../src/spec/status.js';

// A virtio-net device whose controlq the front end serves (vhost-user: QEMU
// and DPDK keep it): 5.1.3.1's "MQ needs CTRL_VQ" holds for the driver, but
// the device never sees CTRL_VQ, and VQ_PAIRS_SET reaches it as setActivePairs().

const negotiate = (d: VirtioNetDevice, features: bigint): boolean => {
  d.setStatus(STATUS_ACKNOWLEDGE);
  d.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  d.setDriverFeatures(features);
  d.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  return (d.status & STATUS_FEATURES_OK) !== 0;
};
const activeOf = (d: VirtioNetDevice): number => new Int32Array(d.activePairs.buffer)[d.activePairs.index];

describe('controlQueue: front-end', () => {
  const arena = new SharedArena(4 << 20);

  it('5.1.3.1: MQ without CTRL_VQ is refused at FEATURES_OK by a device that serves its controlq, accepted when the front end serves it', async () => {
    const own = new VirtioNetDevice(arena.guestMemory(1 << 20), { queuePairs: 2 });
    const front = new VirtioNetDevice(arena.guestMemory(1 << 20), { queuePairs: 2, controlQueue: 'front-end' });
    expect(negotiate(own, featureSet(F_VERSION_1, NET_F_MQ))).toBe(false);
    expect(own.lastFeatureRefusal).toMatch(`feature ${NET_F_MQ} needs one of ${NET_F_CTRL_VQ}`);
    expect(negotiate(front, featureSet(F_VERSION_1, NET_F_MQ))).toBe(true);
    await Promise.all([own.close(), front.close()]);
  });

  it('setActivePairs() is what VQ_PAIRS_SET does, for the front end; a device that serves its own controlq refuses it', async () => {
    const own = new VirtioNetDevice(arena.guestMemory(1 << 20), { queuePairs: 2 });
    const front = new VirtioNetDevice(arena.guestMemory(1 << 20), { queuePairs: 2, controlQueue: 'front-end' });
    expect(activeOf(front)).toBe(1);
    front.setActivePairs(2);
    expect(activeOf(front)).toBe(2);
    expect(() => front.setActivePairs(3)).toThrow(InvalidArgumentError);
    expect(() => front.setActivePairs(0)).toThrow(/1 to 2/);
    expect(() => own.setActivePairs(2)).toThrow(/serves its own controlq/);
    // A reset puts the pairs in use back to 1 (5.1.6.5.5).
    await front.reset();
    expect(activeOf(front)).toBe(1);
    await Promise.all([own.close(), front.close()]);
  });
});
