import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/index.js';
import { RING_STEP, type WordRef } from '../../src/notify/notify-area.js';
import { NET_CFG_MAC, NET_CFG_MAX_VQ_PAIRS, NET_CFG_MTU, NET_CFG_SIZE, NET_CFG_STATUS, NET_S_LINK_UP } from '../../src/spec/net.js';
import { PCI_CONFIG_GENERATION, PCI_CONFIG_MSIX_VECTOR, PCI_NO_VECTOR } from '../../src/spec/pci.js';
import { STAGES, STAGE_DRIVER_OK, STAGE_FEATURES_OK, TEST_MAC, bringTo, netRig, thrown } from './harness.js';

const generation = (rig: ReturnType<typeof netRig>): number => rig.pci.read(PCI_CONFIG_GENERATION, 1);

/**
 * A rig at `stage` whose every MSI-X vector rings a word of the test's own
 * buffer (vector v: word 4v, starting at 1000 + v), with config changes on
 * `configVector`; counts 'config-interrupt' events.
 */
function interruptRig(stage: number, configVector: number) {
  const rig = netRig();
  bringTo(rig.pci, stage);
  const words = new Int32Array(new SharedArrayBuffer(64));
  const refs: WordRef[] = [];
  for (let v = 0; v < rig.device.notify.vectors; v++) {
    refs.push({ buffer: words.buffer as SharedArrayBuffer, index: 4 * v });
    words[4 * v] = 1000 + v;
    rig.driver.routeVector(v, refs[v]);
  }
  if (configVector === PCI_NO_VECTOR) rig.pci.write(PCI_CONFIG_MSIX_VECTOR, 2, PCI_NO_VECTOR);
  else rig.driver.setConfigVector(configVector);
  expect(rig.pci.read(PCI_CONFIG_MSIX_VECTOR, 2)).toBe(configVector);
  let events = 0;
  rig.device.on('config-interrupt', () => events++);
  const ownWords = () => Array.from({ length: rig.device.notify.vectors }, (_, v) => Atomics.load(rig.device.notify.i32, rig.device.notify.vectorWord(v)));
  const ownBefore = ownWords();
  return {
    ...rig,
    events: () => events,
    /** How many times each routed word was rung (ring() adds RING_STEP: bit 0 is a sleeper's flag). */
    rung: () => refs.map((r, v) => (Atomics.load(words, r.index) - (1000 + v)) / RING_STEP),
    ownWordsUntouched: () => expect(ownWords()).toEqual(ownBefore),
  };
}

