// A learning switch with three virtio-net NICs (one with two queue pairs)
// and a pcap tap: numbered frames between every pair of NICs, then the MAC
// table the switch learned and the frames it captured.
// Run: npm run build && node examples/switch-pcap.mjs [capture.pcap]
// Read the capture: tshark -r <capture.pcap>
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, runTraffic } from 'virtio-lab';

const pcap = process.argv[2] ?? join(tmpdir(), 'virtio-lab-switch.pcap');
const names = ['a', 'b', 'c'];

const lab = new Lab()
  .nic('a', { mac: '52:54:00:00:01:0a' })
  .nic('b', { mac: '52:54:00:00:01:0b' })
  .nic('c', { mac: '52:54:00:00:01:0c', queuePairs: 2 })
  .switch('sw0');
for (const n of names) lab.connect(n, 'sw0');
lab.tap('sw0', pcap);

try {
  await lab.start();
  const flows = names.flatMap((from) => names.filter((to) => to !== from).map((to) => ({ from, to, frames: 100, size: 128 })));
  const traffic = await runTraffic(lab, flows);
  for (const f of traffic.flows) console.log(`${f.from} -> ${f.to}: sent ${f.sent}, received ${f.received}, lost ${f.lost}`);
  console.log('MAC table:');
  for (const e of await lab.macTable('sw0')) console.log(`  ${e.mac} on port ${e.port} (${e.portName})`);
} finally {
  // Closing the switch flushes and closes the capture.
  await lab.close();
}

const sw = lab.stats().switches.sw0;
for (const p of sw.ports) console.log(`port ${p.name}: in ${p.rxFrames}, out ${p.txFrames}, flooded ${p.flooded}, dropped ${p.dropsEgressFull} (port full)`);
console.log(`captured ${sw.captured} frames to ${pcap}`);
