// A task module for QueueThreadPoolOptions.taskModule (test/worker/task-module.test.ts):
// a NIC's guest side on the queue thread that serves that NIC's queues. It
// receives numbered frames (sequence at byte 14, as numberedFrame() writes
// them), publishes its count in word 0 of `words` and finishes when word 1 is set.
import { threadId } from 'node:worker_threads';
import { NetDriver } from '../../dist/index.js';

export default function receiveTask({ spec, words }) {
  const w = new Int32Array(words);
  const drv = new NetDriver(spec);
  drv.fillRx();
  // The task polls; it never sleeps on its interrupt word.
  drv.disableInterrupts();
  let received = 0;
  let outOfOrder = 0;
  const onFrame = (p) => {
    const b = p.segU8[0];
    const i = p.segIdx[0] + 14;
    const seq = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
    if (seq !== received) outOfOrder++;
    received++;
  };
  return {
    poll() {
      const n = drv.receive(onFrame);
      if (n !== 0) {
        Atomics.store(w, 0, received);
        Atomics.notify(w, 0);
      }
      return n;
    },
    get finished() {
      return Atomics.load(w, 1) !== 0;
    },
    sleepMs: () => 1000,
    report: () => ({ received, outOfOrder, threadId }),
  };
}
