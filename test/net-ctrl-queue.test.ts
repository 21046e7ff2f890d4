/**
 * NetCtrlQueue, the device side of the virtio-net control virtqueue (virtio
 * 1.2 5.1.6.5), driven by the independent mini driver: one test per command
 * and per spec rule, then every way to lay a command over descriptors.
 */
import { describe, expect, it } from 'vitest';
import { type FeatureSet, VirtqueueError, formatMac } from '../src/index.js';
import { NET_F_CTRL_GUEST_OFFLOADS, NET_F_CTRL_MAC_ADDR, NET_F_CTRL_RX, NET_F_CTRL_RX_EXTRA, NET_F_CTRL_VLAN, NET_F_GUEST_ANNOUNCE, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_UFO, NET_F_MQ, NET_F_RSS, bit } from '../src/spec/features.js';
import { NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK, NET_CTRL_GUEST_OFFLOADS, NET_CTRL_GUEST_OFFLOADS_SET, NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, NET_CTRL_MAC_TABLE_SET, NET_CTRL_MQ, NET_CTRL_MQ_HASH_CONFIG, NET_CTRL_MQ_RSS_CONFIG, NET_CTRL_MQ_VQ_PAIRS_SET, NET_CTRL_RX, NET_CTRL_RX_ALLMULTI, NET_CTRL_RX_ALLUNI, NET_CTRL_RX_NOBCAST, NET_CTRL_RX_NOMULTI, NET_CTRL_RX_NOUNI, NET_CTRL_RX_PROMISC, NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, NET_CTRL_VLAN_DEL, NET_ERR, NET_OK } from '../src/spec/net.js';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../src/spec/ring.js';
import { C_CHAINS } from '../src/stats/queue-stats.js';
import { NET_CTRL_ERROR_CODES, type NetCtrlErrorCode, RX_FILTER_MAC_ENTRIES } from '../src/net/ctrl/index.js';
import {
  ALL_CTRL_FEATURES,
  BROADCAST,
  type CmdLayout,
  CtrlRig,
  type CtrlRigOptions,
  cmd,
  le16,
  le32,
  macTableData,
  multiMac,
  uniMac,
  withData,
} from './support/ctrl-rig.js';
import { at } from '../src/testing/split-ring.js';

const without = (...bits: number[]): FeatureSet => bits.reduce((f, b) => f & ~bit(b), ALL_CTRL_FEATURES);

/** The one error counted (and nothing else), and its total. */
function expectOnlyError(r: CtrlRig, code: NetCtrlErrorCode): void {
  const counted = Object.entries(r.handler.errors).filter(([, n]) => n !== 0);
  expect(counted).toEqual([[code, 1]]);
  expect(r.handler.lastError?.code).toBe(code);
}

/** Exec and expect NET_ERR with `code`, the filter and the target untouched. */
function expectRefused(r: CtrlRig, bytes: Uint8Array, code: NetCtrlErrorCode, layout?: CmdLayout): void {
  const before = r.filter.snapshot();
  expect(r.exec(bytes, layout)).toEqual({ ack: NET_ERR, len: 1 });
  expectOnlyError(r, code);
  expect(r.filter.snapshot()).toEqual(before);
  expect(r.target.effects).toEqual([]);
  expect(r.rig.guardsIntact()).toBe(true);
}

const rig = (o: CtrlRigOptions = {}) => new CtrlRig(o);
const OK = { ack: NET_OK, len: 1 };

