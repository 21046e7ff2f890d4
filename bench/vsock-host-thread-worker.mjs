// The host side of bench/vsock-host-thread.mjs on a worker thread: a
// VsockHost over the device's host port (plain data posted here; the device
// object itself stays on the main thread, so its reset events do not reach
// this host: fine for a bench that resets nothing), listening on the port it
// is given; its reader counts `total` bytes and posts the time it got the last.
import { parentPort, workerData } from 'node:worker_threads';
import { VsockHost } from '../dist/index.js';

const { hostPort, deviceFeatures, port, total } = workerData;
const device = { hostPort, deviceFeatures, on() {}, off() {} };
const host = new VsockHost(device);
host.listen(port).once('connection', (peer) => {
  peer.on('error', () => {}); // the main thread's destroy() resets it
  let got = 0;
  peer.on('data', (b) => {
    got += b.length;
    if (got >= total) parentPort.postMessage({ doneAt: performance.timeOrigin + performance.now() });
  });
});
parentPort.on('message', async () => {
  await host.close();
  parentPort.close();
});
parentPort.postMessage({ ready: true });
