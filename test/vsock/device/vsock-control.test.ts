/**
 * virtio-vsock control plane (5.10.3, 5.10.4, 5.10.6.5, 5.10.6.6): feature
 * rules, guest_cid config, the event queue (served inline), transport reset
 * and device reset.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FeatureNegotiationError, GuestAllocator, InvalidArgumentError, PciCommonConfig, PciDriver, SharedArena, VirtioVsockDevice, VirtqueueError, featureSet } from '../../../src/index.js';
import { PortChannelConsumer } from '../../../src/port/port-channel.js';
import { F_VERSION_1, VSOCK_F_MRG_RXBUF, VSOCK_F_NO_IMPLIED_STREAM, VSOCK_F_SEQPACKET, VSOCK_F_STREAM, bit } from '../../../src/spec/features.js';
import { DEVICE_ID_VSOCK, STATUS_DEVICE_NEEDS_RESET } from '../../../src/spec/status.js';
import { VSOCK_CFG_GUEST_CID, VSOCK_EVENT_QUEUE, VSOCK_EVENT_TRANSPORT_RESET, VSOCK_RX_QUEUE, VSOCK_TX_QUEUE } from '../../../src/spec/vsock.js';
import { VSOCK_DEVICE_FEATURES } from '../../../src/vsock/vsock-device.js';
import { BASE_FEATURES, GUEST_CID, type VsockRig, collect, packet, payloadOf, sameBytes, until, vsockRig } from './vsock-rig.js';

let rig: VsockRig | undefined;
const devices: VirtioVsockDevice[] = [];
afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

function bareDevice(guestCid: number, features = VSOCK_DEVICE_FEATURES): { device: VirtioVsockDevice; driver: PciDriver } {
  const arena = new SharedArena(2 << 20);
  const memory = arena.guestMemory(1 << 19);
  const device = new VirtioVsockDevice(memory, { guestCid, features, channelBytes: 1 << 18, arena });
  devices.push(device);
  return { device, driver: new PciDriver(new PciCommonConfig(device), memory, new GuestAllocator(memory)) };
}

/** Read le64 guest_cid as a driver does: two 32-bit reads, retried while config_generation moves (2.5.1). */
function readGuestCid(device: VirtioVsockDevice): bigint {
  for (;;) {
    const gen = device.configGeneration;
    const lo = device.readConfig(VSOCK_CFG_GUEST_CID, 4);
    const hi = device.readConfig(VSOCK_CFG_GUEST_CID + 4, 4);
    if (device.configGeneration === gen) return (BigInt(hi) << 32n) | BigInt(lo);
  }
}

describe('5.10.4 device configuration layout', () => {
  it('guest_cid is a le64 read as two 32-bit words under config_generation; the device id is 19', () => {
    for (const cid of [3, 0x1234_5678, 0xffff_fffe]) {
      const { device } = bareDevice(cid);
      expect(device.model.deviceId).toBe(DEVICE_ID_VSOCK);
      expect(readGuestCid(device)).toBe(BigInt(cid));
      expect(device.guestCid).toBe(cid);
      expect(device.readConfig(VSOCK_CFG_GUEST_CID + 4, 4)).toBe(0);
      const word = device.hostPort.guestCid;
      expect(Atomics.load(new Int32Array(word.buffer), word.index) >>> 0).toBe(cid);
    }
  });

  it('a guest CID outside [3, 0xffffffff) is refused (reserved CIDs 0, 1, 2 and -1)', () => {
    const arena = new SharedArena(1 << 20);
    const memory = arena.guestMemory(1 << 19);
    for (const cid of [0, 1, 2, 0xffff_ffff, 2 ** 32, -3, 3.5, Number.NaN]) {
      expect(() => new VirtioVsockDevice(memory, { guestCid: cid, arena }), `CID ${cid}`).toThrow(InvalidArgumentError);
    }
    expect(() => new VirtioVsockDevice(memory, { guestCid: 3, channelBytes: 1000, arena })).toThrow(InvalidArgumentError);
  });

  it('5.10.6.6: transportReset(newCid) changes guest_cid with a new generation and a config interrupt, and the CID word', async () => {
    const r = (rig = await vsockRig());
    let interrupts = 0;
    r.device.on('config-interrupt', () => interrupts++);
    const gen = r.device.configGeneration;
    r.device.transportReset(0xabcdef);
    expect(r.device.configGeneration).not.toBe(gen);
    expect(readGuestCid(r.device)).toBe(0xabcdefn);
    expect(interrupts).toBe(1);
    const word = r.device.hostPort.guestCid;
    expect(Atomics.load(new Int32Array(word.buffer), word.index) >>> 0).toBe(0xabcdef);
    expect(r.resets.at(-1)).toEqual({ cause: 'event', guestCid: 0xabcdef });
    expect(() => r.device.transportReset(2)).toThrow(InvalidArgumentError);
    expect(readGuestCid(r.device)).toBe(0xabcdefn);
  });
});

