import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { VXLAN_BAD_FLAGS, VXLAN_BAD_VNI, VXLAN_OK, VXLAN_SHORT, vxlanHeaderCheck, writeVxlanHeader } from '../../src/backends/vxlan-header.js';
import { VxlanBindError } from '../../src/backends/vxlan-options.js';
import { InvalidArgumentError, SharedArena, VxlanUplink, type VxlanUplinkOptions, connectNics } from '../../src/index.js';
import { parseMac } from '../../src/net/mac.js';
import { BROADCAST, FakeNic, ethFrame, seqOf, tcpFrame, until } from '../support/backend-nic.js';
import { l4ChecksumOk } from '../support/backend-qemu-peer.js';

// RFC 7348 (VXLAN) section 5: the 8-byte header and the flood-and-learn behaviour of section 4.

const A = '52:54:00:00:00:0a'; // the lab's NIC behind the uplink
const X = '52:54:00:00:00:71'; // a station behind remote VTEP 1
const Y = '52:54:00:00:00:72'; // a station behind remote VTEP 2
const VNI = 0x123456;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A remote VTEP played by a UDP socket on its own loopback address: what it received, raw. */
interface Peer {
  socket: UdpSocket;
  host: string;
  port: number;
  got: Buffer[];
}

async function peer(host: string): Promise<Peer> {
  const socket = createSocket('udp4');
  cleanups.push(() => new Promise((r) => socket.close(() => r(undefined))));
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  await new Promise<void>((r) => socket.bind(0, host, () => r()));
  return { socket, host, port: socket.address().port, got };
}

async function uplink(options: Omit<VxlanUplinkOptions, 'vni'> & { vni?: number }): Promise<VxlanUplink> {
  const u = await VxlanUplink.open({ vni: VNI, local: '127.0.0.1', port: 0, ...options });
  cleanups.push(() => u.close());
  return u;
}

/** A NIC wired straight to the uplink (a direct cable: no worker). */
function plug(u: VxlanUplink, maxFrame?: number): FakeNic {
  const nic = new FakeNic(A);
  const cable = connectNics(new SharedArena(8 << 20), nic, u, { capacity: 1 << 18, maxFrame });
  cleanups.push(() => cable.close());
  return nic;
}

/** A VXLAN packet: header with `flags` and `vni`, then `frame`. */
function vxlan(frame: Uint8Array, vni = VNI, flags = 0x08): Buffer {
  const b = Buffer.alloc(8 + frame.length);
  b[0] = flags;
  b.writeUIntBE(vni, 4, 3);
  b.set(frame, 8);
  return b;
}

function sendFrom(p: Peer, bytes: Uint8Array, u: VxlanUplink): Promise<void> {
  return new Promise((resolve, reject) => p.socket.send(bytes, u.address().port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the VXLAN header (RFC 7348 section 5)', () => {
  it('I flag MUST be set and reserved bits zero on transmit; reserved bits are ignored on receipt; the 24-bit VNI must match (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 0, max: 0xffffff }), fc.uint8Array({ minLength: 8, maxLength: 8 }), (vni, other, noise) => {
        const u8 = new Uint8Array(8 + 14);
        writeVxlanHeader(u8, 0, vni);
        expect([u8[0], u8[1], u8[2], u8[3], u8[7]]).toEqual([0x08, 0, 0, 0, 0]);
        expect(vxlanHeaderCheck(u8, u8.length, vni)).toBe(VXLAN_OK);
        expect(vxlanHeaderCheck(u8, u8.length, other)).toBe(other === vni ? VXLAN_OK : VXLAN_BAD_VNI);
        expect(vxlanHeaderCheck(u8, u8.length - 1, vni)).toBe(VXLAN_SHORT);
        // Any reserved bits, same I flag and VNI: accepted; I flag clear: refused.
        const r = u8.slice();
        for (const i of [1, 2, 3, 7]) r[i] = noise[i];
        r[0] = (noise[0] & ~0x08) | 0x08;
        expect(vxlanHeaderCheck(r, r.length, vni)).toBe(VXLAN_OK);
        r[0] &= ~0x08;
        expect(vxlanHeaderCheck(r, r.length, vni)).toBe(VXLAN_BAD_FLAGS);
      }),
    );
  });
});