describe('5.1.6.5 control virtqueue: command format', () => {
  it('5.1.6.5: class, command and data are read, the device writes one ack byte and the used length is 1', () => {
    const r = rig();
    expect(r.exec(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0))).toEqual(OK);
    expect(r.handler.acks).toEqual({ ok: 1, err: 0, none: 0 });
    expect(r.handler.commands.rx).toBe(1);
    expect(r.filter.snapshot().promisc).toBe(false);
  });

  it('5.1.6.5: a chain with no device-writable byte is used with length 0 and not executed', () => {
    for (const writable of [[], [0], [0, 0]]) {
      const r = rig();
      expect(r.exec(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0), { writable })).toEqual({ ack: null, len: 0 });
      expectOnlyError(r, 'NO_ACK_BYTE');
      expect(r.handler.acks).toEqual({ ok: 0, err: 0, none: 1 });
      expect(r.filter.snapshot().promisc).toBe(true);
    }
  });

  it('5.1.6.5: fewer than 2 readable bytes (no class and command) is NET_ERR', () => {
    for (const bytes of [new Uint8Array(0), Uint8Array.of(NET_CTRL_RX)]) {
      const r = rig();
      expectRefused(r, bytes, 'HEADER_TOO_SHORT');
      expect(r.handler.commands.unknown).toBe(1);
    }
  });

  it('5.1.6.5: a class the device does not know is NET_ERR', () => {
    for (const cls of [6, 7, 8, 0x7f, 0xff]) expectRefused(rig(), cmd(cls, 0, 1), 'UNKNOWN_CLASS');
  });

  it('5.1.6.5: a command its class does not define is NET_ERR', () => {
    const cases: Array<[number, number]> = [
      [NET_CTRL_RX, 6],
      [NET_CTRL_RX, 0xff],
      [NET_CTRL_MAC, 2],
      [NET_CTRL_VLAN, 2],
      [NET_CTRL_ANNOUNCE, 1],
      [NET_CTRL_MQ, 3],
      [NET_CTRL_GUEST_OFFLOADS, 1],
    ];
    for (const [cls, c] of cases) expectRefused(rig(), cmd(cls, c, 0), 'UNKNOWN_COMMAND');
  });

  it('5.1.6.5: the ack is the first device-writable byte, after empty writable descriptors and before any extra writable bytes', () => {
    for (const writable of [[0, 1], [4], [0, 0, 3, 2]]) {
      const r = rig();
      expect(r.exec(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0), { writable })).toEqual(OK);
      expect(r.filter.snapshot().promisc).toBe(false);
    }
  });

  it('2.7.4.2: a command whose readable data follows the ack buffer is refused by the ring (VirtqueueError), nothing executed or written', () => {
    const r = rig();
    const m = r.memory;
    const hdr = r.rig.alloc.alloc(16, 16);
    const ack = r.rig.alloc.alloc(16, 16);
    const data = r.rig.alloc.alloc(16, 16);
    m.write(hdr, cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC), 0, 2);
    m.writeU8(ack, 0xee);
    m.writeU8(data, 0);
    r.mini.setDesc(0, { addr: hdr, len: 2, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    r.mini.setDesc(1, { addr: ack, len: 1, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 });
    r.mini.setDesc(2, { addr: data, len: 1, flags: 0, next: 0 });
    r.mini.offer(0);
    r.mini.publish();
    expect(() => r.handler.poll()).toThrow(VirtqueueError);
    expect(() => r.handler.poll()).toThrow(expect.objectContaining({ code: 'READABLE_AFTER_WRITABLE' }));
    expect(m.readU8(ack)).toBe(0xee);
    expect(m.readU16(at.usedIdx(r.rig.ring))).toBe(0);
    expect(r.filter.snapshot().promisc).toBe(true);
    expect(r.rig.guardsIntact()).toBe(true);
  });

  it('a broken chain after good ones: the good ones are completed and published before the error is thrown', () => {
    const r = rig();
    r.submit(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0));
    r.mini.setDesc(40, { addr: 0xffff_0000, len: 16, flags: 0, next: 0 });
    r.mini.offer(40);
    r.mini.publish();
    expect(() => r.handler.poll()).toThrow(expect.objectContaining({ code: 'DESC_ADDRESS_OUT_OF_BOUNDS' }));
    expect(r.memory.readU16(at.usedIdx(r.rig.ring))).toBe(1);
    expect(r.handler.acks.ok).toBe(1);
    expect(r.interrupts).toBe(1);
  });
});