describe('5.10.3 feature bits', () => {
  const NO_IMPLIED = bit(VSOCK_F_NO_IMPLIED_STREAM);
  const OFFER = VSOCK_DEVICE_FEATURES | NO_IMPLIED;

  it('5.10.3.1: FEATURES_OK is refused for NO_IMPLIED_STREAM without STREAM or SEQPACKET', async () => {
    const { device, driver } = bareDevice(GUEST_CID, OFFER);
    await expect(driver.negotiate(bit(F_VERSION_1) | NO_IMPLIED)).rejects.toThrow(FeatureNegotiationError);
    expect(device.lastFeatureRefusal).toMatch(/5\.10\.3\.1/);
  });

  for (const [name, set] of [
    ['NO_IMPLIED_STREAM + STREAM', featureSet(F_VERSION_1, VSOCK_F_NO_IMPLIED_STREAM, VSOCK_F_STREAM)],
    ['NO_IMPLIED_STREAM + SEQPACKET', featureSet(F_VERSION_1, VSOCK_F_NO_IMPLIED_STREAM, VSOCK_F_SEQPACKET)],
    ['neither (STREAM implied)', featureSet(F_VERSION_1)],
  ] as const) {
    it(`5.10.3.1: ${name} is accepted`, async () => {
      const { device, driver } = bareDevice(GUEST_CID, OFFER);
      expect(await driver.negotiate(set)).toBe(set);
      expect(device.seqpacket).toBe((set & bit(VSOCK_F_SEQPACKET)) !== 0n);
    });
  }

  it('the default offer: VERSION_1, EVENT_IDX, INDIRECT_DESC, STREAM, SEQPACKET, MRG_RXBUF; hostPort.features is the negotiated set', async () => {
    expect(VSOCK_DEVICE_FEATURES & bit(VSOCK_F_NO_IMPLIED_STREAM)).toBe(0n);
    expect(VSOCK_DEVICE_FEATURES & bit(VSOCK_F_MRG_RXBUF)).not.toBe(0n);
    const r = (rig = await vsockRig());
    expect(r.device.seqpacket).toBe(true);
    expect(r.device.hostPort.features).toBe(BASE_FEATURES.toString(16));
    expect(r.device.numQueues).toBe(3);
  });
});