describe('VxlanUplink options', () => {
  it('refuses a VNI outside 24 bits, a bad address, a bad port and a bad remote, naming the value', async () => {
    for (const vni of [-1, 1 << 24, 1.5, Number.NaN]) await expect(VxlanUplink.open({ vni })).rejects.toThrow(new RegExp(`vni ${vni}.*24 bits`));
    await expect(VxlanUplink.open({ vni: 1, local: 'ten.0.0.1' })).rejects.toThrow(/local address "ten.0.0.1" is not an IPv4 address/);
    await expect(VxlanUplink.open({ vni: 1, local: '::1' })).rejects.toThrow(InvalidArgumentError);
    await expect(VxlanUplink.open({ vni: 1, port: 65536 })).rejects.toThrow(/port 65536/);
    await expect(VxlanUplink.open({ vni: 1, remotes: ['10.0.0.2:99999'] })).rejects.toThrow(/port 99999/);
    await expect(VxlanUplink.open({ vni: 1, remotes: ['vtep2'] })).rejects.toThrow(/remote "vtep2" is not an IPv4 address/);
    await expect(VxlanUplink.open({ vni: 1, remotes: ['239.1.1.1'] })).rejects.toThrow(/multicast/);
    await expect(VxlanUplink.open({ vni: 1, remotes: ['10.0.0.2', '10.0.0.2:4789'] })).rejects.toThrow(/10.0.0.2:4789 is listed twice/);
    await expect(VxlanUplink.open({ vni: 1, ageingSeconds: 0 })).rejects.toThrow(/ageingSeconds 0/);
  });

  it('a port in use is a VxlanBindError (EADDRINUSE) saying so; so is an address of no interface here', async () => {
    const taken = await peer('127.0.0.1');
    const e = await VxlanUplink.open({ vni: 1, local: '127.0.0.1', port: taken.port }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VxlanBindError);
    expect(e).toMatchObject({ code: 'VXLAN_BIND_FAILED', errno: 'EADDRINUSE' });
    expect((e as Error).message).toMatch(new RegExp(`127.0.0.1:${taken.port}: the port is in use`));
    // 192.0.2.1 (TEST-NET-1, RFC 5737) is never an address of this machine.
    await expect(VxlanUplink.open({ vni: 1, local: '192.0.2.1', port: 0 })).rejects.toMatchObject({ code: 'VXLAN_BIND_FAILED', errno: 'EADDRNOTAVAIL' });
  });
});