describe('5.1.6.5.1 packet receive filtering', () => {
  const modes: Array<[string, number, keyof ReturnType<CtrlRig['filter']['snapshot']>, number]> = [
    ['PROMISC', NET_CTRL_RX_PROMISC, 'promisc', NET_F_CTRL_RX],
    ['ALLMULTI', NET_CTRL_RX_ALLMULTI, 'allMulti', NET_F_CTRL_RX],
    ['ALLUNI', NET_CTRL_RX_ALLUNI, 'allUni', NET_F_CTRL_RX_EXTRA],
    ['NOMULTI', NET_CTRL_RX_NOMULTI, 'noMulti', NET_F_CTRL_RX_EXTRA],
    ['NOUNI', NET_CTRL_RX_NOUNI, 'noUni', NET_F_CTRL_RX_EXTRA],
    ['NOBCAST', NET_CTRL_RX_NOBCAST, 'noBcast', NET_F_CTRL_RX_EXTRA],
  ];

  for (const [name, c, field, feature] of modes) {
    it(`5.1.6.5.1.1: ${name} turns its mode on (1) and off (0) with ${feature === NET_F_CTRL_RX ? 'CTRL_RX' : 'CTRL_RX_EXTRA'}, before the buffer is used`, () => {
      const r = rig({ features: without(feature === NET_F_CTRL_RX ? NET_F_CTRL_RX_EXTRA : NET_F_CTRL_RX) });
      for (const on of [1, 0, 1]) {
        const pushed = r.device.nextUsed;
        expect(r.exec(cmd(NET_CTRL_RX, c, on))).toEqual(OK);
        expect(r.filter.snapshot()[field]).toBe(on === 1);
        expect(r.target.effects.at(-1)).toEqual({ what: 'setRxMode', value: [c, on === 1], pushed, usedIdx: pushed });
      }
      expect(r.handler.acks).toEqual({ ok: 3, err: 0, none: 0 });
    });

    it(`5.1.6.5.1.2: ${name} without ${feature === NET_F_CTRL_RX ? 'CTRL_RX' : 'CTRL_RX_EXTRA'} is NET_ERR and changes nothing`, () => {
      expectRefused(rig({ features: without(feature) }), cmd(NET_CTRL_RX, c, 1), 'NOT_NEGOTIATED');
    });
  }

  it('5.1.6.5.1.1: the data is one byte, 0 (off) or 1 (on): any other value is NET_ERR', () => {
    for (const v of [2, 0x80, 0xff]) expectRefused(rig(), cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, v), 'BAD_ON_OFF');
  });

  it('5.1.6.5.1.1: no data byte is NET_ERR (too short), two are NET_ERR (too long)', () => {
    expectRefused(rig(), cmd(NET_CTRL_RX, NET_CTRL_RX_ALLMULTI), 'DATA_TOO_SHORT');
    expectRefused(rig(), cmd(NET_CTRL_RX, NET_CTRL_RX_ALLMULTI, 1, 0), 'DATA_TOO_LONG');
  });
});

