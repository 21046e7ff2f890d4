import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IpHost, Lab, parseTopology } from '../../src/index.js';
import { startCli } from '../cli/cli-process.js';
import { topologyProblems } from '../support/topology-problems.js';
import { A, B, C, VNI } from '../support/process-net.js';

// Labs joined by VXLAN uplinks (RFC 7348) over loopback, the Lab API and
// topology files; the tests against Linux's vxlan driver are in
// vxlan-linux.test.ts. Addresses and ports are unique per process.

const pid = process.pid;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('labs joined by VXLAN over loopback', () => {
  const port = 30_000 + (pid % 20_000);
  const lo = (k: number): string => `127.${A}.${B}.${k}`;

  /** A lab of a switch, a NIC "h" with an IP host 192.168.<c>.<self>, and an uplink on lo(self) towards lo(peer). */
  async function loopbackLab(self: number, peer: number): Promise<{ lab: Lab; host: IpHost }> {
    const lab = new Lab({ queueSize: 128 })
      .switch('sw')
      .nic('h', { mac: `52:54:00:7e:00:0${self}` })
      .connect('h', 'sw')
      .vxlan('vx', { vni: VNI, local: lo(self), port, remotes: [lo(peer)] })
      .connect('vx', 'sw');
    cleanups.push(() => lab.close());
    await lab.start();
    const host = new IpHost({ driver: lab.driver('h'), mac: lab.mac('h'), ip: `192.168.${C}.${self}` });
    cleanups.push(() => host.close());
    host.start();
    return { lab, host };
  }

  it('two labs in one process: an IP host in each pings the other', async () => {
    const a = await loopbackLab(1, 2);
    const b = await loopbackLab(2, 1);
    expect((await a.host.ping(`192.168.${C}.2`, { count: 3, timeoutMs: 5000 })).received).toBe(3);
    expect((await b.host.ping(`192.168.${C}.1`, { count: 3, timeoutMs: 5000 })).received).toBe(3);
    // ARP went out by flood; the replies by what each uplink learned.
    expect(a.lab.vxlanUplink('vx').fdbEntries()).toMatchObject([{ mac: '52:54:00:7e:00:02', remote: `${lo(2)}:${port}` }]);
    expect(b.lab.stats().vxlan.vx).toMatchObject({ dropsBadVni: 0, dropsShort: 0, dropsFull: 0, sendErrors: 0 });
  }, 60_000);

  it('a lab in the CLI (topology file) and a lab in this process: pings cross, and Ctrl-C prints the uplink in the report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-vxlan-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'lab.json');
    writeFileSync(
      file,
      JSON.stringify({
        switches: [{ name: 'sw' }],
        nics: [{ name: 'a' }],
        ports: [{ nic: 'a', switch: 'sw' }],
        hosts: [{ name: 'gw', address: `192.168.${C}.3/24`, port: 'sw' }],
        vxlan: [{ name: 'vx', switch: 'sw', vni: VNI, local: lo(3), port, remotes: [lo(4)] }],
      }),
    );
    const cli = startCli(['lab', file, '--json']);
    cleanups.push(() => (cli.child.exitCode === null ? cli.child.kill('SIGKILL') : undefined));
    const mine = await loopbackLab(4, 3);
    // The CLI's lab is up once its host answers.
    let got = 0;
    for (let i = 0; i < 40 && got === 0; i++) got = (await mine.host.ping(`192.168.${C}.3`, { count: 1, timeoutMs: 500 }).catch(() => ({ received: 0 }))).received;
    expect(got).toBe(1);
    expect((await mine.host.ping(`192.168.${C}.3`, { count: 3, timeoutMs: 5000 })).received).toBe(3);
    cli.child.kill('SIGINT');
    expect(await cli.exited).toBe(0);
    const report = JSON.parse(cli.stdout());
    expect(report.interrupted).toBe(true);
    expect(report.vxlan.vx).toMatchObject({ vni: VNI, local: `${lo(3)}:${port}`, dropsBadVni: 0 });
    expect(report.vxlan.vx.rxFrames).toBeGreaterThanOrEqual(4);
    expect(report.hosts.gw.ip.echoRepliesSent).toBeGreaterThanOrEqual(4);
    // The CLI's uplink socket is gone with it.
    const probe: UdpSocket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(port, lo(3), () => resolve());
    });
    await new Promise((r) => probe.close(() => r(undefined)));
  }, 90_000);
});

