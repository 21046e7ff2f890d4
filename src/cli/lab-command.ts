import { parseArgs } from 'node:util';
import { VirtioLabError } from '../errors.js';
import { formatLabReport, runTopology } from '../lab/lab-report.js';
import { TopologyError, loadTopology } from '../lab/lab-topology.js';

export const LAB_USAGE = `usage: virtio-lab lab <topology.json> [--seconds N] [--json]

Build the network lab a topology file describes (virtio-net NICs, learning
switches, links with loss / delay / rate, pcap taps, socket links), run its
traffic flows of numbered frames, then print per-flow sent / received / lost
and the counters of every switch port and link.

  --seconds N   stop sending after N seconds (flows report what they sent);
                a topology without traffic stays up N seconds
  --json        print one JSON object instead of tables

Topology (only "nics" is required; a link or port end may name a socket
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
    "traffic":  [{ "from": "a", "to": "b", "frames": 1000, "size": 512, "ratePps": 10000 }] }

Exit status: 0 when the lab ran (lost frames are a measurement, not a
failure), 2 for a bad command line or topology, 1 when the lab failed.
`;

/** `virtio-lab lab <file>`: returns the exit status. */
export async function labCommand(args: string[]): Promise<number> {
  let values: { seconds?: string; json?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        seconds: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    process.stderr.write(`virtio-lab lab: ${(e as Error).message}\n\n${LAB_USAGE}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(LAB_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`virtio-lab lab: ${positionals.length === 0 ? 'name a topology file' : `one topology file, got ${positionals.length}`}\n\n${LAB_USAGE}`);
    return 2;
  }
  let seconds: number | undefined;
  if (values.seconds !== undefined) {
    seconds = Number(values.seconds);
    if (!(Number.isFinite(seconds) && seconds > 0)) {
      process.stderr.write(`virtio-lab lab: --seconds ${values.seconds} must be a positive number\n`);
      return 2;
    }
  }
  const file = positionals[0];
  let topology;
  try {
    topology = loadTopology(file);
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    process.stderr.write(`virtio-lab lab: ${file}: ${e.message}\n`);
    return 2;
  }
  try {
    const report = await runTopology(topology, { seconds });
    process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatLabReport(report));
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
  }
}
