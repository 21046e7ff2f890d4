// Baseline: the same frames carried by postMessage between two worker
// threads (one message per frame, structured clone), the way a user would
// move packets between threads without shared rings.
import { Worker } from 'node:worker_threads';

const SENDER = `
const { parentPort, workerData } = require('node:worker_threads');
const { port, frames, size } = workerData;
const frame = new Uint8Array(size);
let sent = 0;
// Keep at most 'window' frames in flight so the receiver's queue stays bounded.
const credit = new Int32Array(workerData.credit);
const window = 1024;
while (sent < frames) {
  while (sent - Atomics.load(credit, 0) >= window) Atomics.wait(credit, 1, 0, 1);
  frame[0] = sent & 0xff;
  port.postMessage(frame);
  sent++;
}
parentPort.postMessage('sent');
`;

const RECEIVER = `
const { parentPort, workerData } = require('node:worker_threads');
const { port, frames } = workerData;
const credit = new Int32Array(workerData.credit);
let got = 0;
let bytes = 0;
port.on('message', (m) => {
  got++;
  bytes += m.length;
  if ((got & 63) === 0 || got === frames) { Atomics.store(credit, 0, got); Atomics.notify(credit, 1); }
  if (got === frames) { parentPort.postMessage(bytes); port.close(); }
});
`;

/** Frames per second of postMessage carrying `frames` frames of `size` bytes. */
export async function postMessageRate(frames, size) {
  const { port1, port2 } = new MessageChannel();
  const credit = new SharedArrayBuffer(8);
  const receiver = new Worker(RECEIVER, { eval: true, workerData: { port: port2, frames, credit }, transferList: [port2] });
  const done = new Promise((resolve) => receiver.once('message', resolve));
  await new Promise((resolve) => receiver.once('online', resolve));
  const t0 = performance.now();
  const sender = new Worker(SENDER, { eval: true, workerData: { port: port1, frames, size, credit }, transferList: [port1] });
  await done;
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all([sender.terminate(), receiver.terminate()]);
  return frames / seconds;
}