describe('5.10.6.5 event queue', () => {
  it('TRANSPORT_RESET goes into a posted event buffer: le32 id 0, used length 4; the host side hears it', async () => {
    const r = (rig = await vsockRig());
    r.post(2, 8, r.ev);
    r.device.transportReset();
    const [e] = await collect(() => r.reap(r.ev), 1, 'the event');
    expect(e.len).toBe(4);
    expect(new DataView(e.bytes.buffer).getUint32(0, true)).toBe(VSOCK_EVENT_TRANSPORT_RESET);
    expect(r.resets).toEqual([{ cause: 'event', guestCid: GUEST_CID }]);
    const s = r.vsockStats();
    expect(s.eventsDelivered).toBe(1);
    expect(s.eventPending).toBe(false);
    // The other buffer stays posted for the next event.
    await new Promise((res) => setTimeout(res, 30));
    expect(r.reap(r.ev)).toEqual([]);
  });

  it('an event with no buffer posted stays pending (several resets make one event) and is delivered when the driver posts one', async () => {
    const r = (rig = await vsockRig());
    r.device.transportReset();
    r.device.transportReset();
    await new Promise((res) => setTimeout(res, 50));
    expect(r.vsockStats().eventPending).toBe(true);
    r.post(1, 4, r.ev);
    const [e] = await collect(() => r.reap(r.ev), 1, 'the event');
    expect(e.len).toBe(4);
    expect(r.vsockStats()).toMatchObject({ eventPending: false, eventsDelivered: 1 });
    r.post(1, 4, r.ev);
    await new Promise((res) => setTimeout(res, 30));
    expect(r.reap(r.ev)).toEqual([]);
  });

  for (const [name, lens, readable] of [
    ['shorter than 4 bytes', [3], false],
    ['device-readable', [8], true],
  ] as const) {
    it(`an event buffer ${name} is a driver error: counted, DEVICE_NEEDS_RESET`, async () => {
      const r = (rig = await vsockRig());
      const addr = r.alloc.alloc(16, 16);
      const head = r.ev.mini.addChain(lens.map((len) => ({ addr, len, write: !readable })));
      expect(head).toBeDefined();
      r.ev.kick();
      r.device.transportReset();
      await until(() => r.errors.length === 1, 'the queue error');
      expect(r.errors[0].queue).toBe(VSOCK_EVENT_QUEUE);
      expect(r.errors[0].error).toBeInstanceOf(VirtqueueError);
      expect(r.device.status & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
      expect(r.device.queueStats(VSOCK_EVENT_QUEUE).errors).toBe(1);
      expect(r.vsockStats()).toMatchObject({ errors: 1, eventPending: true, eventsDelivered: 0 });
    });
  }
});

describe('device reset', () => {
  it("a device reset emits 'transportReset', empties both channels and drops a pending event; the device then works from scratch", async () => {
    const r = (rig = await vsockRig());
    // Guest -> host packets the host never read, host -> guest packets with no buffer posted.
    for (let i = 0; i < 3; i++) r.sendTx(packet({ fwdCnt: i }, payloadOf(100, i)));
    for (let i = 0; i < 2; i++) r.hostSend(packet({ srcCid: 2, dstCid: GUEST_CID, fwdCnt: 100 + i }, payloadOf(50, i)));
    await until(() => r.device.queueStats(VSOCK_TX_QUEUE).chains === 3, 'tx packets in the channel');
    r.device.transportReset();
    expect(r.vsockStats().eventPending).toBe(true);
    r.resets.length = 0;
    await r.device.reset();
    expect(r.device.status).toBe(0);
    expect(r.resets).toEqual([{ cause: 'device-reset', guestCid: GUEST_CID }]);
    for (const spec of [r.device.hostPort.toHost, r.device.hostPort.toGuest]) {
      const c = new PortChannelConsumer(spec);
      expect(c.peek()).toBe(-1);
      expect(c.position).toBe(0);
    }
    expect(r.vsockStats().eventPending).toBe(false);

    // Up again through a fresh driver: only new packets appear on either side.
    await r.reopen();
    r.post(4, 4096);
    r.post(1, 4, r.ev);
    const toHost = packet({ srcPort: 5 }, payloadOf(10, 50));
    const toGuest = packet({ srcCid: 2, dstCid: GUEST_CID, srcPort: 6 }, payloadOf(10, 60));
    r.sendTx(toHost);
    r.hostSend(toGuest);
    const [h] = await collect(() => r.hostRecv(), 1, 'the new tx packet');
    const [g] = await collect(() => r.reap(), 1, 'the new rx packet');
    expect(sameBytes(h, toHost)).toBe(true);
    expect(sameBytes(g.bytes, toGuest)).toBe(true);
    await new Promise((res) => setTimeout(res, 30));
    expect(r.hostRecv()).toEqual([]);
    expect(r.reap()).toEqual([]);
    expect(r.reap(r.ev)).toEqual([]);
    expect(r.device.queueRunning(VSOCK_RX_QUEUE)).toBe(true);
  });
});