describe('5.1.6.5.2 MAC address filtering', () => {
  const tableSet = (uni: Uint8Array[], multi: Uint8Array[], counts?: [number, number]) => withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, macTableData(uni, multi, counts));

  it('5.1.6.5.2: MAC_TABLE_SET replaces the unicast and then the multicast table', () => {
    const r = rig();
    expect(r.exec(tableSet([uniMac(1), uniMac(2)], [multiMac(3)]))).toEqual(OK);
    expect(r.filter.snapshot()).toMatchObject({ unicast: [uniMac(1), uniMac(2)].map(formatMac), multicast: [formatMac(multiMac(3))] });
    expect(r.exec(tableSet([uniMac(9)], []))).toEqual(OK);
    expect(r.filter.snapshot()).toMatchObject({ unicast: [formatMac(uniMac(9))], multicast: [] });
  });

  it('5.1.6.5.2.2: either number may be 0 (both 0 empties the table)', () => {
    const r = rig();
    r.exec(tableSet([uniMac(1)], [multiMac(1)]));
    expect(r.exec(tableSet([], [multiMac(2)]))).toEqual(OK);
    expect(r.filter.snapshot()).toMatchObject({ unicast: [], multicast: [formatMac(multiMac(2))] });
    expect(r.exec(tableSet([], []))).toEqual(OK);
    expect(r.filter.snapshot()).toMatchObject({ unicast: [], multicast: [] });
  });

  it('5.1.6.5.2.1: the MAC filtering table is updated before the command is used', () => {
    const r = rig();
    expect(r.exec(tableSet([uniMac(1)], [multiMac(1)]))).toEqual(OK);
    expect(r.target.effects).toEqual([{ what: 'setMacTables', value: [1, 1], pushed: 0, usedIdx: 0 }]);
  });

  it('5.1.6.5.2.2: MAC_TABLE_SET with entries not matching the data length is NET_ERR', () => {
    // QEMU-style addresses: read as a count, their first bytes are huge, so a
    // wrong count cannot by chance describe a well-formed table.
    const qemuMac = (n: number) => Uint8Array.of(0x52, 0x54, 0x00, 0x00, 0x00, n);
    const two = [qemuMac(1), qemuMac(2)];
    const cases: Array<[string, Uint8Array]> = [
      ['unicast count one too many', tableSet(two, [multiMac(1)], [3, 1])],
      ['unicast count one too few', tableSet(two, [multiMac(1)], [1, 1])],
      ['multicast count one too many', tableSet(two, [multiMac(1)], [2, 2])],
      ['multicast count one too few', tableSet(two, [multiMac(1)], [2, 0])],
      ['a trailing byte', withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, Uint8Array.of(...macTableData(two, []), 0))],
      ['the multicast count missing', withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, macTableData(two, []).subarray(0, 16))],
      ['a count of 0xffffffff', tableSet([], [], [0xffffffff, 0])],
      ['a multicast count of 0xffffffff', tableSet([], [], [0, 0xffffffff])],
    ];
    for (const [what, bytes] of cases) {
      const r = rig();
      expect({ what, out: r.exec(bytes) }).toEqual({ what, out: { ack: NET_ERR, len: 1 } });
      expectOnlyError(r, 'MAC_TABLE_LENGTH_MISMATCH');
      expect(r.filter.snapshot()).toMatchObject({ unicast: [], multicast: [] });
    }
  });

  it('5.1.6.5.2.2: MAC_TABLE_SET shorter than its first count is NET_ERR (too short)', () => {
    for (const n of [0, 1, 3]) expectRefused(rig(), withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, new Uint8Array(n)), 'DATA_TOO_SHORT');
  });

  it('5.1.6.5.2.2: a multicast address in the unicast table, or a unicast one in the multicast table, is NET_ERR', () => {
    expectRefused(rig(), tableSet([uniMac(1), multiMac(2)], []), 'MAC_TABLE_WRONG_KIND');
    expectRefused(rig(), tableSet([], [multiMac(1), uniMac(2)]), 'MAC_TABLE_WRONG_KIND');
    expectRefused(rig(), tableSet([BROADCAST], []), 'MAC_TABLE_WRONG_KIND');
  });

  it(`5.1.6.5.2 footnote: more than ${RX_FILTER_MAC_ENTRIES} entries of a kind is NET_OK and accepts all of that kind (QEMU's overflow)`, () => {
    const r = rig();
    const many = Array.from({ length: RX_FILTER_MAC_ENTRIES + 1 }, (_, i) => multiMac(i));
    expect(r.exec(tableSet([uniMac(1)], many))).toEqual(OK);
    expect(r.filter.snapshot()).toMatchObject({ unicast: [formatMac(uniMac(1))], multicast: [], multicastOverflow: true, unicastOverflow: false });
  });

  it('5.1.6.5.2.2: MAC_TABLE_SET without CTRL_RX is NET_ERR', () => {
    expectRefused(rig({ features: without(NET_F_CTRL_RX) }), tableSet([uniMac(1)], []), 'NOT_NEGOTIATED');
  });

  it('5.1.6.5.2.1: MAC_ADDR_SET sets the filter primary MAC and config space mac before the command is used', () => {
    const r = rig();
    const mac = uniMac(0x4242);
    expect(r.exec(withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, mac))).toEqual(OK);
    expect(r.filter.snapshot().mac).toBe(formatMac(mac));
    expect(r.target.effects).toEqual([
      { what: 'setPrimaryMac', value: formatMac(mac), pushed: 0, usedIdx: 0 },
      { what: 'setMac', value: formatMac(mac), pushed: 0, usedIdx: 0 },
    ]);
  });

  it('MAC_ADDR_SET needs CTRL_MAC_ADDR (and is served without CTRL_RX, as Linux sends it)', () => {
    expectRefused(rig({ features: without(NET_F_CTRL_MAC_ADDR) }), withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, uniMac(1)), 'NOT_NEGOTIATED');
    expect(rig({ features: without(NET_F_CTRL_RX) }).exec(withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, uniMac(1)))).toEqual(OK);
  });

  it('5.1.6.5.2: MAC_ADDR_SET takes exactly the 6-byte MAC', () => {
    expectRefused(rig(), withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, uniMac(1).subarray(0, 5)), 'DATA_TOO_SHORT');
    expectRefused(rig(), withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, Uint8Array.of(...uniMac(1), 0)), 'DATA_TOO_LONG');
  });

  it('MAC_ADDR_SET with a multicast or broadcast address is NET_ERR', () => {
    expectRefused(rig(), withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, multiMac(1)), 'BAD_MAC');
    expectRefused(rig(), withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, BROADCAST), 'BAD_MAC');
  });
});

