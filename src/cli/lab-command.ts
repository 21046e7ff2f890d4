import { VirtioLabError } from '../errors.js';
import { formatLabReport, runTopology } from '../lab/topology/run-topology.js';
import { TopologyError } from '../errors.js';
import { loadTopology } from '../lab/topology/parse-topology.js';
import { interruptOnSignals } from './interrupt.js';
import { LabRates } from './lab-live.js';
import { LiveLine, liveMode } from './live-line.js';
import { commandLine, usageFailure } from './options.js';

export const LAB_USAGE = `usage: virtio-lab lab <topology.json> [--seconds N] [--idle-poll-ms T] [--progress] [--json]

Build the network lab a topology file describes (virtio-net NICs, learning
switches, links with loss / delay / rate, pcap taps, socket links, VXLAN
uplinks), run its traffic flows of numbered frames, then print per-flow sent
/ received / lost and the counters of every switch port and link.

  --seconds N   stop sending after N seconds (flows report what they sent);
                a topology without traffic stays up N seconds (without
                --seconds: until Ctrl-C)
  --idle-poll-ms T
                the NICs' and vhost-user ports' sleeping queue threads look
                at their queues every T ms, for a second after their last
                work (default 0: never): the first frame after a pause (a
                ping every second) is faster, for 1000 / T wake-ups a second
                of each thread in that second
  --progress    a plain line of per-port rates every second when stdout is
                not a terminal (on a terminal one line is redrawn anyway)
  --json        print one JSON object instead of tables

Ctrl-C (SIGINT) or SIGTERM stops the traffic, closes the lab (captures are
flushed, socket files it created removed) and prints the report; a second
one exits at once.

A "netns" entry is a Linux network namespace with a TAP interface on the
lab (needs root or CAP_NET_ADMIN, /dev/net/tun and iproute2); run programs
in it with ip netns exec NAME ... while the lab runs; the lab deletes it
when it closes.

Topology (only "nics" is required, or "netns"; a link or port end may name a socket
link, a QEMU -netdev stream/dgram peer, or a vhost-user port, a NIC whose
driver is a QEMU guest or DPDK connecting to its path; capture files are
relative to the working directory):
  { "nics":     [{ "name": "a", "mac": "52:54:00:00:00:0a", "queuePairs": 1 }],
    "switches": [{ "name": "sw0" }],
    "links":    [{ "a": "a", "b": "b", "impairment": { "lossPercent": 10, "delayMs": 2 } }],
    "ports":    [{ "nic": "c", "switch": "sw0", "impairment": { "delayMs": 1 } }],
    "taps":     [{ "switch": "sw0", "file": "sw0.pcap" }],
    "sockets":  [{ "name": "qemu", "transport": "stream", "role": "server",
                   "path": "/tmp/qemu.sock" }],
    "vhostUser": [{ "name": "vm", "path": "/tmp/vm-net.sock" }],
    "netns":    [{ "name": "ns1", "address": "10.0.0.1/24", "port": "sw0" }],
    "traffic":  [{ "from": "a", "to": "b", "frames": 1000, "size": 512, "ratePps": 10000 }],
    "vxlan":    [{ "name": "vx0", "switch": "sw0", "vni": 42, "local": "10.0.0.1",
                   "port": 4789, "remotes": ["10.0.0.2"] }] }

A "vxlan" entry is a port of its switch that carries frames to remote VTEPs
(another lab, a Linux vxlan device) over UDP (RFC 7348): floods go to every
remote, unicast to the VTEP its MAC was learned behind; drops are counted by
reason in the report.

Exit status: 0 when the lab ran (lost frames are a measurement, not a
failure), 2 for a bad command line or topology, 1 when the lab failed.
`;

const OPTIONS = {
  seconds: { type: 'number', above: 0 },
  'idle-poll-ms': { type: 'number', min: 0, max: 1000, default: 0 },
  progress: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** `virtio-lab lab <file>`: returns the exit status. */
export async function labCommand(args: string[]): Promise<number> {
  const parsed = commandLine('lab', LAB_USAGE, args, OPTIONS, 'allowed');
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageFailure('lab', positionals.length === 0 ? 'name a topology file' : `one topology file, got ${positionals.length}`, LAB_USAGE);
  const file = positionals[0];
  let topology;
  try {
    topology = loadTopology(file);
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    process.stderr.write(`virtio-lab lab: ${file}: ${e.message}\n`);
    return 2;
  }
  const live = new LiveLine(values.json ? 'off' : liveMode(values.progress));
  const interrupt = interruptOnSignals('lab');
  let ticker: NodeJS.Timeout | undefined;
  try {
    const report = await runTopology(topology, {
      seconds: values.seconds,
      lab: { idlePollMs: values['idle-poll-ms'] },
      signal: interrupt.signal,
      onRunning: (lab) => {
        if (live.mode === 'off') return;
        const rates = new LabRates(lab);
        ticker = setInterval(() => live.draw(rates.fields()), 1000);
      },
    });
    clearInterval(ticker);
    live.end();
    process.stdout.write(values.json ? `${JSON.stringify({ ...report, interrupted: interrupt.signal.aborted }, null, 2)}\n` : formatLabReport(report));
    return 0;
  } catch (e) {
    if (e instanceof TopologyError) {
      process.stderr.write(`virtio-lab lab: ${file}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof VirtioLabError) {
      process.stderr.write(`virtio-lab lab: ${e.name} (${e.code}): ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    clearInterval(ticker);
    live.end();
    interrupt.dispose();
  }
}
