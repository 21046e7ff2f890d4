/**
 * The control virtqueue end to end (5.1.6.5): the driver's NetCtrlDriver
 * against the device's handler on the control plane, with the receive filter
 * it programs applied by the real rx queue worker to frames from a peer NIC.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type FeatureSet, featureSet, parseMac } from '../../src/index.js';
import type { NetCtrlDriver } from '../../src/net/ctrl/net-ctrl-driver.js';
import { NET_F_CTRL_MAC_ADDR, NET_F_CTRL_RX, NET_F_CTRL_RX_EXTRA, NET_F_CTRL_VLAN, NET_F_CTRL_VQ, NET_F_GUEST_ANNOUNCE } from '../../src/spec/features.js';
import { NET_CFG_STATUS, NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK, NET_CTRL_GUEST_OFFLOADS, NET_CTRL_GUEST_OFFLOADS_SET, NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, NET_CTRL_MAC_TABLE_SET, NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, NET_CTRL_RX, NET_CTRL_RX_PROMISC, NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, NET_ERR, NET_OK, NET_S_ANNOUNCE, NET_S_LINK_UP } from '../../src/spec/net.js';
import { STATUS_DEVICE_NEEDS_RESET } from '../../src/spec/status.js';
import { BASE_FEATURES, HdrTransfer, type NetRig, RX0, frameTo, netRig, seqOf } from '../support/net-rig.js';

let rig: NetRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const MAC_B = '52:54:00:00:00:0b';
const OTHER = '52:54:00:00:00:99';
const BCAST = 'ff:ff:ff:ff:ff:ff';
const MCAST1 = '01:00:5e:00:00:01';
const MCAST2 = '01:00:5e:00:00:02';
const CTRL: FeatureSet = BASE_FEATURES | featureSet(NET_F_CTRL_VQ, NET_F_CTRL_RX, NET_F_CTRL_RX_EXTRA, NET_F_CTRL_VLAN, NET_F_CTRL_MAC_ADDR, NET_F_GUEST_ANNOUNCE);

async function ctrlRig(): Promise<NetRig> {
  return netRig({}, { device: { mac: MAC_B }, driver: { features: CTRL } });
}

let seq = 0;

/**
 * Send one frame to each destination (optionally VLAN tagged) from NIC a and
 * return the destinations whose frame NIC b's driver received, in order.
 */
async function deliver(r: NetRig, dsts: Array<string | [string, number]>): Promise<string[]> {
  const sent = dsts.map((d) => {
    const [dst, vid] = typeof d === 'string' ? [d, undefined] : d;
    return { name: vid === undefined ? dst : `${dst}@${vid}`, frame: frameTo(dst, ++seq, 64, vid) };
  });
  const filteredBefore = r.b.queueStats(RX0).dropsFiltered;
  const t = new HdrTransfer(r.da, r.db);
  const start = Date.now();
  // Every frame either arrives or is counted as filtered.
  await t.run(sent, 0);
  while (t.received.length + r.b.queueStats(RX0).dropsFiltered - filteredBefore < sent.length) {
    if (Date.now() - start > 10_000) throw new Error(`frames neither delivered nor filtered: ${sent.length} sent, ${t.received.length} delivered`);
    await t.drain(5);
  }
  return t.received.map((p) => sent.find((s) => seqOf(s.frame) === seqOf(p.frame))!.name);
}

function ctrlOf(r: NetRig): NetCtrlDriver {
  const c = r.db.ctrl;
  if (c === undefined) throw new Error('no control queue');
  return c;
}