describe('5.1.6.5.3 VLAN filtering', () => {
  it('5.1.6.5.3: VLAN_ADD and VLAN_DEL add and remove a little-endian 16-bit VLAN id, before the buffer is used', () => {
    const r = rig();
    expect(r.exec(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(0x123)))).toEqual(OK);
    expect(r.exec(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(4095)))).toEqual(OK);
    expect(r.exec(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(0)))).toEqual(OK);
    expect(r.filter.snapshot().vlans).toEqual([0, 0x123, 4095]);
    expect(r.exec(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_DEL, ...le16(0x123)))).toEqual(OK);
    expect(r.exec(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_DEL, ...le16(7)))).toEqual(OK);
    expect(r.filter.snapshot().vlans).toEqual([0, 4095]);
    expect(r.target.effects.map((e) => [e.what, e.value, e.pushed === e.usedIdx])).toEqual([
      ['addVlan', 0x123, true],
      ['addVlan', 4095, true],
      ['addVlan', 0, true],
      ['delVlan', 0x123, true],
      ['delVlan', 7, true],
    ]);
    expect(r.target.effects.map((e) => e.pushed)).toEqual([0, 1, 2, 3, 4]);
  });

  it('VLAN id 4096 and above is NET_ERR', () => {
    for (const vid of [4096, 0x8000, 0xffff]) {
      expectRefused(rig(), cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(vid)), 'VLAN_ID_OUT_OF_RANGE');
      expectRefused(rig(), cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_DEL, ...le16(vid)), 'VLAN_ID_OUT_OF_RANGE');
    }
  });

  it('5.1.6.5.3: VLAN commands without CTRL_VLAN are NET_ERR', () => {
    expectRefused(rig({ features: without(NET_F_CTRL_VLAN) }), cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(1)), 'NOT_NEGOTIATED');
    expectRefused(rig({ features: without(NET_F_CTRL_VLAN) }), cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_DEL, ...le16(1)), 'NOT_NEGOTIATED');
  });

  it('5.1.6.5.3: the VLAN id is exactly 2 bytes', () => {
    expectRefused(rig(), cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, 1), 'DATA_TOO_SHORT');
    expectRefused(rig(), cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, 1, 0, 0), 'DATA_TOO_LONG');
  });

  it('1.3 5.1.6.5.3.1: VLAN filtering is on when CTRL_VLAN is negotiated and off (all tagged packets accepted) when it is not', () => {
    expect(rig().filter.snapshot().vlanFiltering).toBe(true);
    expect(rig({ features: without(NET_F_CTRL_VLAN) }).filter.snapshot().vlanFiltering).toBe(false);
  });
});

