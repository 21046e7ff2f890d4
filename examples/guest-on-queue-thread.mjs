// Run-to-completion receive: NIC b's guest code runs on the queue thread that
// serves both NICs (a task from examples/guest-task.mjs), so a frame goes
// from a's kick through both devices into b's callback in one thread.
// Run: npm run build && node examples/guest-on-queue-thread.mjs
import { NetDriver, QueueThreadPool, SharedArena, VirtioNetDevice, connectNics, setupNetDriver } from 'virtio-lab';

const FRAMES = 10_000;
const pool = new QueueThreadPool({ threads: 1, taskModule: new URL('./guest-task.mjs', import.meta.url) });
const arena = new SharedArena(32 << 20);
const a = new VirtioNetDevice(arena.guestMemory(8 << 20), { mac: '52:54:00:00:00:0a', threads: { pool } });
const b = new VirtioNetDevice(arena.guestMemory(8 << 20), { mac: '52:54:00:00:00:0b', threads: { pool } });
connectNics(arena, a, b);

try {
  const da = new NetDriver(await setupNetDriver(a));
  // b's driver is built inside the task, on the queue thread, from this plain data.
  const words = new SharedArrayBuffer(8);
  const progress = new Int32Array(words);
  const done = pool.runTask(0, { spec: await setupNetDriver(b), words, expect: FRAMES });

  const frame = new Uint8Array(60);
  frame.set([0x52, 0x54, 0, 0, 0, 0x0b, 0x52, 0x54, 0, 0, 0, 0x0a, 0x88, 0xb5]);
  const started = performance.now();
  let sent = 0;
  while (sent < FRAMES) {
    da.reclaimTx();
    // Stay within b's posted buffers: a direct link gives a chain back (never drops it) while b has none.
    while (sent < FRAMES && sent - Atomics.load(progress, 0) < 128) {
      frame[14] = sent & 0xff;
      if (!da.send(frame)) break;
      sent++;
    }
    da.flushTx();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const report = await done;
  const ms = performance.now() - started;
  console.log(`b's guest on the queue thread received ${report.received} frames (${report.bytes} bytes), ${report.outOfOrder} out of order, in ${ms.toFixed(0)} ms`);
  console.log(`b rx queue: ${b.queueStats(0).directFrames} frames placed straight from a's transmit ring`);
} finally {
  await Promise.all([a.close(), b.close()]);
  await pool.close();
}
