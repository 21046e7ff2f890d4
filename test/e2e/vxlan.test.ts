import { spawn } from 'node:child_process';
import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IpHost, Lab, type LabHosts, TopologyError, buildLab, formatLabReport, labRunReport, parseTopology, startLabHosts } from '../../src/index.js';
import { until } from '../support/backend-nic.js';
import { requireTools } from '../support/tools.js';
import { startCli } from '../cli/cli-process.js';
import { VtepNamespace } from '../support/vxlan-namespace.js';

// A lab's VXLAN uplink (RFC 7348) against Linux's vxlan driver: the Linux
// VTEPs live in network namespaces this file creates (root or CAP_NET_ADMIN,
// as CI runs), reached over veth pairs; names and addresses are unique per
// process.
requireTools('ip', 'ping', 'iperf3');

const pid = process.pid;
/** A second octet and a third for this process's underlay /24s (10.<a>.<b+k>.0/24) and overlay (192.168.<c>.0/24). */
const A = 200 + (pid % 50);
const B = (pid >>> 6) & 0xf0;
const C = pid % 250;
const VNI = 4200 + (pid % 1000);

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function vtep(k: number, overlayHost: number, port = 4789): Promise<VtepNamespace> {
  const v = await VtepNamespace.create({ tag: `${pid}${k}`.slice(-10), underlay: `10.${A}.${B + k}`, vni: VNI, overlay: `192.168.${C}.${overlayHost}/24`, port });
  cleanups.push(() => v.close());
  return v;
}

/** A lab of one switch, a NIC, an IP host 192.168.<c>.1 on it, and a VXLAN uplink per namespace (bound to its veth's root end). */
async function labFor(vteps: VtepNamespace[], port = 4789): Promise<{ lab: Lab; hosts: LabHosts }> {
  const t = parseTopology({
    nics: [{ name: 'a' }],
    switches: [{ name: 'sw' }],
    ports: [{ nic: 'a', switch: 'sw' }],
    hosts: [{ name: 'gw', address: `192.168.${C}.1/24`, port: 'sw' }],
    vxlan: vteps.map((v, i) => ({ name: `vx${i}`, switch: 'sw', vni: VNI, local: v.rootAddress, port, remotes: [v.nsAddress] })),
  });
  const lab = buildLab(t, { queueSize: 256 });
  cleanups.push(() => lab.close());
  await lab.start();
  const hosts = await startLabHosts(lab, t.hosts ?? []);
  cleanups.push(() => hosts.close());
  return { lab, hosts };
}