describe('5.1.6.5.4 gratuitous packet sending', () => {
  it('5.1.6.5.4.2: ANNOUNCE_ACK clears VIRTIO_NET_S_ANNOUNCE before the buffer is used', () => {
    const r = rig();
    r.exec(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0));
    expect(r.exec(cmd(NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK))).toEqual(OK);
    expect(r.target.effects.at(-1)).toEqual({ what: 'ackAnnounce', value: null, pushed: 1, usedIdx: 1 });
    expect(r.handler.commands.announce).toBe(1);
  });

  it('5.1.6.5.4: ANNOUNCE_ACK without GUEST_ANNOUNCE is NET_ERR', () => {
    expectRefused(rig({ features: without(NET_F_GUEST_ANNOUNCE) }), cmd(NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK), 'NOT_NEGOTIATED');
  });

  it('5.1.6.5.4: ANNOUNCE_ACK carries no data', () => {
    expectRefused(rig(), cmd(NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK, 0), 'DATA_TOO_LONG');
  });
});

describe('5.1.6.5.6 automatic receive steering in multiqueue mode', () => {
  it('5.1.6.5.6.2: the new virtqueue_pairs applies before the VQ_PAIRS_SET command is placed in a used buffer', () => {
    const r = rig({ maxPairs: 4 });
    expect(r.exec(cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, ...le16(3)))).toEqual(OK);
    expect(r.target.effects).toEqual([{ what: 'setActivePairs', value: 3, pushed: 0, usedIdx: 0 }]);
  });

  it('5.1.6.5.6.1: virtqueue_pairs from 1 to max_virtqueue_pairs is NET_OK', () => {
    const r = rig({ maxPairs: 8 });
    for (const n of [1, 8, 2]) expect(r.exec(cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, ...le16(n)))).toEqual(OK);
    expect(r.target.effects.map((e) => e.value)).toEqual([1, 8, 2]);
  });

  it('5.1.6.5.6.1: virtqueue_pairs of 0 or greater than max_virtqueue_pairs is NET_ERR', () => {
    for (const n of [0, 5, 0x8000, 0xffff]) expectRefused(rig({ maxPairs: 4 }), cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, ...le16(n)), 'PAIRS_OUT_OF_RANGE');
  });

  it('5.1.6.5.6: VQ_PAIRS_SET without MQ is NET_ERR', () => {
    expectRefused(rig({ features: without(NET_F_MQ) }), cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, ...le16(1)), 'NOT_NEGOTIATED');
  });

  it('5.1.6.5.6: virtqueue_pairs is exactly a le16', () => {
    expectRefused(rig(), cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, 1), 'DATA_TOO_SHORT');
    expectRefused(rig(), cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, 1, 0, 0), 'DATA_TOO_LONG');
  });

  it('5.1.6.5.5: RSS_CONFIG and HASH_CONFIG are NET_ERR: not negotiated, or (RSS negotiated) not implemented', () => {
    expectRefused(rig(), cmd(NET_CTRL_MQ, NET_CTRL_MQ_RSS_CONFIG, 0), 'NOT_NEGOTIATED');
    expectRefused(rig(), cmd(NET_CTRL_MQ, NET_CTRL_MQ_HASH_CONFIG, 0), 'NOT_NEGOTIATED');
    expectRefused(rig({ features: ALL_CTRL_FEATURES | bit(NET_F_RSS) }), cmd(NET_CTRL_MQ, NET_CTRL_MQ_RSS_CONFIG, 0), 'UNSUPPORTED');
  });
});

