/**
 * NetCtrlDriver (driver side of the control virtqueue) against NetCtrlQueue
 * (device side), both over one guest memory: the device served on the same
 * thread from the kick, from a setImmediate loop, or through an interrupt
 * word; and against the independent mini device to check what it lays out.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, formatMac } from '../src/index.js';
import { type WordRef, ring } from '../src/notify/notify-area.js';
import { SplitQueueDevice } from '../src/ring/split-device.js';
import { SplitQueueDriver } from '../src/ring/split-driver.js';
import { NET_F_CTRL_VLAN, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, bit } from '../src/spec/features.js';
import { NET_CTRL_RX, NET_CTRL_RX_NOBCAST, NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, NET_ERR, NET_OK } from '../src/spec/net.js';
import { NET_CTRL_BUFFER_BYTES, NetCtrlDriver, NetCtrlError, NetCtrlQueue, RX_FILTER_MAC_ENTRIES } from '../src/net/ctrl/index.js';
import type { HandlerContext } from '../src/worker/queue-handler.js';
import { StatsBlock } from '../src/stats/queue-stats.js';
import { NET_QUEUE_COUNTERS } from '../src/net/net-counters.js';
import { ALL_CTRL_FEATURES, RecordingTarget, le16, multiMac, uniMac } from './support/ctrl-rig.js';
import { MiniDevice } from '../src/testing/mini-device.js';
import { at, ringRig } from '../src/testing/split-ring.js';

interface DriverRigOptions {
  features?: bigint;
  size?: number;
  bufferSize?: number;
  eventIdx?: boolean;
  interrupt?: boolean;
  timeoutMs?: number;
}

/** Both sides of a control queue; `kick` starts as "serve on this thread". */
function driverRig(o: DriverRigOptions = {}) {
  const r = ringRig(o.size ?? 16, { memSize: 1 << 18, eventIdx: o.eventIdx ?? false });
  const bufferSize = o.bufferSize ?? NET_CTRL_BUFFER_BYTES;
  const buffer = { gpa: r.alloc.alloc(bufferSize, 16), size: bufferSize };
  const queue = new SplitQueueDriver(r.memory, r.state);
  const device = new SplitQueueDevice(r.memory, r.state);
  const target = new RecordingTarget(o.features ?? ALL_CTRL_FEATURES, 4, () => ({ pushed: device.nextUsed, usedIdx: r.memory.readU16(at.usedIdx(r.ring)) }), true);
  const irq: WordRef = { buffer: new SharedArrayBuffer(64), index: 0 };
  const irq32 = new Int32Array(irq.buffer);
  const ctx: HandlerContext = { queue: 0, memory: r.memory, device, stats: StatsBlock.create(1, NET_QUEUE_COUNTERS), interrupt: () => ring(irq32, irq.index), params: undefined };
  const handler = new NetCtrlQueue(ctx, target);
  const hooks = { kick: (): void => void handler.poll(), kicks: 0 };
  const driver = new NetCtrlDriver({
    memory: r.memory,
    queue,
    buffer,
    kick: () => {
      hooks.kicks++;
      hooks.kick();
    },
    interrupt: o.interrupt ? irq : undefined,
    timeoutMs: o.timeoutMs,
  });
  return { r, buffer, queue, device, target, handler, hooks, driver, irq32 };
}

