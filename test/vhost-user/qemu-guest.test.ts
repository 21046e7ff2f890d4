import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpHost, Lab, TftpServer, type VirtioVsockDevice, VsockHost, type VsockSeqpacketSocket } from '../../src/index.js';
import { serveVhostUserVsock } from '../../src/vhost-user/devices.js';
import type { VhostUserServer } from '../../src/vhost-user/server.js';
import { type GuestImage, type GuestRun, buildGuestImage, resultLines, runGuest } from '../support/guest/index.js';
import { requireTools } from '../support/tools.js';

requireTools('guest');

// A Linux kernel's own virtio_net and vmw_vsock_virtio_transport drivers, in
// a QEMU guest (TCG), drive our devices through vhost-user: QEMU is the
// front end, our back end maps the guest's memory and runs the rings. The
// net device sits on a lab switch next to an IpHost (ARP, ping, TFTP); the
// vsock device's host side echoes what the guest's client sends.

const GUEST_MAC = '52:54:00:12:34:56';
const FILE_BYTES = 300_000;
const STREAM_BYTES = 1 << 20;
const SEQPACKET_BYTES = 100_000;

describe('a Linux guest in QEMU as the vhost-user front end', () => {
  let image: GuestImage;
  let dir: string;
  let lab: Lab;
  let ipHost: IpHost;
  let tftp: TftpServer;
  let vsock: VhostUserServer<VirtioVsockDevice>;
  let vsockHost: VsockHost;
  let fileSha: string;
  let run: GuestRun;
  const log: string[] = [];
  let context = '';

  beforeAll(async () => {
    image = await buildGuestImage();
    dir = mkdtempSync(join(tmpdir(), 'vl-qemu-'));
    const file = randomBytes(FILE_BYTES);
    writeFileSync(join(dir, 'blob'), file);
    fileSha = createHash('sha256').update(file).digest('hex');

    lab = new Lab().switch('sw').vhostUser('guest', { path: join(dir, 'net.sock'), mac: GUEST_MAC }).nic('host').connect('guest', 'sw').connect('host', 'sw');
    await lab.start();
    lab.vhostUserServer('guest').on('log', (l: string) => log.push(`net: ${l}`));
    ipHost = new IpHost({ driver: lab.driver('host'), mac: lab.mac('host'), ip: '10.0.2.2' });
    ipHost.start();
    tftp = new TftpServer({ host: ipHost, root: dir });
    tftp.start();

    vsock = serveVhostUserVsock(join(dir, 'vsock.sock'), { guestCid: 3 });
    vsock.on('log', (l: string) => log.push(`vsock: ${l}`));
    vsockHost = new VsockHost(vsock.device);
    vsockHost.listen(1234).on('connection', (s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    vsockHost.listen(1235, { type: 'seqpacket' }).on('connection', (s) => {
      const sock = s as VsockSeqpacketSocket;
      sock.on('error', () => {});
      // 'data' puts the socket in flowing mode; 'message' follows each 'data' with its EOR flag.
      sock.on('data', () => {});
      sock.on('message', (m: Uint8Array, { eor }: { eor: boolean }) => sock.sendMessage(m, { eor }));
    });

    const script = `
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "LINK $(cat /sys/class/net/eth0/address)"
ping -c 3 -W 5 10.0.2.2 > /tmp/ping 2>&1; echo "PING exit=$? $(grep -c 'bytes from' /tmp/ping) replies"
tftp -g -r blob -l /tmp/blob 10.0.2.2; echo "TFTP exit=$?"
echo "SHA $(sha256sum /tmp/blob | cut -d' ' -f1)"
echo "FEATURES $(cat /sys/class/net/eth0/device/features)"
vsock-client stream 2 1234 ${STREAM_BYTES}
vsock-client seqpacket 2 1235 ${SEQPACKET_BYTES}
`;
    run = await runGuest({
      image,
      script,
      memMiB: 256,
      timeoutMs: 120_000,
      extraArgs: [
        '-chardev',
        `socket,id=c0,path=${join(dir, 'net.sock')}`,
        '-netdev',
        'vhost-user,id=n0,chardev=c0',
        '-device',
        `virtio-net-pci,netdev=n0,vectors=0,mac=${GUEST_MAC}`,
        '-chardev',
        `socket,id=c1,path=${join(dir, 'vsock.sock')}`,
        '-device',
        'vhost-user-vsock-pci,chardev=c1',
      ],
    });
    context = `console:\n${run.console}\nqemu stderr:\n${run.stderr}\nback end log:\n${log.join('\n')}`;
  }, 180_000);

  afterAll(async () => {
    await tftp?.close();
    await ipHost?.close();
    await lab?.close();
    await vsockHost?.close();
    await vsock?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('boots and powers off with every step of its script done', () => {
    expect(run.timedOut, context).toBe(false);
    expect(run.exitCode, context).toBe(0);
  });

  it('virtio_net comes up on our device with the MAC from its config', () => {
    expect(resultLines(run, 'LINK '), context).toEqual([`LINK ${GUEST_MAC}`]);
  });

  it('the guest pings the lab host on our switch through our vhost-user net device', () => {
    expect(resultLines(run, 'PING '), context).toEqual(['PING exit=0 3 replies']);
    expect(ipHost.stats().echoRepliesSent, context).toBeGreaterThanOrEqual(3);
  });

  it('a file fetched over TFTP arrives whole (sha256 matches)', () => {
    expect(resultLines(run, 'TFTP '), context).toEqual(['TFTP exit=0']);
    expect(resultLines(run, 'SHA '), context).toEqual([`SHA ${fileSha}`]);
  });

  it('a guest vsock stream client and the host echo exchange data through our vhost-user vsock device', () => {
    expect(resultLines(run, 'VSOCK stream'), context).toEqual([`VSOCK stream OK bytes=${STREAM_BYTES}`]);
  });

  it('seqpacket too: message boundaries survive both ways', () => {
    expect(resultLines(run, 'VSOCK seqpacket'), context).toEqual([`VSOCK seqpacket OK bytes=${SEQPACKET_BYTES}`]);
  });

  it('no ring errors, no protocol errors, and the front ends negotiated what we offered', () => {
    const net = lab.stats().vhostUser.guest;
    expect(net.queues[0].rx.errors + net.queues[0].tx.errors, context).toBe(0);
    expect(net.session?.refused, context).toEqual([]);
    expect(net.session?.messages.SET_MEM_TABLE, context).toBeGreaterThanOrEqual(1);
    expect(vsock.device.vsockStats().errors, context).toBe(0);
    expect(vsock.summary()?.refused, context).toEqual([]);
    expect(log.filter((l) => l.includes('dropping')), context).toEqual([]);
  });
});