describe('5.1.6.5.8 offloads state configuration', () => {
  const set = (v: bigint) => {
    const d = new Uint8Array(8);
    new DataView(d.buffer).setBigUint64(0, v, true);
    return withData(NET_CTRL_GUEST_OFFLOADS, NET_CTRL_GUEST_OFFLOADS_SET, d);
  };

  it('GUEST_OFFLOADS_SET on a device without the run-time hook is NET_ERR, counted UNSUPPORTED', () => {
    expectRefused(rig(), set(bit(NET_F_GUEST_CSUM)), 'UNSUPPORTED');
  });

  it('5.1.6.5.8.1: GUEST_OFFLOADS_SET applies a le64 set of negotiated guest offloads before the buffer is used', () => {
    const r = rig({ offloadsHook: true });
    const v = bit(NET_F_GUEST_CSUM) | bit(NET_F_GUEST_TSO4);
    expect(r.exec(set(v))).toEqual(OK);
    expect(r.exec(set(0n))).toEqual(OK);
    expect(r.target.effects).toEqual([
      { what: 'setGuestOffloads', value: v, pushed: 0, usedIdx: 0 },
      { what: 'setGuestOffloads', value: 0n, pushed: 1, usedIdx: 1 },
    ]);
  });

  it('5.1.6.5.8.2: enabling an offload that was not negotiated (or is no guest offload) is NET_ERR', () => {
    expectRefused(rig({ offloadsHook: true }), set(bit(NET_F_GUEST_UFO)), 'OFFLOAD_NOT_NEGOTIATED');
    expectRefused(rig({ offloadsHook: true }), set(bit(NET_F_MQ)), 'OFFLOAD_NOT_NEGOTIATED');
    expectRefused(rig({ offloadsHook: true }), set(1n << 63n), 'OFFLOAD_NOT_NEGOTIATED');
  });

  it('5.1.6.5.8: GUEST_OFFLOADS_SET needs CTRL_GUEST_OFFLOADS and exactly 8 bytes', () => {
    expectRefused(rig({ offloadsHook: true, features: without(NET_F_CTRL_GUEST_OFFLOADS) }), set(0n), 'NOT_NEGOTIATED');
    expectRefused(rig({ offloadsHook: true }), set(0n).subarray(0, 9), 'DATA_TOO_SHORT');
    expectRefused(rig({ offloadsHook: true }), Uint8Array.of(...set(0n), 0), 'DATA_TOO_LONG');
  });
});

describe('descriptor layouts: the command may be split anywhere', () => {
  const commands: Array<[string, Uint8Array, CtrlRigOptions?]> = [
    ['RX NOBCAST', cmd(NET_CTRL_RX, NET_CTRL_RX_NOBCAST, 1)],
    ['MAC_TABLE_SET 2+2', withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, macTableData([uniMac(1), uniMac(2)], [multiMac(3), multiMac(4)]))],
    ['MAC_TABLE_SET 0+1', withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, macTableData([], [multiMac(3)]))],
    ['MAC_TABLE_SET bad length', withData(NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, macTableData([uniMac(1)], [multiMac(3)], [1, 2]))],
    ['MAC_ADDR_SET', withData(NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, uniMac(0x10203))],
    ['VLAN_ADD', cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(0xabc))],
    ['VQ_PAIRS_SET', cmd(NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, ...le16(2))],
    ['ANNOUNCE_ACK', cmd(NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK)],
    ['GUEST_OFFLOADS_SET', cmd(NET_CTRL_GUEST_OFFLOADS, NET_CTRL_GUEST_OFFLOADS_SET, ...le32(2), ...le32(0)), { offloadsHook: true }],
  ];

  /** What a command did: its outcome, the filter, the effects and the counters. */
  function run(bytes: Uint8Array, layout: CmdLayout, o: CtrlRigOptions = {}) {
    const r = rig({ size: 256, indirect: true, ...o });
    const out = r.exec(bytes, layout);
    expect(r.rig.guardsIntact()).toBe(true);
    return { out, filter: { ...r.filter.snapshot(), generation: 0 }, effects: r.target.effects.map((e) => [e.what, e.value]), errors: r.handler.errors };
  }

  for (const [name, bytes, o] of commands) {
    it(`${name}: header and data in one descriptor, split at every byte, every byte alone, indirect, with empty descriptors: all the same`, () => {
      const reference = run(bytes, {}, o);
      const layouts: CmdLayout[] = [
        { cuts: [2] },
        { cuts: Array.from({ length: bytes.length }, (_, i) => i) },
        { cuts: [1, 1, 2, 2], writable: [0, 1] },
        { indirect: true, cuts: [1, 3] },
        { indirect: true },
      ];
      for (let cut = 1; cut < bytes.length; cut++) layouts.push({ cuts: [cut] });
      for (let a = 1; a < bytes.length; a++) for (let b = a + 1; b < bytes.length; b += 3) layouts.push({ cuts: [a, b] });
      for (const layout of layouts) expect({ layout, ...run(bytes, layout, o) }).toEqual({ layout, ...reference });
    });
  }
});