/** "N packets transmitted, M received" of ping's summary. */
function pingSummary(out: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (m === null) throw new Error(`no ping summary in:\n${out}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

describe('VXLAN uplink and Linux vxlan devices in network namespaces', () => {
  it('a Linux VTEP pings the lab IP host through the uplink; iperf3 TCP runs between two namespaces through two uplinks and the lab switch', async () => {
    const [v1, v2] = [await vtep(1, 2), await vtep(2, 3)];
    const { lab, hosts } = await labFor([v1, v2]);

    for (const v of [v1, v2]) expect(pingSummary(await v.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', `192.168.${C}.1`]))).toEqual({ sent: 3, received: 3 });
    expect(hosts.stats().gw.ip.echoRepliesSent).toBe(6);

    // TCP between the namespaces: v1 -> uplink vx0 -> switch -> uplink vx1 -> v2.
    const server = spawn('ip', ['netns', 'exec', v2.ns, 'iperf3', '-s', '-1', '-B', `192.168.${C}.3`], { stdio: 'ignore' });
    const serverDone = new Promise<number | null>((r) => server.once('close', (code) => r(code)));
    cleanups.push(() => (server.exitCode === null ? server.kill('SIGKILL') : undefined));
    let report: { error?: string; end?: { sum_received: { bytes: number; seconds: number } } } = {};
    for (let attempt = 0; attempt < 20; attempt++) {
      // The server may not listen yet: iperf3 then fails at once with "connection refused".
      const r = await v1.execStatus(['iperf3', '-c', `192.168.${C}.3`, '-t', '5', '-J'], 60_000);
      report = JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1));
      if (report.error === undefined || !/refused/.test(report.error)) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(report.error).toBeUndefined();
    expect(await serverDone).toBe(0);
    const received = report.end!.sum_received.bytes;
    // Bytes the server read in 5 s (the sender's count includes what was still in flight when its timer ended).
    expect(received).toBeGreaterThan(1 << 20);
    console.log(`iperf3 TCP through two VXLAN uplinks and the lab switch: ${((8 * received) / report.end!.sum_received.seconds / 1e6).toFixed(0)} Mbit/s (one stream; both uplinks on this process's main thread)`);

    const stats = lab.stats();
    for (const name of ['vx0', 'vx1']) {
      const s = stats.vxlan[name];
      expect(s.rxFrames).toBeGreaterThan(0);
      expect(s.txFrames).toBeGreaterThan(0);
      expect(s.dropsBadVni + s.dropsBadFlags + s.dropsShort + s.dropsUnknownSource + s.dropsTooBig + s.sendErrors).toBe(0);
    }
    // Each uplink learned the MAC of its namespace's vxlan device, behind that namespace's address.
    expect(lab.vxlanUplink('vx0').fdbEntries().map((e) => e.remote)).toEqual([`${v1.nsAddress}:4789`]);
    expect(lab.vxlanUplink('vx1').fdbEntries().map((e) => e.remote)).toEqual([`${v2.nsAddress}:4789`]);
    const ports = stats.switches.sw.ports.map((p) => p.name);
    expect(ports).toEqual(['a', 'gw', 'vx0', 'vx1']);
  }, 120_000);

  it('packets for another VNI and garbage UDP are counted by reason and never reach the lab', async () => {
    const v = await vtep(3, 2);
    const { lab, hosts } = await labFor([v]);
    expect(pingSummary(await v.exec(['ping', '-c', '1', '-W', '2', `192.168.${C}.1`])).received).toBe(1);
    const before = lab.stats();
    const hostBefore = hosts.stats().gw.ip.rxFrames;

    // A second Linux vxlan device, VNI + 1, towards the same uplink: its ARP requests carry the wrong VNI.
    await v.addVxlan(VNI + 1, `192.168.${(C + 1) % 250}.2/24`);
    const wrong = await v.execStatus(['ping', '-c', '2', '-i', '0.2', '-W', '1', `192.168.${(C + 1) % 250}.1`]);
    expect(wrong.code).not.toBe(0);
    // Garbage from the root namespace: a 5-byte datagram, and a packet without the I flag.
    const udp: UdpSocket = createSocket('udp4');
    cleanups.push(() => new Promise((r) => udp.close(() => r(undefined))));
    const send = (b: Uint8Array): Promise<void> => new Promise((r, j) => udp.send(b, 4789, v.rootAddress, (e) => (e ? j(e) : r())));
    await send(new Uint8Array(5));
    const noFlag = new Uint8Array(8 + 60);
    noFlag.fill(0xff, 8, 14); // a broadcast inner frame
    noFlag[6] = VNI & 0xff;
    await send(noFlag);

    const vx = (): ReturnType<Lab['stats']>['vxlan'][string] => lab.stats().vxlan.vx0;
    await until(() => vx().dropsBadVni >= 2 && vx().dropsShort === 1 && vx().dropsBadFlags === 1, 10_000, 'the drops counted');
    const after = lab.stats();
    expect(after.vxlan.vx0.rxFrames).toBe(before.vxlan.vx0.rxFrames);
    expect(after.switches.sw.ports[2].rxFrames).toBe(before.switches.sw.ports[2].rxFrames);
    expect(hosts.stats().gw.ip.rxFrames).toBe(hostBefore);
    await hosts.close();
    await lab.close();
    const text = formatLabReport(labRunReport({ nics: [] }, lab.stats()));
    expect(text).toMatch(new RegExp(`vxlan vx0 \\(VNI ${VNI} on ${v.rootAddress.replaceAll('.', '\\.')}:4789, remotes ${v.nsAddress.replaceAll('.', '\\.')}:4789\\).*drops: short 1, bad flags 1, bad VNI \\d+`));
  }, 60_000);

  it('close() leaves nothing: the uplink socket is released, and the namespaces and veths go with their cleanup', async () => {
    const v = await vtep(4, 2);
    const { lab, hosts } = await labFor([v]);
    expect(pingSummary(await v.exec(['ping', '-c', '1', '-W', '2', `192.168.${C}.1`])).received).toBe(1);
    await hosts.close();
    await lab.close();
    // The address and port are free again.
    const probe: UdpSocket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(4789, v.rootAddress, () => resolve());
    });
    await new Promise((r) => probe.close(() => r(undefined)));
    await v.close();
    expect(await v.exists()).toBe(false);
  }, 60_000);
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
    const bad = (vxlan: unknown[]): string[] => {
      try {
        parseTopology({ nics: [{ name: 'a' }], switches: [{ name: 'sw' }], vxlan });
      } catch (e) {
        if (e instanceof TopologyError) return e.problems.map((p) => `${p.field}: ${p.message}`);
        throw e;
      }
      return [];
    };
    expect(bad([{ name: 'v', switch: 'sw', vni: 1 << 24 }])).toEqual(['vxlan[0]: VXLAN vni 16777216 must be an integer in [0, 16777215] (24 bits)']);
    expect(bad([{ name: 'v', switch: 'sw', vni: 1, local: '10.0.0' }])).toEqual(['vxlan[0]: VXLAN local address "10.0.0" is not an IPv4 address like 10.0.0.1']);
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