describe('2.5 / 5.1.4 virtio-net device configuration space', () => {
  it('5.1.4: struct virtio_net_config offsets are mac 0, status 6, max_virtqueue_pairs 8, mtu 10, size 24', () => {
    expect([NET_CFG_MAC, NET_CFG_STATUS, NET_CFG_MAX_VQ_PAIRS, NET_CFG_MTU]).toEqual([0, 6, 8, 10]);
    expect(NET_CFG_SIZE).toBeGreaterThanOrEqual(24);
  });

  it('5.1.4: mac, status, max_virtqueue_pairs and mtu read little-endian at their offsets', () => {
    const { device } = netRig({ mtu: 9000 });
    const mac = TEST_MAC.split(':').map((h) => Number.parseInt(h, 16));
    expect(Array.from({ length: 6 }, (_, i) => device.readConfig(0 + i, 1))).toEqual(mac);
    expect(device.mac).toBe(TEST_MAC);
    expect(device.readConfig(6, 2)).toBe(NET_S_LINK_UP);
    expect(device.readConfig(8, 2)).toBe(1);
    expect(device.readConfig(10, 2)).toBe(9000);
    expect(device.readConfig(10, 1)).toBe(9000 & 0xff);
    expect(device.readConfig(11, 1)).toBe(9000 >> 8);
    // One 32-bit read across max_virtqueue_pairs and mtu: low half first.
    expect(device.readConfig(8, 4)).toBe(1 + 9000 * 0x10000);
    expect(device.readConfig(4, 4)).toBe(mac[4] + mac[5] * 0x100 + NET_S_LINK_UP * 0x10000);
  });

  for (const [name, stage] of STAGES.slice(0, 3)) {
    it(`2.5.2: config space is readable before FEATURES_OK (stage ${name})`, () => {
      const { device, pci } = netRig();
      bringTo(pci, stage);
      expect(device.readConfig(0, 4)).toBe(0x00_54_52 + 0x12 * 0x1000000);
      expect(device.readConfig(6, 2)).toBe(NET_S_LINK_UP);
    });
  }

  it('2.5 / 5.1.4.2: setLinkUp changes the status field and config_generation on every change', () => {
    const rig = netRig();
    const seen = [generation(rig)];
    rig.device.setLinkUp(false);
    expect(rig.device.readConfig(6, 2) & NET_S_LINK_UP).toBe(0);
    expect(rig.device.linkUp).toBe(false);
    seen.push(generation(rig));
    rig.device.setLinkUp(true);
    expect(rig.device.readConfig(6, 2) & NET_S_LINK_UP).toBe(NET_S_LINK_UP);
    seen.push(generation(rig));
    expect(seen[1]).not.toBe(seen[0]);
    expect(seen[2]).not.toBe(seen[1]);
    expect(rig.device.configGeneration).toBe(seen[2]);
  });

  it('2.5: config_generation does not move while nothing changes', () => {
    const rig = netRig();
    const g = generation(rig);
    for (let off = 0; off < 12; off++) rig.device.readConfig(off, 1);
    bringTo(rig.pci, STAGE_DRIVER_OK);
    expect(generation(rig)).toBe(g);
  });

  it('2.5.1: a driver read loop sees a consistent mac/status snapshot: generation moves across a change', () => {
    const rig = netRig();
    const before = generation(rig);
    const status1 = rig.device.readConfig(6, 2);
    rig.device.setLinkUp(false); // lands between the driver's two generation reads
    const after = generation(rig);
    expect(after).not.toBe(before); // the driver retries...
    expect(rig.device.readConfig(6, 2)).not.toBe(status1); // ...and sees the new value
    expect(generation(rig)).toBe(after);
  });

  it('5.1.4: the driver must not write config fields: every write is rejected and changes nothing', () => {
    const { device } = netRig();
    const bytes = Array.from({ length: 24 }, (_, i) => device.readConfig(i, 1));
    const gen = device.configGeneration;
    for (const width of [1, 2, 4]) {
      for (let off = 0; off + width <= 24; off += width) {
        const err = thrown(() => device.writeConfig(off, width, 0));
        expect(err, `write ${width}@${off}`).toBeInstanceOf(InvalidArgumentError);
      }
    }
    expect(Array.from({ length: 24 }, (_, i) => device.readConfig(i, 1))).toEqual(bytes);
    expect(device.configGeneration).toBe(gen);
  });

  it('2.5: config reads outside the config space or of an odd width are rejected', () => {
    const { device } = netRig();
    const size = NET_CFG_SIZE;
    for (const [off, width] of [[size, 1], [size - 1, 2], [size - 3, 4], [-1, 1], [0, 3], [0, 8], [0, 0], [1.5, 1], [2 ** 32, 1]]) {
      expect(() => device.readConfig(off, width), `read ${width}@${off}`).toThrow(InvalidArgumentError);
    }
    // The last bytes themselves are readable.
    expect(() => device.readConfig(size - 1, 1)).not.toThrow();
    expect(() => device.readConfig(size - 2, 2)).not.toThrow();
    expect(() => device.readConfig(size - 4, 4)).not.toThrow();
  });
});

describe('2.5.2 / 4.1.5.4 config change notifications', () => {
  it('4.1.5.4: after DRIVER_OK, setLinkUp emits config-interrupt and rings the word config_msix_vector is routed to', () => {
    const rig = interruptRig(STAGE_DRIVER_OK, 0);
    const gen = generation(rig);
    rig.device.setLinkUp(false);
    expect(rig.events()).toBe(1);
    expect(rig.rung()).toEqual([1, 0, 0, 0]);
    expect(generation(rig)).not.toBe(gen);
    rig.device.setLinkUp(true);
    expect(rig.events()).toBe(2);
    expect(rig.rung()).toEqual([2, 0, 0, 0]);
    rig.ownWordsUntouched();
  });

  it('4.1.5.4: the config change rings whichever vector config_msix_vector names', () => {
    const rig = interruptRig(STAGE_DRIVER_OK, 2);
    rig.device.setLinkUp(false);
    expect(rig.rung()).toEqual([0, 0, 1, 0]);
    expect(rig.events()).toBe(1);
  });

  for (const [name, stage] of STAGES.slice(0, 4)) {
    it(`2.1.2: the device does not notify the driver before DRIVER_OK: no config change notification (stage ${name}), though the generation moves`, () => {
      const rig = interruptRig(stage, 0);
      const gen = generation(rig);
      rig.device.setLinkUp(false);
      expect(generation(rig)).not.toBe(gen);
      expect(rig.events()).toBe(0);
      expect(rig.rung()).toEqual([0, 0, 0, 0]);
      rig.ownWordsUntouched();
    });
  }

  it('4.1.5.4: with config_msix_vector NO_VECTOR the device rings no vector word', () => {
    const rig = interruptRig(STAGE_DRIVER_OK, PCI_NO_VECTOR);
    rig.device.setLinkUp(false);
    expect(rig.rung()).toEqual([0, 0, 0, 0]);
    rig.ownWordsUntouched();
  });

  it('4.1.5.1.2: reset unmaps the config change event: after re-initialization no vector is rung', () => {
    const rig = interruptRig(STAGE_FEATURES_OK, 0);
    bringTo(rig.pci, STAGE_DRIVER_OK);
    expect(rig.pci.read(PCI_CONFIG_MSIX_VECTOR, 2)).toBe(PCI_NO_VECTOR);
    rig.device.setLinkUp(false);
    expect(rig.rung()).toEqual([0, 0, 0, 0]);
  });
});