describe('5.1.6.5 control virtqueue through the device handler and the rx worker', () => {
  it('5.1.6.5.1: promiscuous by default; PROMISC off filters unicast to other MACs (dropsFiltered), own MAC and broadcast pass', async () => {
    rig = await ctrlRig();
    expect(await deliver(rig, [MAC_B, OTHER, BCAST, MCAST1])).toEqual([MAC_B, OTHER, BCAST, MCAST1]);
    expect(await ctrlOf(rig).setPromisc(false)).toBe(true);
    expect(rig.b.rxFilter.snapshot().promisc).toBe(false);
    const before = rig.b.queueStats(RX0).dropsFiltered;
    expect(await deliver(rig, [MAC_B, OTHER, BCAST, MCAST1, MAC_B])).toEqual([MAC_B, BCAST, MAC_B]);
    expect(rig.b.queueStats(RX0).dropsFiltered - before).toBe(2);
    expect(await ctrlOf(rig).setPromisc(true)).toBe(true);
    expect(await deliver(rig, [OTHER, MCAST1])).toEqual([OTHER, MCAST1]);
  });

  it('5.1.6.5.2: MAC_TABLE_SET admits the listed unicast and multicast addresses; ALLMULTI admits every multicast', async () => {
    rig = await ctrlRig();
    const c = ctrlOf(rig);
    expect(await c.setPromisc(false)).toBe(true);
    expect(await deliver(rig, [OTHER, MCAST1, MCAST2])).toEqual([]);
    expect(await c.setMacTable([parseMac(OTHER)], [parseMac(MCAST1)])).toBe(true);
    expect(await deliver(rig, [OTHER, MCAST1, MCAST2, MAC_B])).toEqual([OTHER, MCAST1, MAC_B]);
    expect(await c.setAllMulti(true)).toBe(true);
    expect(await deliver(rig, [MCAST1, MCAST2, '52:54:00:00:00:98'])).toEqual([MCAST1, MCAST2]);
    expect(await c.setAllMulti(false)).toBe(true);
    // An empty table again: only the primary MAC (and broadcast).
    expect(await c.setMacTable([], [])).toBe(true);
    expect(await deliver(rig, [OTHER, MCAST1, MCAST2, BCAST, MAC_B])).toEqual([BCAST, MAC_B]);
  });

  it('5.1.6.5.3: with CTRL_VLAN tagged frames need their VLAN in the table (VLAN_ADD / VLAN_DEL); untagged frames pass', async () => {
    rig = await ctrlRig();
    const c = ctrlOf(rig);
    expect(await c.setPromisc(false)).toBe(true);
    expect(await deliver(rig, [[MAC_B, 100], MAC_B, [MAC_B, 200]])).toEqual([MAC_B]);
    expect(await c.addVlan(100)).toBe(true);
    expect(rig.b.rxFilter.snapshot().vlans).toEqual([100]);
    expect(await deliver(rig, [[MAC_B, 100], MAC_B, [MAC_B, 200]])).toEqual([`${MAC_B}@100`, MAC_B]);
    expect(await c.delVlan(100)).toBe(true);
    expect(await deliver(rig, [[MAC_B, 100], MAC_B])).toEqual([MAC_B]);
  });

  it('5.1.6.5.2.1: MAC_ADDR_SET updates config space mac (the generation moves) and the filter follows it', async () => {
    rig = await ctrlRig();
    const c = ctrlOf(rig);
    expect(await c.setPromisc(false)).toBe(true);
    const gen = rig.b.configGeneration;
    const NEW = '52:54:00:00:00:0c';
    expect(await c.setMac(parseMac(NEW))).toBe(true);
    expect(rig.b.mac).toBe(NEW);
    expect(rig.b.configGeneration).not.toBe(gen);
    expect(await deliver(rig, [MAC_B, NEW, BCAST])).toEqual([NEW, BCAST]);
  });

  it('5.1.6.5.4: announce() sets VIRTIO_NET_S_ANNOUNCE and raises a config interrupt; ANNOUNCE_ACK clears it', async () => {
    rig = await ctrlRig();
    const b = rig.b;
    const irq = rig.db.interruptWord;
    const before = Atomics.load(irq.i32, irq.index);
    const gen = b.configGeneration;
    const event = new Promise<void>((resolve) => b.once('config-interrupt', () => resolve()));
    b.announce();
    await event;
    expect(b.readConfig(NET_CFG_STATUS, 2)).toBe(NET_S_LINK_UP | NET_S_ANNOUNCE);
    expect(b.configGeneration).not.toBe(gen);
    expect(Atomics.load(irq.i32, irq.index)).not.toBe(before);
    expect(await ctrlOf(rig).ackAnnounce()).toBe(true);
    expect(b.readConfig(NET_CFG_STATUS, 2)).toBe(NET_S_LINK_UP);
    // Without GUEST_ANNOUNCE there is nothing to announce to.
    await rig.reopen('b', { features: CTRL & ~featureSet(NET_F_GUEST_ANNOUNCE) });
    expect(() => b.announce()).toThrow(/GUEST_ANNOUNCE/);
  });

  it('malformed or unnegotiated commands get VIRTIO_NET_ERR, change nothing, and the data path keeps working', async () => {
    rig = await ctrlRig();
    const c = ctrlOf(rig);
    expect(await c.setPromisc(false)).toBe(true);
    const snapshot = rig.b.rxFilter.snapshot();
    const le32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
    const bad: Array<[string, number, number, number[]]> = [
      ['PROMISC with two data bytes', NET_CTRL_RX, NET_CTRL_RX_PROMISC, [1, 0]],
      ['PROMISC with no data', NET_CTRL_RX, NET_CTRL_RX_PROMISC, []],
      ['PROMISC value 2', NET_CTRL_RX, NET_CTRL_RX_PROMISC, [2]],
      ['unknown rx command', NET_CTRL_RX, 9, [1]],
      ['unknown class', 77, 0, []],
      ['MAC_TABLE_SET truncated', NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, [...le32(2), 0x52, 0x54, 0, 0, 0, 1]],
      ['MAC_TABLE_SET multicast in the unicast table', NET_CTRL_MAC, NET_CTRL_MAC_TABLE_SET, [...le32(1), 1, 0, 0x5e, 0, 0, 9, ...le32(0)]],
      ['MAC_ADDR_SET multicast', NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, [1, 0, 0x5e, 0, 0, 1]],
      ['MAC_ADDR_SET short', NET_CTRL_MAC, NET_CTRL_MAC_ADDR_SET, [0x52, 0x54, 0]],
      ['VLAN_ADD vid 5000', NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, [5000 & 0xff, 5000 >>> 8]],
      ['ANNOUNCE_ACK with data', NET_CTRL_ANNOUNCE, NET_CTRL_ANNOUNCE_ACK, [0]],
      ['VQ_PAIRS_SET without MQ', NET_CTRL_MQ, NET_CTRL_MQ_VQ_PAIRS_SET, [1, 0]],
      ['GUEST_OFFLOADS_SET not negotiated', NET_CTRL_GUEST_OFFLOADS, NET_CTRL_GUEST_OFFLOADS_SET, [0, 0, 0, 0, 0, 0, 0, 0]],
    ];
    for (const [what, cls, cmd, data] of bad) expect(await c.command(cls, cmd, Uint8Array.from(data)), what).toBe(NET_ERR);
    const after = rig.b.rxFilter.snapshot();
    expect({ ...after, generation: 0 }).toEqual({ ...snapshot, generation: 0 });
    expect(rig.b.mac).toBe(MAC_B);
    expect(rig.b.status & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    // Still answering, still filtering, still delivering.
    expect(await c.command(NET_CTRL_RX, NET_CTRL_RX_PROMISC, Uint8Array.of(0))).toBe(NET_OK);
    expect(await deliver(rig, [MAC_B, OTHER, BCAST])).toEqual([MAC_B, BCAST]);
  });

  it('5.1.6.5.1.2: a driver without CTRL_RX gets NET_ERR for rx mode commands and stays promiscuous', async () => {
    rig = await netRig({}, { device: { mac: MAC_B }, driver: { features: BASE_FEATURES | featureSet(NET_F_CTRL_VQ) } });
    expect(await ctrlOf(rig).setPromisc(false)).toBe(false);
    expect(await deliver(rig, [MAC_B, OTHER])).toEqual([MAC_B, OTHER]);
  });
});
