// Baseline: the same frames carried by postMessage between two worker
// threads (one message per frame, structured clone), the way a user would
// move packets between threads without shared rings. Timed after a warm-up,
// as the pump in the suite and testpmd's windows are.
import { Worker } from 'node:worker_threads';
import { STEADY_METER_SOURCE, steadyRate } from './lib.mjs';

const SENDER = `
const { parentPort, workerData } = require('node:worker_threads');
const { port, size, seconds } = workerData;
const frame = new Uint8Array(size);
let sent = 0;
// Keep at most 'window' frames in flight so the receiver's queue stays bounded.
const credit = new Int32Array(workerData.credit);
const window = 1024;
const endAt = performance.now() + seconds * 1000;
while ((sent & 63) !== 0 || performance.now() < endAt) {
  while (sent - Atomics.load(credit, 0) >= window) Atomics.wait(credit, 1, 0, 1);
  frame[0] = sent & 0xff;
  port.postMessage(frame);
  sent++;
}
port.postMessage(sent);
parentPort.postMessage('sent');
`;

const RECEIVER = `
const { parentPort, workerData } = require('node:worker_threads');
const { port } = workerData;
${STEADY_METER_SOURCE}
const credit = new Int32Array(workerData.credit);
let got = 0;
port.on('message', (m) => {
  if (typeof m === 'number') {
    parentPort.postMessage({ got, sent: m, steady });
    port.close();
    return;
  }
  got++;
  if ((got & 63) === 0) { meter(got); Atomics.store(credit, 0, got); Atomics.notify(credit, 1); }
});
`;

/** Frames per second of postMessage carrying frames of `size` bytes for `warmupS` + `measureS` seconds, timed after the warm-up. */
export async function postMessageRate(size, { warmupS = 1, measureS = 1 } = {}) {
  const { port1, port2 } = new MessageChannel();
  const credit = new SharedArrayBuffer(8);
  const receiver = new Worker(RECEIVER, { eval: true, workerData: { port: port2, credit, warmupMs: warmupS * 1000 }, transferList: [port2] });
  const done = new Promise((resolve) => receiver.once('message', resolve));
  await new Promise((resolve) => receiver.once('online', resolve));
  const sender = new Worker(SENDER, { eval: true, workerData: { port: port1, size, credit, seconds: warmupS + measureS }, transferList: [port1] });
  try {
    const result = await done;
    if (result.got !== result.sent) throw new Error(`postMessage: ${result.got} of ${result.sent} frames arrived`);
    return steadyRate(result.steady, result.got, 'postMessage');
  } finally {
    await Promise.all([sender.terminate(), receiver.terminate()]);
  }
}