describe('batches and notifications', () => {
  it('one poll completes every available chain, publishes used.idx once and interrupts once', () => {
    const r = rig();
    const heads = [
      r.submit(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0)),
      r.submit(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(5))),
      r.submit(cmd(9, 9)),
      r.submit(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 1), { writable: [] }),
    ].map((s) => s?.head);
    r.mini.publish();
    expect(r.handler.poll()).toBe(4);
    expect(r.interrupts).toBe(1);
    expect(r.memory.readU16(at.usedIdx(r.rig.ring))).toBe(4);
    expect(r.mini.reap()).toEqual(heads.map((id, i) => ({ id, len: i === 3 ? 0 : 1 })));
    expect(r.handler.poll()).toBe(0);
    expect(r.interrupts).toBe(1);
    expect(r.stats.f64[r.stats.base(0) + C_CHAINS]).toBe(4);
    expect(r.handler.acks).toEqual({ ok: 2, err: 1, none: 1 });
    expect(r.handler.commands).toMatchObject({ rx: 2, vlan: 1, unknown: 1 });
  });

  it('2.7.7: with VIRTQ_AVAIL_F_NO_INTERRUPT set the device does not interrupt', () => {
    const r = rig();
    r.mini.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    r.exec(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0));
    expect(r.interrupts).toBe(0);
  });

  it('a full ring of commands is completed in one poll', () => {
    const r = rig({ size: 8 });
    for (let i = 0; i < 4; i++) r.submit(cmd(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, ...le16(i)));
    r.mini.publish();
    expect(r.handler.poll()).toBe(4);
    expect(r.filter.snapshot().vlans).toEqual([0, 1, 2, 3]);
  });

  it('arm() asks for a kick and reports chains already there; disarm() stops kicks', () => {
    const r = rig();
    r.handler.disarm();
    expect(r.memory.readU16(at.usedFlags(r.rig.ring))).toBe(1);
    expect(r.handler.arm()).toBe(false);
    expect(r.memory.readU16(at.usedFlags(r.rig.ring))).toBe(0);
    r.submit(cmd(NET_CTRL_RX, NET_CTRL_RX_PROMISC, 0));
    r.mini.publish();
    expect(r.handler.arm()).toBe(true);
    r.handler.quiesce();
    expect(r.handler.poll()).toBe(1);
  });

  it('the error counters list every code, all zero at the start', () => {
    const r = rig();
    expect(Object.keys(r.handler.errors).sort()).toEqual([...NET_CTRL_ERROR_CODES].sort());
    expect(CtrlRig.sum(r.handler.errors)).toBe(0);
  });

  it('a restored ring whose indices are about to wrap past 2^16 keeps working', () => {
    const r = new CtrlRig({ size: 4, start: 0xfffe });
    for (let i = 0; i < 5; i++) expect(r.exec(cmd(NET_CTRL_RX, NET_CTRL_RX_ALLMULTI, i & 1))).toEqual(OK);
    expect(r.memory.readU16(at.usedIdx(r.rig.ring))).toBe(3);
    expect(r.filter.snapshot().allMulti).toBe(false);
  });
});