describe('NetCtrlDriver against NetCtrlQueue', () => {
  it('the kick may run the device on the same thread: every helper resolves true and its effect is there', async () => {
    const d = driverRig();
    const { driver, target } = d;
    expect(await driver.setPromisc(false)).toBe(true);
    expect(await driver.setAllMulti(true)).toBe(true);
    expect(await driver.setRxMode(NET_CTRL_RX_NOBCAST, true)).toBe(true);
    expect(await driver.setMacTable([uniMac(1), uniMac(2)], [multiMac(3)])).toBe(true);
    expect(await driver.setMac(uniMac(7))).toBe(true);
    expect(await driver.addVlan(10)).toBe(true);
    expect(await driver.addVlan(20)).toBe(true);
    expect(await driver.delVlan(10)).toBe(true);
    expect(await driver.ackAnnounce()).toBe(true);
    expect(await driver.setQueuePairs(2)).toBe(true);
    expect(await driver.setGuestOffloads(bit(NET_F_GUEST_CSUM) | bit(NET_F_GUEST_TSO4))).toBe(true);
    expect(target.filter.snapshot()).toMatchObject({
      promisc: false,
      allMulti: true,
      noBcast: true,
      unicast: [formatMac(uniMac(1)), formatMac(uniMac(2))],
      multicast: [formatMac(multiMac(3))],
      mac: formatMac(uniMac(7)),
      vlans: [20],
    });
    expect(target.effects.filter((e) => !e.what.startsWith('set') || e.what === 'setActivePairs' || e.what === 'setGuestOffloads').map((e) => [e.what, e.value])).toEqual([
      ['addVlan', 10],
      ['addVlan', 20],
      ['delVlan', 10],
      ['ackAnnounce', null],
      ['setActivePairs', 2],
      ['setGuestOffloads', bit(NET_F_GUEST_CSUM) | bit(NET_F_GUEST_TSO4)],
    ]);
    expect(d.handler.acks).toEqual({ ok: 11, err: 0, none: 0 });
    expect(d.r.guardsIntact()).toBe(true);
  });

  it('a refused command resolves to NET_ERR (helpers: false)', async () => {
    const { driver } = driverRig({ features: ALL_CTRL_FEATURES & ~bit(NET_F_CTRL_VLAN) });
    expect(await driver.addVlan(3)).toBe(false);
    expect(await driver.command(9, 0)).toBe(NET_ERR);
    expect(await driver.command(NET_CTRL_RX, 0, Uint8Array.of(0))).toBe(NET_OK);
    expect(await driver.setQueuePairs(5)).toBe(false);
  });

  it('commands issued together run one at a time, in call order (device in a setImmediate loop)', async () => {
    const d = driverRig();
    d.hooks.kick = () => {};
    let stop = false;
    let most = 0;
    let inFlight = 0;
    const loop = (): void => {
      if (stop) return;
      inFlight = Math.max(inFlight, d.device.available());
      most = Math.max(most, d.handler.poll());
      setImmediate(loop);
    };
    loop();
    try {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => d.driver.addVlan(i)));
      expect(results).toEqual(Array(20).fill(true));
    } finally {
      stop = true;
    }
    expect(d.target.effects.map((e) => e.value)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(most).toBe(1);
    expect(inFlight).toBeLessThanOrEqual(1);
  });

  it('with an interrupt word the driver sleeps on it until the device interrupts', async () => {
    const d = driverRig({ interrupt: true });
    d.hooks.kick = () => void setTimeout(() => d.handler.poll(), 20);
    const before = Atomics.load(d.irq32, 0);
    expect(await d.driver.setPromisc(false)).toBe(true);
    expect(Atomics.load(d.irq32, 0)).toBeGreaterThan(before);
    expect(await d.driver.addVlan(1)).toBe(true);
  });

  it('with VIRTIO_F_EVENT_IDX, a device that polls and then re-arms gets a kick for every command', async () => {
    const d = driverRig({ eventIdx: true });
    d.hooks.kick = () => {
      d.handler.poll();
      d.handler.arm();
    };
    d.handler.arm();
    for (let i = 0; i < 5; i++) expect(await d.driver.addVlan(i)).toBe(true);
    expect(d.hooks.kicks).toBe(5);
  });

  it('a device that does not answer: CTRL_TIMEOUT; the next command waits for the stale one, then runs', async () => {
    // Long enough that the 5 ms poll below lands inside the second wait even on a loaded machine.
    const d = driverRig({ timeoutMs: 250 });
    d.hooks.kick = () => {};
    await expect(d.driver.addVlan(1)).rejects.toMatchObject({ name: 'NetCtrlError', code: 'CTRL_TIMEOUT' });
    d.hooks.kick = () => void d.handler.poll();
    setTimeout(() => d.handler.poll(), 5);
    expect(await d.driver.addVlan(2)).toBe(true);
    expect(d.target.effects.map((e) => e.value)).toEqual([1, 2]);
  });

  it('while the device still holds a timed-out command the buffer is not reused: the next command fails with CTRL_TIMEOUT', async () => {
    const d = driverRig({ timeoutMs: 20 });
    d.hooks.kick = () => {};
    await expect(d.driver.addVlan(1)).rejects.toBeInstanceOf(NetCtrlError);
    const err = await d.driver.addVlan(2).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CTRL_TIMEOUT', message: expect.stringContaining('previous command') });
    expect(d.queue.pending).toBe(1);
    // The device finally serves the old command, with the old bytes.
    d.handler.poll();
    expect(d.target.effects.map((e) => e.value)).toEqual([1]);
    d.hooks.kick = () => void d.handler.poll();
    expect(await d.driver.addVlan(3)).toBe(true);
    expect(d.target.effects.map((e) => e.value)).toEqual([1, 3]);
  });

  it('a device that uses the buffer without writing the ack: CTRL_NO_ACK', async () => {
    const d = driverRig();
    const mini = new MiniDevice(d.r.memory, d.r.ring);
    d.hooks.kick = () => {
      const c = mini.pop();
      if (c !== undefined) mini.push(c.head, 0);
      mini.publish();
    };
    await expect(d.driver.ackAnnounce()).rejects.toMatchObject({ code: 'CTRL_NO_ACK' });
  });

  it('lays a command out as header | data | ack (device-readable, readable, writable), header | ack without data', async () => {
    const d = driverRig();
    const mini = new MiniDevice(d.r.memory, d.r.ring);
    const seen: Array<Array<[number, boolean]>> = [];
    const bytes: number[][] = [];
    d.hooks.kick = () => {
      const c = mini.pop();
      if (c === undefined) return;
      seen.push(c.segs.map((s) => [s.len, s.write]));
      bytes.push(c.segs.filter((s) => !s.write).flatMap((s) => Array.from(readBytes(d, s.addr, s.len))));
      const ack = c.segs.find((s) => s.write);
      if (ack !== undefined) d.r.memory.writeU8(ack.addr, NET_OK);
      mini.push(c.head, 1);
      mini.publish();
    };
    expect(await d.driver.command(NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, Uint8Array.from(le16(0x321)))).toBe(NET_OK);
    expect(await d.driver.ackAnnounce()).toBe(true);
    expect(seen).toEqual([
      [
        [2, false],
        [2, false],
        [1, true],
      ],
      [
        [2, false],
        [1, true],
      ],
    ]);
    expect(bytes[0]).toEqual([NET_CTRL_VLAN, NET_CTRL_VLAN_ADD, 0x21, 0x03]);
  });

  it('a queue of 2 descriptors carries header and data in one; a queue of 1 cannot carry a command (CTRL_QUEUE_FULL)', async () => {
    const two = driverRig({ size: 2 });
    expect(await two.driver.setMacTable([uniMac(1)], [])).toBe(true);
    expect(await two.driver.addVlan(9)).toBe(true);
    const one = driverRig({ size: 1 });
    await expect(one.driver.addVlan(9)).rejects.toMatchObject({ code: 'CTRL_QUEUE_FULL' });
    // A failed send leaves the driver usable.
    await expect(one.driver.addVlan(9)).rejects.toMatchObject({ code: 'CTRL_QUEUE_FULL' });
  });

  it(`a MAC table past ${RX_FILTER_MAC_ENTRIES} entries goes through and turns on the overflow`, async () => {
    const d = driverRig();
    const many = Array.from({ length: RX_FILTER_MAC_ENTRIES + 1 }, (_, i) => uniMac(i));
    expect(await d.driver.setMacTable(many, [multiMac(1)])).toBe(true);
    expect(d.target.filter.snapshot()).toMatchObject({ unicastOverflow: true, multicast: [formatMac(multiMac(1))] });
  });

  it('a command larger than the buffer: CTRL_COMMAND_TOO_LARGE, nothing sent', async () => {
    const d = driverRig({ bufferSize: 17 });
    expect(d.driver.maxData).toBe(14);
    await expect(d.driver.setMacTable([uniMac(1), uniMac(2)], [])).rejects.toMatchObject({ code: 'CTRL_COMMAND_TOO_LARGE' });
    expect(d.queue.pending).toBe(0);
    expect(d.hooks.kicks).toBe(0);
    expect(await d.driver.setMacTable([uniMac(1)], [])).toBe(true);
  });

  it('helpers refuse arguments no command can carry (InvalidArgumentError)', async () => {
    const { driver } = driverRig();
    const bad: Array<() => Promise<unknown>> = [
      () => driver.setRxMode(6, true),
      () => driver.setMac(new Uint8Array(5)),
      () => driver.setMacTable([new Uint8Array(7)], []),
      () => driver.addVlan(4096),
      () => driver.delVlan(-1),
      () => driver.setQueuePairs(0),
      () => driver.setQueuePairs(0x8001),
      () => driver.setGuestOffloads(-1n),
      () => driver.setGuestOffloads(1n << 64n),
      () => driver.command(256, 0),
    ];
    for (const call of bad) await expect(call()).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('the constructor refuses a command buffer outside guest memory or under 3 bytes', () => {
    const d = driverRig();
    const base = { memory: d.r.memory, queue: d.queue, kick: () => {} };
    expect(() => new NetCtrlDriver({ ...base, buffer: { gpa: d.buffer.gpa, size: 2 } })).toThrow(InvalidArgumentError);
    expect(() => new NetCtrlDriver({ ...base, buffer: { gpa: 1 << 30, size: 64 } })).toThrow(InvalidArgumentError);
    expect(() => new NetCtrlDriver({ ...base, buffer: d.buffer, timeoutMs: 0 })).toThrow(InvalidArgumentError);
  });
});

function readBytes(d: ReturnType<typeof driverRig>, addr: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  d.r.memory.read(addr, out, 0, len);
  return out;
}