describe('VxlanUplink: encapsulation, flood and learn (RFC 7348 sections 4 and 5)', () => {
  it('a broadcast from the lab goes to every remote with the 8-byte header: I flag, reserved bits zero, the VNI', async () => {
    const [p1, p2] = [await peer('127.0.0.2'), await peer('127.0.0.3')];
    const u = await uplink({ remotes: [`${p1.host}:${p1.port}`, `${p2.host}:${p2.port}`] });
    const nic = plug(u);
    const frame = ethFrame(BROADCAST, A, 7, 100);
    nic.send(frame);
    await until(() => p1.got.length === 1 && p2.got.length === 1, 5000, 'the flood at both remotes');
    for (const m of [p1.got[0], p2.got[0]]) {
      expect(m.length).toBe(108);
      expect([...m.subarray(0, 8)]).toEqual([0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
      expect(new Uint8Array(m.subarray(8))).toEqual(frame);
    }
    expect(u.stats()).toMatchObject({ txFrames: 2, flooded: 1, vni: VNI });
  });

  it('learns a source MAC behind the VTEP it came from: unicast to it goes there alone, unknown unicast to all', async () => {
    const [p1, p2] = [await peer('127.0.0.2'), await peer('127.0.0.3')];
    const u = await uplink({ remotes: [`${p1.host}:${p1.port}`, `${p2.host}:${p2.port}`] });
    const nic = plug(u);
    await sendFrom(p1, vxlan(ethFrame(A, X, 1)), u);
    await sendFrom(p2, vxlan(ethFrame(BROADCAST, Y, 2)), u);
    await nic.receiveUntil(2);
    expect(nic.received.map((r) => seqOf(r.frame))).toEqual([1, 2]);
    expect(nic.received[0].frame.subarray(6, 12)).toEqual(parseMac(X));
    nic.send(ethFrame(X, A, 10));
    nic.send(ethFrame(Y, A, 11));
    nic.send(ethFrame('52:54:00:00:00:99', A, 12)); // never seen: flooded
    await until(() => p1.got.length === 2 && p2.got.length === 2, 5000, 'unicast and flood at the remotes');
    await delay(50);
    expect(p1.got.map((m) => seqOf(m.subarray(8)))).toEqual([10, 12]);
    expect(p2.got.map((m) => seqOf(m.subarray(8)))).toEqual([11, 12]);
    expect(u.fdbEntries().map((e) => [e.mac, e.remote])).toEqual([
      [X, `${p1.host}:${p1.port}`],
      [Y, `${p2.host}:${p2.port}`],
    ]);
    const s = u.stats();
    expect(s).toMatchObject({ rxFrames: 2, txFrames: 4, flooded: 1, fdbEntries: 2 });
    expect(s.remotes.map((r) => [r.rxFrames, r.txFrames])).toEqual([
      [1, 2],
      [1, 2],
    ]);
  });

  it('a MAC seen behind another VTEP moves there; a learned MAC ages out and is flooded again', async () => {
    const [p1, p2] = [await peer('127.0.0.2'), await peer('127.0.0.3')];
    const u = await uplink({ remotes: [`${p1.host}:${p1.port}`, `${p2.host}:${p2.port}`], ageingSeconds: 1.5 });
    const nic = plug(u);
    await sendFrom(p1, vxlan(ethFrame(A, X, 1)), u);
    await sendFrom(p2, vxlan(ethFrame(A, X, 2)), u);
    await nic.receiveUntil(2);
    expect(u.fdbEntries().map((e) => e.remote)).toEqual([`${p2.host}:${p2.port}`]);
    expect(u.stats()).toMatchObject({ fdbMoves: 1, fdbEntries: 1 });
    nic.send(ethFrame(X, A, 3));
    await until(() => p2.got.length === 1, 5000, 'unicast to the VTEP X moved to');
    // Past the ageing time (the table is swept once a second) X is unknown again: flooded.
    await until(() => u.stats().fdbEntries === 0, 10_000, 'X aged out');
    nic.send(ethFrame(X, A, 4));
    await until(() => p1.got.length === 1 && p2.got.length === 2, 5000, 'the flood after ageing');
    expect(seqOf(p1.got[0].subarray(8))).toBe(4);
  });

  it('a VTEP not configured is learned (its address, port 4789 as Linux does) and answered there', async () => {
    const p = await peer('127.0.0.4');
    const u = await uplink({ remotes: [] });
    const nic = plug(u);
    await sendFrom(p, vxlan(ethFrame(A, X, 1)), u);
    await nic.receiveUntil(1);
    expect(u.stats().remotes).toEqual([{ host: '127.0.0.4', port: 4789, learned: true, rxFrames: 1, txFrames: 0 }]);
    expect(u.fdbEntries()).toMatchObject([{ mac: X, remote: '127.0.0.4:4789' }]);
    // A broadcast has nowhere to go without configured remotes (Linux floods to its default destinations only).
    nic.send(ethFrame(BROADCAST, A, 2));
    await until(() => u.stats().dropsNoRemote === 1, 5000, 'the broadcast counted as having no remote');
  });

  it('without learning a packet from any VTEP is taken but nothing is learned: unicast keeps flooding', async () => {
    const [p1, stranger] = [await peer('127.0.0.2'), await peer('127.0.0.9')];
    const u = await uplink({ remotes: [`${p1.host}:${p1.port}`], learning: false });
    const nic = plug(u);
    await sendFrom(stranger, vxlan(ethFrame(A, X, 1, 300)), u);
    const [got] = await nic.receiveUntil(1);
    expect(got.frame).toEqual(ethFrame(A, X, 1, 300));
    nic.send(ethFrame(X, A, 2));
    await until(() => p1.got.length === 1, 5000, 'the flood');
    expect(u.stats()).toMatchObject({ fdbEntries: 0, flooded: 1, dropsUnknownSource: 0 });
    expect(u.stats().remotes).toHaveLength(1);
  });

  it('drops and counts, never forwards: short packets, no I flag, another VNI, a frame too big, unknown sources when restricted', async () => {
    const [p1, stranger] = [await peer('127.0.0.2'), await peer('127.0.0.9')];
    const u = await uplink({ remotes: [`${p1.host}:${p1.port}`], restrictSources: true });
    const nic = plug(u, 2000);
    await sendFrom(p1, Buffer.from([0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 1, 2, 3]), u); // 11 bytes: no Ethernet header
    await sendFrom(p1, Buffer.alloc(3), u);
    await sendFrom(p1, vxlan(ethFrame(A, X, 1), VNI, 0x00), u); // I flag clear
    await sendFrom(p1, vxlan(ethFrame(A, X, 2), VNI + 1), u); // another VNI
    await sendFrom(p1, vxlan(ethFrame(A, X, 3, 3000)), u); // longer than the cable's 2000-byte channel frames
    await sendFrom(stranger, vxlan(ethFrame(A, Y, 4)), u);
    await sendFrom(p1, vxlan(ethFrame(A, X, 5), VNI, 0x08 | 0x80), u); // reserved flag bits are ignored on receipt
    await nic.receiveUntil(1);
    expect(await nic.settle(100)).toBe(0);
    expect(nic.received.map((r) => seqOf(r.frame))).toEqual([5]);
    expect(u.stats()).toMatchObject({ rxFrames: 1, dropsShort: 2, dropsBadFlags: 1, dropsBadVni: 1, dropsTooBig: 1, dropsUnknownSource: 1 });
    expect(u.fdbEntries().map((e) => e.mac)).toEqual([X]);
  });

  it('frames in are steered by flow over the receiving NIC\'s active queues (re-read once per batch)', async () => {
    const p = await peer('127.0.0.2');
    const u = await uplink({ remotes: [`${p.host}:${p.port}`] });
    const nic = new FakeNic(A, 2);
    const cable = connectNics(new SharedArena(8 << 20), nic, u, { capacity: 1 << 18 });
    cleanups.push(() => cable.close());
    nic.setActivePairs(2); // as VQ_PAIRS_SET would, after the cable was plugged
    // The batch under way steers as it began; libuv reads up to 32 datagrams per wake-up, so wait for this one.
    await sendFrom(p, vxlan(ethFrame(A, X, 0)), u);
    await nic.receiveUntil(1);
    for (let i = 1; i <= 32; i++) await sendFrom(p, vxlan(ethFrame(A, `52:54:00:00:01:${i.toString(16).padStart(2, '0')}`, i)), u);
    await nic.receiveUntil(33);
    expect(new Set(nic.received.slice(1).map((r) => r.pair))).toEqual(new Set([0, 1]));
  });

  it('a TSO frame from the lab leaves as one VXLAN datagram per MTU-sized segment, checksums complete', async () => {
    const p = await peer('127.0.0.2');
    const u = await uplink({ remotes: [`${p.host}:${p.port}`] });
    const nic = plug(u);
    const tso = tcpFrame(X, A, 3000, 1000);
    nic.send(tso.frame, 0, tso.hdr);
    await until(() => p.got.length === 3, 5000, 'three segments');
    expect(p.got.map((m) => m.length)).toEqual([8 + 1054, 8 + 1054, 8 + 1054]);
    expect(p.got.every((m) => l4ChecksumOk(new Uint8Array(m.subarray(8))))).toBe(true);
  });

  it('close() releases the port: it can be bound again', async () => {
    const u = await VxlanUplink.open({ vni: 5, local: '127.0.0.1', port: 0 });
    const { port } = u.address();
    await u.close();
    await u.close();
    expect(u.stats()).toMatchObject({ vni: 5, local: `127.0.0.1:${port}` });
    const again = await uplink({ port });
    expect(again.address().port).toBe(port);
  });
});
