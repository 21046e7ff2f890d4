// The packet pump as library code: 1 M frames of 256 bytes, live figures.
// Run: npm run build && node examples/pump.mjs
import { probePlacement, runPump } from 'virtio-lab';

const placement = await probePlacement();
console.log(`placement: ${placement.placement} (${placement.roundTripNs} ns)`);
const r = await runPump({
  frames: 1_000_000,
  frameSize: 256,
  onTick: (t) => console.log(`${t.seconds.toFixed(1)} s  ${(t.pps / 1e6).toFixed(2)} Mpps  ${t.gbps.toFixed(2)} Gbit/s`),
});
console.log(`${r.received} frames, ${(r.pps / 1e6).toFixed(2)} Mpps, lost ${r.lost}, out of order ${r.sequenceErrors}`);
process.exitCode = r.lost === 0 && r.sequenceErrors === 0 ? 0 : 1;
