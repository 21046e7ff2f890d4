import { parseArgs } from 'node:util';
import { IpHost } from '../lab/ip-host.js';
import { Lab } from '../lab/lab.js';
import { TftpServer } from '../lab/tftp-server.js';
import { serveVhostUserVsock } from '../vhost-user/devices.js';
import type { VhostUserServer } from '../vhost-user/server.js';
import { VsockHost } from '../vsock/vsock-host.js';
import { VsockUnixMuxer } from '../vsock/unix-muxer.js';

export const VHOST_USER_USAGE = `usage: virtio-lab vhost-user --net SOCK [options]
       virtio-lab vhost-user --vsock SOCK --uds-path P [--cid N] [options]

Serve our virtio-net or virtio-vsock device to a vhost-user front end
(QEMU -netdev vhost-user / -device vhost-user-vsock-pci, DPDK virtio-user).

  --net SOCK        a virtio-net device on Unix socket SOCK, plugged into a
                    lab switch together with an IPv4 host that answers ARP
                    and ping (and serves TFTP with --tftp-root)
  --host-ip A       the lab host's address (default 10.0.2.2/24)
  --tftp-root DIR   serve the files of DIR over TFTP (read and upload)
  --pcap FILE       capture the switch's traffic
  --mac M           the device's MAC (default 52:54:00:12:34:56)
  --pairs N         queue pairs (MQ offered when N > 1; default 1)
  --vsock SOCK      a virtio-vsock device on Unix socket SOCK, its host side
                    behind a Unix muxer at --uds-path (Firecracker's hybrid
                    vsock: host programs connect to P and send
                    "CONNECT <port>\\n"; guest connections to host port N go
                    to P_N)
  --cid N           the guest's CID (default 3)
  --spin-us U       microseconds a queue worker polls before it sleeps
                    (default 30; 0 is faster when the front end busy-polls a
                    core of a small machine, as DPDK does)
  --seconds S       stop after S seconds (default: until SIGINT/SIGTERM)
  --quiet           no live line

Figures go to stdout once a second; what the front end negotiated is
printed when it disconnects.
`;

interface Running {
  /** One line of live figures. */
  line(): string;
  close(): Promise<void>;
}

const stop = (seconds: number | undefined): Promise<void> =>
  new Promise((resolve) => {
    const done = (): void => resolve();
    process.once('SIGINT', done).once('SIGTERM', done);
    if (seconds !== undefined) setTimeout(done, seconds * 1000).unref();
  });

function logSessions(server: VhostUserServer, label: string): void {
  server.on('connected', () => console.log(`${label}: front end connected`));
  server.on('log', (line: string) => console.log(`${label}: ${line}`));
  server.on('disconnected', ({ summary }) => console.log(`${label}: negotiated ${JSON.stringify(summary)}`));
}

async function serveNet(path: string, values: { 'host-ip': string; 'tftp-root'?: string; pcap?: string; mac: string; pairs: string }, spinUs: number): Promise<Running> {
  const [ip, prefix] = values['host-ip'].split('/');
  const lab = new Lab({ spinUs }).switch('sw').vhostUser('guest', { path, mac: values.mac, queuePairs: Number(values.pairs) }).nic('host').connect('guest', 'sw').connect('host', 'sw');
  if (values.pcap !== undefined) lab.tap('sw', values.pcap);
  await lab.start();
  const host = new IpHost({ driver: lab.driver('host'), mac: lab.mac('host'), ip, prefixLength: prefix === undefined ? 24 : Number(prefix) });
  host.start();
  const tftp = values['tftp-root'] === undefined ? undefined : new TftpServer({ host, root: values['tftp-root'] });
  tftp?.start();
  const server = lab.vhostUserServer('guest');
  logSessions(server, 'net');
  console.log(`net: vhost-user on ${path}, MAC ${values.mac}; lab host ${ip} (${lab.mac('host')})${tftp === undefined ? '' : `, TFTP from ${values['tftp-root']}`}`);
  return {
    line: () => {
      const q = lab.stats().vhostUser.guest.queues;
      const sum = (pick: (p: (typeof q)[number]) => number): number => q.reduce((n, p) => n + pick(p), 0);
      const h = host.stats();
      return `net: ${server.connected ? 'connected' : 'waiting'}  guest->lab ${sum((p) => p.tx.chains)} frames  lab->guest ${sum((p) => p.rx.chains)} frames  ping replies ${h.echoRepliesSent}`;
    },
    close: async () => {
      await tftp?.close();
      await host.close();
      await lab.close();
    },
  };
}

