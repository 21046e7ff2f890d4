import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpHost, NetDriver, SharedArena, VirtioNetDevice, connectNics, setupNetDriver } from '../../src/index.js';
import { type VhostUserServer, serveVhostUserNet } from '../../src/vhost-user/index.js';
import { ProtocolFeature } from '../../src/vhost-user/protocol.js';
import { type GuestImage, type GuestRun, buildGuestImage, resultLines, runGuest } from '../support/guest/index.js';
import { requireTools } from '../support/tools.js';

requireTools('guest');

// Host notifiers with QEMU 7.2 (TCG) as the front end: our net back end
// offers VHOST_USER_PROTOCOL_F_HOST_NOTIFIER with BACKEND_REQ and
// BACKEND_SEND_FD, and sends each started ring's notify page on the back-end
// channel (BACKEND_VRING_HOST_NOTIFIER_MSG). QEMU maps it into the notify
// region of the virtio-pci device only with page-per-vq=on (one page per
// queue). Whatever QEMU answers, the guest's traffic flows: through the page
// when mapped, else through the kick eventfds the ring threads still watch.

const GUEST_MAC = '52:54:00:12:34:57';
const bit = (b: number): bigint => 1n << BigInt(b);

describe('host notifiers: a Linux guest in QEMU maps our notify pages (or says why not) and its traffic flows', () => {
  let image: GuestImage;
  let dir: string;
  let server: VhostUserServer<VirtioNetDevice>;
  let nic: VirtioNetDevice;
  let ipHost: IpHost;
  let run: GuestRun;
  const log: string[] = [];
  let context = '';

  beforeAll(async () => {
    image = await buildGuestImage();
    dir = mkdtempSync(join(tmpdir(), 'vl-qemu-hn-'));
    const sock = join(dir, 'net.sock');
    server = serveVhostUserNet(sock, { mac: GUEST_MAC, hostNotifiers: true });
    server.on('log', (l: string) => log.push(l));
    const arena = new SharedArena(8 << 20);
    nic = new VirtioNetDevice(arena.guestMemory(4 << 20), { mac: '52:54:00:00:02:0e' });
    connectNics(arena, server.device, nic, { capacity: 1 << 18 });
    const driver = new NetDriver(await setupNetDriver(nic));
    driver.fillRx();
    ipHost = new IpHost({ driver, mac: '52:54:00:00:02:0e', ip: '10.0.2.2' });
    ipHost.start();
    const script = `
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ping -c 5 -W 5 10.0.2.2 > /tmp/ping 2>&1; echo "PING exit=$? $(grep -c 'bytes from' /tmp/ping) replies"
`;
    run = await runGuest({
      image,
      script,
      memMiB: 256,
      timeoutMs: 120_000,
      extraArgs: ['-chardev', `socket,id=c0,path=${sock}`, '-netdev', 'vhost-user,id=n0,chardev=c0', '-device', `virtio-net-pci,netdev=n0,vectors=0,page-per-vq=on,mac=${GUEST_MAC}`],
    });
    context = `console:\n${run.console}\nqemu stderr:\n${run.stderr}\nback end log:\n${log.join('\n')}\nsummary: ${JSON.stringify(server.summary())}`;
  }, 180_000);

  afterAll(async () => {
    await ipHost?.close();
    await server?.close();
    await nic?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('QEMU takes HOST_NOTIFIER, BACKEND_REQ and BACKEND_SEND_FD and gives the back-end channel (SET_BACKEND_REQ_FD)', () => {
    const s = server.summary()!;
    const taken = BigInt(`0x${s.protocolFeatures}`);
    const want = bit(ProtocolFeature.HOST_NOTIFIER) | bit(ProtocolFeature.BACKEND_REQ) | bit(ProtocolFeature.BACKEND_SEND_FD);
    expect(taken & want, context).toBe(want);
    expect(s.messages.SET_BACKEND_REQ_FD, context).toBe(1);
    expect(s.refused, context).toEqual([]);
  });

  it("each started ring's notify page was offered and QEMU answered it (mapped, or refused with its answer)", () => {
    const s = server.summary()!;
    // For the report: what QEMU did with each page, and the notify writes the ring threads found there.
    console.log(`host notifiers: ${JSON.stringify(s.hostNotifiers)}; notify writes found on the pages: ${s.notifyPageKicks}`);
    expect(Object.keys(s.hostNotifiers).sort(), context).toEqual(['0', '1']);
    for (const answer of Object.values(s.hostNotifiers)) expect(answer, context).toMatch(/^(mapped by the front end|refused by the front end \(answer \d+\))$/);
  });

  it('the guest pings the lab host through our device: through the pages where QEMU mapped them, else through the kick eventfds', () => {
    expect(run.timedOut, context).toBe(false);
    expect(resultLines(run, 'PING '), context).toEqual(['PING exit=0 5 replies']);
    const s = server.summary()!;
    // A mapped page takes the guest's notify writes: the tx ring's thread finds them there.
    if (s.hostNotifiers[1] === 'mapped by the front end') expect(s.notifyPageKicks, context).toBeGreaterThan(0);
    expect(log.filter((l) => l.includes('dropping')), context).toEqual([]);
  });
});
