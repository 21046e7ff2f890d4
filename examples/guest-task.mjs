// A task module (QueueThreadPoolOptions.taskModule) for
// examples/guest-on-queue-thread.mjs: NIC b's guest side, run by the queue
// thread that serves b's queues. The default export builds the task from the
// data given to pool.runTask(); the thread polls it in the same rounds as its
// queues, so a frame the thread just placed in b's buffers is taken without
// another thread waking.
import { NetDriver } from 'virtio-lab';

export default function guestTask({ spec, words, expect }) {
  const w = new Int32Array(words);
  const driver = new NetDriver(spec);
  driver.fillRx();
  driver.disableInterrupts(); // the task polls: no interrupts needed
  let received = 0;
  let outOfOrder = 0;
  let bytes = 0;
  const onFrame = (packet) => {
    const seq = packet.segU8[0][packet.segIdx[0] + 14]; // the sender's sequence byte
    if (seq !== (received & 0xff)) outOfOrder++;
    received++;
    bytes += packet.length;
  };
  return {
    poll() {
      const n = driver.receive(onFrame);
      if (n !== 0) Atomics.store(w, 0, received); // progress, for the sender's flow control
      return n;
    },
    get finished() {
      return received >= expect;
    },
    sleepMs: () => 1000, // nothing to do until a kick wakes the thread
    report: () => ({ received, outOfOrder, bytes }),
  };
}
