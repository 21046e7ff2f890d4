// Two virtio-net NICs over a cable that loses 10% of the frames and delays
// each by 2 ms (a relay worker sits in the middle and counts what it drops).
// Sends numbered frames a -> b, then times a few single frames.
// Run: npm run build && node examples/lossy-link.mjs
import { Lab, runTraffic } from 'virtio-lab';

const lab = new Lab()
  .nic('a', { mac: '52:54:00:00:02:0a' })
  .nic('b', { mac: '52:54:00:00:02:0b' })
  // The same impairment both ways (each direction draws its own losses); a fixed seed repeats the run.
  .link('a', 'b', { impairment: { lossPercent: 10, delayMs: 2, seed: 42 } });

try {
  await lab.start();
  const { flows } = await runTraffic(lab, [{ from: 'a', to: 'b', frames: 2000, size: 256 }]);
  const f = flows[0];
  const link = lab.stats().links[0];
  console.log(`sent ${f.sent}, received ${f.received}, lost ${f.lost} (${((100 * f.lost) / f.sent).toFixed(1)}%)`);
  console.log(`relay: dropped ${link.lostAToB} frames a -> b by loss, ${link.relay.ports[1].txFrames} delivered`);

  // One frame at a time through the raw drivers: how long the trip takes with the 2 ms delay.
  const a = lab.driver('a');
  const b = lab.driver('b');
  const frame = new Uint8Array(64);
  frame.set([0x52, 0x54, 0, 0, 2, 0x0b, 0x52, 0x54, 0, 0, 2, 0x0a, 0x88, 0xb5]);
  const times = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    a.send(frame);
    a.flushTx();
    let got = 0;
    while (got === 0 && performance.now() - t0 < 100) {
      await lab.waitForInterrupt(10);
      a.reclaimTx();
      got = b.receive(() => {});
    }
    if (got !== 0) times.push(performance.now() - t0);
  }
  const ms = times.map((t) => t.toFixed(2)).join(', ');
  console.log(`single frames: ${times.length} of 10 arrived, one-way times ${ms} ms (link delay 2 ms)`);
} finally {
  await lab.close();
}
