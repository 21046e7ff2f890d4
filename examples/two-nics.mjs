// Two virtio-net NICs on one cable: bring both up as a guest driver would,
// send a few frames from a to b, and print what b receives.
// Run: npm run build && node examples/two-nics.mjs
import { NetDriver, SharedArena, VirtioNetDevice, connectNics, setupNetDriver } from 'virtio-lab';

const arena = new SharedArena(32 << 20);
const a = new VirtioNetDevice(arena.guestMemory(8 << 20), { mac: '52:54:00:00:00:0a' });
const b = new VirtioNetDevice(arena.guestMemory(8 << 20), { mac: '52:54:00:00:00:0b' });
connectNics(arena, a, b);

try {
  const da = new NetDriver(await setupNetDriver(a));
  const db = new NetDriver(await setupNetDriver(b));
  db.fillRx();

  const count = 3;
  for (let i = 0; i < count; i++) {
    const frame = new Uint8Array(60);
    frame.set([0x52, 0x54, 0, 0, 0, 0x0b, 0x52, 0x54, 0, 0, 0, 0x0a, 0x88, 0xb5, i]);
    da.send(frame);
  }
  da.flushTx();

  let got = 0;
  while (got < count) {
    if (!(await db.waitForInterrupt(10_000))) throw new Error('no interrupt within 10 s');
    got += db.receive((packet) => {
      // packet: a view of b's receive buffers (header fields, segments), valid during the call.
      const frame = new Uint8Array(packet.length);
      packet.copyTo(frame);
      console.log(`b received ${packet.length} bytes: ${Buffer.from(frame.subarray(0, 15)).toString('hex')}...`);
    });
  }
  console.log(`a tx queue: ${JSON.stringify(a.queueStats(1))}`);
} finally {
  await Promise.all([a.close(), b.close()]);
}