async function serveVsock(path: string, udsPath: string, cid: number, spinUs: number): Promise<Running> {
  const server = serveVhostUserVsock(path, { guestCid: cid, spinUs });
  const host = new VsockHost(server.device);
  const mux = new VsockUnixMuxer(host.stack, { udsPath, guestCid: cid });
  await mux.listen();
  logSessions(server, 'vsock');
  console.log(`vsock: vhost-user on ${path}, guest CID ${cid}; host side at ${udsPath}`);
  return {
    line: () => {
      const s = server.device.vsockStats();
      const m = mux.stats;
      const k = host.stack.stats;
      // Connections made through the muxer either way; refused: a host CONNECT the guest did not accept, or a guest
      // connection no Unix listener took. A credit stall is a sender out of the peer's credit: one CREDIT_REQUEST each.
      return (
        `vsock: ${server.connected ? 'connected' : 'waiting'}  guest->host ${s.txPackets} packets  host->guest ${s.rxPackets} packets` +
        `  connections ${m.hostConnects + m.guestConnects} (open ${m.open})  refused ${m.hostConnectFailures + m.guestConnectFailures}` +
        `  resets sent ${k.rstSent} received ${k.rstReceived}  credit stalls ${k.creditRequestsSent}`
      );
    },
    close: async () => {
      await mux.close();
      await host.close();
      await server.close();
    },
  };
}

const parseCommandLine = (args: string[]) =>
  parseArgs({
    args,
    options: {
      net: { type: 'string' },
      vsock: { type: 'string' },
      'uds-path': { type: 'string' },
      cid: { type: 'string', default: '3' },
      'host-ip': { type: 'string', default: '10.0.2.2/24' },
      'tftp-root': { type: 'string' },
      pcap: { type: 'string' },
      mac: { type: 'string', default: '52:54:00:12:34:56' },
      pairs: { type: 'string', default: '1' },
      seconds: { type: 'string' },
      'spin-us': { type: 'string', default: '30' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });

/** `virtio-lab vhost-user`: returns the exit status. */
export async function vhostUserCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(args);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${VHOST_USER_USAGE}`);
    return 2;
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(VHOST_USER_USAGE);
    return 0;
  }
  if (values.net === undefined && values.vsock === undefined) {
    process.stderr.write(`give --net SOCK, --vsock SOCK or both\n\n${VHOST_USER_USAGE}`);
    return 2;
  }
  if (values.vsock !== undefined && values['uds-path'] === undefined) {
    process.stderr.write('--vsock needs --uds-path P (where host programs connect)\n');
    return 2;
  }
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  const spinUs = Number(values['spin-us']);
  if (!(spinUs >= 0)) {
    process.stderr.write(`--spin-us must be a number >= 0, not ${values['spin-us']}\n`);
    return 2;
  }
  const running: Running[] = [];
  try {
    if (values.net !== undefined) running.push(await serveNet(values.net, values, spinUs));
    if (values.vsock !== undefined) running.push(await serveVsock(values.vsock, values['uds-path']!, Number(values.cid), spinUs));
    const ticker = values.quiet ? undefined : setInterval(() => console.log(running.map((r) => r.line()).join('  |  ')), 1000);
    await stop(seconds);
    clearInterval(ticker);
  } finally {
    for (const r of running) await r.close();
  }
  return 0;
}
