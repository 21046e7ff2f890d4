/**
 * The lab report's vhost-user section: per queue pair counters, ring errors,
 * drops, what the front end negotiated, and how often front ends came and
 * went. The front end is the test's own (test/support/vhost-user), so this
 * needs no QEMU.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Lab, buildLab, formatLabReport, parseTopology } from '../../src/index.js';
import { labRunReport } from '../../src/lab/topology/run-topology.js';
import { type FrontEnd, FE_MAC, NET_FEATURES, TX, frame, until, upNet } from '../support/vhost-user/front-end.js';

const BROADCAST = new Uint8Array(6).fill(0xff);

let dir: string | undefined;
let lab: Lab | undefined;
const fronts: FrontEnd[] = [];
afterEach(async () => {
  for (const fe of fronts.splice(0)) fe.close();
  await lab?.close();
  lab = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('lab report: vhost-user ports', () => {
  it('counts queue traffic, ring errors, negotiated features, connects and disconnects', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vl-lab-report-'));
    const path = join(dir, 'vm.sock');
    const t = parseTopology({ nics: [{ name: 'a' }], switches: [{ name: 'sw' }], vhostUser: [{ name: 'vm', path }], ports: [{ nic: 'a', switch: 'sw' }, { nic: 'vm', switch: 'sw' }] });
    lab = buildLab(t);
    await lab.start();
    const l = lab;
    const vm = () => l.stats().vhostUser.vm;

    // First front end: 10 frames out, then a tx avail index 1000 ahead (2.7.13.3: a driver may not do that).
    const fe = await upNet(path);
    fronts.push(fe);
    const tx = fe.ring(TX);
    for (let i = 0; i < 10; i++) tx.postTx(frame(BROADCAST, FE_MAC, i));
    fe.kick(TX);
    await until(() => vm().queues[0].tx.chains === 10, 10_000, 'the device to take 10 frames from the tx ring');
    const ram = fe.rams[0];
    const idx = ram.off(tx.availGpa) + 2;
    ram.dv.setUint16(idx, (ram.dv.getUint16(idx, true) + 1000) & 0xffff, true);
    fe.kick(TX);
    await until(() => vm().queues[0].tx.errors === 1, 10_000, 'the avail index jump to be counted');
    fe.closeSocket();
    await until(() => vm().disconnects === 1, 10_000, 'the first front end to be seen gone');

    // A second front end comes and is still there when the lab closes.
    fronts.push(await upNet(path));
    await until(() => vm().connects === 2 && vm().connected, 10_000, 'the second front end');
    await lab.close();

    const r = labRunReport(t, lab.stats());
    const v = r.vhostUser.vm;
    expect(v).toMatchObject({ path, mac: '52:54:00:1a:00:02', connected: false, connects: 2, disconnects: 2, lastDisconnect: 'server closed' });
    expect(v.queues).toHaveLength(1);
    expect(v.queues[0]).toMatchObject({ txPackets: 10, txBytes: 10 * 64, drops: 0, errors: 1 });
    expect(v.errorsByCode).toEqual({ AVAIL_INDEX_JUMP: 1 });
    expect(BigInt(`0x${v.features}`)).toBe(NET_FEATURES);
    expect(v.refused).toEqual([]);
    // The switch took the 10 broadcasts from the port and flooded them to NIC a.
    const port = (name: string) => r.switches.sw.ports.find((p) => p.name === name);
    expect(port('vm')?.rxFrames).toBe(10);
    expect(port('a')?.txFrames).toBe(10);

    const text = formatLabReport(r);
    expect(text).toContain(`vhost-user vm (${path}, 52:54:00:1a:00:02): 2 connects, 2 disconnects (last: server closed); features 0x${v.features}, protocol features 0x${v.protocolFeatures}`);
    expect(text).toMatch(/queue pair +rx packets +rx bytes +tx packets +tx bytes +drops +ring errors\n +0 +\d+ +\d+ +10 +640 +0 +1\n/);
    expect(text).toContain('  ring errors: AVAIL_INDEX_JUMP 1');
  });
});
