import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../src/index.js';
import { type LabHosts, startLabHosts } from '../../src/lab/topology/topology-hosts.js';
import { type GuestRun, buildGuestImage, resultLines, runGuest } from '../support/guest/index.js';
import { requireTools } from '../support/tools.js';

requireTools('guest');

// A stock DHCP client (busybox udhcpc) in a QEMU guest gets its address from
// the lab host's DhcpServer through our vhost-user net device, then pings
// the host: no static address in the guest.

const GUEST_MAC = '52:54:00:12:34:57';

describe('a QEMU guest configured by the lab host\'s DHCP server', () => {
  let dir: string;
  let lab: Lab;
  let hosts: LabHosts;
  let run: GuestRun;
  let context = '';

  beforeAll(async () => {
    const image = await buildGuestImage();
    dir = mkdtempSync(join(tmpdir(), 'vl-qemu-dhcp-'));
    lab = new Lab().switch('sw').vhostUser('guest', { path: join(dir, 'net.sock'), mac: GUEST_MAC }).nic('gw').connect('guest', 'sw').connect('gw', 'sw');
    await lab.start();
    hosts = await startLabHosts(lab, [{ name: 'gw', address: '10.0.2.2/24', port: 'sw', dhcp: true }]);
    // udhcpc runs this script with the lease in its environment ($mask is the prefix length).
    const script = `
printf '%s\n' '#!/bin/sh' 'if [ "$1" = bound ]; then ip addr add "$ip/$mask" dev "$interface"; echo "LEASE $ip/$mask router $router lease $lease"; fi' 'exit 0' > /tmp/dhcp.sh
chmod +x /tmp/dhcp.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -T 3 -s /tmp/dhcp.sh; echo "UDHCPC exit=$?"
ping -c 3 -W 5 10.0.2.2 > /tmp/ping 2>&1; echo "PING exit=$? $(grep -c 'bytes from' /tmp/ping) replies"
`;
    run = await runGuest({
      image,
      script,
      memMiB: 256,
      timeoutMs: 120_000,
      extraArgs: ['-chardev', `socket,id=c0,path=${join(dir, 'net.sock')}`, '-netdev', 'vhost-user,id=n0,chardev=c0', '-device', `virtio-net-pci,netdev=n0,vectors=0,mac=${GUEST_MAC}`],
    });
    context = `console:\n${run.console}\nqemu stderr:\n${run.stderr}`;
  }, 180_000);

  afterAll(async () => {
    await hosts?.close();
    await lab?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('udhcpc gets 10.0.2.15/24 with the lab host as router, and the guest then pings the host', () => {
    expect(run.timedOut, context).toBe(false);
    expect(resultLines(run, 'LEASE '), context).toEqual(['LEASE 10.0.2.15/24 router 10.0.2.2 lease 3600']);
    expect(resultLines(run, 'UDHCPC '), context).toEqual(['UDHCPC exit=0']);
    expect(resultLines(run, 'PING '), context).toEqual(['PING exit=0 3 replies']);
    const gw = hosts.stats().gw;
    expect(gw.dhcp, context).toMatchObject({ acks: 1, naks: 0, malformed: 0, leases: [{ mac: GUEST_MAC, ip: '10.0.2.15', state: 'bound' }] });
    // udhcpc sends DISCOVER again after 3 s without an offer (a slow TCG guest on a busy machine):
    // every one of them gets an offer.
    expect(gw.dhcp?.discovers, context).toBeGreaterThanOrEqual(1);
    expect(gw.dhcp?.offers, context).toBe(gw.dhcp?.discovers);
    expect(gw.ip.echoRepliesSent, context).toBeGreaterThanOrEqual(3);
  });
});