describe('Lab.vxlan() misuse is refused with InvalidArgumentError saying what was wrong', () => {
  it('bad options, two uplinks on one cable, asking for the uplink before start()', () => {
    const lab = new Lab().nic('a').switch('sw');
    expect(() => lab.vxlan('v', { vni: -1 })).toThrow(/^VXLAN uplink "v": VXLAN vni -1 must be an integer in \[0, 16777215\] \(24 bits\)$/);
    expect(() => lab.vxlan('v', { vni: 1, remotes: ['10.0.0.300'] })).toThrow(/VXLAN uplink "v": VXLAN remote "10.0.0.300" is not an IPv4 address/);
    expect(() => lab.vxlan('a', { vni: 1 })).toThrow(/the lab already has a NIC named "a"/);
    lab.vxlan('v', { vni: 1 }).vxlan('w', { vni: 2 });
    expect(() => lab.link('v', 'w')).toThrow(/link\("v", "w"\): both ends lead out of the lab \(VXLAN uplink, VXLAN uplink\); connect at least one NIC/);
    expect(() => lab.vxlanUplink('v')).toThrow(/vxlanUplink\("v"\): start\(\) the lab first/);
    expect(() => lab.vxlanUplink('a')).toThrow(/no VXLAN uplink of that name \(uplinks: v, w\)/);
    lab.connect('v', 'sw');
    expect(() => lab.connect('v', 'sw')).toThrow(/VXLAN uplink "v" cannot be plugged into port 1 of switch "sw": it is already on port 0/);
  });

  it('start() rejects with VxlanBindError when the port is taken, and closes what it made', async () => {
    const taken: UdpSocket = createSocket('udp4');
    cleanups.push(() => new Promise((r) => taken.close(() => r(undefined))));
    await new Promise<void>((r) => taken.bind(0, '127.0.0.1', () => r()));
    const lab = new Lab().nic('a').switch('sw').connect('a', 'sw').vxlan('v', { vni: 1, local: '127.0.0.1', port: taken.address().port }).connect('v', 'sw');
    cleanups.push(() => lab.close());
    await expect(lab.start()).rejects.toMatchObject({ name: 'VxlanBindError', errno: 'EADDRINUSE' });
    expect(lab.status).toBe('closed');
  });
});

describe('topology files take "vxlan" uplinks', () => {
  it('parseTopology checks them: VNI beyond 24 bits, a bad address, an unknown switch, unknown keys', () => {
    const bad = (vxlan: unknown[]): string[] => topologyProblems({ nics: [{ name: 'a' }], switches: [{ name: 'sw' }], vxlan });
    expect(bad([{ name: 'v', switch: 'sw', vni: 1 << 24 }])).toEqual(['vxlan[0].vni: VXLAN vni 16777216 must be an integer in [0, 16777215] (24 bits)']);
    expect(bad([{ name: 'v', switch: 'sw', vni: 1, local: '10.0.0' }])).toEqual(['vxlan[0].local: VXLAN local address "10.0.0" is not an IPv4 address like 10.0.0.1']);
    expect(bad([{ name: 'v', switch: 'nope', vni: 1, remotes: 'x' }])).toEqual(['vxlan[0].switch: "nope" is not a switch of this topology', 'vxlan[0].remotes: must be a list, got "x"']);
    expect(bad([{ name: 'v', switch: 'sw' }])).toEqual(['vxlan[0].vni: is required']);
    expect(bad([{ name: 'a', switch: 'sw', vni: 1, dstport: 4789 }])).toEqual(['vxlan[0].dstport: unknown key (known: name, switch, vni, local, port, remotes, learning, restrictSources, ageingSeconds, fdbSize, mtu)', 'vxlan[0].name: "a" is already the name of the NIC at nics[0]']);
    expect(bad([{ name: 'v', switch: 'sw', vni: 7, local: '127.0.0.1', port: 4789, remotes: ['127.0.0.2'], learning: false }])).toEqual([]);
  });

  it('a tap may name the uplink as its port', () => {
    const t = parseTopology({ nics: [{ name: 'a' }], switches: [{ name: 'sw' }], ports: [{ nic: 'a', switch: 'sw' }], vxlan: [{ name: 'v', switch: 'sw', vni: 7 }], taps: [{ switch: 'sw', file: 'x.pcap', port: 'v' }] });
    expect(t.vxlan?.[0].name).toBe('v');
  });
});
