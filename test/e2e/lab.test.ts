import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, IpHost, Lab, type LabOptions, type LabTopology, NET_DEFAULT_FEATURES, TopologyError, buildLab, formatLabReport, hasFeature, loadTopology, parseTopology, runTopology, runTraffic } from '../../src/index.js';
import { startLabHosts } from '../../src/lab/topology/topology-hosts.js';
import { netRxQueue, netTxQueue } from '../../src/spec/net.js';
import { F_RING_PACKED, bit } from '../../src/spec/features.js';
import { BROADCAST, ethFrame, seqOf, until } from '../support/backend-nic.js';
import { topologyProblems } from '../support/topology-problems.js';
import { requireTools, tshark } from '../support/tools.js';
import { FrontEnd, NET_FEATURES, PF, RAM_GPA, RAM_SIZE, RAM_UVA } from '../support/vhost-user/front-end.js';

requireTools('tshark');

let lab: Lab | undefined;
let dir: string | undefined;
afterEach(async () => {
  await lab?.close();
  lab = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

const tmp = (): string => (dir ??= mkdtempSync(join(tmpdir(), 'vl-lab-')));

/** Threads of this process (Linux): every worker is one. */
const threads = (): number => (existsSync('/proc/self/task') ? readdirSync('/proc/self/task').length : -1);

/** Drain every NIC's receive ring into `got` (copies), reclaiming tx buffers on the way. */
function drain(l: Lab, got: Record<string, Uint8Array[]>): void {
  for (const name of l.nicNames) {
    const d = l.driver(name);
    d.reclaimTx();
    d.receive((p) => {
      const f = new Uint8Array(p.length);
      p.copyTo(f);
      (got[name] ??= []).push(f);
    });
  }
}

function threeNicSwitch(options: LabOptions = {}): Lab {
  return new Lab({ queueSize: 128, ...options })
    .nic('a', { mac: '52:54:00:00:0a:01' })
    .nic('b', { mac: '52:54:00:00:0a:02' })
    .nic('c', { mac: '52:54:00:00:0a:03', queuePairs: 2 })
    .switch('sw')
    .connect('a', 'sw')
    .connect('b', 'sw')
    .connect('c', 'sw');
}

describe('Lab: a switch with three NICs', () => {
  it('moves frames between every pair of NICs (c has two queue pairs), through the drivers and with runTraffic', async () => {
    lab = threeNicSwitch();
    await lab.start();
    expect(lab.status).toBe('running');
    expect(lab.driver('c').pairs).toHaveLength(2);

    // Each NIC says hello by broadcast: the others get it, the switch learns every address.
    const got: Record<string, Uint8Array[]> = {};
    lab.nicNames.forEach((name, i) => {
      const d = lab!.driver(name);
      expect(d.send(ethFrame(BROADCAST, lab!.mac(name), i))).toBe(true);
      d.flushTx();
    });
    await until(() => (drain(lab!, got), lab!.nicNames.every((n) => got[n]?.length === 2)), 10_000, 'the broadcasts');
    expect(got.a.map(seqOf).sort()).toEqual([1, 2]);
    expect(got.c.map(seqOf).sort()).toEqual([0, 1]);
    const table = await lab.macTable('sw');
    expect(table.map((e) => `${e.portName}=${e.mac}`).sort()).toEqual(['a=52:54:00:00:0a:01', 'b=52:54:00:00:0a:02', 'c=52:54:00:00:0a:03']);

    const names = lab.nicNames;
    const flows = names.flatMap((from, i) => names.filter((to) => to !== from).map((to, j) => ({ from, to, frames: 1500, size: 60 + 290 * (2 * i + j) })));
    const r = await runTraffic(lab, flows);
    for (const f of r.flows) expect(f, `${f.from} -> ${f.to}`).toMatchObject({ sent: 1500, received: 1500, lost: 0, outOfOrder: 0, duplicates: 0 });
    // The switch knew every address: nothing was flooded to a third NIC.
    expect(Object.values(r.stray)).toEqual([0, 0, 0]);

    const s = lab.stats();
    // c's two flows left on its two transmit queues.
    expect(s.nics.c.queues[0].tx.chains).toBeGreaterThanOrEqual(1500);
    expect(s.nics.c.queues[1].tx.chains).toBeGreaterThanOrEqual(1500);
    expect(s.nics.a.driver[0].rxPackets).toBe(2 + 3000);
    const sw = s.switches.sw;
    expect(sw.ports.map((p) => p.name)).toEqual(['a', 'b', 'c']);
    for (const p of sw.ports) expect(p).toMatchObject({ rxFrames: 3001, txFrames: 3002, dropsEgressFull: 0, dropsBad: 0 });
    expect(sw.macEntries).toBe(3);
  });

  it('close() ends every worker it started (queues, switch, relay), is idempotent, and leaves stats readable', async () => {
    // Start libuv's thread pool first (all its threads at once) so it cannot grow the count during the test.
    await readFile(fileURLToPath(import.meta.url));
    const before = threads();
    const pcap = join(tmp(), 'link.pcap');
    lab = threeNicSwitch({ threads: 'per-queue' })
      .nic('d', { mac: '52:54:00:00:0a:04' })
      .nic('e', { mac: '52:54:00:00:0a:05' })
      .link('d', 'e', { impairment: { delayMs: 1 }, capture: pcap });
    await lab.start();
    // 2 + 2 + 4 + 2 + 2 queue threads (one per queue), a switch and a relay.
    if (before > 0) expect(threads()).toBeGreaterThanOrEqual(before + 14);
    const r = await runTraffic(lab, [{ from: 'd', to: 'e', frames: 200, size: 100 }]);
    expect(r.flows[0].received).toBe(200);
    const sw = lab.netSwitch('sw');
    const devices = lab.nicNames.map((n) => lab!.device(n));
    const first = lab.close();
    expect(lab.close()).toBe(first);
    await first;
    await lab.close();
    expect(lab.status).toBe('closed');
    expect(sw.running).toBe(false);
    for (const d of devices) {
      expect(d.status).toBe(0);
      for (let q = 0; q < d.numQueues; q++) expect(d.queueRunning(q)).toBe(false);
    }
    if (before > 0) await until(() => threads() <= before, 5000, 'the worker threads to exit');
    // The relay flushed its capture: 200 frames d -> e.
    expect(tshark(['-r', pcap, '-T', 'fields', '-e', 'frame.number']).trim().split('\n')).toHaveLength(200);
    expect(lab.stats().links[0]).toMatchObject({ a: 'd', b: 'e', lostAToB: 0, relay: { ports: [{ rxFrames: 200 }, { txFrames: 200 }] } });
    expect(() => lab!.driver('a')).toThrow(/closed/);
  });

  it('close() before start() or right after it leaves nothing running', async () => {
    const idle = threeNicSwitch();
    await idle.close();
    await expect(idle.start()).rejects.toThrow(/the lab is closed/);

    lab = threeNicSwitch();
    const started = lab.start();
    const closed = lab.close();
    await expect(started).rejects.toThrow(/closed while it started/);
    await closed;
    expect(lab.status).toBe('closed');
    for (const n of lab.nicNames) {
      let dev;
      try {
        dev = lab.device(n);
      } catch {
        continue; // never created
      }
      expect(dev.status).toBe(0);
    }
  });

  it('2.8.10.1: NICs on packed rings take a queue size that is not a power of two (300) and move frames over a link', async () => {
    const packed = NET_DEFAULT_FEATURES | bit(F_RING_PACKED);
    lab = new Lab().nic('a', { queueSize: 300, driverFeatures: packed, mac: '52:54:00:00:0d:01' }).nic('b', { queueSize: 300, driverFeatures: packed, mac: '52:54:00:00:0d:02' }).link('a', 'b');
    await lab.start();
    expect(hasFeature(lab.device('a').negotiatedFeatures, F_RING_PACKED)).toBe(true);
    for (let i = 0; i < 600; i++) {
      while (!lab.driver('a').send(ethFrame('52:54:00:00:0d:02', '52:54:00:00:0d:01', i, 64))) {
        lab.driver('a').flushTx();
        await new Promise((r) => setTimeout(r, 1));
        lab.driver('a').reclaimTx();
      }
    }
    lab.driver('a').flushTx();
    const got: Record<string, Uint8Array[]> = {};
    await until(() => (drain(lab!, got), (got.b?.length ?? 0) === 600), 10_000, '600 frames at b');
    expect(got.b.map(seqOf)).toEqual(Array.from({ length: 600 }, (_, i) => i));
  });

  it('idlePollMs reaches the NICs\' queue threads: after frames over a link they look at their queues while idle (idleLooks), a lab without it never does', async () => {
    const looks = async (idlePollMs: number): Promise<number> => {
      lab = new Lab({ queueSize: 64, idlePollMs }).nic('a', { mac: '52:54:00:00:0e:01' }).nic('b', { mac: '52:54:00:00:0e:02' }).link('a', 'b');
      await lab.start();
      for (let i = 0; i < 16; i++) expect(lab.driver('a').send(ethFrame('52:54:00:00:0e:02', '52:54:00:00:0e:01', i, 64))).toBe(true);
      lab.driver('a').flushTx();
      const got: Record<string, Uint8Array[]> = {};
      await until(() => (drain(lab!, got), (got.b?.length ?? 0) === 16), 10_000, '16 frames at b');
      await new Promise((r) => setTimeout(r, 100));
      const q = lab.stats().nics.a.queues[0];
      await lab.close();
      lab = undefined;
      return q.tx.idleLooks + q.rx.idleLooks;
    };
    expect(await looks(2)).toBeGreaterThan(0);
    expect(await looks(0)).toBe(0);
  });

  it('a socket link is a port like a NIC: a UDP peer and a NIC exchange frames through the switch', async () => {
    const peer: UdpSocket = createSocket('udp4');
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    try {
      const peerPort = (peer.address() as { port: number }).port;
      lab = new Lab({ queueSize: 64 })
        .nic('a', { mac: '52:54:00:00:0b:01' })
        .switch('sw')
        .connect('a', 'sw')
        .socketLink('qemu', { transport: 'dgram', local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: peerPort } })
        .connect('qemu', 'sw');
      await lab.start();
      const labPort = (lab.socket('qemu').address() as { port: number }).port;
      const fromPeer: Buffer[] = [];
      peer.on('message', (m) => fromPeer.push(m));
      const hello = ethFrame('52:54:00:00:0b:01', '52:54:00:00:0b:99', 7, 100);
      peer.send(hello, labPort, '127.0.0.1');
      const got: Record<string, Uint8Array[]> = {};
      await until(() => (drain(lab!, got), (got.a?.length ?? 0) === 1), 10_000, 'the peer frame at a');
      expect(Buffer.from(got.a[0]).equals(Buffer.from(hello))).toBe(true);
      const reply = ethFrame('52:54:00:00:0b:99', '52:54:00:00:0b:01', 8, 80);
      lab.driver('a').send(reply);
      lab.driver('a').flushTx();
      await until(() => fromPeer.length === 1, 10_000, 'the reply at the peer');
      expect(fromPeer[0].equals(Buffer.from(reply))).toBe(true);
      expect((await lab.macTable('sw')).map((e) => e.portName).sort()).toEqual(['a', 'qemu']);
      expect(lab.stats().sockets.qemu).toMatchObject({ rxFrames: 1, txFrames: 1 });
    } finally {
      peer.close();
    }
  });
});

describe('Lab misuse is refused with InvalidArgumentError saying what was wrong', () => {
  const refuses = (f: () => unknown, message: RegExp): void => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(message);
  };

  it('unknown names, duplicate names and MACs, bad options', () => {
    const l = new Lab().nic('a', { mac: '52:54:00:00:0c:01' }).nic('b').switch('sw');
    refuses(() => l.connect('x', 'sw'), /no NIC, socket link, vhost-user port or VXLAN uplink named "x" in this lab \(NICs: a, b; socket links: none; vhost-user ports: none; VXLAN uplinks: none\)/);
    refuses(() => l.connect('a', 'nope'), /no switch named "nope" in this lab \(switches: sw\)/);
    refuses(() => l.link('a', 'ghost'), /no NIC, socket link, vhost-user port or VXLAN uplink named "ghost"/);
    refuses(() => l.link('a', 'sw'), /"sw" is a switch/);
    refuses(() => l.link('a', 'a'), /two different ends/);
    refuses(() => l.tap('nope', '/tmp/x.pcap'), /no switch named "nope"/);
    refuses(() => l.tap('sw', '/tmp/x.pcap', { port: 'a' }), /"a" is not connected to it/);
    refuses(() => l.tap('sw', '/tmp/x.pcap', { port: 3 }), /port 3 is not one of its 0 ports/);
    refuses(() => l.nic('a'), /already has a NIC named "a"/);
    refuses(() => l.switch('b'), /already has a NIC named "b"/);
    refuses(() => l.nic('c', { mac: '52:54:00:00:0c:01' }), /MAC 52:54:00:00:0c:01 is already NIC "a"'s/);
    refuses(() => l.nic('d', { mac: 'nonsense' }), /"nonsense" is not a MAC address/);
    refuses(() => l.nic('d', { mac: '01:00:5e:00:00:01' }), /01:00:5e:00:00:01 is a multicast address/);
    refuses(() => l.nic('e', { mtu: 20 }), /MTU 20/);
    refuses(() => l.nic('f', { queuePairs: 0 }), /queuePairs 0/);
    refuses(() => l.nic('g', { queueSize: 100 }), /NIC "g": queueSize 100 must be a power of two on split rings/);
    refuses(() => l.nic('g', { queueSize: 0, driverFeatures: NET_DEFAULT_FEATURES | bit(F_RING_PACKED) }), /NIC "g": queueSize 0 must be an integer in \[1, 32768\]/);
    refuses(() => l.link('a', 'b', { impairment: { lossPercent: 120 } }), /link\("a", "b"\): impairment lossPercent 120/);
    refuses(() => l.driver('zz'), /no NIC named "zz"/);
    refuses(() => l.driver('a'), /start\(\) the lab first/);
    refuses(() => l.stats(), /start\(\) the lab first/);
    refuses(() => new Lab({ memoryPerNic: 100 }), /memoryPerNic 100/);
    refuses(() => l.vhostUser('a', { path: '/tmp/a.sock' }), /already has a NIC named "a"/);
    refuses(() => l.vhostUser('v', { path: '' }), /vhost-user port "v": path must name a Unix socket/);
    refuses(() => l.vhostUser('v', { path: '/tmp/v.sock', mac: '52:54:00:00:0c:01' }), /vhost-user port "v": MAC 52:54:00:00:0c:01 is already NIC "a"'s/);
    l.vhostUser('v', { path: '/tmp/v.sock' });
    refuses(() => l.nic('v'), /already has a vhost-user port named "v"/);
    refuses(() => l.vhostUserServer('v'), /start\(\) the lab first/);
    refuses(() => l.vhostUserServer('a'), /no vhost-user port of that name \(ports: v\)/);
  });

  it('a NIC attached twice', () => {
    const l = new Lab().nic('a').nic('b').nic('c').switch('sw').connect('a', 'sw');
    refuses(() => l.link('a', 'b'), /NIC "a" cannot be plugged into link to "b": it is already on port 0 of switch "sw"/);
    refuses(() => l.connect('a', 'sw'), /NIC "a" cannot be plugged into port 1 of switch "sw": it is already on port 0/);
    l.link('b', 'c');
    refuses(() => l.connect('c', 'sw'), /NIC "c" .* already on a link to "b"/);
  });

  it('building after start(), starting twice', async () => {
    lab = new Lab({ queueSize: 64 }).nic('a').nic('b').link('a', 'b');
    await lab.start();
    refuses(() => lab!.nic('c'), /nic\("c"\) after start\(\): build the whole topology before starting the lab/);
    refuses(() => lab!.connect('a', 'sw'), /after start\(\)/);
    refuses(() => lab!.link('a', 'b'), /after start\(\)/);
    await expect(lab.start()).rejects.toThrow(/already started/);
  });

  it('a start() that fails closes what it made and says which NIC', async () => {
    lab = new Lab({ memoryPerNic: 1 << 16 }).nic('a').nic('b').link('a', 'b');
    await expect(lab.start()).rejects.toThrow(/NIC "a" did not come up: guest memory exhausted.*memoryPerNic is 65536 bytes/);
    expect(lab.status).toBe('closed');
    expect(lab.device('a').status).toBe(0);
  });
});

describe('topology files', () => {
  const problems = topologyProblems;

  it('accepts the example topology', () => {
    const t = loadTopology(fileURLToPath(new URL('../../examples/lab.json', import.meta.url)));
    expect(t.nics.map((n) => n.name)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('names every bad field', () => {
    expect(problems([])).toEqual(['(topology): must be an object, got a list']);
    expect(problems({})).toEqual(['nics: is required (a list)']);
    expect(problems({ nics: [], link: [] })).toEqual(['(topology).link: unknown key (known: description, nics, switches, sockets, vhostUser, links, ports, taps, hosts, netns, traffic, vxlan)', 'nics: must list at least one NIC, got an empty list']);
    const p = problems({
      nics: [{ name: 'a' }, { name: 'a' }, { name: 'b', mac: 'zz', queuePairs: 64 }, { name: 'c', mtu: 1000, queueSize: 100 }, { name: 'd', mac: '01:00:5e:00:00:01' }],
      switches: [{ name: 'sw', ageingMs: -1 }],
      links: [
        { a: 'a', b: 'nope' },
        { a: 'a', b: 'b', impairment: { lossPrecent: 5 } },
        { a: 'c', b: 'sw' },
      ],
      ports: [{ nic: 'b', switch: 'a', impairment: { delayMs: 'x' } }],
      taps: [{ switch: 'sw', file: 'x.pcap', port: 'c' }],
      traffic: [
        { from: 'a', to: 'c', frames: 10, size: 1500 },
        { from: 'a', to: 'a', frames: 0, size: 10 },
        { from: 'sw', to: 'z', frames: 1, size: 64, ratePps: 0 },
      ],
    });
    expect(p).toEqual([
      'nics[1].name: "a" is already the name of the NIC at nics[0]',
      'nics[2].mac: "zz" is not a MAC address like 52:54:00:12:34:56',
      'nics[2].queuePairs: must be an integer in [1, 16], got 64',
      'nics[3].queueSize: 100 is not a power of two',
      'nics[4].mac: 01:00:5e:00:00:01 is a multicast address; a NIC needs a unicast one',
      'switches[0].ageingMs: must be a number in (0, 1000000000], got -1',
      'links[0].b: "nope" is not a NIC, switch, socket link or vhost-user port of this topology',
      'links[1].a: "a" is already attached at links[0] (one attachment per NIC)',
      'links[1].impairment.lossPrecent: unknown key (known: delayMs, jitterMs, lossPercent, rateBitsPerSec, burstBytes, seed, queueBytes)',
      'links[2].b: "sw" is a switch; plug NICs into switches with "ports"',
      'ports[0].switch: "a" is not a switch of this topology',
      'ports[0].nic: "b" is already attached at links[1] (one attachment per NIC)',
      'ports[0].impairment.delayMs: must be a number in [0, 60000], got "x"',
      'taps[0].port: "c" is not connected to switch "sw" (its ports: none)',
      'traffic[0].size: must be an integer in [22, 1014], got 1500',
      'traffic[1].to: a flow needs two different NICs, got "a" twice',
      'traffic[1].frames: must be an integer in [1, 1000000000], got 0',
      'traffic[1].size: must be an integer in [22, 1514], got 10',
      'traffic[2].from: "sw" is not a NIC of this topology (NICs: a, b, c, d)',
      'traffic[2].to: "z" is not a NIC of this topology (NICs: a, b, c, d)',
      'traffic[2].ratePps: must be a number in (0, 1000000000], got 0',
    ]);
  });

  it('checks socket links', () => {
    expect(
      problems({
        nics: [{ name: 'a' }],
        sockets: [{ name: 's', transport: 'tcp' }, { name: 't', transport: 'stream', role: 'server', path: '/tmp/s', port: 3 }, { name: 'u', transport: 'dgram', recvBufferSize: 0, sendBufferSize: 1.5 }],
      }),
    ).toEqual([
      'sockets[0].transport: must be "stream" or "dgram", got "tcp"',
      'sockets[1]: give a Unix socket "path" or a TCP "host"/"port", not both (got path "/tmp/s", host nothing, port 3)',
      'sockets[2].recvBufferSize: must be an integer in [1, 2147483647], got 0',
      'sockets[2].sendBufferSize: must be an integer in [1, 2147483647], got 1.5',
      'sockets[2].remote: must be an object, got nothing',
    ]);
  });

  it("a dgram socket link's buffer sizes and a vhost-user port's allowUnsealedMemory reach what they configure", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-topo-'));
    try {
      lab = buildLab(
        parseTopology({
          nics: [{ name: 'a' }],
          switches: [{ name: 'sw' }],
          sockets: [{ name: 'udp', transport: 'dgram', local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: 9 }, recvBufferSize: 65536, sendBufferSize: 32768 }],
          vhostUser: [{ name: 'vm', path: join(dir, 'vm.sock'), allowUnsealedMemory: true }],
          ports: [{ nic: 'a', switch: 'sw' }, { nic: 'udp', switch: 'sw' }, { nic: 'vm', switch: 'sw' }],
        }),
      );
      await lab.start();
      // Linux grants twice the size asked (socket(7)).
      expect(lab.socket('udp').socketBuffers()).toEqual({ recv: 2 * 65536, send: 2 * 32768 });
      // A front end's memfd without a shrink seal is mapped (refused without allowUnsealedMemory).
      const fe = FrontEnd.connect(join(dir, 'vm.sock'));
      try {
        await fe.negotiate({ features: NET_FEATURES, protocolFeatures: PF.REPLY_ACK });
        fe.addRam(RAM_SIZE, RAM_GPA, RAM_UVA, { sealed: false });
        await fe.setMemTable();
        expect(await fe.waitHangUp(300)).toBe(false);
      } finally {
        fe.close();
      }
    } finally {
      await lab?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('checks vhost-user ports: a path, a MAC of its own, a name of its own, and no traffic from them', () => {
    expect(
      problems({
        nics: [{ name: 'a', mac: '52:54:00:00:00:0a' }],
        switches: [{ name: 'sw' }],
        vhostUser: [{ name: 'vm' }, { name: 'a', path: '/tmp/a.sock' }, { name: 'vm2', path: '/tmp/v.sock', mac: '52:54:00:00:00:0a', queues: 2, allowUnsealedMemory: 'yes' }],
        ports: [{ nic: 'vm', switch: 'sw' }],
        traffic: [{ from: 'a', to: 'vm', frames: 1, size: 64 }],
      }),
    ).toEqual([
      'vhostUser[0].path: is required',
      'vhostUser[1].name: "a" is already the name of the NIC at nics[0]',
      'vhostUser[2].queues: unknown key (known: name, path, mac, mtu, queuePairs, allowUnsealedMemory, threads, spinUs)',
      'vhostUser[2].allowUnsealedMemory: must be true or false, got "yes"',
      'vhostUser[2].mac: 52:54:00:00:00:0a is already the MAC of nics[0]',
      'traffic[0].to: "vm" is not a NIC of this topology (NICs: a)',
    ]);
  });

  it('builds a lab whose vhost-user port serves on its path, plugged into a switch', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-topo-'));
    try {
      lab = buildLab(parseTopology({ nics: [{ name: 'a' }], switches: [{ name: 'sw' }], vhostUser: [{ name: 'vm', path: join(dir, 'vm.sock') }], ports: [{ nic: 'a', switch: 'sw' }, { nic: 'vm', switch: 'sw' }] }));
      await lab.start();
      expect(lab.vhostUserServer('vm').path).toBe(join(dir, 'vm.sock'));
      expect(existsSync(join(dir, 'vm.sock'))).toBe(true);
      expect(lab.stats().vhostUser.vm).toMatchObject({ connected: false, mac: '52:54:00:1a:00:02' });
      await lab.close();
      expect(existsSync(join(dir, 'vm.sock'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('one TopologyError lists every problem; a single one reads as path: message', () => {
    const one = (() => {
      try {
        parseTopology({ nics: [{ name: 'a', mtu: 9 }] });
      } catch (e) {
        return e as TopologyError;
      }
    })();
    expect(one).toBeInstanceOf(TopologyError);
    expect(one!.code).toBe('INVALID_TOPOLOGY');
    expect(one!.path).toBe('nics[0].mtu');
    expect(one).toBeInstanceOf(InvalidArgumentError);
    expect(one!.message).toBe('nics[0].mtu: must be an integer in [68, 65535], got 9');
  });

  it('runTopology builds, runs the flows, closes and reports', async () => {
    const t: LabTopology = {
      nics: [{ name: 'x' }, { name: 'y', queuePairs: 2 }],
      links: [{ a: 'x', b: 'y', impairment: { aToB: { lossPercent: 20, seed: 3 } } }],
      traffic: [
        { from: 'x', to: 'y', frames: 500, size: 300 },
        { from: 'y', to: 'x', frames: 300, size: 1514, ratePps: 3000 },
      ],
    };
    const r = await runTopology(parseTopology(t), { lab: { queueSize: 64 } });
    const [xy, yx] = r.flows;
    expect(xy.sent).toBe(500);
    expect(xy.lost).toBe(r.links[0].lostAToB);
    expect(xy.lost).toBeGreaterThan(0);
    expect(xy.received + xy.lost).toBe(500);
    expect(yx).toMatchObject({ sent: 300, received: 300, lost: 0, outOfOrder: 0, ratePps: 3000 });
    expect(r.nics.y.txPackets).toBe(300);
    expect(r.nics.x.rxPackets).toBe(300);
  });

  it('seconds stops sending: a flow reports what it sent by then, and all of it arrived', async () => {
    const t = parseTopology({ nics: [{ name: 'x' }, { name: 'y' }], links: [{ a: 'x', b: 'y' }], traffic: [{ from: 'x', to: 'y', frames: 100_000, size: 64, ratePps: 200 }] });
    const r = await runTopology(t, { seconds: 0.3, lab: { queueSize: 64 } });
    expect(r.flows[0].sent).toBeGreaterThan(0);
    expect(r.flows[0].sent).toBeLessThan(100_000);
    expect(r.flows[0]).toMatchObject({ received: r.flows[0].sent, lost: 0 });
  });

  it('buildLab turns what the lab refuses into a TopologyError for the entry', () => {
    const t = parseTopology({ nics: [{ name: 'a' }] });
    t.links = [{ a: 'a', b: 'ghost' }];
    expect(() => buildLab(t)).toThrow(TopologyError);
    expect(() => buildLab(t)).toThrow(/^links\[0\]: link: no NIC, socket link, vhost-user port or VXLAN uplink named "ghost"/);
  });
});

describe('two switches joined by a link', () => {
  it('carries traffic both ways through both switches; the link impairment drops and counts (topology file)', async () => {
    const t = parseTopology({
      nics: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      switches: [{ name: 'sw0' }, { name: 'sw1' }],
      links: [{ a: 'sw0', b: 'sw1', impairment: { aToB: { lossPercent: 20, seed: 11 } } }],
      ports: [
        { nic: 'a', switch: 'sw0' },
        { nic: 'c', switch: 'sw0' },
        { nic: 'b', switch: 'sw1' },
      ],
      traffic: [
        { from: 'a', to: 'b', frames: 400, size: 256 },
        { from: 'b', to: 'a', frames: 300, size: 512 },
        { from: 'a', to: 'c', frames: 100, size: 128 },
      ],
    });
    const r = await runTopology(t, { lab: { queueSize: 64 } });
    const [ab, ba, ac] = r.flows;
    const [cable] = r.links;
    expect(cable).toMatchObject({ a: 'sw0', b: 'sw1' });
    // sw0 -> sw1 loses about 20 %, every loss counted by the link; the other way loses nothing.
    expect(ab.sent).toBe(400);
    expect(ab.lost).toBeGreaterThan(0);
    expect(ab.received + ab.lost).toBe(400);
    expect(cable.lostAToB).toBeGreaterThanOrEqual(ab.lost);
    expect(cable.lostBToA).toBe(0);
    expect(ba).toMatchObject({ sent: 300, received: 300, lost: 0, outOfOrder: 0, duplicates: 0 });
    expect(ac).toMatchObject({ sent: 100, received: 100, lost: 0 });
    // The link is a port of each switch, after its connected NICs, named after the switch on the far end.
    expect(r.switches.sw0.ports.map((p) => p.name)).toEqual(['a', 'c', 'sw1']);
    expect(r.switches.sw1.ports.map((p) => p.name)).toEqual(['b', 'sw0']);
    // What sw1 got from the link is what sw0 sent into it, less the link's losses.
    const up0 = r.switches.sw0.ports[2];
    const up1 = r.switches.sw1.ports[1];
    expect(up1.rxFrames).toBe(up0.txFrames - cable.lostAToB);
    expect(up0.rxFrames).toBe(up1.txFrames);
  });

  it('Lab.link joins two switches; a NIC and a switch, or a switch and itself, are refused', async () => {
    const refused = new Lab().nic('a').switch('sw0').switch('sw1');
    expect(() => refused.link('a', 'sw0')).toThrow(/"sw0" is a switch; connect\(\) plugs NICs into switches, link\(\) joins two switches or two NICs/);
    expect(() => refused.link('sw0', 'sw0')).toThrow(/two different ends/);
    expect(parseTopology.bind(null, { nics: [{ name: 'a' }], switches: [{ name: 's' }], links: [{ a: 's', b: 'a' }] })).toThrow('links[0].a: "s" is a switch; plug NICs into switches with "ports"');

    lab = new Lab({ queueSize: 64 }).nic('x').nic('y').switch('s0').switch('s1').connect('x', 's0').connect('y', 's1').link('s0', 's1').tap('s1', join(tmp(), 'uplink.pcap'), { port: 's0' });
    await lab.start();
    const r = await runTraffic(lab, [{ from: 'x', to: 'y', frames: 200, size: 100 }]);
    expect(r.flows[0]).toMatchObject({ sent: 200, received: 200, lost: 0 });
    expect(lab.stats().links[0]).toMatchObject({ a: 's0', b: 's1', relay: null });
    const table = await lab.macTable('s1');
    expect(table.find((e) => e.mac === lab!.mac('x'))?.portName).toBe('s0');
    await lab.close();
    // The tap on s1's link port saw the flow cross it: as many frames as tshark reads back.
    const captured = lab.stats().switches.s1.captured;
    expect(captured).toBeGreaterThanOrEqual(200);
    expect(tshark(['-r', join(tmp(), 'uplink.pcap'), '-T', 'fields', '-e', 'frame.number']).trim().split('\n')).toHaveLength(captured);
  });
});

describe('topology hosts: the lab IP host with TFTP and DHCP', () => {
  it('parseTopology checks hosts: address, port, dhcp options, names; a host is no traffic end', () => {
    const problems = topologyProblems;
    expect(
      problems({
        nics: [{ name: 'x' }],
        switches: [{ name: 'sw' }],
        hosts: [
          { name: 'gw', address: '10.0.2.2/33', port: 'sw', dhcp: { poolStart: '10.0.2', lease: 5 } },
          { name: 'x', address: '10.0.2.3', port: 'nope' },
        ],
        traffic: [{ from: 'x', to: 'gw', frames: 1, size: 64 }],
      }),
    ).toEqual([
      'hosts[0].address: "10.0.2.2/33" is not an IPv4 address with an optional prefix length in [1, 30], like 10.0.2.2/24',
      'hosts[0].dhcp.lease: unknown key (known: poolStart, poolSize, leaseSeconds, router, nextServer)',
      'hosts[0].dhcp.poolStart: "10.0.2" is not an IPv4 address',
      'hosts[1].name: "x" is already the name of the NIC at nics[0]',
      'hosts[1].port: "nope" is not a switch, NIC or vhost-user port of this topology',
      'traffic[0].to: "gw" is not a NIC of this topology (NICs: x)',
    ]);
  });

  it('a host on a switch answers ping from another host, serves TFTP and runs DHCP; runTopology reports it', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-hosts-'));
    const t = parseTopology({
      nics: [{ name: 'x' }],
      switches: [{ name: 'sw' }],
      ports: [{ nic: 'x', switch: 'sw' }],
      hosts: [{ name: 'gw', address: '10.0.2.2/24', port: 'sw', tftpRoot: dir, dhcp: true }],
    });
    lab = buildLab(t, { queueSize: 64 });
    await lab.start();
    const hosts = await startLabHosts(lab, t.hosts ?? []);
    const peer = new IpHost({ driver: lab.driver('x'), mac: lab.mac('x'), ip: '10.0.2.30' });
    peer.start();
    try {
      expect((await peer.ping('10.0.2.2', { count: 2 })).received).toBe(2);
    } finally {
      await peer.close();
      await hosts.close();
    }
    const gw = hosts.stats().gw;
    expect(gw).toMatchObject({ address: '10.0.2.2/24', mac: lab.mac('gw'), ip: { echoRepliesSent: 2 }, tftp: { done: 0 }, dhcp: { discovers: 0, leases: [] } });
    expect(lab.stats().switches.sw.ports.map((p) => p.name)).toEqual(['x', 'gw']);
    await lab.close();

    const r = await runTopology(t, { seconds: 0.2, lab: { queueSize: 64 } });
    expect(r.hosts.gw).toMatchObject({ address: '10.0.2.2/24', dhcp: { leases: [] } });
    expect(formatLabReport(r)).toMatch(/^host gw \(10\.0\.2\.2\/24, 52:54:00:[0-9a-f:]+\): .*ping replies; .*TFTP 0 transfers done, 0 failed; DHCP 0 acks, 0 naks, leases none$/m);
  });
});
