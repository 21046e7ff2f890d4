import { IpHost } from '../lab/hosts/ip-host.js';
import { parseHostAddress } from '../lab/hosts/ipv4-address.js';
import { Lab } from '../lab/runtime/lab.js';
import { formatMac, parseMac } from '../net/mac.js';
import { TftpServer } from '../lab/hosts/tftp-server.js';
import { THREAD_MAPPING_NAMES } from '../transport/thread-mapping.js';
import { serveVhostUserVsock } from '../vhost-user/devices.js';
import type { VhostUserServer } from '../vhost-user/server.js';
import { VsockHost } from '../vsock/vsock-host.js';
import { VsockUnixMuxer } from '../vsock/muxer/unix-muxer.js';
import { interruptOnSignals } from './interrupt.js';
import { type OptionValues, commandLine, usageFailure } from './options.js';

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
  --pairs N         queue pairs, 1 to 128 (MQ offered when N > 1; default 1)
  --vsock SOCK      a virtio-vsock device on Unix socket SOCK, its host side
                    behind a Unix muxer at --uds-path (Firecracker's hybrid
                    vsock: host programs connect to P and send
                    "CONNECT <port>\\n"; guest connections to host port N go
                    to P_N)
  --cid N           the guest's CID, >= 3 (default 3)
  --threads M       ring threads: auto, per-queue (a thread per ring),
                    per-pair (one per receive/transmit pair) or per-device
                    (one for every ring); default VIRTIO_LAB_THREADS, else
                    auto (per-queue where the machine has a core for every
                    ring plus two, else per-device). The start-up line
                    names the mapping chosen.
  --spin-us U       microseconds a ring thread polls before it sleeps
                    (default 30; 0 is faster when the front end busy-polls a
                    core of a small machine, as DPDK does)
  --idle-poll-ms T  sleeping ring threads (and the lab's own NIC) look at
                    their queues every T ms, for a second after their last
                    work (default 0: never): a guest's first ping after a
                    pause is answered sooner
  --seconds S       stop after S seconds (default: until SIGINT/SIGTERM; a
                    second signal exits at once)
  --allow-unsealed-memory
                    map front-end memory that is not sealed against
                    shrinking (DPDK's --no-huge memfds): trusts the front end
                    not to truncate it, which would kill this process (SIGBUS)
  --quiet           no live line

Figures go to stdout once a second; what the front end negotiated is
printed when it disconnects.
`;

interface Running {
  /** One line of live figures. */
  line(): string;
  close(): Promise<void>;
}

/** Resolves after `seconds` (when given) or once `signal` aborts, whichever comes first. */
const stop = (seconds: number | undefined, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = seconds === undefined ? undefined : setTimeout(done, seconds * 1000);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });

/** The server's ring threads for the start-up line: "per-queue, 2 threads, spin 30 us". */
function describeRingThreads(server: VhostUserServer): string {
  const t = server.ringThreads();
  const threads = new Set(t.threadOf).size;
  return `${t.mapping}, ${threads} thread${threads === 1 ? '' : 's'}, spin ${server.device.spinUs} us`;
}

function logSessions(server: VhostUserServer, label: string): void {
  server.on('connected', () => console.log(`${label}: front end connected`));
  server.on('log', (line: string) => console.log(`${label}: ${line}`));
  server.on('disconnected', ({ summary }) => console.log(`${label}: negotiated ${JSON.stringify(summary)}`));
}

async function serveNet(path: string, values: OptionValues<typeof OPTIONS>): Promise<Running> {
  const { ip, prefixLength } = values['host-ip'];
  const lab = new Lab({ spinUs: values['spin-us'], idlePollMs: values['idle-poll-ms'] })
    .switch('sw')
    .vhostUser('guest', { path, mac: values.mac, queuePairs: values.pairs, threads: values.threads, allowUnsealedMemory: values['allow-unsealed-memory'] })
    .nic('host')
    .connect('guest', 'sw')
    .connect('host', 'sw');
  if (values.pcap !== undefined) lab.tap('sw', values.pcap);
  await lab.start();
  const host = new IpHost({ driver: lab.driver('host'), mac: lab.mac('host'), ip, prefixLength });
  host.start();
  const tftp = values['tftp-root'] === undefined ? undefined : new TftpServer({ host, root: values['tftp-root'] });
  tftp?.start();
  const server = lab.vhostUserServer('guest');
  logSessions(server, 'net');
  console.log(`net: vhost-user on ${path}, MAC ${values.mac}, ring threads ${describeRingThreads(server)}; lab host ${ip} (${lab.mac('host')})${tftp === undefined ? '' : `, TFTP from ${values['tftp-root']}`}`);
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

async function serveVsock(path: string, udsPath: string, values: OptionValues<typeof OPTIONS>): Promise<Running> {
  const cid = values.cid;
  const server = serveVhostUserVsock(path, { guestCid: cid, threads: values.threads, spinUs: values['spin-us'], idlePollMs: values['idle-poll-ms'], allowUnsealedMemory: values['allow-unsealed-memory'] });
  const host = new VsockHost(server.device);
  const mux = new VsockUnixMuxer(host.stack, { udsPath, guestCid: cid });
  await mux.listen();
  logSessions(server, 'vsock');
  console.log(`vsock: vhost-user on ${path}, guest CID ${cid}, ring threads ${describeRingThreads(server)}; host side at ${udsPath}`);
  return {
    line: () => {
      const s = server.device.vsockStats();
      const m = mux.stats;
      const k = host.stack.stats;
      // Connections made through the muxer either way; refused: a host CONNECT the guest did not accept, or a guest
      // connection no Unix listener took. A credit stall is a sender out of the peer's credit (creditStalls).
      return (
        `vsock: ${server.connected ? 'connected' : 'waiting'}  guest->host ${s.txPackets} packets  host->guest ${s.rxPackets} packets` +
        `  connections ${m.hostConnects + m.guestConnects} (open ${m.open})  refused ${m.hostConnectFailures + m.guestConnectFailures}` +
        `  resets sent ${k.rstSent} received ${k.rstReceived}  credit stalls ${k.creditStalls}`
      );
    },
    close: async () => {
      await mux.close();
      await host.close();
      await server.close();
    },
  };
}

/** "10.0.2.2/24" (the prefix length defaults to 24), as the option parser wants it: thrown when malformed. */
function hostAddressOption(text: string): { ip: string; prefixLength: number } {
  const address = parseHostAddress(text);
  if (address === undefined) throw new Error('must be an IPv4 address with an optional prefix length 1-30, as 10.0.2.2/24');
  return address;
}

function parseMacOption(text: string): string {
  try {
    return formatMac(parseMac(text));
  } catch {
    throw new Error('must be a MAC address like 52:54:00:12:34:56');
  }
}

const OPTIONS = {
  net: { type: 'string' },
  vsock: { type: 'string' },
  'uds-path': { type: 'string' },
  cid: { type: 'int', min: 3, max: 0xfffffffe, default: 3 },
  'host-ip': { type: 'parse', parse: hostAddressOption, default: hostAddressOption('10.0.2.2/24') },
  'tftp-root': { type: 'string' },
  pcap: { type: 'string' },
  mac: { type: 'parse', parse: parseMacOption, default: '52:54:00:12:34:56' },
  pairs: { type: 'int', min: 1, max: 128, default: 1 },
  seconds: { type: 'number', above: 0 },
  // The pump's --threads and --spin-us rules (the pump adds 'link').
  threads: { type: 'string', choices: THREAD_MAPPING_NAMES },
  'spin-us': { type: 'number', min: 0, default: 30 },
  'idle-poll-ms': { type: 'number', min: 0, max: 1000, default: 0 },
  quiet: { type: 'boolean' },
  'allow-unsealed-memory': { type: 'boolean' },
} as const;

/** `virtio-lab vhost-user`: returns the exit status. */
export async function vhostUserCommand(args: string[]): Promise<number> {
  const parsed = commandLine('vhost-user', VHOST_USER_USAGE, args, OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (values.net === undefined && values.vsock === undefined) return usageFailure('vhost-user', 'give --net SOCK, --vsock SOCK or both', VHOST_USER_USAGE);
  if (values.vsock !== undefined && values['uds-path'] === undefined) return usageFailure('vhost-user', '--vsock needs --uds-path P (where host programs connect)', VHOST_USER_USAGE);
  const interrupt = interruptOnSignals('vhost-user');
  const running: Running[] = [];
  try {
    if (values.net !== undefined) running.push(await serveNet(values.net, values));
    if (values.vsock !== undefined) running.push(await serveVsock(values.vsock, values['uds-path']!, values));
    const ticker = values.quiet ? undefined : setInterval(() => console.log(running.map((r) => r.line()).join('  |  ')), 1000);
    await stop(values.seconds, interrupt.signal);
    clearInterval(ticker);
  } finally {
    for (const r of running) await r.close();
    interrupt.dispose();
  }
  return 0;
}
