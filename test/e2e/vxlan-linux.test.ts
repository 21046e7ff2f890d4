import { spawn } from 'node:child_process';
import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { type Lab, buildLab, formatLabReport, parseTopology } from '../../src/index.js';
import { type LabHosts, startLabHosts } from '../../src/lab/topology/topology-hosts.js';
import { labRunReport } from '../../src/lab/topology/run-topology.js';
import { until } from '../support/backend-nic.js';
import { requireTools } from '../support/tools.js';
import { VtepNamespace } from '../support/vxlan-namespace.js';
import { A, B, C, VNI } from '../support/process-net.js';

// A lab's VXLAN uplink (RFC 7348) against Linux's vxlan driver: the Linux
// VTEPs live in network namespaces this file creates (root or CAP_NET_ADMIN,
// as CI runs), reached over veth pairs; names and addresses are unique per
// process.
requireTools('ip', 'ping', 'iperf3');
if (process.getuid?.() !== 0) throw new Error('these tests create network namespaces and veth pairs: run them as root (CI does)');

const pid = process.pid;

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

/** iperf3 -c `server` for 5 s from the namespace of `v`, retried while the server does not listen yet (connection refused). */
async function iperf3Client(v: VtepNamespace, server: string): Promise<{ error?: string; end?: { sum_received: { bytes: number; seconds: number } } }> {
  let report: { error?: string; end?: { sum_received: { bytes: number; seconds: number } } } = {};
  for (let attempt = 0; attempt < 20; attempt++) {
    const r = await v.execStatus(['iperf3', '-c', server, '-t', '5', '-J'], 60_000);
    report = JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1));
    if (report.error === undefined || !/refused/.test(report.error)) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  return report;
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
    const report = await iperf3Client(v1, `192.168.${C}.3`);
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

  it('a Linux VTEP reaches a network namespace on the lab switch (a TAP port) through the uplink: ping, and iperf3 TCP for 5 s', async () => {
    const v = await vtep(5, 2);
    const netns = `vl-vx${pid}`.slice(0, 15);
    const t = parseTopology({
      switches: [{ name: 'sw' }],
      netns: [{ name: netns, address: `192.168.${C}.4/24`, port: 'sw' }],
      vxlan: [{ name: 'vx0', switch: 'sw', vni: VNI, local: v.rootAddress, port: 4789, remotes: [v.nsAddress] }],
    });
    const lab = buildLab(t, { queueSize: 256 });
    cleanups.push(() => lab.close());
    await lab.start();

    expect(pingSummary(await v.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', `192.168.${C}.4`]))).toEqual({ sent: 3, received: 3 });
    // TCP from the Linux VTEP's namespace to the lab's: vxlan device -> uplink -> switch -> TAP port -> namespace.
    const server = lab.spawn(netns, ['iperf3', '-s', '-1', '-B', `192.168.${C}.4`]);
    const serverDone = new Promise<number | null>((r) => server.once('close', (code) => r(code)));
    const report = await iperf3Client(v, `192.168.${C}.4`);
    expect(report.error).toBeUndefined();
    expect(await serverDone).toBe(0);
    const received = report.end!.sum_received.bytes;
    expect(received).toBeGreaterThan(1 << 20);
    console.log(`iperf3 TCP Linux VTEP -> VXLAN uplink -> lab switch -> TAP port in a namespace: ${((8 * received) / report.end!.sum_received.seconds / 1e6).toFixed(0)} Mbit/s (one stream)`);
    const s = lab.stats();
    expect(s.vxlan.vx0.rxFrames).toBeGreaterThan(0);
    expect(s.vxlan.vx0.dropsBadVni + s.vxlan.vx0.dropsShort + s.vxlan.vx0.dropsBadFlags + s.vxlan.vx0.sendErrors).toBe(0);
    expect(s.netns[netns].writtenFrames).toBeGreaterThan(0);
    expect(s.netns[netns].readFrames).toBeGreaterThan(0);
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
